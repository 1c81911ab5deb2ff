"""gunicorn's settings for twin-server; gunicorn reads this file from its working directory.

Run ``gunicorn`` (or ``gunicorn wsgi:app``) in the project directory. A twin
spends nearly all of a request waiting for the LLM, so the set-up is a few
processes with many threads each (``gthread``): the GIL is released while
waiting, and ``workers x threads`` requests can wait at once.

Environment (command-line options override all of these):

``TWIN_BIND``                 address to listen on; else ``0.0.0.0:$PORT`` when ``PORT`` is set
                              (containers, PaaS), else ``127.0.0.1:8000`` (behind a local proxy)
``TWIN_WORKERS``              processes (else ``WEB_CONCURRENCY``, else the CPU count, at least 2)
``TWIN_THREADS``              threads per process (default 64): chats waiting on the LLM at once;
                              each worker is told its count (``post_fork``), so the app's caps on
                              chats and streams in progress (``TWIN_MAX_CHATS``, ``TWIN_MAX_STREAMS``)
                              leave threads for probes whatever ``--threads`` says
``TWIN_LLM_TIMEOUT``          the LLM deadline (default 60 s); the worker timeout is that + 30 s
                              and a graceful stop waits that + 5 s, so no reply is cut short
``TWIN_FORWARDED_ALLOW_IPS``  proxies whose X-Forwarded-Proto gunicorn believes (default 127.0.0.1);
                              the client IP behind a proxy is ``TWIN_TRUSTED_PROXIES`` (the app's
                              ``proxy`` module; X-Forwarded-Host only with ``TWIN_TRUSTED_FORWARDED_HOST``)

It also sets, unless they are already set: ``TWIN_LOG_FORMAT=json`` (one JSON
object per line, gunicorn's own lines included), ``PROMETHEUS_MULTIPROC_DIR``
(a fresh directory, so ``/metrics`` adds up every worker) and
``TWIN_RATE_LIMIT_STORAGE`` (a memory-mapped counter file, ``shm://``, so rate
limits, session caps and the daily budget are shared by the workers). The fresh directory is removed
when gunicorn exits; set ``TWIN_RATE_LIMIT_STORAGE`` to a lasting path to keep
the daily budget across restarts. (Without this file the app still shares its
counters between gunicorn's workers, in a table of its own: ``limits_storage``.)
"""

import atexit
import os
import sys
import shutil
import tempfile
from pathlib import Path

RUN_DIR_ENV = "_TWIN_GUNICORN_RUN_DIR"  # not TWIN_*: the app's config never sees it


def _number(name: str, default: float) -> float:
    """A numeric setting; an unparsable one keeps the default (create_app then reports it)."""
    try:
        return float(os.environ.get(name) or default)
    except ValueError:
        return default


def _run_dir() -> str:
    """This gunicorn's own temporary directory, made once (a HUP re-reads this file).

    Removed when the master exits, however it exits (also when no worker could
    boot, where gunicorn skips ``on_exit``); workers inherit the exit hook, so it
    checks that it runs in the master.
    """
    if RUN_DIR_ENV not in os.environ:
        os.environ[RUN_DIR_ENV] = run_dir = tempfile.mkdtemp(prefix="twin-server-")
        master = os.getpid()
        atexit.register(lambda: os.getpid() == master and shutil.rmtree(run_dir, ignore_errors=True))
    return os.environ[RUN_DIR_ENV]


os.environ.setdefault("TWIN_LOG_FORMAT", "json")
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = os.path.join(_run_dir(), "metrics")
Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).mkdir(parents=True, exist_ok=True)
if not os.environ.get("TWIN_RATE_LIMIT_STORAGE"):
    os.environ["TWIN_RATE_LIMIT_STORAGE"] = "shm:///" + os.path.join(_run_dir(), "limits.shm")

from gunicorn.glogging import Logger  # noqa: E402

from twin_server.telemetry import logs  # noqa: E402  (after the environment above is set)

wsgi_app = "wsgi:app"
if os.environ.get("TWIN_BIND"):
    bind = [address.strip() for address in os.environ["TWIN_BIND"].split(",") if address.strip()]
elif os.environ.get("PORT"):
    bind = [f"0.0.0.0:{int(os.environ['PORT'])}"]
else:
    bind = ["127.0.0.1:8000"]

worker_class = "gthread"
workers = int(_number("TWIN_WORKERS", _number("WEB_CONCURRENCY", max(2, os.cpu_count() or 1))))
threads = int(_number("TWIN_THREADS", 64))
_llm_timeout = _number("TWIN_LLM_TIMEOUT", 60.0)
timeout = int(_llm_timeout) + 30  # a worker silent this long is killed and replaced
graceful_timeout = int(_llm_timeout) + 5  # on SIGTERM, in-flight chats get this long to finish
keepalive = 5
forwarded_allow_ips = os.environ.get("TWIN_FORWARDED_ALLOW_IPS", "127.0.0.1")
preload_app = False  # each worker builds its own app after the fork (SDK clients, metric files)
if os.path.isdir("/dev/shm"):
    worker_tmp_dir = "/dev/shm"  # heartbeat files off a possibly slow disk (containers)

accesslog = None  # the app logs one structured line per request


class TwinLogger(Logger):
    """gunicorn's own lines go through the root logger, in the app's format (JSON by default).

    Not ``logconfig_dict``: with it set, gunicorn would also build an access-log
    line (and its query string) for every request.
    """

    def setup(self, cfg):
        super().setup(cfg)
        logs.configure_logging(*logs.log_settings(default_format="json"))
        for handler in list(self.error_log.handlers):
            self.error_log.removeHandler(handler)
        self.error_log.propagate = True


logger_class = TwinLogger


def on_starting(server):
    """Wipe metric files left by an earlier run in an operator-chosen directory; refuse a start that cannot work."""
    for stale in Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).glob("*.db"):
        stale.unlink()
    if getattr(server.app, "app_uri", None) == "wsgi:app":
        refuse_a_broken_start(server)


def refuse_a_broken_start(server):
    """Build the app once in the master: a bad setting is listed once, and gunicorn exits 3 (as when no
    worker can boot) instead of every worker printing the same traceback."""
    from twin_server.app import startup_problems

    problems = startup_problems()
    if problems:
        server.log.error("twin-server cannot start:\n%s", "\n".join(f"  - {p}" for p in problems))
        sys.exit(3)


def post_fork(server, worker):
    """Tell the worker's app how many threads it has (gunicorn's final setting, the command line included)."""
    from twin_server.http.inflight import THREADS_ENV

    os.environ[THREADS_ENV] = str(worker.cfg.threads)


def child_exit(server, worker):
    """A dead worker's live gauges must stop counting; its counters stay in the sums."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)

