"""One chat turn, written once, for every entry point.

``POST /chat``, ``POST /chat/stream``, ``POST /v1/chat/completions`` and
``twin-server chat`` all describe what they want as a ``TurnRequest`` and run
it through the app's ``Turns``. The stages, in order, each written here only:

1. validate   the message and the session id (every entry point, the CLI too)
2. persona    must load: a twin without one cannot answer
3. guards     per-session caps and budgets (``Turns.guards``); may refuse the turn
4. history    the stored window (a failure answers without it), or the caller's own, and the summary
5. prompt     inside the token budget (``twin_server.grounding``): the persona's core, the knowledge
              that bears on the question, the summary, the caller's instructions, the newest history
6. LLM        whole (``Turn.reply``) or streamed (``Turn.stream``), with the tool rounds of ``Turns.toolbox``
             (``twin_server.turn.tools``) when the backend supports tools
7. finish     store the user message and the reply, once, whatever the ending
8. after      ``Turns.after_turn`` callbacks (owner events, summaries, ...): they never fail a turn

Per-API differences are fields of ``TurnRequest``, never copies of a stage.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from twin_server.errors import ValidationError
from twin_server.grounding.context import Citations, Context, Grounder
from twin_server.grounding.summary import Summaries
from twin_server.replies import Reply
from twin_server.sessions import check_session_id
from twin_server.turn import tools
from twin_server.turn.live import LiveTurns
from twin_server.types import Message, Persona, Prompt, Source, utcnow

__all__ = ["StreamedReply", "Turn", "TurnRequest", "TurnResult", "Turns"]

log = logging.getLogger("twin_server.turn")


@dataclasses.dataclass(frozen=True)
class TurnRequest:
    """What an entry point asks of a turn."""

    session_id: str
    text: str
    #: Extra instructions after the persona's (a /v1 client's system messages); they cannot replace it.
    instructions: str = ""
    #: The caller's own history (a stateless /v1 call) instead of the stored one; cut to the same window.
    history: Sequence[Message] | None = None
    #: False: nothing is stored (a stateless /v1 call without a session id).
    store: bool = True
    #: LLM options (``temperature``, ``max_tokens``), handed to the backend in ``Prompt.options``.
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    #: True when the session id was made for this turn (``new_session_id``): it has no history to read.
    new_session: bool = False


@dataclasses.dataclass(frozen=True)
class TurnResult:
    response: str
    session_id: str
    history_loaded: bool
    #: None when the turn was not to be stored.
    history_saved: bool | None
    prompt: Prompt
    complete: bool = True
    #: The persona passages the reply is based on, best first (empty when the persona does not cover it).
    sources: tuple[Source, ...] = ()
    #: "length" when the LLM cut the reply at its token limit.
    finish_reason: str = "stop"
    #: False when the backend said its answer is an honest "not covered" (``Reply.covered``).
    covered: bool = True


Guard = Callable[[TurnRequest], None]
AfterTurn = Callable[["Turn", TurnResult], None]


class Turns:
    """The chat turn of one app: its backends, its window and its guards and after-turn work."""

    def __init__(self, backends: Any, *, history_window: int, max_message_chars: int,
                 grounder: Grounder | None = None, summaries: Summaries | None = None) -> None:
        self.backends = backends
        self.history_window = history_window
        self.max_message_chars = max_message_chars
        self.grounder = grounder or Grounder()
        #: The rolling summaries (None: off); its ``after_turn`` is one of ``after_turn``'s callbacks.
        self.summaries = summaries
        #: Streamed turns still under way, so ``GET /conversation`` shows them before they are stored.
        self.live = LiveTurns()
        #: ``guard(request)`` runs before anything is spent on a turn (it sees everything the caller asks the LLM
        #: to read: the message, the instructions and the history); raise to refuse it.
        self.guards: list[Guard] = []
        #: ``after(turn, result)`` runs once a turn is finished; an exception is logged, never raised.
        self.after_turn: list[AfterTurn] = []
        #: The tools offered to an LLM backend that declares ``supports_tools`` (None: none).
        self.toolbox: tools.ToolBox | None = None

    def persona(self) -> Persona:
        """The persona without its private material (what every entry point and page may show)."""
        return self.grounder.public(self.backends.persona.load())

    def prepare(self, request: TurnRequest) -> "Turn":
        """Stages 1–5: everything before the LLM call."""
        self._validate(request)
        persona = self.persona()
        self.grounder.check(persona, request.text)  # a message too long for any request: 400 before the guards
        for guard in self.guards:
            guard(request)
        history, loaded = self._history(request)
        summary = None
        if self.summaries is not None and request.store and request.history is None and not request.new_session:
            summary = self.summaries.load(request.session_id)
        context = self.grounder.build(persona, request.text, history, instructions=request.instructions,
                                      summary=summary)
        user = Message("user", request.text, utcnow())
        offered = ()
        if self.toolbox is not None and getattr(self.backends.llm, "supports_tools", False):
            offered = self.toolbox.tools
        citations = Citations(context.passages)
        prompt = Prompt(system=context.system, messages=(*context.history, user), persona=context.persona,
                        options=dict(request.options), sources=context.sources, on_cite=citations,
                        tools=tuple(offered))
        turn = Turn(self, request, user, prompt, loaded)
        turn.context, turn.citations, turn.history_count = context, citations, len(history)
        return turn

    def run(self, request: TurnRequest) -> TurnResult:
        """A whole turn, answered at once."""
        return self.prepare(request).reply()

    def _validate(self, request: TurnRequest) -> None:
        check_session_id(request.session_id)
        text = request.text
        if not isinstance(text, str) or not text.strip():
            raise ValidationError("The message must not be empty or whitespace.")
        if len(text) > self.max_message_chars:
            raise ValidationError(f"Message must be at most {self.max_message_chars} characters.")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise ValidationError("The message must be valid Unicode text.") from None

    def _history(self, request: TurnRequest) -> tuple[list[Message], bool]:
        if self.history_window <= 0:
            return [], True
        if request.history is not None:
            return list(request.history[-self.history_window:]), True
        if request.new_session:
            return [], True
        try:
            return self.backends.storage.load(request.session_id, self.history_window), True
        except Exception:
            log.exception("could not load the history of session %s; answering without it", request.session_id)
            return [], False

    def finish(self, turn: "Turn", reply: str, *, complete: bool) -> TurnResult:
        """Stages 7–8 (called once per turn by ``Turn``)."""
        saved: bool | None = None
        sources = turn.citations.sources(turn.prompt.sources) if turn.citations is not None else ()
        meta = reply if isinstance(reply, Reply) else Reply(reply)
        reply = str(reply)
        if turn.request.store:
            assistant = Message("assistant", reply, utcnow(), complete=complete, sources=sources)
            try:
                self.backends.storage.append(turn.session_id, [turn.user_message, assistant])
                saved = True
            except Exception:
                log.exception("could not save the turn of session %s; the reply was still sent", turn.session_id)
                saved = False
        self.live.end(turn)
        result = TurnResult(reply, turn.session_id, turn.history_loaded, saved, turn.prompt, complete, sources,
                            meta.finish_reason, meta.covered)
        for after in self.after_turn:
            try:
                after(turn, result)
            except Exception:
                log.exception("after-turn work %r failed for session %s", after, turn.session_id)
        return result


class Turn:
    """A prepared turn: answer it once, whole (``reply``) or streamed (``stream``)."""

    def __init__(self, turns: Turns, request: TurnRequest, user_message: Message, prompt: Prompt, loaded: bool) -> None:
        self.turns, self.request = turns, request
        self.user_message, self.prompt, self.history_loaded = user_message, prompt, loaded
        #: What the grounding decided (set by ``Turns.prepare``), what the backend cited, how much history loaded.
        self.context: Context | None = None
        self.citations: Citations | None = None
        self.history_count = 0
        #: Owner events the turn's tools recorded, notified when it ends (None once it has).
        self.events: list[Any] | None = []

    @property
    def session_id(self) -> str:
        return self.request.session_id

    def reply(self) -> TurnResult:
        return self.turns.finish(self, tools.complete(self), complete=True)

    def stream(self, relay: Callable[[Iterator[str]], Iterable[str | None]] | None = None) -> "StreamedReply":
        """The reply as pieces. The core has the first piece in hand (retried until it arrives) before
        this returns, so a failure up to then raises here, before any byte of a response is sent.
        ``relay`` may wrap the pieces (an SSE relay yields None when a heartbeat is due)."""
        pieces = tools.ToolStream(self)
        reply = StreamedReply(self, relay(pieces) if relay is not None else pieces, pieces)
        if self.request.store:
            self.turns.live.begin(self, reply)
        return reply


class StreamedReply:
    """The pieces of one streamed reply; the turn is finished exactly once, however the stream ends.

    Iterating gives the pieces (and ``None`` for heartbeats, when relayed) and
    remembers each delivered piece. ``finish(complete=...)`` stores what was
    delivered and stops the LLM; later calls return the first result.
    """

    def __init__(self, turn: Turn, source: Iterable[str | None], reply: tools.ToolStream | None = None) -> None:
        self.turn = turn
        self._source = source
        self._reply = reply
        self.delivered: list[str] = []
        self.result: TurnResult | None = None
        self._finished = False
        self._lock = threading.Lock()

    def __iter__(self) -> Iterator[str | None]:
        for piece in self._source:
            if piece is not None:
                self.delivered.append(piece)
            yield piece

    @property
    def text(self) -> str:
        return "".join(self.delivered)

    def finish(self, *, complete: bool) -> TurnResult | None:
        with self._lock:  # a second caller (the server closing the response) waits for the first
            if self._finished:
                return self.result
            self._finished = True
            stop = getattr(self._source, "stop", None) or getattr(self._source, "close", None)
            if stop is not None:
                stop()
            reply = self._reply
            text = Reply(self.text, finish_reason=reply.finish_reason, covered=reply.covered) if reply else self.text
            self.result = self.turn.turns.finish(self.turn, text, complete=complete)
            return self.result
