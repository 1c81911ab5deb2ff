"""One chat turn: load the history window, build the prompt, ask the LLM, append the turn."""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Callable, Iterator, Sequence

from twin_server.turn.prompt import SystemPromptCache
from twin_server.backends.retrying import Backends
from twin_server.types import Message, Persona, Prompt, utcnow

log = logging.getLogger(__name__)


def new_session_id() -> str:
    """A fresh session id: a uuid4, 122 random bits."""
    return str(uuid.uuid4())


@dataclasses.dataclass
class PreparedTurn:
    """A turn whose prompt is ready: what the LLM is asked, and what was loaded for it."""

    session_id: str
    user_message: Message
    prompt: Prompt
    history_loaded: bool


@dataclasses.dataclass(frozen=True)
class TurnResult:
    response: str
    session_id: str
    history_loaded: bool
    history_saved: bool


class ChatService:
    """The chat turn shared by the HTTP API, the streaming API and the terminal chat."""

    def __init__(self, backends: Backends, history_window: int) -> None:
        self.backends = backends
        self.history_window = history_window
        self.system_prompts = SystemPromptCache()
        #: Called as ``guard(session_id, text)`` by ``prepare`` once the turn is ready and
        #: before anything is spent on it; raise (e.g. ``LimitExceeded``) to refuse the
        #: turn. ``twin_server.limits`` adds the per-session caps and the daily LLM budget.
        self.guards: list[Callable[[str, str], None]] = []

    def persona(self) -> Persona:
        return self.backends.persona.load()

    def prepare(
        self, session_id: str, text: str, *, instructions: str = "", history: Sequence[Message] | None = None
    ) -> PreparedTurn:
        """Everything before the LLM call. The persona must load; the history may fail.

        ``history`` (a stateless caller's own, e.g. /v1) replaces the stored one,
        cut to the same window.
        """
        persona = self.persona()
        if history is None:
            history, loaded = self._history(session_id)
        else:
            history, loaded = (list(history[-self.history_window:]) if self.history_window > 0 else []), True
        for guard in self.guards:
            guard(session_id, text)
        user = Message("user", text, utcnow())
        system = self.system_prompts.get(persona)
        if instructions:
            system = f"{system}\n\n{instructions}"
        prompt = Prompt(system=system, messages=(*history, user), persona=persona)
        return PreparedTurn(session_id, user, prompt, loaded)

    def finish(self, turn: PreparedTurn, reply: str, *, complete: bool = True) -> bool:
        """Append the turn; False (and a log line) when storage failed after its retries."""
        assistant = Message("assistant", reply, utcnow(), complete=complete)
        try:
            self.backends.storage.append(turn.session_id, [turn.user_message, assistant])
        except Exception:
            log.exception("could not save the turn of session %s; the reply was still sent", turn.session_id)
            return False
        return True

    def turn(self, session_id: str, text: str) -> TurnResult:
        turn = self.prepare(session_id, text)
        reply = self.backends.llm.complete(turn.prompt)
        saved = self.finish(turn, reply)
        return TurnResult(reply, session_id, turn.history_loaded, saved)

    def stream(self, turn: PreparedTurn) -> Iterator[str]:
        """The reply's pieces; the caller calls ``finish`` with what it delivered."""
        return self.backends.llm.stream(turn.prompt)

    def _history(self, session_id: str) -> tuple[list[Message], bool]:
        if self.history_window <= 0:
            return [], True
        try:
            return self.backends.storage.load(session_id, self.history_window), True
        except Exception:
            log.exception("could not load the history of session %s; answering without it", session_id)
            return [], False
