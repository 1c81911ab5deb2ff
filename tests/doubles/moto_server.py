"""moto's AWS server on 127.0.0.1 for the AWS plugin's tests and benchmark.

``MotoServer`` runs moto's own server application (the one
``moto.server.ThreadedMotoServer`` runs) with one change: requests are
handled one at a time. moto checks a PutObject's If-Match/If-None-Match and
then writes in two steps with no lock between them, so two concurrent
conditional writes can both succeed and one update is lost: with
``ThreadedMotoServer`` itself (and a short thread switch interval to make the
race likely), 8 threads doing 15 If-Match read-modify-writes each on one key
kept 96 to 117 of their 120 updates. Real S3 evaluates the condition
and the write atomically; serialising requests restores that guarantee
without faking any response. DynamoDB's TransactWriteItems in moto is the
same (check every condition, then write, no lock), and is served the same way.

The fixtures, for a test module to import: ``moto_server`` (the running
server) and ``aws`` (boto3's environment pointed at it, moto's state reset,
and clients to arrange what the app will see).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterable, Iterator
from typing import Any

import pytest
import requests
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import make_server

REGION = "us-east-1"


class _OneAtATime:
    """A WSGI middleware serving one request at a time, body included."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ: dict, start_response: Any) -> Iterable[bytes]:
        with self.lock:
            result = self.app(environ, start_response)
            try:
                return [b"".join(result)]
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()


class _QuietHandler(MotoRequestHandler):
    def log_request(self, code: Any = "-", size: Any = "-") -> None:
        """No access log: tests read the responses, not stderr."""


class MotoServer:
    """moto on 127.0.0.1 and a free port; ``url`` once started."""

    def __init__(self) -> None:
        app = _OneAtATime(DomainDispatcherApplication(create_backend_app))
        self._server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=_QuietHandler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._serve, name="moto-server", daemon=True)

    def _serve(self) -> None:
        self._server.serve_forever(poll_interval=0.05)  # so that stopping takes 50 ms, not 500

    def __enter__(self) -> "MotoServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._thread.join()
        self._server.server_close()

    def reset(self) -> None:
        """Forget every bucket, object and secret."""
        requests.post(f"{self.url}/moto-api/reset", timeout=10).raise_for_status()


#: AWS settings a developer's machine may have that would send boto3 elsewhere.
_FOREIGN = (
    "AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_REGION", "AWS_ENDPOINT_URL_S3",
    "AWS_ENDPOINT_URL_DYNAMODB",
    "AWS_ENDPOINT_URL_SECRETS_MANAGER", "AWS_ENDPOINT_URL_BEDROCK_RUNTIME", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
)


def use_test_credentials(monkeypatch: pytest.MonkeyPatch, endpoint: str | None = None) -> None:
    """Fake credentials, a region, no ~/.aws, no instance metadata; ``endpoint`` for every service."""
    for name in _FOREIGN:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/aws-credentials")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    # Without a server to talk to, a call that escaped its Stubber fails here rather than reaching AWS.
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint or "http://127.0.0.1:9")


@dataclasses.dataclass
class Aws:
    """The test's AWS: moto's URL and clients to arrange and inspect what the app sees."""

    url: str
    s3: Any
    secretsmanager: Any
    dynamodb: Any

    def bucket(self, name: str = "twin-test") -> str:
        self.s3.create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        listing = self.s3.list_objects_v2(Bucket=bucket, Prefix=prefix)
        return sorted(obj["Key"] for obj in listing.get("Contents", ()))


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    with MotoServer() as server:
        yield server


@pytest.fixture
def aws(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> Aws:
    import boto3

    moto_server.reset()
    use_test_credentials(monkeypatch, moto_server.url)
    return Aws(moto_server.url, boto3.client("s3"), boto3.client("secretsmanager"), boto3.client("dynamodb"))


def record_sends(client: Any, operation: str = "") -> list[str]:
    """The names of the operations ``client`` sends over HTTP from now on (``operation`` only, if given)."""
    sent: list[str] = []
    service = client.meta.service_model.service_id.hyphenize()

    def count(event_name: str, **kwargs: Any) -> None:
        sent.append(event_name.rsplit(".", 1)[-1])

    client.meta.events.register(f"before-send.{service}" + (f".{operation}" if operation else ""), count)
    return sent


class _Body:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **kwargs: Any) -> Iterator[bytes]:
        yield self.body


def fail_first(client: Any, operation: str, times: int, status: int, code: str, **fields: Any) -> None:
    """Make ``client`` answer its next ``times`` ``operation`` sends with its service's error document
    (S3's XML, or the JSON of DynamoDB and the other JSON-protocol services, with ``fields`` added)."""
    import json

    from botocore.awsrequest import AWSResponse

    left = [times]
    service = client.meta.service_model.service_id.hyphenize()
    if service == "s3":
        body = f"<Error><Code>{code}</Code><Message>injected by the test</Message></Error>".encode()
        content_type = "application/xml"
    else:
        error = {"__type": f"com.amazonaws.{service}#{code}", "message": "injected by the test", **fields}
        body = json.dumps(error).encode()
        content_type = "application/x-amz-json-1.0"

    def answer(request: Any, **kwargs: Any) -> Any:
        if left[0] <= 0:
            return None  # sent for real
        left[0] -= 1
        return AWSResponse(request.url, status, {"Content-Type": content_type}, _Body(body))

    client.meta.events.register(f"before-send.{service}.{operation}", answer)
