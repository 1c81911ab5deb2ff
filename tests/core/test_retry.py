"""The retry layer: backoff with full jitter, deadlines, Retry-After, budgets, logging, tags.

Every test drives ``Retrier`` with a fake clock whose ``sleep`` advances time and
a seeded ``random.Random``; nothing here really sleeps except the one async
cancellation test, which cancels a long real ``asyncio.sleep`` straight away.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import threading
import time
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twin_server.errors import (
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    RateLimited,
    TransientError,
    ValidationError,
)
from twin_server.retry import (
    ConflictPauses,
    ExponentialBackoff,
    FullJitter,
    Retrier,
    RetryBudget,
    RetryConfig,
    no_jitter,
    retry_with_backoff,
    tag,
)

RETRY_LOGGER = "twin_server.retry"


class FakeClock:
    """A monotonic clock that only moves when something sleeps or ``advance`` is called."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    async def async_sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def make(config: RetryConfig | None = None, clock: FakeClock | None = None, **kwargs) -> tuple[Retrier, FakeClock]:
    clock = clock or FakeClock()
    kwargs.setdefault("random", random.Random(1234))
    retrier = Retrier(
        config, clock=clock, sleep=clock.sleep, async_sleep=clock.async_sleep, **kwargs
    )
    return retrier, clock


class Flaky:
    """An attempt function: raises the given exceptions in turn, then returns ``result``.

    Records the time left it was given and can make each attempt take ``takes`` seconds.
    """

    def __init__(self, errors, result="ok", clock: FakeClock | None = None, takes: float = 0.0) -> None:
        self.errors = list(errors)
        self.result = result
        self.clock = clock
        self.takes = takes
        self.calls = 0
        self.time_left: list[float | None] = []
        self.raised: list[BaseException] = []

    def __call__(self, time_left):
        self.calls += 1
        self.time_left.append(time_left)
        if self.clock is not None:
            self.clock.advance(self.takes)
        if self.errors:
            exc = self.errors.pop(0)
            if isinstance(exc, type):
                exc = exc("failed")
            self.raised.append(exc)
            raise exc
        return self.result


class AlwaysFails(Flaky):
    def __init__(self, make_error=lambda: BackendUnavailable("down"), **kwargs) -> None:
        super().__init__([], **kwargs)
        self.make_error = make_error

    def __call__(self, time_left):
        self.errors = [self.make_error()]
        return super().__call__(time_left)


def exact_bound(initial: float, base: float, maximum: float, n: int) -> Fraction:
    return min(Fraction(maximum), Fraction(initial) * Fraction(base) ** (n - 1))


def close_to(value: float, exact: Fraction) -> bool:
    return math.isclose(value, float(exact), rel_tol=1e-9, abs_tol=1e-300)


# --- RetryConfig -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_attempts": 0},
        {"max_attempts": -3},
        {"max_attempts": 1.5},
        {"initial_delay": -0.001},
        {"max_delay": -1},
        {"exponential_base": 0.99},
        {"exponential_base": 0},
        {"initial_delay": float("nan")},
        {"max_delay": float("nan")},
        {"exponential_base": float("nan")},
    ],
)
def test_config_rejects_invalid_values(kwargs):
    with pytest.raises(ValueError):
        RetryConfig(**kwargs)


def test_config_accepts_boundary_values_and_they_behave():
    # One attempt and no delay: a transient failure reaches the caller at once, nothing sleeps.
    retrier, clock = make(RetryConfig(max_attempts=1, initial_delay=0, max_delay=0, exponential_base=1))
    attempt = Flaky([BackendUnavailable("down")])
    with pytest.raises(BackendUnavailable):
        retrier.run(attempt)
    assert attempt.calls == 1 and clock.sleeps == []
    # Base 1: the delay bound never grows.
    assert [ExponentialBackoff(0.5, 1, 10).bound(n) for n in (1, 2, 7)] == [0.5, 0.5, 0.5]


# --- 1. only TransientError is retried ---------------------------------------------------


@pytest.mark.parametrize(
    "error", [BackendError("bad key"), ValidationError("bad input"), ValueError("bug"), KeyError("k")]
)
def test_non_transient_errors_propagate_on_first_attempt(error):
    retrier, clock = make(RetryConfig(max_attempts=5))
    attempt = Flaky([error])
    with pytest.raises(type(error)) as info:
        retrier.run(attempt)
    assert info.value is error
    assert attempt.calls == 1
    assert clock.sleeps == []


@pytest.mark.parametrize("error_type", [TransientError, BackendUnavailable, BackendTimeout, RateLimited])
def test_every_transient_error_is_retried(error_type):
    retrier, clock = make(RetryConfig(max_attempts=3, jitter=False))
    attempt = Flaky([error_type, error_type])
    assert retrier.run(attempt) == "ok"
    assert attempt.calls == 3
    assert clock.sleeps == [1.0, 2.0]


