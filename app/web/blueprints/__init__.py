"""One blueprint per feature; ``app.create_app`` registers each of them.

A new page or endpoint is a module here with its own ``bp``, registered in
``create_app``; its wording belongs in ``app.web.presenter``.
"""
