"""The app for multi-machine tests: ``gunicorn tests.plugins.echo_app:app``.

The installed plugins plus ``tests.plugins.echo``; select it with ``TWIN_LLM=echo``.
"""

from tests.plugins import echo
from twin_server.app import create_app

app = create_app(plugins=[echo])
