"""The WSGI entry point: ``gunicorn wsgi:app``."""

from twin_server.app import create_app
from twin_server.telemetry.logs import configure_logging

configure_logging()  # gunicorn.conf.py has configured logging already; this covers other servers
app = create_app()
