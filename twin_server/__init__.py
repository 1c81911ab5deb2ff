"""twin-server: a digital twin of a person, served over HTTP.

This module is the whole public API for plugin authors and embedders, with
``twin_server.errors`` (also re-exported here) and ``twin_server.testing`` (the
contract kit). Everything else may move between releases. Kept light on
purpose: importing it loads neither Flask nor any backend SDK.
"""

from twin_server import errors
from twin_server.backends.events import DocumentEventStore, Documents, FileDocuments
from twin_server.backends.protocols import (
    BackendContext,
    ConversationStore,
    EventStore,
    LLMBackend,
    Notifier,
    PersonaSource,
    SecretsProvider,
)
from twin_server.config import Settings
from twin_server.errors import (
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    ConfigurationError,
    HistoryTooLong,
    LimitExceeded,
    NotFound,
    NotReady,
    PersonaError,
    RateLimited,
    StartupError,
    TransientError,
    TwinError,
    ValidationError,
)
from twin_server.events import (
    Lead,
    Question,
    SessionActivity,
    describe,
    listing_cursor,
    read_listing_cursor,
    valid_email,
)
from twin_server.grounding.passages import Passage, persona_passages
from twin_server.hookspecs import hookimpl
from twin_server.persona_layout import (
    FACTS_FILE,
    PERSONA_FILES,
    is_persona_file,
    parse_persona,
    public_persona,
    select_persona_files,
)
from twin_server.replies import Reply, Tool, ToolCall, ToolResult, ToolRound
from twin_server.retry import ConflictPauses, RetryConfig
from twin_server.sessions import SESSION_ID_PATTERN, check_session_id, is_session_id, new_session_id
from twin_server.telemetry.usage import report_usage
from twin_server.types import Message, Persona, Prompt, Source, Summary, utcnow

__version__ = "0.1.0"

__all__ = [
    # plugins
    "hookimpl",
    "BackendContext",
    "Settings",
    "RetryConfig",
    "ConflictPauses",
    "report_usage",
    # protocols
    "ConversationStore",
    "LLMBackend",
    "PersonaSource",
    "SecretsProvider",
    "EventStore",
    "Notifier",
    # value types
    "Message",
    "Persona",
    "Prompt",
    "Source",
    "Summary",
    "utcnow",
    # replies and tools
    "Reply",
    "Tool",
    "ToolCall",
    "ToolResult",
    "ToolRound",
    # owner events, for event stores and notifiers
    "Lead",
    "Question",
    "SessionActivity",
    "listing_cursor",
    "read_listing_cursor",
    "describe",
    "valid_email",
    "Documents",
    "DocumentEventStore",
    "FileDocuments",
    # sessions
    "SESSION_ID_PATTERN",
    "check_session_id",
    "is_session_id",
    "new_session_id",
    # the persona layout, for persona sources
    "FACTS_FILE",
    "PERSONA_FILES",
    "is_persona_file",
    "parse_persona",
    "public_persona",
    "select_persona_files",
    # the persona as passages (ids, titles), for a backend that cites what it used
    "Passage",
    "persona_passages",
    # errors
    "errors",
    *errors.__all__,
    # the app
    "create_app",
    "__version__",
]


def create_app(config_overrides=None, **kwargs):
    """Build the Flask app (see ``twin_server.app.create_app``)."""
    from twin_server.app import create_app as _create_app

    return _create_app(config_overrides, **kwargs)
