"""The WSGI entry point: ``gunicorn wsgi:app``."""

import logging
import sys

from twin_server.app import create_app
from twin_server.errors import StartupError
from twin_server.telemetry.logs import configure_logging

configure_logging()  # gunicorn.conf.py has configured logging already; this covers other servers
try:
    app = create_app()
except StartupError as exc:  # the listed problems are the whole story: no traceback
    logging.getLogger("twin_server").critical("%s", exc)
    sys.exit(3)  # gunicorn's "worker failed to boot": the master stops instead of respawning
