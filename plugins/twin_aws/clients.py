"""boto3 clients for the AWS backends, and the translation of botocore's errors into the core's.

boto3 is imported here, and only when a backend is built, so ``import twin_aws``
costs nothing and a missing ``aws`` extra is a clear ``ConfigurationError``.
Every client (s3, dynamodb, secretsmanager, bedrock-runtime) is built once per
backend with botocore's own retries off (``total_max_attempts=1``: the core
retries; DynamoDB's default of 10 tries included) and timeouts taken from the
operation's deadline.

``translate`` picks the most specific core error for a botocore exception::

    throttling codes (SlowDown, ThrottlingException,
      ProvisionedThroughputExceededException, ...)           RateLimited
    5xx, InternalError, ServiceUnavailable, connection lost,
      DynamoDB's TransactionConflictException                BackendUnavailable
    read timeouts, RequestTimeout, ModelTimeoutException     BackendTimeout
    bad or unauthorised credentials, missing bucket, region  ConfigurationError
    any other refusal                                        BackendError
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from twin_server import Settings
from twin_server.errors import (
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    ConfigurationError,
    RateLimited,
    TwinError,
)

INSTALL_HINT = "install twin-server[aws]"

#: A connection that is not up after this long will not come up in time either.
CONNECT_TIMEOUT_CAP = 5.0
#: The socket timeout when the operation has no deadline (its TWIN_*_TIMEOUT is 0).
NO_DEADLINE_TIMEOUT = 60.0
#: Enough pooled connections for a gthread worker's threads plus a full-history read.
MAX_POOL_CONNECTIONS = 32

_THROTTLING = {
    "throttling", "throttlingexception", "throttledexception", "requestthrottled",
    "requestthrottledexception", "toomanyrequestsexception", "slowdown", "requestlimitexceeded",
    "provisionedthroughputexceededexception", "bandwidthlimitexceeded", "priorrequestnotcomplete",
}
_UNAVAILABLE = {
    "serviceunavailable", "serviceunavailableexception", "internalerror", "internalfailure",
    "internalservererror", "internalserverexception", "internalserviceerror", "modelnotreadyexception",
    "transactionconflictexception", "transactioninprogressexception",
}
_TIMEOUT = {"requesttimeout", "requesttimeoutexception", "modeltimeoutexception"}
_CREDENTIALS = {
    "accessdenied", "accessdeniedexception", "unrecognizedclientexception", "unrecognizedclient",
    "invalidaccesskeyid", "signaturedoesnotmatch", "invalidclienttokenid", "expiredtoken",
    "expiredtokenexception", "invalidtoken", "authfailure", "missingauthenticationtoken",
    "incompletesignature", "invalidsignatureexception", "accountproblem",
}
_MISCONFIGURED = {"nosuchbucket", "permanentredirect", "authorizationheadermalformed", "invalidbucketname"}

#: A service-specific rule tried first: (normalised code, the ClientError) -> a core error or None.
Special = Callable[[str, Any], TwinError | None]


def require_boto3(what: str) -> Any:
    """The boto3 module, or ConfigurationError telling the operator to install the extra."""
    try:
        import boto3
    except ImportError as exc:
        raise ConfigurationError(f"{what} needs boto3, which is not installed: {INSTALL_HINT}") from exc
    return boto3


def operation_timeout(config: Mapping[str, Any], operation: str) -> float:
    """The socket timeout for one call of ``operation``: its TWIN_<OPERATION>_TIMEOUT deadline."""
    settings = Settings(config)
    return settings.get_float(f"{operation.upper()}_TIMEOUT", minimum=0) or NO_DEADLINE_TIMEOUT


def make_client(service: str, timeout: float, *, what: str, s3_addressing_style: str | None = None,
                validate_parameters: bool = True) -> Any:
    """One boto3 client: no botocore retries, connect and read bounded by ``timeout``.

    Region, credentials and endpoints (AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_S3, ...)
    come from boto3's own settings. ``validate_parameters=False`` skips botocore's
    check of each call's parameters against the service model, for a caller whose
    requests are built by our own code from values already checked (Bedrock:
    about half of a converse call's client CPU).
    """
    boto3 = require_boto3(what)
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, NoRegionError

    options: dict[str, Any] = {
        "retries": {"total_max_attempts": 1},
        "connect_timeout": min(timeout, CONNECT_TIMEOUT_CAP),
        "read_timeout": timeout,
        "max_pool_connections": MAX_POOL_CONNECTIONS,
        "parameter_validation": validate_parameters,
    }
    if s3_addressing_style:
        options["s3"] = {"addressing_style": s3_addressing_style}
    try:
        return _new_session(boto3).client(service, config=Config(**options))
    except NoRegionError:
        raise ConfigurationError(f"{what} needs an AWS region: set AWS_REGION or AWS_DEFAULT_REGION") from None
    except BotoCoreError as exc:
        raise ConfigurationError(f"{what} cannot create its {service} client: {exc}") from exc


def _new_session(boto3: Any) -> Any:
    """A fresh boto3 session (its own credentials and settings) sharing botocore's model loader.

    Parsing the service models is most of what building a client costs (0.1 to
    0.3 s each); the loader caches only botocore's read-only data files, so
    every app of the process can share it.
    """
    import botocore.session

    core = botocore.session.get_session()
    core.register_component("data_loader", _model_loader())
    return boto3.session.Session(botocore_session=core)


@functools.cache
def _model_loader() -> Any:
    from botocore.loaders import create_loader

    return create_loader()


def addressing_style(config: Mapping[str, Any]) -> str | None:
    """TWIN_S3_ADDRESSING_STYLE (auto, path, virtual): "path" for S3-compatible stores that need it."""
    settings = Settings(config)
    style = (settings.get_str("S3_ADDRESSING_STYLE", "") or "").strip().lower()
    if style in ("", "auto"):
        return None
    if style not in ("path", "virtual"):
        raise ConfigurationError(f"TWIN_S3_ADDRESSING_STYLE must be auto, path or virtual, not {style!r}")
    return style


def join_key(prefix: str, *parts: str) -> str:
    """``prefix`` and ``parts`` joined with exactly one "/"; a trailing "/" on the prefix is optional."""
    head = (prefix or "").rstrip("/")
    tail = "/".join(parts)
    return f"{head}/{tail}" if head else tail


def error_code(exc: BaseException) -> str:
    """A ClientError's code, lower-cased ("SlowDown" -> "slowdown"); "" for anything else."""
    response = getattr(exc, "response", None)
    if not isinstance(response, Mapping):
        return ""
    return str((response.get("Error") or {}).get("Code") or "").lower()


def http_status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    if not isinstance(response, Mapping):
        return None
    status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
    return status if isinstance(status, int) else None


def is_aws_error(exc: BaseException) -> bool:
    """True for the exceptions botocore (and urllib3 underneath a streamed body) raise."""
    from botocore.exceptions import BotoCoreError, ClientError
    from urllib3.exceptions import HTTPError

    return isinstance(exc, (BotoCoreError, ClientError, HTTPError))


def translate(exc: BaseException, action: str, special: Special | None = None) -> TwinError:
    """The core error for a botocore (or urllib3) exception raised while doing ``action``."""
    from botocore import exceptions as bce
    from urllib3.exceptions import ReadTimeoutError as RawReadTimeout

    if isinstance(exc, bce.ClientError):
        code = error_code(exc)
        if special is not None:
            found = special(code, exc)
            if found is not None:
                return found
        return _client_error(exc, code, action)
    if isinstance(exc, (bce.ReadTimeoutError, RawReadTimeout)):
        return BackendTimeout(f"{action} timed out waiting for AWS to answer")
    if isinstance(exc, (bce.NoCredentialsError, bce.PartialCredentialsError, bce.CredentialRetrievalError)):
        return ConfigurationError(f"{action} found no usable AWS credentials: {exc}")
    if isinstance(exc, bce.NoRegionError):
        return ConfigurationError(f"{action} needs an AWS region: set AWS_REGION or AWS_DEFAULT_REGION")
    if isinstance(exc, bce.ParamValidationError):
        return BackendError(f"{action} built an invalid request: {exc}")
    # Connection refused or reset, DNS failure, a stream cut short: the network, not the request.
    return BackendUnavailable(f"{action} could not reach AWS ({type(exc).__name__})")


def _client_error(exc: Any, code: str, action: str) -> TwinError:
    status = http_status(exc)
    error = exc.response.get("Error") or {}
    said = str(error.get("Message") or "")[:300]
    where = f"{action} failed with {error.get('Code') or 'an error'} ({status}){': ' + said if said else ''}"
    if code in _THROTTLING:
        return RateLimited(where, retry_after=_retry_after(exc))
    if code in _TIMEOUT:
        return BackendTimeout(where)
    if code in _CREDENTIALS:
        return ConfigurationError(f"{where}; check the server's AWS credentials and IAM permissions")
    if code in _MISCONFIGURED:
        return ConfigurationError(f"{where}; check the bucket and region settings")
    if code in _UNAVAILABLE:  # before the status: ModelNotReadyException comes as a 429
        return BackendUnavailable(where)
    if status == 429:
        return RateLimited(where, retry_after=_retry_after(exc))
    if status is not None and status >= 500:
        return BackendUnavailable(where)
    return BackendError(where)


def _retry_after(exc: Any) -> float | None:
    headers = (exc.response.get("ResponseMetadata") or {}).get("HTTPHeaders") or {}
    try:
        value = float(headers.get("retry-after", ""))
    except ValueError:
        return None
    return value if value >= 0 else None


@contextlib.contextmanager
def translated(action: str, special: Special | None = None) -> Iterator[None]:
    """Run a block of AWS calls, re-raising botocore's exceptions as the core's."""
    try:
        yield
    except TwinError:
        raise
    except Exception as exc:
        if not is_aws_error(exc):
            raise
        raise translate(exc, action, special) from exc