def test_non_transient_after_transient_stops_retrying():
    retrier, clock = make(RetryConfig(max_attempts=5, jitter=False))
    fatal = BackendError("refused")
    attempt = Flaky([BackendUnavailable("down"), fatal])
    with pytest.raises(BackendError) as info:
        retrier.run(attempt)
    assert info.value is fatal
    assert attempt.calls == 2
    assert clock.sleeps == [1.0]


def test_max_attempts_one_never_retries():
    retrier, clock = make(RetryConfig(max_attempts=1))
    attempt = Flaky([BackendUnavailable("down")])
    with pytest.raises(BackendUnavailable):
        retrier.run(attempt)
    assert attempt.calls == 1
    assert clock.sleeps == []


# --- 2. exponential backoff and full jitter ----------------------------------------------


def test_no_jitter_sleeps_exactly_the_exponential_schedule():
    retrier, clock = make(RetryConfig(max_attempts=4, initial_delay=1, exponential_base=2, jitter=False))
    attempt = AlwaysFails()
    with pytest.raises(BackendUnavailable):
        retrier.run(attempt)
    assert clock.sleeps == [1.0, 2.0, 4.0]
    assert attempt.calls == 4


def test_no_jitter_schedule_is_capped_by_max_delay():
    config = RetryConfig(max_attempts=7, initial_delay=0.5, max_delay=5, exponential_base=3, jitter=False)
    retrier, clock = make(config)
    with pytest.raises(BackendUnavailable):
        retrier.run(AlwaysFails())
    assert clock.sleeps == [0.5, 1.5, 4.5, 5.0, 5.0, 5.0]


def test_full_jitter_draws_uniformly_from_the_seeded_random():
    config = RetryConfig(max_attempts=6, initial_delay=1, max_delay=10, exponential_base=2, jitter=True)
    retrier, clock = make(config, random=random.Random(42))
    with pytest.raises(BackendUnavailable):
        retrier.run(AlwaysFails())
    expected_source = random.Random(42)
    expected = [expected_source.uniform(0, bound) for bound in [1, 2, 4, 8, 10]]
    assert clock.sleeps == expected
    assert all(0 <= delay <= bound for delay, bound in zip(clock.sleeps, [1, 2, 4, 8, 10]))
    # Jitter really jitters: not simply the bounds.
    assert clock.sleeps != [1, 2, 4, 8, 10]


def test_jitter_strategies():
    assert no_jitter(3.5) == 3.5
    jitter = FullJitter(random.Random(7))
    reference = random.Random(7)
    assert [jitter(b) for b in (1, 5, 0)] == [reference.uniform(0, b) for b in (1, 5, 0)]
    assert ExponentialBackoff(1, 2, 60).bound(1) == 1
    assert ExponentialBackoff(1, 2, 60).bound(6) == 32
    assert ExponentialBackoff(1, 2, 60).bound(7) == 60


def test_backoff_bound_survives_overflow():
    assert ExponentialBackoff(1.0, 2.0, 60.0).bound(100_000) == 60.0
    assert ExponentialBackoff(1.0, 2, 60.0).bound(100_000) == 60.0
    # A zero initial delay stays zero however far the exponent goes.
    assert ExponentialBackoff(0.0, 2.0, 60.0).bound(5000) == 0.0
    assert ExponentialBackoff(0.0, 2, 60.0).bound(5000) == 0.0
    # base ** (n - 1) overflows on its own but the product is tiny.
    assert close_to(ExponentialBackoff(5e-324, 2.0, 60.0).bound(1100), exact_bound(5e-324, 2.0, 60.0, 1100))


configs = st.builds(
    RetryConfig,
    max_attempts=st.integers(1, 12),
    initial_delay=st.floats(0, 1000, allow_nan=False),
    max_delay=st.floats(0, 1e6, allow_nan=False),
    exponential_base=st.floats(1, 100, allow_nan=False),
    jitter=st.booleans(),
)


@settings(max_examples=150, deadline=None)
@given(config=configs, retry_number=st.integers(1, 3000), seed=st.integers(0, 2**32))
def test_property_delay_lies_within_the_exponential_bound(config, retry_number, seed):
    retrier = Retrier(config, random=random.Random(seed))
    bound = retrier.backoff.bound(retry_number)
    expected = exact_bound(config.initial_delay, config.exponential_base, config.max_delay, retry_number)
    assert close_to(bound, expected)
    assert 0 <= bound <= config.max_delay
    delay = retrier.jitter(bound)
    assert 0 <= delay <= bound
    if not config.jitter:
        assert delay == bound


