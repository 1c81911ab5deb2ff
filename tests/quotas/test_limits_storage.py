"""Which counter storage the limits use: under gunicorn, an unset setting is a table all its workers share."""

import logging
import os
import signal
import subprocess
import sys
import tempfile

import pytest
from limits.storage import MemoryStorage

from twin_server.errors import StartupError
from twin_server.quotas.shm_storage import SharedMemoryStorage
from twin_server.quotas.storage import gunicorn_master


@pytest.fixture
def under_gunicorn(monkeypatch, tmp_path):
    """This process looks like gunicorn's (as its master sets it); the private directory it would use."""
    monkeypatch.setenv("SERVER_SOFTWARE", "gunicorn/27.0.1")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path / f"twin-server-{os.getuid()}"


def storage_of(app):
    return app.extensions["twin_server"].turns.guards[0].storage


def chat(app):
    return app.test_client().post("/chat", json={"message": "hi"}).status_code


def test_an_unset_storage_under_gunicorn_is_one_table_for_every_worker(scripted_app, under_gunicorn, caplog):
    with caplog.at_level(logging.WARNING, logger="twin_server.limits"):
        workers = [scripted_app(DAILY_LLM_BUDGET=2, RATE_LIMIT="off") for _ in range(3)]
    assert [chat(worker) for worker in workers] == [200, 200, 503]  # one budget, not one per worker
    table = under_gunicorn / f"limits-{os.getpid()}.shm"  # no worker signal handlers here: the master, with --preload
    assert {type(storage_of(w)) for w in workers} == {SharedMemoryStorage} and storage_of(workers[0]).path == table
    assert oct(under_gunicorn.stat().st_mode & 0o777) == "0o700"
    said = [r.getMessage() for r in caplog.records if "TWIN_RATE_LIMIT_STORAGE is not set" in r.getMessage()]
    assert len(said) == 3 and str(table) in said[0] and "shared by the workers" in said[0]


def test_a_worker_counts_in_its_masters_table(monkeypatch):
    monkeypatch.delenv("SERVER_SOFTWARE", raising=False)
    assert gunicorn_master() is None
    monkeypatch.setenv("SERVER_SOFTWARE", "gunicorn/27.0.1")
    assert gunicorn_master() == os.getpid()
    previous = signal.signal(signal.SIGQUIT, lambda *args: None)  # what a gunicorn worker does before loading the app
    try:
        assert gunicorn_master() == os.getppid()
    finally:
        signal.signal(signal.SIGQUIT, previous)


def test_a_master_started_with_sigquit_ignored_is_still_the_master(monkeypatch):
    monkeypatch.setenv("SERVER_SOFTWARE", "gunicorn/27.0.1")
    previous = signal.signal(signal.SIGQUIT, signal.SIG_IGN)  # as a supervisor or a shell may start gunicorn
    try:
        assert gunicorn_master() == os.getpid()
    finally:
        signal.signal(signal.SIGQUIT, previous)


def test_outside_gunicorn_or_without_limits_nothing_is_made(scripted_app, under_gunicorn, monkeypatch):
    assert scripted_app(RATE_LIMIT="off", SESSION_MAX_MESSAGES="off").extensions["twin_server"].turns.guards == []
    assert not under_gunicorn.exists()  # no counters wanted: no table
    monkeypatch.delenv("SERVER_SOFTWARE")
    assert isinstance(storage_of(scripted_app(DAILY_LLM_BUDGET=2)), MemoryStorage)
    assert not under_gunicorn.exists()


def test_an_explicit_per_process_storage_under_gunicorn_is_obeyed_with_a_warning(scripted_app, under_gunicorn, caplog):
    with caplog.at_level(logging.WARNING, logger="twin_server.limits"):
        app = scripted_app(DAILY_LLM_BUDGET=2, RATE_LIMIT_STORAGE="memory://")
    assert isinstance(storage_of(app), MemoryStorage) and not under_gunicorn.exists()
    assert any("every worker counts for itself" in r.getMessage() for r in caplog.records)


def test_the_tables_of_exited_masters_are_removed(scripted_app, under_gunicorn):
    exited = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    under_gunicorn.mkdir(mode=0o700)
    stale, running = under_gunicorn / f"limits-{int(exited.stdout)}.shm", under_gunicorn / f"limits-{os.getppid()}.shm"
    stale.write_bytes(b"")
    running.write_bytes(b"")
    scripted_app(DAILY_LLM_BUDGET=2)
    assert not stale.exists() and running.exists()
    assert (under_gunicorn / f"limits-{os.getpid()}.shm").exists()


@pytest.mark.parametrize("make", ["shared", "symlink"])
def test_a_directory_others_could_write_is_refused(scripted_app, under_gunicorn, tmp_path, make):
    if make == "shared":
        under_gunicorn.mkdir()
        under_gunicorn.chmod(0o777)
    else:
        (tmp_path / "elsewhere").mkdir(mode=0o700)
        under_gunicorn.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(StartupError) as caught:
        scripted_app(DAILY_LLM_BUDGET=2)
    assert any("mode 700" in problem and "TWIN_RATE_LIMIT_STORAGE" in problem for problem in caught.value.problems)
    assert list(under_gunicorn.iterdir()) == []  # no table made in it (nor, through the link, elsewhere)
