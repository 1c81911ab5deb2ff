"""The app for gunicorn tests and benchmarks with the ``paced`` LLM: ``gunicorn tests.plugins.paced_app:app``.

The installed plugins (so the local filesystem store and persona) plus
``tests.plugins.paced``; select it with ``TWIN_LLM=paced``.
"""

from tests.plugins import paced
from twin_server.app import create_app

app = create_app(plugins=[paced])
