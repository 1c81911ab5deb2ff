"""The app for gunicorn tests and benchmarks with the ``paced`` LLM: ``gunicorn tests.doubles.paced_app:app``.

The installed plugins (so the local filesystem store and persona) plus
``tests.doubles.paced``; select it with ``TWIN_LLM=paced``.
"""

from tests.doubles import paced
from twin_server.app import create_app

app = create_app(plugins=[paced])
