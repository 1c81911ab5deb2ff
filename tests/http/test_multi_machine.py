"""Two machines, one memory: two gunicorn servers sharing DynamoDB (moto's server) and Redis.

Each "machine" is a real gunicorn process with its own workers; what they
share is what two machines behind a load balancer would share: the DynamoDB
table and, for the rate limits, a real ``redis-server`` on a loopback port.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.doubles.moto_server import aws, moto_server  # noqa: F401  (fixtures)
from tests.doubles.servers import free_port, gunicorn
from twin_aws.dynamodb import DynamoDBConversationStore

TABLE = "twin-multi-machine"
REDIS_SERVER = "/usr/bin/redis-server"  # Debian's redis-server package; `make test` installs it


class Redis:
    """``redis-server`` on 127.0.0.1 and a free port, which a test can stop and start again."""

    def __init__(self) -> None:
        if shutil.which(REDIS_SERVER) is None:
            raise RuntimeError(f"{REDIS_SERVER} is missing: `make test` installs Debian's redis-server")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [REDIS_SERVER, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        import redis

        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis(port=self.port, socket_timeout=1).ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


@pytest.fixture
def redis_server() -> Iterator[Redis]:
    server = Redis()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def machines(count: int = 2, log_dir: Path | None = None, **settings: str) -> Iterator[list[str]]:
    """``count`` twin servers (gunicorn, 2 workers each) on the DynamoDB store; their base URLs.

    With ``log_dir``, each server's output is kept there (``machine-<n>.log``) and printed when the
    block fails, so a failure under load says what the servers saw.
    """
    env = {"TWIN_STORAGE": "dynamodb", "TWIN_DYNAMODB_TABLE": TABLE, "TWIN_LLM": "echo",
           **{f"TWIN_{key}": value for key, value in settings.items()}}
    logs = [log_dir / f"machine-{n}.log" if log_dir else None for n in range(count)]
    servers = [gunicorn(env, app="tests.doubles.echo_app:app", threads=8, log_path=log) for log in logs]
    with contextlib.ExitStack() as stack, concurrent.futures.ThreadPoolExecutor(count) as pool:
        starting = [pool.submit(server.__enter__) for server in servers]  # both boot at once
        for server, started in zip(servers, starting):
            if started.exception() is None:
                stack.push(server.__exit__)
        try:
            yield [started.result() for started in starting]
        except BaseException:
            for log in filter(None, logs):
                if log.exists():
                    print(f"--- {log.name} ---\n{log.read_text(errors='replace')[-20000:]}")
            raise


@pytest.fixture
def table(aws):
    DynamoDBConversationStore.from_config({"DYNAMODB_TABLE": TABLE}).provision()
    return aws


def chat(url: str, message: str, session_id: str) -> requests.Response:
    return requests.post(f"{url}/chat", json={"message": message, "session_id": session_id}, timeout=30)


def test_concurrent_turns_at_two_machines_are_all_kept_in_pairs_and_deleted_everywhere(table, tmp_path):
    session_id, turns = "shared-by-two-machines", 60
    # 60 chats at once on 2 x 2 x 8 threads: admission (TWIN_MAX_CHATS) would refuse some; this test is about the store.
    with machines(log_dir=tmp_path, RATE_LIMIT="off", MAX_CHATS="off") as urls:
        with concurrent.futures.ThreadPoolExecutor(max_workers=turns) as pool:
            results = list(pool.map(lambda n: chat(urls[n % 2], f"visitor {n}", session_id), range(turns)))
        assert [r.status_code for r in results] == [200] * turns
        assert all(r.json()["history_saved"] for r in results)
        histories = [requests.get(f"{url}/conversation/{session_id}?limit=500", timeout=30).json()["messages"]
                     for url in urls]
        assert histories[0] == histories[1]  # both machines see the same history
        messages = histories[0]
        assert [m["role"] for m in messages] == ["user", "assistant"] * turns
        assert sorted(m["content"] for m in messages[::2]) == sorted(f"visitor {n}" for n in range(turns))
        assert [m["content"] for m in messages[1::2]] == [f"reply to: {m['content']}" for m in messages[::2]]
        # a visitor going on at the other machine: its turn comes after everything it was shown
        assert chat(urls[1], "and one more", session_id).status_code == 200
        assert requests.get(f"{urls[0]}/conversation/{session_id}", timeout=30).json()["messages"][-2]["content"] == \
            "and one more"
        assert requests.delete(f"{urls[0]}/conversation/{session_id}", timeout=30).status_code == 204
        for url in urls:
            assert requests.get(f"{url}/conversation/{session_id}", timeout=30).json()["messages"] == []
    left = table.dynamodb.query(TableName=TABLE, KeyConditionExpression="pk = :pk",
                                ExpressionAttributeValues={":pk": {"S": session_id}})
    assert left["Items"] == []


def test_a_rate_limit_in_redis_is_shared_exactly_and_with_redis_down_neither_machine_is_ready(table, redis_server):
    with machines(RATE_LIMIT="5/minute", RATE_LIMIT_STORAGE=redis_server.url) as urls:
        statuses = [chat(urls[n % 2], f"message {n}", "limited-session").status_code for n in range(12)]
        assert statuses == [200] * 5 + [429] * 7  # 5 of 12, spread over both machines
        for url in urls:
            assert requests.get(f"{url}/ready", timeout=30).status_code == 200
        redis_server.stop()
        for url in urls:
            refused = chat(url, "hello", "redis-down-01")
            assert refused.status_code == 503 and refused.headers["Content-Type"] == "application/problem+json"
            assert requests.get(f"{url}/ready", timeout=30).status_code == 503  # the load balancer stops here
            assert requests.get(f"{url}/health", timeout=30).status_code == 200
        redis_server.start()  # on the same port, empty (no persistence): both machines come back by themselves
        for url in urls:
            assert requests.get(f"{url}/ready", timeout=30).status_code == 200
            assert chat(url, "hello again", "redis-back-01").status_code == 200
