"""The one retry layer: exponential backoff with full jitter, deadlines, Retry-After, budgets.

Small strategy objects (``ExponentialBackoff``, ``FullJitter``, ``RetryBudget``)
composed by ``Retrier`` (and by ``ConflictPauses``, for a conditional write that lost a race), which runs an attempt function for sync or async
code. Clock, sleep and random source are injected so tests assert exact
schedules and never sleep. Only ``TransientError`` is retried; whatever
reaches the caller is the original exception (or a ``BackendTimeout`` raised
*from* it when the deadline ran out), never a wrapper.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import inspect
import logging
import math
import random as _random
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

from twin_server.errors import BackendTimeout, RateLimited, TransientError

T = TypeVar("T")
log = logging.getLogger(__name__)

#: Called after every attempt with (attempt number, seconds it took, the exception or None).
AttemptObserver = Callable[[int, float, BaseException | None], None]


@dataclasses.dataclass(frozen=True)
class RetryConfig:
    """A retry policy; ``max_attempts`` counts every attempt, the first included."""

    max_attempts: int = 3
    initial_delay: float = 1.0
    max_delay: float = 60.0
    exponential_base: float = 2.0
    jitter: bool = True

    def __post_init__(self) -> None:
        if int(self.max_attempts) != self.max_attempts or self.max_attempts < 1:
            raise ValueError("max_attempts must be a whole number of at least 1")
        if math.isnan(self.initial_delay) or math.isnan(self.max_delay):
            raise ValueError("delays must be numbers")
        if self.initial_delay < 0 or self.max_delay < 0:
            raise ValueError("delays must not be negative")
        if math.isnan(self.exponential_base) or self.exponential_base < 1:
            raise ValueError("exponential_base must be at least 1")


class ExponentialBackoff:
    """The upper bound of the delay before retry ``n`` (1-based)."""

    def __init__(self, initial: float, base: float, maximum: float) -> None:
        self.initial, self.base, self.maximum = initial, base, maximum

    def bound(self, retry_number: int) -> float:
        if self.initial == 0:
            return 0.0
        try:
            raw = self.initial * float(self.base) ** (retry_number - 1)
        except OverflowError:
            # base ** (n - 1) alone overflows; a tiny initial delay can still bring
            # the product under the cap, so work it out in log space.
            try:
                raw = math.exp(math.log(self.initial) + (retry_number - 1) * math.log(self.base))
            except OverflowError:
                return self.maximum
        return min(self.maximum, raw)


class FullJitter:
    """A delay drawn uniformly from [0, bound] (AWS's "full jitter")."""

    def __init__(self, random: _random.Random) -> None:
        self.random = random

    def __call__(self, bound: float) -> float:
        return self.random.uniform(0.0, bound)


def no_jitter(bound: float) -> float:
    return bound


class ConflictPauses:
    """The pauses of a conditional write that lost a race to another writer, for a backend to use.

    Each pause is drawn with full jitter under a bound that doubles from
    ``initial`` up to ``maximum``, so writers racing for one item spread out
    instead of colliding again in step. Not ``Retrier``: a lost race is no
    failure of the backend, and it deserves more and shorter tries than the
    backend's retry policy gives.
    """

    def __init__(self, initial: float, maximum: float, *, sleep: Callable[[float], None] = time.sleep,
                 random: _random.Random | None = None) -> None:
        self.backoff = ExponentialBackoff(initial, 2.0, maximum)
        self.jitter = FullJitter(random or _random.Random())
        self.sleep = sleep

    def tries(self, limit: int) -> Iterator[int]:
        """``range(limit)``, pausing before every try after the first."""
        for lost in range(limit):
            if lost:
                self.sleep(self.jitter(self.backoff.bound(lost)))
            yield lost


class RetryBudget:
    """A token bucket shared by every call to one backend, so a dead backend is not hammered.

    Each retry takes ``retry_cost`` tokens. A call that succeeds at once puts
    ``success_refund`` back; one that succeeded after retrying gives back what
    its retries took (as botocore's standard mode does), so a backend failing
    now and then keeps its budget while one failing most calls drains it. Never
    above ``capacity``; with the bucket empty, failures are not retried.
    """

    def __init__(self, capacity: int = 500, retry_cost: int = 5, success_refund: int = 1) -> None:
        self.capacity, self.retry_cost, self.success_refund = capacity, retry_cost, success_refund
        self._tokens = capacity
        self._lock = threading.Lock()

    @property
    def tokens(self) -> int:
        return self._tokens

    def acquire(self) -> bool:
        with self._lock:
            if self._tokens < self.retry_cost:
                return False
            self._tokens -= self.retry_cost
            return True

    def refund(self, amount: int | None = None) -> None:
        if amount is None:
            amount = self.success_refund
        if amount >= 0 and self._tokens == self.capacity:
            # Nearly every call finds the bucket full: the refund would change nothing, and it
            # takes effect at the moment of that read, so no lock is needed for it.
            return
        with self._lock:
            self._tokens = min(self.capacity, self._tokens + amount)


class _Attempts:
    """The state of one retried call: which attempt, and how long until the deadline."""

    def __init__(self, retrier: "Retrier", deadline: float | None, number: int = 0) -> None:
        self.r = retrier
        self.number = number
        self.acquired = 0  # budget tokens this call took for its retries
        self.deadline = deadline

    def time_left(self) -> float | None:
        return None if self.deadline is None else self.deadline - self.r.clock()

    def start(self, last: BaseException | None) -> float | None:
        """Before an attempt: the time left, or BackendTimeout when the deadline has passed."""
        left = self.time_left()
        if left is not None and left <= 0 and last is not None:
            self._deadline_passed(last)
        self.number += 1
        return left

    def delay_after(self, exc: TransientError) -> float:
        """After a transient failure: the delay before the next attempt, or raise."""
        r = self.r
        if self.number >= r.config.max_attempts:
            raise exc
        left = self.time_left()
        retry_after = exc.retry_after if isinstance(exc, RateLimited) else None
        if retry_after is not None:
            delay = max(0.0, float(retry_after))
            if left is not None and delay >= left:
                raise exc
        else:
            delay = r.jitter(r.backoff.bound(self.number))
        if left is not None and (left <= 0 or delay >= left):
            self._deadline_passed(exc)
        if r.budget is not None and not self._acquire(r.budget):
            log.warning(
                "retry budget of %s backend %r is spent; not retrying %s",
                r.operation, r.backend, type(exc).__name__,
            )
            raise exc
        log.warning(
            "retrying %s on backend %r after attempt %d/%d failed with %s; next attempt in %.3fs",
            r.operation, r.backend, self.number, r.config.max_attempts, type(exc).__name__, delay,
        )
        return delay

    def _acquire(self, budget: RetryBudget) -> bool:
        if not budget.acquire():
            return False
        self.acquired += budget.retry_cost
        return True

    def _deadline_passed(self, last: BaseException) -> None:
        if isinstance(last, BackendTimeout):
            raise last
        timeout = BackendTimeout(f"{self.r.operation} did not succeed within {self.r.timeout:g}s")
        tag(timeout, self.r.operation, self.r.backend)
        raise timeout from last


class Retrier:
    """Runs an attempt function under a policy, a deadline and an optional budget.

    The attempt function is given the seconds left before the deadline (None
    without one), so a backend can bound its own I/O by it.
    """

    def __init__(
        self,
        config: RetryConfig | None = None,
        *,
        operation: str = "call",
        backend: str = "",
        timeout: float | None = None,
        budget: RetryBudget | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        async_sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        random: _random.Random | None = None,
        observer: AttemptObserver | None = None,
    ) -> None:
        self.config = config or RetryConfig()
        self.operation, self.backend, self.timeout, self.budget = operation, backend, timeout, budget
        self.clock, self.sleep, self.async_sleep = clock, sleep, async_sleep
        self.backoff = ExponentialBackoff(self.config.initial_delay, self.config.exponential_base, self.config.max_delay)
        self.jitter = FullJitter(random or _random.Random()) if self.config.jitter else no_jitter
        self.observer = observer

    def run(self, attempt: Callable[[float | None], T]) -> T:
        return self._run(attempt, None, None)

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return self._run(fn, args, kwargs)

    def _run(self, fn: Callable[..., T], args: tuple[Any, ...] | None, kwargs: dict[str, Any] | None) -> T:
        """``fn(left)`` when ``args`` is None, else ``fn(*args, **kwargs)``; retried while it fails transiently.

        Most calls succeed at once, so the first attempt reads the clock once for
        both its start and the deadline, and the per-call state is only built
        when a retry needs it.
        """
        began = self.clock()
        deadline = None if self.timeout is None else began + self.timeout
        try:
            if args is None:
                result = fn(None if deadline is None else deadline - began)
            else:
                result = fn(*args, **kwargs)
        except TransientError as exc:
            # Decided inside the handler, as on every later attempt, so a BackendTimeout
            # raised here has this failure as its context as well as its cause.
            state = _Attempts(self, deadline, number=1)
            self._finished(state, began, exc)
            self.sleep(state.delay_after(exc))
            last = exc
        except BaseException as exc:
            self._failed(1, began, exc)
            raise
        else:
            self._succeeded(1, began, 0)
            return result
        attempt = fn if args is None else lambda _left: fn(*args, **kwargs)
        return self._retry(attempt, state, last)

    def _retry(self, attempt: Callable[[float | None], T], state: _Attempts, last: TransientError) -> T:
        while True:
            left = state.start(last)
            began = self.clock()
            try:
                result = attempt(left)
            except TransientError as exc:
                self._finished(state, began, exc)
                last = exc
                self.sleep(state.delay_after(exc))
                continue
            except BaseException as exc:
                self._finished(state, began, exc)
                raise
            self._finished(state, began, None)
            return result

    async def run_async(self, attempt: Callable[[float | None], Awaitable[T]]) -> T:
        state = _Attempts(self, None if self.timeout is None else self.clock() + self.timeout)
        last = None
        while True:
            left = state.start(last)
            began = self.clock()
            try:
                result = await attempt(left)
            except TransientError as exc:
                self._finished(state, began, exc)
                last = exc
                await self.async_sleep(state.delay_after(exc))
                continue
            except BaseException as exc:
                self._finished(state, began, exc)
                raise
            self._finished(state, began, None)
            return result

    def _finished(self, state: _Attempts, began: float, exc: BaseException | None) -> None:
        if exc is None:
            self._succeeded(state.number, began, state.acquired)
        else:
            self._failed(state.number, began, exc)

    def _succeeded(self, number: int, began: float, acquired: int) -> None:
        if self.budget is not None:
            self.budget.refund(acquired or None)
        if self.observer is not None:
            self.observer(number, self.clock() - began, None)

    def _failed(self, number: int, began: float, exc: BaseException) -> None:
        tag(exc, self.operation, self.backend)
        if self.observer is not None:
            self.observer(number, self.clock() - began, exc)


def tag(exc: BaseException, operation: str, backend: str) -> None:
    """Record where an exception came from, unless something closer already did."""
    try:
        if getattr(exc, "operation", None) is None:
            exc.operation = operation
        if getattr(exc, "backend", None) is None:
            exc.backend = backend
    except AttributeError:  # exceptions with __slots__ cannot carry tags; the log still has the trace
        log.debug("cannot tag %s with its operation", type(exc).__name__)


def retry_with_backoff(config: RetryConfig | Callable[..., Any] | None = None, **options: Any):
    """Decorate a sync or async function so that transient failures are retried.

    ``@retry_with_backoff`` or ``@retry_with_backoff(RetryConfig(...), timeout=5)``;
    ``options`` are ``Retrier``'s keyword arguments. The decorated function
    shares one ``Retrier`` (and so one budget, when given) across its calls.
    """
    if callable(config) and not isinstance(config, RetryConfig):
        return retry_with_backoff(None, **options)(config)
    retrier = Retrier(config, **options)

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                return await retrier.run_async(lambda _left: fn(*args, **kwargs))

            async_wrapper.retrier = retrier
            return async_wrapper

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            return retrier.call(fn, *args, **kwargs)

        wrapper.retrier = retrier
        return wrapper

    return decorate
