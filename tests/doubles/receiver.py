"""A local HTTP receiver for notifications (a webhook, Pushover's API): records what it is sent.

``Receiver(fail_first=2)`` answers 503 to its first two requests, then 200;
``delay`` holds every answer that many seconds (a slow webhook)::

    with Receiver(fail_first=2) as receiver:
        ... receiver.url ...
        receiver.wait_for(1)       # the delivered requests (JSON bodies decoded, forms as dicts)
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from tests.doubles.fake_openai import _QuietHandler


class Receiver:
    def __init__(self, *, fail_first: int = 0, fail_status: int = 503, delay: float = 0.0,
                 answer: Any = None) -> None:
        self.fail_first, self.fail_status, self.delay = fail_first, fail_status, delay
        self.answer = answer if answer is not None else {"ok": True}
        self.attempts = 0
        self.delivered: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self._lock = threading.Condition()
        self._server = make_server("127.0.0.1", 0, self._wsgi, threaded=True, request_handler=_QuietHandler)
        self.url = f"http://127.0.0.1:{self._server.server_port}/hook"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.01},
                                        daemon=True)

    def __enter__(self) -> "Receiver":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _wsgi(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        if self.delay:
            time.sleep(self.delay)
        with self._lock:
            self.attempts += 1
            self.paths.append(request.path)
            if self.attempts <= self.fail_first:
                return Response("try later", self.fail_status)(environ, start_response)
            body = request.get_json(silent=True)
            self.delivered.append(body if body is not None else request.form.to_dict())
            self._lock.notify_all()
        return Response(json.dumps(self.answer), 200, content_type="application/json")(environ, start_response)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self.delivered) < count and time.monotonic() < deadline:
                self._lock.wait(max(0.0, deadline - time.monotonic()))
            return list(self.delivered)
