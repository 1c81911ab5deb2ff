"""The WSGI entry point: ``gunicorn wsgi:app``."""

from twin_server.app import create_app

app = create_app()
