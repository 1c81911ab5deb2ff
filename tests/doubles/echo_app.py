"""The app for multi-machine tests: ``gunicorn tests.doubles.echo_app:app``.

The installed plugins plus ``tests.doubles.echo``; select it with ``TWIN_LLM=echo``.
"""

from tests.doubles import echo
from twin_server.app import create_app

app = create_app(plugins=[echo])
