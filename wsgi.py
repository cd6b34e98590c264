"""WSGI entry point: ``flask run`` (auto-detected) and ``gunicorn wsgi:app``."""

from app import create_app

app = create_app()
