"""The ``shm://`` counter storage: a hash table in a memory-mapped file, shared by the processes of one machine.

What every counter storage must do is tested once for all of them in test_limits.py; here, what only this one does.
"""

import multiprocessing
import os
import threading

import pytest
from limits.errors import StorageError

from twin_server.quotas import shm_storage as limits_shm
from twin_server.quotas.shm_storage import PROBES, SharedMemoryStorage, TableFull

PROBLEM = "application/problem+json"


def make(tmp_path, clock=None, slots=None, name="limits.shm", **options):
    query = f"?slots={slots}" if slots else ""
    kwargs = {"clock": lambda: clock[0]} if clock is not None else {}
    return SharedMemoryStorage(f"shm:///{tmp_path}/sub/{name}{query}", **kwargs, **options)


def test_many_keys_stay_apart(tmp_path):
    storage = make(tmp_path, [0.0], slots=1024)
    for round_no in range(1, 4):
        for n in range(500):
            assert storage.incr(f"client-{n}", 60, amount=n + 1) == round_no * (n + 1)
    assert [storage.get(f"client-{n}") for n in range(500)] == [3 * (n + 1) for n in range(500)]


def test_keys_sharing_a_home_slot_are_told_apart_by_their_whole_hash(tmp_path, monkeypatch):
    # Every key lands in slot 7: the table must still keep one counter per key.
    monkeypatch.setattr(limits_shm, "_digest", lambda key: (7, 1 + sum(map(ord, key)) * 131 + len(key)))
    storage = make(tmp_path, [0.0], slots=PROBES)
    keys = [f"k{n}" for n in range(10)]
    for n, key in enumerate(keys):
        storage.incr(key, 60, amount=n + 1)
    assert [storage.get(key) for key in keys] == list(range(1, 11))
    storage.clear("k3")
    assert storage.get("k3") == 0 and storage.get("k4") == 5  # a cleared slot does not hide the keys after it
    assert storage.incr("k4", 60) == 6


def test_a_full_table_refuses_new_keys_and_reuses_ended_windows(tmp_path, monkeypatch):
    monkeypatch.setattr(limits_shm, "_digest", lambda key: (0, int(key)))  # all in slot 0
    clock = [0.0]
    storage = make(tmp_path, clock, slots=2 * PROBES)
    for n in range(1, PROBES + 1):
        storage.incr(str(n), 10)
    with pytest.raises(TableFull):
        storage.incr("999", 10)
    assert storage.incr("5", 10) == 2  # known keys still count
    assert [storage.get(str(n)) for n in range(1, PROBES + 1)] == [1, 1, 1, 1, 2] + [1] * (PROBES - 5)
    clock[0] = 10.0  # every window has ended: their slots are free again
    assert storage.incr("999", 20) == 1 and storage.get("5") == 0
    assert storage.incr("5", 20) == 1 and storage.get("999") == 1


def test_a_full_table_is_a_storage_error_and_chats_get_503(tmp_path, monkeypatch, scripted_app, scripted):
    client = scripted_app(RATE_LIMIT_STORAGE=f"shm:///{tmp_path}/limits.shm?slots={PROBES}").test_client()
    assert client.post("/chat", json={"message": "hi"}).status_code == 200

    def full(*args, **kwargs):
        raise TableFull("no free slot")

    monkeypatch.setattr(SharedMemoryStorage, "_find", full)
    refused = client.post("/chat", json={"message": "hi"})
    assert refused.status_code == 503 and refused.mimetype == PROBLEM
    assert scripted.llm.calls == 1
    assert client.get("/health").status_code == 200
    storage = SharedMemoryStorage(f"shm:///{tmp_path}/limits.shm", wrap_exceptions=True)
    with pytest.raises(StorageError):
        storage.incr("x", 1)


def test_table_size_and_file_checks(tmp_path):
    with pytest.raises(ValueError):
        make(tmp_path, slots=1000)  # not a power of two
    assert make(tmp_path, slots=128, name="small").slots == 128
    assert make(tmp_path, name="small").slots == 128  # an existing file keeps its size
    with pytest.raises(ValueError, match="remove it to resize"):
        make(tmp_path, slots=256, name="small")
    (tmp_path / "sub" / "other").write_bytes(b"not a table")
    with pytest.raises(ValueError, match="not a twin-server"):
        make(tmp_path, name="other")


def test_threads_count_exactly(tmp_path):
    storage = make(tmp_path, slots=1024)
    barrier = threading.Barrier(8)

    def work():
        barrier.wait()
        for _ in range(500):
            storage.incr_many([("minute", 60), ("day", 86400)])

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert storage.get("minute") == storage.get("day") == 4000


def _hammer(uri, start, increments):
    storage = SharedMemoryStorage(uri)
    start.wait()
    for _ in range(increments):
        storage.incr_many([("minute", 60), ("day", 86400)])


def _hammer_inherited(storage, start, increments):
    start.wait()
    for _ in range(increments):
        storage.incr_many([("minute", 60), ("day", 86400)])


@pytest.mark.parametrize("method", ["spawn", "fork"])
def test_processes_count_exactly(tmp_path, method):
    """4 processes x 500 increments: 2000. Forked children reuse the parent's object (as preloaded workers would)."""
    uri = f"shm:///{tmp_path}/limits.shm?slots=1024"
    parent = SharedMemoryStorage(uri)
    context = multiprocessing.get_context(method)
    start = context.Barrier(5)
    if method == "fork":
        workers = [context.Process(target=_hammer_inherited, args=(parent, start, 500)) for _ in range(4)]
    else:
        workers = [context.Process(target=_hammer, args=(uri, start, 500)) for _ in range(4)]
    for worker in workers:
        worker.start()
    start.wait()
    for worker in workers:
        worker.join(60)
    assert [worker.exitcode for worker in workers] == [0] * 4
    assert parent.get("minute") == parent.get("day") == 2000


def test_a_fork_gets_its_own_open_file(tmp_path):
    storage = make(tmp_path)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.write(write, b"1" if storage._fd != storage._fds[0] else b"0")
        os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(read, 1) == b"1"
    os.close(read)
    os.close(write)


def test_caps_and_limits_share_a_shm_storage_between_apps(scripted_app, tmp_path):
    """Two apps on one file behave like two gunicorn workers of one machine."""
    shared = {"RATE_LIMIT": "3/minute", "RATE_LIMIT_STORAGE": f"shm:///{tmp_path}/limits.shm", "SESSION_MAX_MESSAGES": 2}
    one, two = scripted_app(**shared).test_client(), scripted_app(**shared).test_client()

    def chat(client, session_id):
        return client.post("/chat", json={"message": "hi", "session_id": session_id})

    assert chat(one, "visitor-0001").status_code == 200
    assert chat(two, "visitor-0001").status_code == 200
    assert chat(one, "visitor-0001").status_code == 429  # session cap, across apps
    assert chat(two, "visitor-0002").status_code == 429  # 3 per minute, across apps