@settings(max_examples=75, deadline=None)
@given(config=configs, seed=st.integers(0, 2**32))
def test_property_sleep_schedule_of_a_dead_backend(config, seed):
    retrier, clock = make(config, random=random.Random(seed))
    attempt = AlwaysFails()
    with pytest.raises(BackendUnavailable) as info:
        retrier.run(attempt)
    assert info.value is attempt.raised[-1]
    assert attempt.calls == config.max_attempts
    assert len(clock.sleeps) == config.max_attempts - 1
    reference = random.Random(seed)
    for n, delay in enumerate(clock.sleeps, start=1):
        bound = exact_bound(config.initial_delay, config.exponential_base, config.max_delay, n)
        assert 0 <= delay <= float(bound) * (1 + 1e-9) + 1e-300
        if config.jitter:
            assert delay == reference.uniform(0, retrier.backoff.bound(n))
        else:
            assert close_to(delay, bound)


# --- 3. the deadline ---------------------------------------------------------------------


def test_attempts_receive_the_time_left_and_never_sleep_past_the_deadline():
    config = RetryConfig(max_attempts=10, initial_delay=1, exponential_base=2, jitter=False)
    retrier, clock = make(config, timeout=10)
    started = clock.now
    attempt = AlwaysFails(clock=clock, takes=0.5)
    with pytest.raises(BackendTimeout) as info:
        retrier.run(attempt)
    # 10 -> fail at 0.5, sleep 1 -> 8.5 -> fail at 2.0, sleep 2 -> 6.0 -> fail at 4.5,
    # sleep 4 -> 1.5 -> fail at 9.0; the next delay (8) would pass the deadline.
    assert attempt.time_left == [10.0, 8.5, 6.0, 1.5]
    assert clock.sleeps == [1.0, 2.0, 4.0]
    assert clock.now == started + 9.0
    assert info.value.__cause__ is attempt.raised[-1]


def test_without_timeout_attempts_receive_none():
    retrier, _clock = make(RetryConfig(max_attempts=3, jitter=False))
    attempt = Flaky([BackendUnavailable("x")])
    assert retrier.run(attempt) == "ok"
    assert attempt.time_left == [None, None]


def test_deadline_exceeded_raises_backend_timeout_from_the_last_error():
    retrier, clock = make(RetryConfig(max_attempts=10, initial_delay=4, jitter=False), timeout=5)
    attempt = AlwaysFails()
    with pytest.raises(BackendTimeout) as info:
        retrier.run(attempt)
    # sleep 4 (1 s left), then the next delay of 8 does not fit.
    assert clock.sleeps == [4.0]
    assert attempt.calls == 2
    assert type(info.value) is BackendTimeout
    assert info.value is not attempt.raised[-1]
    assert info.value.__cause__ is attempt.raised[-1]


def test_deadline_exceeded_reraises_a_backend_timeout_itself():
    retrier, clock = make(RetryConfig(max_attempts=10, initial_delay=4, jitter=False), timeout=5)
    attempt = AlwaysFails(make_error=lambda: BackendTimeout("read timed out"))
    with pytest.raises(BackendTimeout) as info:
        retrier.run(attempt)
    assert info.value is attempt.raised[-1]
    assert attempt.calls == 2


def test_attempts_exhausted_reraises_the_last_error_itself():
    retrier, _clock = make(RetryConfig(max_attempts=3, jitter=False), timeout=1000)
    attempt = AlwaysFails()
    with pytest.raises(BackendUnavailable) as info:
        retrier.run(attempt)
    assert attempt.calls == 3
    assert info.value is attempt.raised[-1]
    assert info.value is not attempt.raised[0]


def test_attempt_that_overruns_the_deadline_is_not_retried():
    retrier, clock = make(RetryConfig(max_attempts=5, initial_delay=0, jitter=False), timeout=5)
    attempt = AlwaysFails(clock=clock, takes=6)
    with pytest.raises(BackendTimeout) as info:
        retrier.run(attempt)
    assert attempt.calls == 1
    assert clock.sleeps == []
    assert info.value.__cause__ is attempt.raised[0]


def test_no_attempt_starts_after_the_deadline_even_if_sleep_overshoots():
    clock = FakeClock()

    def oversleep(seconds):
        clock.sleeps.append(seconds)
        clock.advance(seconds + 10)  # the OS woke us up late

    retrier = Retrier(
        RetryConfig(max_attempts=5, initial_delay=1, jitter=False), timeout=5, clock=clock, sleep=oversleep
    )
    attempt = AlwaysFails()
    with pytest.raises(BackendTimeout) as info:
        retrier.run(attempt)
    assert attempt.calls == 1
    assert clock.sleeps == [1.0]
    assert info.value.__cause__ is attempt.raised[0]


