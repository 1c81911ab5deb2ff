"""How many tokens a text takes: the LLM backend's own count, or a conservative estimate.

An LLM backend may offer ``count_tokens(text) -> int`` (its own tokenizer); the
core uses it when present. Otherwise it estimates, without any tokenizer
download, as ``ceil(characters / 3)`` plus one token for every UTF-8 byte
beyond the first of a character. Byte-level BPE tokenizers (GPT's, Claude's,
Llama's) average about 4 characters a token on English prose and 1–3 tokens
on a CJK character or an emoji, so the estimate is high by about a quarter
on English and close on other scripts: a request it calls 8,000 tokens is
rarely more. Every message also costs ``MESSAGE_OVERHEAD`` tokens for its role
and separators, as chat formats add.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

__all__ = ["MESSAGE_OVERHEAD", "TokenCounter", "estimate_from_size", "estimate_tokens", "extra_utf8_bytes"]

log = logging.getLogger("twin_server.grounding")

#: Tokens a chat format adds per message (role markers, separators).
MESSAGE_OVERHEAD = 4


def estimate_tokens(text: str) -> int:
    """A conservative token count: ``ceil(len / 3)`` plus the UTF-8 bytes beyond one per character."""
    if text.isascii():
        return -(-len(text) // 3)
    return -(-len(text) // 3) + len(text.encode("utf-8", "surrogatepass")) - len(text)


def extra_utf8_bytes(text: str) -> int:
    """The UTF-8 bytes of ``text`` beyond one a character: with the length, what the estimate of a
    concatenation is made of, since both add up across the parts (``estimate_from_size``)."""
    if text.isascii():
        return 0
    return len(text.encode("utf-8", "surrogatepass")) - len(text)


def estimate_from_size(chars: int, extra_bytes: int) -> int:
    """``estimate_tokens`` of a text of ``chars`` characters and ``extra_bytes`` (``extra_utf8_bytes``)."""
    return -(-chars // 3) + extra_bytes


class TokenCounter:
    """Counts with ``count(text)``; the backend's ``count_tokens`` when it has one that works."""

    def __init__(self, backend_count: Callable[[str], int] | None = None) -> None:
        self._backend = backend_count
        self.exact = backend_count is not None
        if backend_count is None:
            # One call a text, not two: a turn counts dozens.
            self.count = estimate_tokens  # type: ignore[method-assign]

    @classmethod
    def for_backend(cls, llm: object) -> "TokenCounter":
        count = getattr(llm, "count_tokens", None)
        return cls(count if callable(count) else None)

    def count(self, text: str) -> int:
        if self._backend is not None and text:
            try:
                value = int(self._backend(text))
                if value >= 0:
                    return value
            except Exception:
                log.exception("the LLM backend's count_tokens failed; estimating instead")
            self._backend, self.exact = None, False
        return estimate_tokens(text)

    __call__ = count

    @property
    def estimates(self) -> bool:
        """Whether ``count`` is ``estimate_tokens`` (no backend count, or one that failed)."""
        return self._backend is None

    def message_costs(self, texts: Iterable[str]) -> list[int]:
        """What each chat message of ``texts`` costs (``message`` of each)."""
        if self._backend is None:
            # Inlined for ASCII: a turn counts its whole history window.
            return [-(-len(t) // 3) + MESSAGE_OVERHEAD if t.isascii() else estimate_tokens(t) + MESSAGE_OVERHEAD
                    for t in texts]
        return [self.count(t) + MESSAGE_OVERHEAD for t in texts]

    def message(self, text: str) -> int:
        """What one chat message of ``text`` costs."""
        return self.count(text) + MESSAGE_OVERHEAD
