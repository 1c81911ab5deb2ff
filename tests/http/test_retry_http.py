"""The core retry seen through the HTTP API, with a scripted LLM and a fake clock."""

import time

import pytest

from tests.doubles.scripted import SCRIPTED_CONFIG, ScriptedPlugin
from twin_server import hookimpl
from twin_server.app import create_app
from twin_server.errors import BackendError, BackendTimeout, BackendUnavailable, RateLimited
from twin_server.retry import RetryConfig


def post(app, message="hello"):
    return app.test_client().post("/chat", json={"message": message, "session_id": "retry-session"})


@pytest.mark.parametrize("failures", [1, 2])
def test_transient_failures_then_success(scripted_app, scripted, clock, failures):
    scripted.llm.steps = [BackendUnavailable("blip")] * failures + ["finally"]
    response = post(scripted_app(RETRY_JITTER=False))
    assert response.status_code == 200
    assert response.get_json()["response"] == "finally"
    assert scripted.llm.calls == failures + 1
    assert clock.sleeps == [1.0, 2.0][:failures]


def test_always_failing_is_503_after_exactly_max_attempts(scripted_app, scripted):
    scripted.llm.steps = [BackendUnavailable("down")] * 10
    response = post(scripted_app())
    assert response.status_code == 503
    assert response.get_json()["detail"] == "The language model is unavailable; try again later."
    assert scripted.llm.calls == 3
    assert scripted.store.sessions == {}  # the LLM failed: nothing is stored


def test_non_transient_error_is_called_once(scripted_app, scripted, clock):
    scripted.llm.steps = [BackendError("bad credentials")]
    response = post(scripted_app())
    assert response.status_code == 502
    assert scripted.llm.calls == 1 and clock.sleeps == []
    assert "credentials" not in response.get_data(as_text=True)


def test_deadline_is_504_and_attempts_see_the_time_left(scripted_app, scripted, clock):
    seen = []

    def hang(prompt):
        seen.append(prompt.timeout)
        clock.now += prompt.timeout  # the backend waits out its whole timeout
        raise BackendTimeout("read timed out")

    scripted.llm.steps = [hang, hang, hang]
    response = post(scripted_app(LLM_TIMEOUT=30))
    assert response.status_code == 504
    assert seen == [30.0] and scripted.llm.calls == 1


def test_hanging_backend_answers_504_within_the_deadline():
    plugin = ScriptedPlugin()

    def hang(prompt):
        time.sleep(prompt.timeout)  # a real SDK gives up after the timeout it is given
        raise BackendTimeout("read timed out")

    plugin.llm.steps = [hang] * 5
    app = create_app({**SCRIPTED_CONFIG, "LLM_TIMEOUT": 0.3}, plugins=[plugin], entrypoints=False)
    started = time.monotonic()
    response = post(app)
    elapsed = time.monotonic() - started
    assert response.status_code == 504
    assert elapsed < 1.0, elapsed


def test_retry_after_replaces_the_backoff(scripted_app, scripted, clock):
    scripted.llm.steps = [RateLimited("slow down", retry_after=7), "ok"]
    assert post(scripted_app()).status_code == 200
    assert clock.sleeps == [7]


def test_retry_after_beyond_the_deadline_is_503_with_retry_after(scripted_app, scripted, clock):
    scripted.llm.steps = [RateLimited("slow down", retry_after=99.2)]
    response = post(scripted_app(LLM_TIMEOUT=60))
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "100"
    assert scripted.llm.calls == 1 and clock.sleeps == []


def test_storage_failing_during_a_turn_still_answers(scripted_app, scripted, caplog):
    scripted.store.append_failures = [BackendUnavailable("disk")] * 3
    response = post(scripted_app())
    assert response.status_code == 200
    assert response.get_json()["history_saved"] is False
    assert scripted.store.calls.count("append") == 3
    assert "retry-session" in caplog.text


def test_history_failing_to_load_answers_without_it(scripted_app, scripted):
    scripted.store.load_failures = [BackendUnavailable("disk")] * 3
    body = post(scripted_app()).get_json()
    assert body["history_loaded"] is False and body["history_saved"] is True


def test_operator_settings_tune_each_kind(scripted_app, scripted, clock):
    scripted.llm.steps = [BackendUnavailable("down")] * 10
    post(scripted_app(RETRY_MAX_ATTEMPTS=2, RETRY_LLM_MAX_ATTEMPTS=5, RETRY_JITTER=False, RETRY_MAX_DELAY=3))
    assert scripted.llm.calls == 5
    assert clock.sleeps == [1.0, 2.0, 3.0, 3.0]


class PolicyPlugin:
    __name__ = "policy-plugin"

    @hookimpl
    def retry_policy(self, operation):
        return RetryConfig(max_attempts=4, initial_delay=0.5, jitter=False) if operation == "llm" else None


def test_retry_policy_hook_then_settings_on_top(scripted, clock):
    scripted.llm.steps = [BackendUnavailable("down")] * 10
    app = create_app(
        {**SCRIPTED_CONFIG, "RETRY_LLM_INITIAL_DELAY": 0.25},
        plugins=[scripted, PolicyPlugin()],
        entrypoints=False,
        retry_options={"clock": clock, "sleep": clock.sleep},
    )
    post(app)
    assert scripted.llm.calls == 4
    assert clock.sleeps == [0.25, 0.5, 1.0]


def test_retry_budget_caps_calls_to_a_dead_backend(scripted_app, scripted):
    scripted.llm.steps = [BackendUnavailable("down")] * 10_000
    app = scripted_app(RATE_LIMIT="off")  # 200 requests from one client
    client = app.test_client()
    for _ in range(200):
        assert client.post("/chat", json={"message": "hi"}).status_code == 503
    # 500 tokens / 5 per retry = 100 retries in all, then one attempt per request.
    assert scripted.llm.calls == 200 + 100
