"""twin-server: a digital twin of a person, served over HTTP.

Kept light on purpose: plugin authors import ``hookimpl``, the errors and the
value types from here without loading Flask's app or any backend SDK.
"""

from twin_server.hookspecs import hookimpl
from twin_server.types import Message, Persona, Prompt

__version__ = "0.1.0"

__all__ = ["hookimpl", "Message", "Persona", "Prompt", "create_app", "__version__"]


def create_app(config_overrides=None, **kwargs):
    """Build the Flask app (see ``twin_server.app.create_app``)."""
    from twin_server.app import create_app as _create_app

    return _create_app(config_overrides, **kwargs)
