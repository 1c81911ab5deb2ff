"""The app under a real gunicorn process, and the filesystem store shared by its workers."""

import concurrent.futures
import os
import subprocess
import sys

import pytest
import requests

from tests.doubles.servers import ROOT, free_port, gunicorn


def test_chat_through_gunicorn_with_several_workers(tmp_path):
    data = tmp_path / "data"
    # 40 turns from one client: more than the default rate limit allows.
    # 8 chats at once on 2 x 4 threads: admission (TWIN_MAX_CHATS) would refuse some; this test is about the store.
    env = {"TWIN_DATA_DIR": str(data), "TWIN_RATE_LIMIT": "off", "TWIN_MAX_CHATS": "off"}
    with gunicorn(env, workers=2, threads=4) as url:
        assert requests.get(url + "/ready", timeout=10).status_code == 200
        first = requests.post(url + "/chat", json={"message": "What is your name?"}, timeout=10)
        assert first.status_code == 200
        session_id = first.json()["session_id"]

        def turn(i):
            return requests.post(url + "/chat", json={"message": f"question {i}", "session_id": session_id}, timeout=30)

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            statuses = [r.status_code for r in pool.map(turn, range(40))]
        assert statuses == [200] * 40
        messages = requests.get(f"{url}/conversation/{session_id}", timeout=10).json()["messages"]
        assert len(messages) == 2 + 80
        for user, reply in zip(messages[::2], messages[1::2]):
            assert (user["role"], reply["role"]) == ("user", "assistant")
        assert sorted(m["content"] for m in messages[2::2]) == sorted(f"question {i}" for i in range(40))

        bad = requests.post(url + "/chat", data="{not json", headers={"Content-Type": "application/json"}, timeout=10)
        assert bad.status_code == 400
        assert bad.headers["Content-Type"] == "application/problem+json"


@pytest.mark.parametrize("config_file", [True, False], ids=["gunicorn.conf.py", "plain"])
def test_a_broken_start_exits_3_listing_every_problem_once(tmp_path, config_file):
    env = {k: v for k, v in os.environ.items() if not k.startswith("TWIN_")}
    env.update(TWIN_LLM="gpt-nope", TWIN_HISTORY_WINDOW="-1", TWIN_DATA_DIR=str(tmp_path / "data"))
    command = [sys.executable, "-m", "gunicorn", "wsgi:app", "--bind", f"127.0.0.1:{free_port()}", "--workers", "2"]
    if config_file:
        command[3:3] = ["-c", "gunicorn.conf.py"]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    output = done.stdout + done.stderr
    assert done.returncode == 3, output
    assert "Traceback" not in output
    assert "unknown llm backend 'gpt-nope'" in output and "TWIN_HISTORY_WINDOW must be at least 0" in output
    if config_file:  # checked once in the master, before any worker is forked
        assert output.count("twin-server cannot start") == 1, output
