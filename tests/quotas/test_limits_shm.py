"""The ``shm://`` counter storage: a hash table in a memory-mapped file, shared by the processes of one machine.

What every counter storage must do is tested once for all of them in test_limits.py; here, what only this one does.
"""

import hashlib
import itertools
import logging
import multiprocessing
import os
import threading

import pytest

from twin_server.quotas import shm_storage as limits_shm
from twin_server.quotas.shm_storage import PROBES, SharedMemoryStorage

HEADER_AND_SLOTS = 64 + 64 * 32 - 8  # an old-format file of 64 slots, after its magic


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
    monkeypatch.setattr(limits_shm, "_digest", lambda secret, key: (7, 1 + sum(map(ord, key)) * 131 + len(key)))
    storage = make(tmp_path, [0.0], slots=PROBES)
    keys = [f"k{n}" for n in range(10)]
    for n, key in enumerate(keys):
        storage.incr(key, 60, amount=n + 1)
    assert [storage.get(key) for key in keys] == list(range(1, 11))
    storage.clear("k3")
    assert storage.get("k3") == 0 and storage.get("k4") == 5  # a cleared slot does not hide the keys after it
    assert storage.incr("k4", 60) == 6


def test_a_full_table_counts_new_keys_in_the_process_and_reclaims_ended_windows(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(limits_shm, "_digest", lambda secret, key: (0, int(key)))  # all in slot 0
    clock = [0.0]
    storage = make(tmp_path, clock, slots=2 * PROBES)
    for n in range(1, PROBES + 1):
        storage.incr(str(n), 10)
    with caplog.at_level(logging.WARNING, logger="twin_server.quotas.shm_storage"):
        assert [storage.incr("999", 20) for _ in range(3)] == [1, 2, 3]  # counted beside the table, not refused
    (warning,) = caplog.records
    assert "no free slot" in warning.getMessage() and "this process alone" in warning.getMessage()
    assert storage.get("999") == 3 and storage.get_expiry("999") == 20.0
    assert storage.incr("5", 10) == 2  # known keys still count in the table, none pushed out
    assert [storage.get(str(n)) for n in range(1, PROBES + 1)] == [1, 1, 1, 1, 2] + [1] * (PROBES - 5)
    assert make(tmp_path, clock).get("999") == 0  # another process does not see it: the price of a full table
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="twin_server.quotas.shm_storage"):
        assert storage.incr("998", 20) == 1
    assert caplog.records == []  # at most one warning a minute
    clock[0] = 10.0  # every window in the table has ended: new keys reclaim their slots while probing
    assert storage.incr("997", 20) == 1 and make(tmp_path, clock).get("997") == 1
    assert storage.incr("999", 20) == 4  # a counted-beside key stays beside until its window ends
    clock[0] = 20.0
    assert storage.incr("999", 20) == 1 and make(tmp_path, clock).get("999") == 1  # then it moves into the table
    storage.clear("998")
    assert storage.get("998") == 0


def test_a_key_counted_beside_the_table_is_read_where_it_is_counted(tmp_path, monkeypatch):
    """Another worker may find room for the key in the table meanwhile: this one's checks still see its own count."""
    monkeypatch.setattr(limits_shm, "_digest", lambda secret, key: (0, int(key)))
    clock = [0.0]
    mine, other = make(tmp_path, clock, slots=2 * PROBES), make(tmp_path, clock)
    for n in range(1, PROBES + 1):
        mine.incr(str(n), 10)
    assert [mine.incr("999", 10) for _ in range(3)] == [1, 2, 3]
    other.clear("5")  # a slot frees up, and the other worker counts the key there
    assert other.incr("999", 10) == 1
    assert mine.get("999") == 3 and mine.incr("999", 10) == 4  # a cap read with get() sees what incr counted


def test_a_full_table_does_not_refuse_chats(tmp_path, scripted_app, scripted, caplog):
    """Every slot of a table holds a live counter (here 64 of 64): chats are still served, and a WARNING says why."""
    uri = f"shm:///{tmp_path}/limits.shm?slots={PROBES}"
    client = scripted_app(RATE_LIMIT="6/minute", SESSION_MAX_MESSAGES=3, DAILY_LLM_BUDGET=4, RATE_LIMIT_STORAGE=uri).test_client()
    filler = SharedMemoryStorage(uri)
    for n in range(PROBES):
        filler.incr(f"filler-{n}", 3600)
    assert sum(1 for n in range(PROBES) if filler.get(f"filler-{n}")) == PROBES  # full: every slot a live counter

    def chat(session_id):
        return client.post("/chat", json={"message": "hi", "session_id": session_id}).status_code

    with caplog.at_level(logging.WARNING, logger="twin_server.quotas.shm_storage"):
        statuses = [chat("visitor-0001") for _ in range(4)] + [chat("visitor-0002") for _ in range(3)]
    # The limits still hold in this process: 3 messages a session, 4 calls a day, 6 chats a minute.
    assert statuses == [200, 200, 200, 429, 200, 503, 429]
    assert scripted.llm.calls == 4
    assert any("no free slot" in record.getMessage() for record in caplog.records)
    assert sum(1 for n in range(PROBES) if filler.get(f"filler-{n}")) == PROBES  # no other counter was pushed out


