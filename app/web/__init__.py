"""The web layer: configuration, blueprints, errors, security, observability, presenters.

It turns HTTP requests into calls of the ML core (``app.core``) and the core's
results into pages and JSON; the core never imports anything from here.
"""
