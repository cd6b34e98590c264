"""The web layer: one package per feature, and what they all share.

Features: ``analysis`` (the quick check), ``cases``, ``accounts`` (sign-in, users, the audit
trail), ``api``, ``docs`` and ``health``, each with its routes (a blueprint that
``create_app`` registers), presenter and helpers. Shared by them all: ``config``,
``extensions``, ``auth`` (who is asking, and may they), ``security``, ``errors``,
``records``, ``uploads``, ``search_args``, ``lab_time``, ``observability``, ``warmup`` and
``cli``. It turns HTTP requests into calls of the ML core (``app.core``) and the core's
results into pages and JSON; the core never imports anything from here.
"""