def test_success_within_the_deadline_returns_the_result():
    retrier, clock = make(RetryConfig(max_attempts=5, jitter=False), timeout=30)
    attempt = Flaky([BackendUnavailable, BackendUnavailable], result=42, clock=clock, takes=1)
    assert retrier.run(attempt) == 42
    assert attempt.time_left == [30.0, 28.0, 25.0]


@settings(max_examples=75, deadline=None)
@given(
    config=configs,
    timeout=st.floats(0.01, 500),
    takes=st.floats(0, 50),
    seed=st.integers(0, 2**32),
)
def test_property_deadline_is_never_overrun(config, timeout, takes, seed):
    retrier, clock = make(config, timeout=timeout, random=random.Random(seed))
    deadline = clock.now + timeout
    starts: list[float] = []

    def attempt(left):
        starts.append(clock.now)
        assert left == pytest.approx(deadline - clock.now)
        clock.advance(takes)
        raise BackendUnavailable("down")

    with pytest.raises(TransientError) as info:
        retrier.run(attempt)
    # The first attempt always runs; every later one starts strictly before the deadline.
    assert all(start < deadline for start in starts[1:])
    assert len(starts) <= config.max_attempts
    # Every sleep ended before the deadline.
    for start, delay in zip(starts[1:], clock.sleeps):
        assert start - delay < deadline
    if isinstance(info.value, BackendTimeout):
        assert type(info.value.__cause__) is BackendUnavailable
    else:
        assert len(starts) == config.max_attempts
        assert type(info.value) is BackendUnavailable


# --- 4. Retry-After ----------------------------------------------------------------------


def test_retry_after_replaces_the_delay_and_is_not_capped():
    config = RetryConfig(max_attempts=3, initial_delay=1, max_delay=60, jitter=True)
    retrier, clock = make(config, timeout=1000)
    attempt = Flaky([RateLimited("slow down", retry_after=120)])
    assert retrier.run(attempt) == "ok"
    assert clock.sleeps == [120.0]
    assert attempt.calls == 2
    assert attempt.time_left == [1000.0, 880.0]


def test_retry_after_without_a_deadline():
    retrier, clock = make(RetryConfig(max_attempts=3, max_delay=1, jitter=False))
    attempt = Flaky([RateLimited("slow", retry_after=7.5), BackendUnavailable("x")])
    assert retrier.run(attempt) == "ok"
    assert clock.sleeps == [7.5, 1.0]  # the second backoff (2 s) is capped at max_delay


def test_rate_limited_without_retry_after_uses_backoff():
    retrier, clock = make(RetryConfig(max_attempts=3, jitter=False))
    attempt = Flaky([RateLimited("slow"), RateLimited("slow")])
    assert retrier.run(attempt) == "ok"
    assert clock.sleeps == [1.0, 2.0]


@pytest.mark.parametrize("retry_after", [100, 150])
def test_retry_after_beyond_the_deadline_propagates_rate_limited_at_once(retry_after):
    retrier, clock = make(RetryConfig(max_attempts=5), timeout=100)
    limited = RateLimited("slow down", retry_after=retry_after)
    attempt = Flaky([limited])
    with pytest.raises(RateLimited) as info:
        retrier.run(attempt)
    assert info.value is limited
    assert clock.sleeps == []
    assert attempt.calls == 1


def test_retry_after_compared_with_time_left_not_timeout():
    retrier, clock = make(RetryConfig(max_attempts=5), timeout=100)
    limited = RateLimited("slow down", retry_after=50)
    attempt = Flaky([limited], clock=clock, takes=60)  # 40 s left when it fails
    with pytest.raises(RateLimited) as info:
        retrier.run(attempt)
    assert info.value is limited
    assert clock.sleeps == []


# --- 5. the retry budget -----------------------------------------------------------------


def test_shared_budget_caps_the_attempts_on_a_dead_backend():
    budget = RetryBudget()
    assert (budget.capacity, budget.retry_cost, budget.success_refund, budget.tokens) == (500, 5, 1, 500)
    retrier, clock = make(RetryConfig(max_attempts=3, jitter=False), budget=budget)
    attempts_per_call = []
    for _ in range(60):
        attempt = AlwaysFails()
        with pytest.raises(BackendUnavailable) as info:
            retrier.run(attempt)
        assert info.value is attempt.raised[-1]
        attempts_per_call.append(attempt.calls)
    # 500 tokens / 5 per retry = 100 retries = 50 calls of 3 attempts; then first attempt only.
    assert attempts_per_call == [3] * 50 + [1] * 10
    assert sum(attempts_per_call) == 160
    assert budget.tokens == 0
    assert len(clock.sleeps) == 100


def test_spent_budget_fails_fast_with_the_original_error():
    budget = RetryBudget(capacity=5)
    retrier, clock = make(RetryConfig(max_attempts=5, jitter=False), budget=budget)
    first = AlwaysFails()
    with pytest.raises(BackendUnavailable):
        retrier.run(first)
    assert first.calls == 2
    second = AlwaysFails()
    with pytest.raises(BackendUnavailable) as info:
        retrier.run(second)
    assert second.calls == 1
    assert info.value is second.raised[0]


