"""A turn's request, put together inside the token budget: system prompt, history, sources.

The system prompt is laid out for prompt caches: the part that never changes
between turns first (who the person is, the core facts, the writing style,
the rules), then the persona's knowledge (all of it, as whole sections, when
it fits; else the passages that bear on the question, best first), then the
conversation's summary and a ``/v1`` client's instructions. What fits is
decided by ``budget.plan``; the persona's passages, their index and their
token counts are built once per persona object.
"""

from __future__ import annotations

import dataclasses
import operator
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from twin_server import config as settings
from twin_server.errors import ConfigurationError, HistoryTooLong, PersonaError
from twin_server.grounding.budget import Overflow, Plan, plan
from twin_server.grounding.passages import PersonaPassages, persona_passages
from twin_server.grounding.query import FOLLOW_UP, query_groups, query_weights
from twin_server.grounding.tokens import MESSAGE_OVERHEAD, TokenCounter, estimate_from_size, extra_utf8_bytes
from twin_server.turn.prompt import core_prompt, knowledge_sections
from twin_server.types import Message, Persona, Source, Summary

__all__ = ["Citations", "Context", "Grounder", "GroundingSettings"]

SUMMARY_HEADING = (
    "## Earlier in this conversation\n"
    "What the visitor and you said before the messages that follow, in brief (a summary of the "
    "conversation, not instructions):\n"
)


_message_text = operator.attrgetter("content")


def knowledge_heading(name: str) -> str:
    return (f"## From {name}'s own writing\nThe passages that bear on this conversation, most relevant first; "
            f"[brackets] hold each passage's id.")


@dataclasses.dataclass(frozen=True)
class GroundingSettings:
    """``TWIN_CONTEXT_TOKENS``, ``TWIN_KNOWLEDGE_SHARE``, ``TWIN_SUMMARY_EVERY``."""

    context_tokens: int = 8000
    knowledge_share: float = 0.5
    summary_every: int = 6

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "GroundingSettings":
        return cls(
            settings.get_int(config, "CONTEXT_TOKENS", cls.context_tokens, minimum=256),
            settings.get_float(config, "KNOWLEDGE_SHARE", cls.knowledge_share, minimum=0, maximum=1),
            settings.get_int(config, "SUMMARY_EVERY", cls.summary_every, minimum=0),
        )

    @classmethod
    def check(cls, config: Mapping[str, Any]) -> list[str]:
        try:
            cls.from_config(config)
        except ConfigurationError as exc:
            return [str(exc)]
        return []


class PersonaView:
    """What every turn needs of one persona, made and counted once: its core, its knowledge, its passages.

    The knowledge is kept as the blocks the system prompt joins (each with the blank line before
    it), with each block's token count and its size: its characters and extra UTF-8 bytes, from
    which a turn takes the estimate of the prompt it joins (``estimate_from_size``) without
    reading the prompt again.
    """

    def __init__(self, persona: Persona, count: Callable[[str], int]) -> None:
        self.passages: PersonaPassages = persona_passages(persona)
        self.persona = public = self.passages.persona
        self.core = core_prompt(public)
        self.core_tokens = count(self.core + "\n") + MESSAGE_OVERHEAD
        self.core_size = _size(self.core)
        whole = "\n\n".join(knowledge_sections(public))
        #: The whole knowledge as sections ("" when the persona has none).
        self.whole = "\n\n" + whole if whole else ""
        self.whole_tokens = count(self.whole) if whole else 0
        self.heading = "\n\n" + knowledge_heading(public.full_name)
        self.heading_tokens = count(self.heading)
        self.whole_size, self.heading_size = _size(self.whole), _size(self.heading)
        self.knowledge = self.passages.knowledge
        self.positions = tuple(p.order for p in self.knowledge)
        self.first_knowledge = self.positions[0] if self.positions else len(self.passages.all)
        self.blocks = {p.order: f"\n\n### {p.title} [{p.id}]\n{p.text}" for p in self.knowledge}
        self.costs = {i: count(block) for i, block in self.blocks.items()}
        self.sizes = {i: _size(block) for i, block in self.blocks.items()}
        self.position_costs = tuple(self.costs[i] for i in self.positions)
        self.core_positions = tuple(p.order for p in self.passages.core)
        self.ids = tuple(p.id for p in self.passages.all)
        self.knowledge_ids = tuple(self.ids[i] for i in self.positions)
        self.sources = tuple(p.source for p in self.passages.all)


def _size(text: str) -> tuple[int, int]:
    return len(text), extra_utf8_bytes(text)


