"""The limits and the proxy headers under a real gunicorn: with and without gunicorn.conf.py."""

import concurrent.futures
import json
import time

import requests

from tests.doubles.servers import gunicorn


def answered_by(log):
    """The pids of the workers that logged an answer to a chat."""
    lines = (json.loads(line) for line in log.read_text().splitlines() if line.startswith("{"))
    return {line["pid"] for line in lines if line.get("logger") == "twin_server.request" and line.get("path") == "/chat"}


def booted_all(log, workers, timeout=60.0):
    """Wait until every worker has loaded the app (each logs the shared-storage warning once it has)."""
    deadline = time.monotonic() + timeout
    while log.read_text().count("TWIN_RATE_LIMIT_STORAGE is not set") < workers:
        assert time.monotonic() < deadline, "the workers did not all boot"
        time.sleep(0.1)


def test_four_workers_without_the_config_file_share_one_daily_budget(tmp_path):
    """The attack of issue 18: ``gunicorn -w 4 wsgi:app`` gave every worker its own budget of 10."""
    empty = tmp_path / "no-gunicorn.conf.py"
    empty.write_text("")  # instead of the project's gunicorn.conf.py, which sets the shared storage up
    log = tmp_path / "gunicorn.log"
    env = {"TWIN_DATA_DIR": str(tmp_path / "data"), "TWIN_DAILY_LLM_BUDGET": "10", "TWIN_RATE_LIMIT": "off",
           "TWIN_LOG_FORMAT": "json", "TMPDIR": str(tmp_path)}
    args = ("--config", str(empty), "--worker-class", "sync", "--threads", "1")  # gunicorn's own defaults
    with gunicorn(env, workers=4, extra_args=args, log_path=log) as url:
        booted_all(log, 4)  # else one early worker may take every request, and the test would prove nothing
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(lambda i: requests.post(url + "/chat", json={"message": f"hi {i}"}, timeout=30).status_code,
                                     range(40)))
        assert sorted(statuses) == [200] * 10 + [503] * 30
        assert len(answered_by(log)) >= 2  # several workers answered: each alone would have allowed all 10
    said = log.read_text()
    assert "TWIN_RATE_LIMIT_STORAGE is not set" in said and "shared by the workers" in said
    assert len(list(tmp_path.glob("twin-server-*/limits-*.shm"))) == 1  # one table, in $TMPDIR, for all four


def test_forwarded_headers_through_gunicorn(tmp_path):
    """Behind one trusted proxy: X-Forwarded-Host steers no redirect; IPv6 clients count per /64."""
    env = {"TWIN_DATA_DIR": str(tmp_path / "data"), "TWIN_TRUSTED_PROXIES": "1", "TWIN_RATE_LIMIT": "1/minute"}
    with gunicorn(env, workers=2, threads=4) as url:
        redirect = requests.get(url + "/static//chat.js", headers={"X-Forwarded-Host": "evil.example"},
                                allow_redirects=False, timeout=10)
        assert redirect.status_code == 308
        assert redirect.headers["Location"] == url + "/static/chat.js"

        def chat(address):
            return requests.post(url + "/chat", json={"message": "hi"}, headers={"X-Forwarded-For": address}, timeout=10).status_code

        assert [chat("2001:db8:7:7::1"), chat("2001:db8:7:7:a:b:c:d"), chat("2001:db8:7:8::1")] == [200, 429, 200]