def test_budget_is_shared_between_retriers():
    budget = RetryBudget(capacity=10)
    one, _ = make(RetryConfig(max_attempts=5, jitter=False), budget=budget)
    two, _ = make(RetryConfig(max_attempts=5, jitter=False), budget=budget)
    a, b = AlwaysFails(), AlwaysFails()
    with pytest.raises(BackendUnavailable):
        one.run(a)
    with pytest.raises(BackendUnavailable):
        two.run(b)
    assert (a.calls, b.calls) == (3, 1)


def test_success_refunds_the_budget_but_never_above_capacity():
    budget = RetryBudget()
    retrier, _ = make(RetryConfig(max_attempts=3, jitter=False), budget=budget)
    assert retrier.run(lambda left: "ok") == "ok"
    assert budget.tokens == 500
    with pytest.raises(BackendUnavailable):
        retrier.run(AlwaysFails())  # two retries (-10), then the error
    assert budget.tokens == 490
    assert retrier.run(Flaky([BackendUnavailable])) == "ok"  # one retry (-5), given back on success
    assert budget.tokens == 490
    for _ in range(7):
        retrier.run(lambda left: "ok")  # +1 each for a call that needed no retry
    assert budget.tokens == 497
    for _ in range(10):
        retrier.run(lambda left: "ok")
    assert budget.tokens == 500


def test_budget_refund_and_acquire_directly():
    budget = RetryBudget(capacity=12, retry_cost=5, success_refund=2)
    assert budget.acquire() and budget.acquire()
    assert budget.tokens == 2
    assert not budget.acquire()
    assert budget.tokens == 2
    budget.refund()
    budget.refund()
    assert budget.tokens == 6
    assert budget.acquire()
    for _ in range(20):
        budget.refund()
    assert budget.tokens == 12



def test_a_refund_into_a_full_bucket_changes_nothing_and_one_below_it_still_counts():
    budget = RetryBudget(capacity=10, retry_cost=5, success_refund=3)
    budget.refund()
    budget.refund(4)
    assert budget.tokens == 10
    assert budget.acquire()
    budget.refund()
    assert budget.tokens == 8
    budget.refund(-2)  # a negative amount is taken even from a full bucket
    budget.refund(4)
    budget.refund(-1)
    assert budget.tokens == 9

