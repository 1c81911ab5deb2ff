"""The production set-up under a real gunicorn with gunicorn.conf.py: two workers, one picture.

Metrics add up across workers (prometheus_client's multiprocess mode), the
rate limit is shared by them (the SQLite storage gunicorn.conf.py sets up),
every request is one JSON log line with nothing private in it, and startup
fails loudly for what cannot heal but not for a persona that can.
"""

import concurrent.futures
import json
import os
import shutil
import subprocess
import sys
import time
import uuid

import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.doubles.servers import ROOT, free_port, gunicorn
from twin_local.persona import example_persona_dir

SECRET = "sk-live-9d1e7c3b5a2f4680"
MESSAGE = "my door code is 80417, keep it between us"


def log_lines(path):
    """Every line of the server's output, each of which must be one JSON object."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def requests_logged(log, **match):
    return [line for line in log_lines(log) if line["logger"] == "twin_server.request"
            and all(line.get(k) == v for k, v in match.items())]


def chat(url, client_ip, message=MESSAGE, **headers):
    request_id = uuid.uuid4().hex
    response = requests.post(
        f"{url}/chat?api_key={SECRET}",
        json={"message": message},
        headers={"X-Forwarded-For": client_ip, "X-Request-ID": request_id, "Authorization": f"Bearer {SECRET}", **headers},
        timeout=10,
    )
    return response, request_id


def chat_count(url, http=requests) -> float:
    text = http.get(url + "/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "twin_http_requests_total" and sample.labels == {
                "endpoint": "/chat", "method": "POST", "status": "200",
            }:
                return sample.value
    return 0.0


def test_two_workers_one_picture(tmp_path):
    log = tmp_path / "gunicorn.log"
    # 8 chats at once on 2 x 4 threads: admission (TWIN_MAX_CHATS) would refuse some; this test is about the picture.
    env = {"TWIN_DATA_DIR": str(tmp_path / "data"), "TWIN_TRUSTED_PROXIES": "1", "TWIN_RATE_LIMIT": "5/minute",
           "TWIN_MAX_CHATS": "off"}
    with gunicorn(env, workers=2, threads=4, log_path=log) as url:
        # Traffic from many clients (one request each), until both workers have served some.
        sent = 0
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            while sent < 400 and (sent < 40 or len({l["pid"] for l in requests_logged(log, path="/chat")}) < 2):
                batch = [f"203.0.113.{(sent + i) % 250}" for i in range(20)]
                assert [r.status_code for r, _ in pool.map(lambda ip: chat(url, ip), batch)] == [200] * 20
                sent += 20
        served = requests_logged(log, path="/chat")
        assert len(served) == sent and len({line["pid"] for line in served}) == 2
        # Whichever worker answers the scrape, it counts the requests of both, once each has flushed
        # (TWIN_METRICS_FLUSH_SECONDS, 1 s by default: a scrape writes its own worker's samples first).
        deadline = time.monotonic() + 30
        while chat_count(url) != sent and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [chat_count(url) for _ in range(6)] == [sent] * 6

        # One client, fresh connections, both workers: the 5/minute allowance is shared. Four at a time, so
        # both workers take some however busy the machine is (one at a time, one worker may win every accept).
        statuses, pids = [], set()
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            while (len(pids) < 2 or len(statuses) < 8) and len(statuses) < 200:
                for response, request_id in pool.map(lambda _: chat(url, "198.51.100.7"), range(4)):
                    statuses.append(response.status_code)
                    (line,) = requests_logged(log, request_id=request_id)
                    pids.add(line["pid"])
                    if response.status_code == 429:
                        assert int(response.headers["Retry-After"]) >= 1
        assert len(pids) == 2
        assert statuses.count(200) == 5 and set(statuses) <= {200, 429}

        too_big = requests.post(url + "/chat", data=b"x" * (70 * 1024), headers={"Content-Type": "application/json"}, timeout=10)
        assert too_big.status_code == 413 and too_big.headers["Content-Type"] == "application/problem+json"
        assert too_big.headers["X-Content-Type-Options"] == "nosniff"

    lines = log_lines(log)  # every line parsed as JSON, gunicorn's own included
    assert any(line["logger"] == "gunicorn.error" for line in lines)
    line = requests_logged(log, path="/chat", status=200)[0]
    assert {"method", "endpoint", "duration_ms", "request_id", "session_id", "backends", "retries"} <= set(line)
    assert set(line["backends"]) == {"persona", "storage", "llm"} and line["backends"]["llm"]["backend"] == "offline"
    output = log.read_text()
    assert SECRET not in output and "80417" not in output and "door code" not in output


def test_a_startup_problem_stops_gunicorn_with_every_reason(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("TWIN_")}
    env.update({"TWIN_LLM": "nope", "TWIN_RATE_LIMIT": "lots", "TWIN_DATA_DIR": str(tmp_path)})
    result = subprocess.run(
        [sys.executable, "-m", "gunicorn", "wsgi:app", "--bind", f"127.0.0.1:{free_port()}", "--workers", "2"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode != 0
    assert "unknown llm backend 'nope'" in result.stderr
    assert "TWIN_RATE_LIMIT must be like" in result.stderr


def test_a_broken_persona_does_not_stop_gunicorn_and_heals(tmp_path):
    persona = tmp_path / "persona"
    persona.mkdir()
    log = tmp_path / "gunicorn.log"
    env = {"TWIN_DATA_DIR": str(tmp_path / "data"), "TWIN_PERSONA_DIR": str(persona)}
    with gunicorn(env, workers=1, threads=2, log_path=log) as url:
        assert requests.get(url + "/ready", timeout=10).status_code == 503
        refused = requests.post(url + "/chat", json={"message": "hi"}, timeout=10)
        assert refused.status_code == 500 and refused.json()["title"] == "Persona unavailable"
        assert any(l["level"] == "ERROR" and "persona could not be loaded" in l["message"] for l in log_lines(log))
        for item in os.scandir(example_persona_dir()):
            shutil.copy(item.path, persona)
        assert requests.get(url + "/ready", timeout=10).status_code == 200
        assert requests.post(url + "/chat", json={"message": "hi"}, timeout=10).status_code == 200
