"""Issue 18, item 5: the supported front. docs/deploying.md's nginx block, as printed, in front of gunicorn.

The attack: 130 sockets sending a request one byte every 2 s ("slowloris"),
half of them dripping their headers, half a POST's body.
Against gunicorn itself each holds one of its threads; through nginx none
reaches gunicorn: ``/health`` answers within gunicorn's timeout while the
attack runs, and a chat is not refused for slow bodies holding the worker's
chat places. Streams still arrive piece by piece through the front.
"""

from __future__ import annotations

import pytest
import requests

from tests.doubles.attack import Slowloris
from tests.doubles.nginx import nginx_front
from tests.doubles.servers import gunicorn
from tests.doubles.sse_client import iter_events

TIMEOUT = 10  # gunicorn's worker timeout here


@pytest.mark.timeout(90)
def test_slowloris_against_the_documented_nginx_front_leaves_health_answering(tmp_path):
    env = {"TWIN_DATA_DIR": str(tmp_path / "data"), "TWIN_LLM": "paced", "TWIN_PACED_INTERVAL": "0.01",
           "TWIN_PACED_TOKENS": "20", "TWIN_RATE_LIMIT": "off", "TWIN_TRUSTED_PROXIES": "1"}
    # Four threads: 130 slow sockets would hold every one of them 30 times over.
    with gunicorn(env, app="tests.doubles.paced_app:app", workers=1, threads=4,
                  extra_args=("--timeout", str(TIMEOUT))) as upstream:
        with nginx_front(upstream, tmp_path / "nginx") as front:
            with Slowloris(front, 65, slow="headers", rounds=3) as heads, \
                    Slowloris(front, 65, slow="body", rounds=3) as bodies:
                heads.wait_rounds(1)
                probes = [requests.get(front + "/health", timeout=TIMEOUT).status_code for _ in range(3)]
                ready = requests.get(front + "/ready", timeout=TIMEOUT).status_code
                # No slow body took a chat's place either: nginx holds them all until they are whole.
                chat = requests.post(front + "/chat", json={"message": "hi"}, timeout=TIMEOUT).status_code
            for attack in (heads, bodies):
                assert attack.sent > attack.first and len(attack.sockets) == 65 and not attack.dropped
            assert probes == [200, 200, 200] and ready == 200 and chat == 200

            with requests.post(front + "/chat/stream", json={"message": "hi"}, stream=True, timeout=TIMEOUT) as reply:
                assert reply.status_code == 200
                events = [e.event for e in iter_events(reply.iter_content(chunk_size=None))]
            assert events == ["session"] + ["delta"] * 20 + ["done"]