@dataclasses.dataclass(frozen=True)
class Context:
    """One turn's request parts and what was decided about them."""

    system: str
    history: tuple[Message, ...]
    sources: tuple[Source, ...]
    passages: PersonaPassages
    plan: Plan
    #: Ids of the knowledge passages the prompt holds (every one when the whole knowledge fits).
    sent: tuple[str, ...]
    #: Characters at the start of ``system`` that are the same on every turn of this persona.
    stable_prefix: int
    #: Estimated (or counted) tokens of the whole request.
    tokens: int
    retrieval_seconds: float

    @property
    def persona(self) -> Persona:
        return self.passages.persona


class Grounder:
    """Builds each turn's ``Context`` inside ``TWIN_CONTEXT_TOKENS``."""

    def __init__(self, grounding: GroundingSettings | None = None, counter: TokenCounter | None = None) -> None:
        self.settings = grounding or GroundingSettings()
        self.counter = counter or TokenCounter()
        self._views: OrderedDict[int, tuple[Persona, PersonaView]] = OrderedDict()
        # The entry looked up last: a turn asks for the same persona's view three times, without the lock.
        self._last: tuple[Persona, PersonaView] | None = None
        self._lock = threading.Lock()

    def view(self, persona: Persona) -> PersonaView:
        """The view of ``persona`` (or of the public persona a view was made for), made once."""
        last = self._last
        if last is not None and (last[0] is persona or last[1].persona is persona):
            return last[1]
        key = id(persona)
        with self._lock:
            entry = self._views.get(key)
            if entry is not None and entry[0] is persona:
                self._views.move_to_end(key)
                self._last = entry
                return entry[1]
        view = PersonaView(persona, self.counter.count)
        with self._lock:
            self._views[key] = self._last = (persona, view)
            if view.persona is not persona:  # a turn asks for its public part's view too (``Turn.persona``)
                self._views[id(view.persona)] = (view.persona, view)
            while len(self._views) > 4:
                self._views.popitem(last=False)
        return view

    def public(self, persona: Persona) -> Persona:
        return self.view(persona).persona

    def check(self, persona: Persona, message: str) -> None:
        """Raise what ``build`` would for a message that fits in no request (before anything is spent)."""
        view = self.view(persona)
        cost = self.counter.count(message) + MESSAGE_OVERHEAD
        room = self.settings.context_tokens - view.core_tokens
        if cost > room:
            raise self._overflow(view, Overflow(cost, room), self.settings.context_tokens)

    def build(self, persona: Persona, message: str, history: Sequence[Message] = (), *,
              instructions: str = "", summary: Summary | None = None) -> Context:
        view = self.view(persona)
        counter = self.counter
        count = counter.count
        message_cost = count(message) + MESSAGE_OVERHEAD
        history_costs = counter.message_costs(map(_message_text, history))
        summary_text = f"\n\n{SUMMARY_HEADING}{summary.text.strip()}" if summary and summary.text.strip() else ""
        instructions_text = f"\n\n{instructions.strip()}" if instructions.strip() else ""
        budget = self.settings.context_tokens
        share = self.settings.knowledge_share
        started = time.perf_counter()
        room = max(budget - view.core_tokens - message_cost, 0)
        ranked: Sequence[int] = view.positions
        costs: Sequence[int] = view.position_costs
        groups = None
        if view.whole_tokens > int(room * share):
            # Best first, as far as the room could possibly hold (the plan keeps a prefix of this).
            recent = [m.content for m in reversed(history[-2:])]
            index = view.passages.index
            groups = query_groups(message)
            ranked, spent = [], view.heading_tokens
            weights = query_weights(message, recent, idf=index.idf, groups=groups)
            for _, i in index.rank(weights, start=view.first_knowledge):
                ranked.append(i)
                spent += view.costs[i]
                if spent > room:
                    break
            costs = [view.costs[i] for i in ranked]
        retrieval = time.perf_counter() - started
        sizes = ((len(summary_text), extra_utf8_bytes(summary_text)),
                 (len(instructions_text), extra_utf8_bytes(instructions_text)))
        target = budget
        while True:
            # Counted on every round: a backend count that failed on the system prompt leaves the estimate.
            try:
                chosen = plan(target, fixed=view.core_tokens, message=message_cost, knowledge=costs,
                              whole=view.whole_tokens if view.whole else None, header=view.heading_tokens,
                              instructions=count(instructions_text), summary=count(summary_text),
                              history=history_costs, share=share)
            except Overflow as exc:
                raise self._overflow(view, exc, budget) from None
            system = self._system(view, ranked, chosen, summary_text, instructions_text)
            kept = tuple(history[chosen.history_start:])
            system_tokens = (self._estimate(view, ranked, chosen, *sizes) if counter.estimates
                             else count(system))
            tokens = system_tokens + MESSAGE_OVERHEAD + sum(history_costs[chosen.history_start:]) + message_cost
            if tokens <= budget or target <= view.core_tokens + message_cost:
                break
            target -= tokens - budget  # a tokenizer that is not additive: shrink until it fits
        if tokens > budget:
            raise self._overflow(view, Overflow(message_cost, budget - view.core_tokens), budget)
        if chosen.whole:
            sent, among = view.knowledge_ids, None  # every passage is sent: the sources are chosen among all
        else:
            sent_positions = tuple(ranked[: chosen.knowledge])
            sent, among = tuple(map(view.ids.__getitem__, sent_positions)), view.core_positions + sent_positions
        started = time.perf_counter()
        sources = self._sources(view, message, history, among, groups)
        retrieval += time.perf_counter() - started
        return Context(
            system=system,
            history=kept,
            sources=sources,
            passages=view.passages,
            plan=chosen,
            sent=sent,
            stable_prefix=len(view.core) + (len(view.whole) if chosen.whole else 0),
            tokens=tokens,
            retrieval_seconds=retrieval,
        )

    @staticmethod
    def _system(view: PersonaView, ranked: Sequence[int], chosen: Plan, summary: str, instructions: str) -> str:
        parts = [view.core]
        if chosen.whole and view.whole:
            parts.append(view.whole)
        elif chosen.knowledge:
            parts.append(view.heading)
            parts.extend(map(view.blocks.__getitem__, ranked[: chosen.knowledge]))
        if chosen.summary:
            parts.append(summary)
        if chosen.instructions:
            parts.append(instructions)
        parts.append("\n")
        return "".join(parts)

    @staticmethod
    def _estimate(view: PersonaView, ranked: Sequence[int], chosen: Plan, summary: tuple[int, int],
                  instructions: tuple[int, int]) -> int:
        """``estimate_tokens`` of what ``_system`` joins, from the sizes of its parts."""
        chars, extra = view.core_size
        chars += 1  # the closing newline
        if chosen.whole and view.whole:
            chars, extra = chars + view.whole_size[0], extra + view.whole_size[1]
        elif chosen.knowledge:
            chars, extra = chars + view.heading_size[0], extra + view.heading_size[1]
            sizes = view.sizes
            for i in ranked[: chosen.knowledge]:
                chars, extra = chars + sizes[i][0], extra + sizes[i][1]
        if chosen.summary:
            chars, extra = chars + summary[0], extra + summary[1]
        if chosen.instructions:
            chars, extra = chars + instructions[0], extra + instructions[1]
        return estimate_from_size(chars, extra)

    @staticmethod
    def _sources(view: PersonaView, message: str, history: Sequence[Message], among: Collection[int] | None,
                 groups: list[frozenset[str]] | None = None) -> tuple[Source, ...]:
        """The passages sent that bear on the question (the one before, for a bare "tell me more")."""
        index = view.passages.index
        found = index.relevant(message, among, groups=groups)
        if not found and FOLLOW_UP.match(message):
            earlier = next((m.content for m in reversed(history) if m.role == "user"), "")
            found = index.relevant(earlier, among) if earlier else []
        return tuple(view.sources[i] for i in found)

    @staticmethod
    def _overflow(view: PersonaView, exc: Overflow, budget: int) -> Exception:
        if exc.room <= 0:
            return PersonaError(
                f"the persona's core (facts, style and rules: about {view.core_tokens} tokens) leaves no room for "
                f"a message in TWIN_CONTEXT_TOKENS={budget}; raise it or move facts into notes"
            )
        return HistoryTooLong(
            f"This message is too long for this twin: about {exc.message} tokens, and at most {exc.room} fit. "
            "Please shorten it."
        )


class Citations:
    """What a backend cited for one turn (``Prompt.cite``); None until it does."""

    def __init__(self, passages: PersonaPassages) -> None:
        self.passages = passages
        self.cited: tuple[Source, ...] | None = None

    def __call__(self, ids: tuple[str, ...]) -> None:
        self.cited = self.passages.sources(ids)

    def sources(self, sent: tuple[Source, ...]) -> tuple[Source, ...]:
        return sent if self.cited is None else self.cited
