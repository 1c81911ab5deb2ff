"""The core's routes in the OpenAPI document: one ``operation(...)`` per route.

A new route of the core gets its line here (and its schemas in
``twin_server.http.schemas`` or next to its API's request schema); a
plugin's route gets one through the ``register_openapi`` hook instead.
"""

from __future__ import annotations

from typing import Any

from twin_server.http.openai import schema as openai_schema
from twin_server.http.openapi.operation import BACKEND_ERRORS, TURN_ERRORS, operation
from twin_server.http.schemas import (
    ChatReplySchema,
    ConversationQuerySchema,
    ConversationSchema,
    HealthSchema,
    ProblemSchema,
    ProfileSchema,
    ReadySchema,
    SessionPathSchema,
    StreamDeltaSchema,
    StreamSessionSchema,
    chat_request_schema,
)

ENDPOINT = "twin_openapi.document"


def chat_body(app: Any) -> Any:
    return chat_request_schema(app.extensions["twin_server"].max_message_chars)


def completion_body(app: Any) -> Any:
    return openai_schema.CompletionRequestSchema(app.extensions["twin_server"].max_message_chars)


TAGS = {
    "chat": "Talk to the twin.",
    "conversations": "What a visitor said, and erasing it.",
    "openai": "The OpenAI-compatible API: any chat client or SDK can talk to the twin.",
    "probes": "Liveness and readiness, for load balancers and orchestrators (never need a key).",
    "page": "What the chat page reads.",
    "operations": "For operators and tools.",
}

CHAT_EVENTS = {
    "session": StreamSessionSchema,
    "delta": StreamDeltaSchema,
    "done": ChatReplySchema,
    "error": ProblemSchema,
}

COMPLETION_EVENTS = {"message": [openai_schema.ChunkSchema, openai_schema.OpenAIErrorSchema, "[DONE]"]}

OPERATIONS = (
    operation(
        "twin_api.chat", "Chat: one turn of a conversation", tags=["chat"], body=chat_body,
        responses={200: ChatReplySchema}, errors=TURN_ERRORS,
        description="Without a session_id a new conversation starts. The turn is stored after the reply; "
        "history_saved says whether that worked.",
    ),
    operation(
        "twin_streaming.chat_stream", "Chat, the reply streamed as Server-Sent Events", tags=["chat"],
        body=chat_body, responses={200: {"text/event-stream": CHAT_EVENTS}}, errors=TURN_ERRORS,
        description="Events, each with one JSON `data` line: `session` first, `delta` for each piece of the "
        "reply, then `done` (the turn, as POST /chat answers it), or `error` (a problem document) when the "
        "language model fails mid-stream. `: keep-alive` comments come every TWIN_SSE_HEARTBEAT seconds of "
        "silence. What fails before the first piece is an ordinary error response.",
    ),
    operation(
        "twin_api.get_conversation", "A page of a stored conversation, oldest message first", tags=["conversations"],
        path=SessionPathSchema, query=ConversationQuerySchema, responses={200: ConversationSchema}, errors=TURN_ERRORS,
        description="The newest page first; follow `next` (as `?before=`) to page back. Counted in the rate limit.",
    ),
    operation(
        "twin_api.delete_conversation", "Erase a conversation (idempotent)", tags=["conversations"],
        path=SessionPathSchema, responses={204: None}, errors=BACKEND_ERRORS,
    ),
    operation("twin_api.health", "Liveness: answers without touching anything", tags=["probes"], responses={200: HealthSchema}),
    operation(
        "twin_api.ready", "Readiness: loads the persona and touches storage", tags=["probes"],
        responses={200: ReadySchema}, errors=(503,),
    ),
    operation(
        "twin_page.profile", "Who the twin is, for the chat page's header", tags=["page"],
        responses={200: ProfileSchema}, errors=BACKEND_ERRORS,
    ),
    operation(
        "twin_metrics.metrics", "Prometheus metrics (TWIN_METRICS=off removes the route)", tags=["operations"],
        responses={200: {"text/plain": None}},
    ),
    operation(
        ENDPOINT, "This document", tags=["operations"], operation_id="openapi_document",
        responses={200: {"application/json": None}},
    ),
    operation(
        "twin_openai_compat.list_models", "OpenAI-compatible: the twin as the one model", tags=["openai"],
        responses={200: openai_schema.ModelListSchema}, errors=BACKEND_ERRORS,
    ),
    operation(
        "twin_openai_compat.get_model", "OpenAI-compatible: one model", tags=["openai"],
        responses={200: openai_schema.ModelSchema}, errors=(404, *BACKEND_ERRORS),
    ),
    operation(
        "twin_openai_compat.chat_completions", "OpenAI-compatible chat completions, plain or streamed",
        tags=["openai"], body=completion_body,
        responses={200: {"application/json": openai_schema.CompletionSchema, "text/event-stream": COMPLETION_EVENTS}},
        errors=TURN_ERRORS,
        description="Stateless like OpenAI's API unless session_id is given. With `\"stream\": true` the answer is "
        "`chat.completion.chunk` events ending with `data: [DONE]` (an error mid-stream is an event with OpenAI's "
        "error envelope). Fields of OpenAI's request that do not apply to a twin are accepted and ignored.",
    ),
)