def test_budget_is_thread_safe():
    budget = RetryBudget()
    granted = []
    barrier = threading.Barrier(8)

    def grab():
        barrier.wait()
        granted.append(sum(budget.acquire() for _ in range(50)))

    threads = [threading.Thread(target=grab) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(granted) == 100
    assert budget.tokens == 0


def test_shared_budget_across_threads_caps_total_attempts():
    budget = RetryBudget()
    lock = threading.Lock()
    attempts = [0]

    def dead(_left):
        with lock:
            attempts[0] += 1
        raise BackendUnavailable("down")

    retrier = Retrier(
        RetryConfig(max_attempts=3, jitter=False), budget=budget, clock=lambda: 0.0, sleep=lambda _d: None
    )
    barrier = threading.Barrier(8)

    def worker():
        barrier.wait()
        for _ in range(50):
            with pytest.raises(BackendUnavailable):
                retrier.run(dead)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # 400 calls, each with its first attempt, plus exactly the 100 retries the bucket allows.
    assert attempts[0] == 400 + 100
    assert budget.tokens == 0


# --- 6. the original exception reaches the caller ----------------------------------------


class VendorError(Exception):
    pass


def vendor_failure(error_type, message="vendor said no"):
    def attempt(_left):
        try:
            raise VendorError(message)
        except VendorError as vendor:
            raise error_type("translated") from vendor

    return attempt


def test_exhausted_retries_keep_the_cause_chain():
    retrier, _ = make(RetryConfig(max_attempts=2, jitter=False))
    with pytest.raises(BackendUnavailable) as info:
        retrier.run(vendor_failure(BackendUnavailable))
    assert type(info.value) is BackendUnavailable
    assert isinstance(info.value.__cause__, VendorError)
    assert str(info.value.__cause__) == "vendor said no"


def test_non_transient_keeps_the_cause_chain():
    retrier, _ = make(RetryConfig(max_attempts=3))
    with pytest.raises(BackendError) as info:
        retrier.run(vendor_failure(BackendError))
    assert type(info.value) is BackendError
    assert isinstance(info.value.__cause__, VendorError)


def test_deadline_timeout_chains_to_the_original_and_its_cause():
    retrier, _ = make(RetryConfig(max_attempts=5, initial_delay=10, jitter=False), timeout=5)
    with pytest.raises(BackendTimeout) as info:
        retrier.run(vendor_failure(BackendUnavailable))
    assert type(info.value.__cause__) is BackendUnavailable
    assert isinstance(info.value.__cause__.__cause__, VendorError)


def test_call_passes_arguments_and_returns_the_original_error():
    retrier, clock = make(RetryConfig(max_attempts=3, jitter=False))
    seen = []
    boom = BackendUnavailable("down")

    def fn(a, b=0):
        seen.append((a, b))
        if len(seen) < 2:
            raise boom
        return a + b

    assert retrier.call(fn, 1, b=2) == 3
    assert seen == [(1, 2), (1, 2)]
    assert clock.sleeps == [1.0]

    def always(a):
        raise boom

    with pytest.raises(BackendUnavailable) as info:
        retrier.call(always, 1)
    assert info.value is boom



def test_a_timeout_after_the_first_attempt_has_that_failure_as_cause_and_context():
    retrier, _ = make(RetryConfig(max_attempts=5, initial_delay=10, jitter=False), timeout=5)
    attempt = AlwaysFails()
    with pytest.raises(BackendTimeout) as info:
        retrier.run(attempt)
    assert attempt.calls == 1
    assert info.value.__cause__ is attempt.raised[0]
    assert info.value.__context__ is attempt.raised[0]


def test_a_later_attempt_does_not_fail_in_the_context_of_an_earlier_one():
    retrier, _ = make(RetryConfig(max_attempts=3, jitter=False))
    first, second = BackendUnavailable("first"), BackendError("second")
    with pytest.raises(BackendError) as info:
        retrier.call(Flaky([first, second]), None)
    assert info.value is second
    assert second.__context__ is None
    assert first.__context__ is None

# --- 7. logging --------------------------------------------------------------------------


class LeakyError(BackendUnavailable):
    pass


def test_retries_are_logged_without_the_exception_message(caplog):
    caplog.set_level(logging.DEBUG, logger=RETRY_LOGGER)
    retrier, _ = make(RetryConfig(max_attempts=3, jitter=False), operation="llm", backend="openai")

    def attempt(_left):
        raise LeakyError("upstream rejected key sk-SECRET-abc123")

    with pytest.raises(LeakyError):
        retrier.run(attempt)
    retries = [r for r in caplog.records if r.name == RETRY_LOGGER and r.levelno == logging.WARNING]
    assert len(retries) == 2
    assert all(r.exc_info is None for r in caplog.records)
    assert "sk-SECRET" not in caplog.text
    for record, (number, delay) in zip(retries, [(1, "1.000"), (2, "2.000")]):
        message = record.getMessage()
        assert "LeakyError" in message
        assert "llm" in message
        assert "openai" in message
        assert f"attempt {number}/3" in message
        assert delay in message


def test_spent_budget_and_deadline_do_not_log_the_message(caplog):
    caplog.set_level(logging.DEBUG, logger=RETRY_LOGGER)
    retrier, _ = make(
        RetryConfig(max_attempts=5, jitter=False), operation="storage", backend="s3", budget=RetryBudget(capacity=0)
    )

    def attempt(_left):
        raise LeakyError("sk-SECRET in the message")

    with pytest.raises(LeakyError):
        retrier.run(attempt)
    assert "sk-SECRET" not in caplog.text
    assert "LeakyError" in caplog.text
    assert "storage" in caplog.text


def test_no_warning_without_a_retry(caplog):
    caplog.set_level(logging.DEBUG, logger=RETRY_LOGGER)
    retrier, _ = make(RetryConfig(max_attempts=3))
    assert retrier.run(lambda _left: 1) == 1
    with pytest.raises(BackendError):
        retrier.run(Flaky([BackendError("sk-SECRET")]))
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert "sk-SECRET" not in caplog.text


# --- 8. async ----------------------------------------------------------------------------


def test_run_async_retries_with_the_injected_sleep():
    retrier, clock = make(RetryConfig(max_attempts=4, jitter=False), timeout=100)
    calls = []

    async def attempt(left):
        calls.append(left)
        if len(calls) < 3:
            raise BackendUnavailable("down")
        return "done"

    assert asyncio.run(retrier.run_async(attempt)) == "done"
    assert clock.sleeps == [1.0, 2.0]
    assert calls == [100.0, 99.0, 97.0]


def test_run_async_raises_the_original_and_honours_the_deadline():
    retrier, clock = make(RetryConfig(max_attempts=4, jitter=False), timeout=2.5)
    raised = []

    async def attempt(_left):
        raised.append(BackendUnavailable("down"))
        raise raised[-1]

    with pytest.raises(BackendTimeout) as info:
        asyncio.run(retrier.run_async(attempt))
    assert clock.sleeps == [1.0]
    assert info.value.__cause__ is raised[-1]

    retrier, clock = make(RetryConfig(max_attempts=2, jitter=False))
    with pytest.raises(BackendUnavailable) as info:
        asyncio.run(retrier.run_async(attempt))
    assert info.value is raised[-1]

    fatal = BackendError("no")

    async def refuse(_left):
        raise fatal

    with pytest.raises(BackendError) as info:
        asyncio.run(retrier.run_async(refuse))
    assert info.value is fatal


def test_cancelling_during_backoff_cancels_promptly_and_stops_retrying():
    # The real asyncio.sleep (the default async_sleep), with a backoff of 1000 s.
    retrier = Retrier(RetryConfig(max_attempts=5, initial_delay=1000, jitter=False))
    calls = []

    async def main():
        failed = asyncio.Event()

        async def attempt(_left):
            calls.append(1)
            failed.set()
            raise BackendUnavailable("down")

        task = asyncio.create_task(retrier.run_async(attempt))
        await failed.wait()
        await asyncio.sleep(0)  # let the task reach its backoff sleep
        assert not task.done()
        began = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return time.monotonic() - began

    elapsed = asyncio.run(main())
    assert elapsed < 1.0
    assert calls == [1]


# --- 9. the decorator --------------------------------------------------------------------


def test_decorator_on_a_sync_function():
    clock = FakeClock()
    calls = []

    @retry_with_backoff(RetryConfig(max_attempts=3, jitter=False), sleep=clock.sleep, clock=clock, operation="op")
    def fetch(key, *, default=None):
        """Fetch a key."""
        calls.append(key)
        if len(calls) < 3:
            raise BackendUnavailable("down")
        return key.upper()

    assert fetch("abc") == "ABC"
    assert calls == ["abc"] * 3
    assert clock.sleeps == [1.0, 2.0]
    assert fetch.__name__ == "fetch"
    assert fetch.__doc__ == "Fetch a key."
    assert fetch.__wrapped__.__name__ == "fetch"
    assert fetch.retrier.operation == "op"


def test_decorator_on_an_async_function():
    clock = FakeClock()
    calls = []

    @retry_with_backoff(
        RetryConfig(max_attempts=3, jitter=False), async_sleep=clock.async_sleep, clock=clock, backend="b"
    )
    async def fetch(key):
        """Fetch a key, asynchronously."""
        calls.append(key)
        if len(calls) < 2:
            raise BackendTimeout("slow")
        return key * 2

    assert asyncio.iscoroutinefunction(fetch)
    assert asyncio.run(fetch("x")) == "xx"
    assert clock.sleeps == [1.0]
    assert fetch.__name__ == "fetch"
    assert fetch.__doc__ == "Fetch a key, asynchronously."
    assert fetch.retrier.backend == "b"


def test_bare_decorator_on_sync_and_async_functions():
    @retry_with_backoff
    def sync_fn(x):
        """sync doc"""
        sync_calls.append(x)
        if len(sync_calls) < 2:
            raise BackendUnavailable("down")
        return x + 1

    @retry_with_backoff
    async def async_fn(x):
        """async doc"""
        async_calls.append(x)
        if len(async_calls) < 2:
            raise BackendUnavailable("down")
        return x + 2

    sync_calls, async_calls = [], []
    assert sync_fn.__name__ == "sync_fn" and sync_fn.__doc__ == "sync doc"
    assert async_fn.__name__ == "async_fn" and async_fn.__doc__ == "async doc"
    assert asyncio.iscoroutinefunction(async_fn)
    assert sync_fn.retrier.config == RetryConfig()
    # Swap in the fake clock so nothing really sleeps.
    clock = FakeClock()
    for fn in (sync_fn, async_fn):
        fn.retrier.clock, fn.retrier.sleep, fn.retrier.async_sleep = clock, clock.sleep, clock.async_sleep
        fn.retrier.jitter = no_jitter
    assert sync_fn(1) == 2
    assert asyncio.run(async_fn(1)) == 3
    assert clock.sleeps == [1.0, 1.0]
    with pytest.raises(BackendError):
        sync_fn.retrier.run(Flaky([BackendError("x")]))


def test_decorated_function_propagates_non_transient_errors_once():
    clock = FakeClock()
    calls = []

    @retry_with_backoff(RetryConfig(max_attempts=5), sleep=clock.sleep, clock=clock, random=random.Random(0))
    def broken():
        calls.append(1)
        raise ValueError("bug")

    with pytest.raises(ValueError):
        broken()
    assert calls == [1]
    assert clock.sleeps == []


# --- 10. tags and the observer -----------------------------------------------------------


def test_errors_are_tagged_with_operation_and_backend():
    retrier, _ = make(RetryConfig(max_attempts=2, jitter=False), operation="storage", backend="s3")
    with pytest.raises(BackendUnavailable) as info:
        retrier.run(AlwaysFails())
    assert (info.value.operation, info.value.backend) == ("storage", "s3")
    with pytest.raises(BackendError) as info:
        retrier.run(Flaky([BackendError("no")]))
    assert (info.value.operation, info.value.backend) == ("storage", "s3")
    with pytest.raises(KeyError) as info:
        retrier.run(Flaky([KeyError("k")]))
    assert (info.value.operation, info.value.backend) == ("storage", "s3")


def test_deadline_timeout_is_tagged_too():
    retrier, _ = make(RetryConfig(max_attempts=5, initial_delay=10, jitter=False), timeout=5,
                      operation="llm", backend="bedrock")
    with pytest.raises(BackendTimeout) as info:
        retrier.run(AlwaysFails())
    assert (info.value.operation, info.value.backend) == ("llm", "bedrock")


def test_existing_tags_are_not_overwritten():
    inner = BackendUnavailable("down")
    inner.operation, inner.backend = "secrets", "vault"
    retrier, _ = make(RetryConfig(max_attempts=1), operation="llm", backend="openai")
    with pytest.raises(BackendUnavailable) as info:
        retrier.run(Flaky([inner]))
    assert (info.value.operation, info.value.backend) == ("secrets", "vault")

    half = BackendUnavailable("down")
    half.operation = "persona"
    tag(half, "llm", "openai")
    assert (half.operation, half.backend) == ("persona", "openai")
    tag(half, "storage", "s3")
    assert (half.operation, half.backend) == ("persona", "openai")


def test_observer_is_called_once_per_attempt():
    seen = []
    clock = FakeClock()
    retrier, _ = make(
        RetryConfig(max_attempts=5, jitter=False), clock=clock, observer=lambda *args: seen.append(args)
    )
    first, second = BackendUnavailable("a"), BackendTimeout("b")
    attempt = Flaky([first, second], clock=clock, takes=0.25)
    assert retrier.run(attempt) == "ok"
    assert seen == [(1, 0.25, first), (2, 0.25, second), (3, 0.25, None)]

    seen.clear()
    fatal = BackendError("no")
    with pytest.raises(BackendError):
        retrier.run(Flaky([fatal], clock=clock, takes=1))
    assert seen == [(1, 1.0, fatal)]



def test_call_is_observed_and_tagged_per_attempt_as_run_is():
    seen = []
    clock = FakeClock()
    retrier, _ = make(RetryConfig(max_attempts=3, jitter=False), clock=clock, operation="storage", backend="s3",
                      observer=lambda *args: seen.append(args), budget=RetryBudget(capacity=10))
    failure = BackendUnavailable("a")
    attempt = Flaky([failure], result=7, clock=clock, takes=0.5)
    assert retrier.call(lambda key, *, limit: (attempt(None), key, limit), "k", limit=3) == (7, "k", 3)
    assert seen == [(1, 0.5, failure), (2, 0.5, None)]
    assert (failure.operation, failure.backend) == ("storage", "s3")
    assert retrier.budget.tokens == 10  # the retry's cost, given back on success

    seen.clear()
    fatal = KeyError("k")
    with pytest.raises(KeyError) as info:
        retrier.call(Flaky([fatal], clock=clock, takes=2), None)
    assert info.value is fatal and seen == [(1, 2.0, fatal)]
    assert (fatal.operation, fatal.backend) == ("storage", "s3")

def test_observer_on_async_attempts():
    seen = []
    retrier, clock = make(RetryConfig(max_attempts=2, jitter=False), observer=lambda *a: seen.append(a))
    err = BackendUnavailable("x")

    async def attempt(_left):
        clock.advance(0.5)
        if not seen:
            raise err
        return 5

    assert asyncio.run(retrier.run_async(attempt)) == 5
    assert seen == [(1, 0.5, err), (2, 0.5, None)]


def test_conflict_pauses_come_before_every_try_but_the_first_and_double_up_to_the_cap():
    class Highest(random.Random):
        def uniform(self, a, b):
            return b

    slept = []
    pauses = ConflictPauses(0.01, 0.05, sleep=slept.append, random=Highest())
    tries = []
    for n in pauses.tries(5):
        tries.append(n)
        assert len(slept) == n  # the pause is over before the try it precedes
    assert tries == [0, 1, 2, 3, 4]
    assert slept == pytest.approx([0.01, 0.02, 0.04, 0.05])
    jittered = ConflictPauses(0.01, 0.05, sleep=slept.append, random=random.Random(7))
    slept.clear()
    list(jittered.tries(4))
    assert all(0 <= pause <= bound for pause, bound in zip(slept, (0.01, 0.02, 0.04)))
    assert len(set(slept)) == 3  # drawn, not the bound each time