def test_every_table_has_its_own_secret_shared_by_whoever_opens_it(tmp_path):
    first, again, other = make(tmp_path), make(tmp_path), make(tmp_path, name="other.shm")
    assert len(first.secret) == 32 and first.secret == again.secret != other.secret
    assert (tmp_path / "sub" / "limits.shm").read_bytes()[16:48] == first.secret
    first.incr("k", 60)
    assert again.get("k") == 1 and other.get("k") == 0


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
    (tmp_path / "sub" / "old").write_bytes(b"twinshm1" + bytes(HEADER_AND_SLOTS))
    with pytest.raises(ValueError, match="older twin-server; remove it"):
        make(tmp_path, name="old")


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


def _unkeyed_home(key, slots):
    """The slot the unkeyed layout (a plain BLAKE2b of the key) gave ``key``: what an attacker can compute."""
    high = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=16).digest()[:8], "little")
    return high & (slots - 1)


def test_session_ids_planned_against_the_unkeyed_layout_do_not_touch_a_victim(tmp_path, scripted_app):
    """The attack of issue 18: 64 computed session ids fill the probe window of a victim address's counter."""
    slots, victim = 1024, "203.0.113.9"
    client = scripted_app(
        RATE_LIMIT="100/minute", SESSION_MAX_MESSAGES=5, RATE_LIMIT_STORAGE=f"shm:///{tmp_path}/limits.shm?slots={slots}",
    ).test_client()
    target = _unkeyed_home(f"LIMITER/chat/{victim}/100/1/minute", slots)
    candidates = (f"attack-{n:08d}" for n in itertools.count())
    window = {(target + n) % slots for n in range(PROBES)}
    # The attacker's own address keeps its counters out of the window, so the 64 sessions fill all of it.
    attacker = next(address for address in (f"198.51.100.{n}" for n in range(256))
                    if _unkeyed_home(f"LIMITER/chat/{address}/100/1/minute", slots) not in window)
    planned = list(itertools.islice((s for s in candidates if _unkeyed_home(f"twin/session/{s}/messages", slots) == target), PROBES))

    def chat(session_id, address):
        body = {"message": "hi", **({"session_id": session_id} if session_id else {})}
        return client.post("/chat", json=body, environ_base={"REMOTE_ADDR": address})

    assert [chat(session_id, attacker).status_code for session_id in planned] == [200] * PROBES
    assert chat(None, victim).status_code == 200
    table = SharedMemoryStorage(f"shm:///{tmp_path}/limits.shm")
    assert table.get(f"LIMITER/chat/{victim}/100/1/minute") == 1  # counted in the shared table, not beside it


def test_keys_planned_against_the_unkeyed_layout_spread_over_a_keyed_table(tmp_path):
    """The table's own defence, without the session-id hashing of the app: 64 raw keys aimed at a victim's window."""
    slots, victim = 1024, "LIMITER/chat/203.0.113.9/100/1/minute"
    target = _unkeyed_home(victim, slots)
    candidates = (f"aimed-{n}" for n in itertools.count())
    planned = list(itertools.islice((key for key in candidates if _unkeyed_home(key, slots) == target), PROBES))
    storage = make(tmp_path, [0.0], slots=slots)
    for key in planned:
        storage.incr(key, 3600)
    assert storage.incr(victim, 60) == 1
    assert make(tmp_path, [0.0]).get(victim) == 1  # in the shared table, not counted beside it by this process
    assert storage._spill == {}


def test_session_counter_keys_are_hashed_with_the_tables_secret(tmp_path):
    """A visitor's session id never reaches the table as text, and where its counters land depends on the secret."""
    from twin_server.quotas.policy import SessionAllowance
    from twin_server.turn.turn import TurnRequest

    class Recording(SharedMemoryStorage):
        def incr_many(self, entries, amount=1):
            self.keys.extend(key for key, _ in entries)
            return super().incr_many(entries, amount)

    seen = {}
    for name in ("one.shm", "two.shm"):
        storage = Recording(f"shm:///{tmp_path}/{name}")
        storage.keys = seen[name] = []
        SessionAllowance(storage, max_messages=5, max_chars=100)(TurnRequest("visitor-0001", "hello"))
    assert len(seen["one.shm"]) == 2 and not any("visitor-0001" in key for keys in seen.values() for key in keys)
    assert set(seen["one.shm"]).isdisjoint(seen["two.shm"])  # two tables, two secrets, two sets of keys
