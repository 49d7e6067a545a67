"""Writers of one process take their turns at SQLite's single writer in order
(tingfeng.db.engine._FairWriterLock), on a real database file."""

from __future__ import annotations

import threading
import time

from sqlalchemy import text

from tingfeng.db.engine import _FairWriterLock, make_engine, write_transaction


def test_a_writer_that_begins_again_at_once_does_not_starve_a_waiting_one(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The ingest's back-to-back transactions against the outbox sender: without turns, the
    sender's busy handler slept while the ingest began again, and it waited for seconds."""
    engine = make_engine(f"sqlite:///{tmp_path / 'turns.db'}")
    with write_transaction(engine) as conn:
        conn.execute(text("CREATE TABLE t (who TEXT, at REAL)"))
    stop = threading.Event()

    def greedy() -> None:
        while not stop.is_set():
            with write_transaction(engine) as conn:
                conn.execute(text("INSERT INTO t VALUES ('greedy', :at)"), {"at": time.time()})
                time.sleep(0.03)  # a 30 ms batch, then straight into the next

    hog = threading.Thread(target=greedy)
    hog.start()
    try:
        time.sleep(0.1)
        waits = []
        for _ in range(10):
            t0 = time.perf_counter()
            with write_transaction(engine) as conn:
                conn.execute(text("INSERT INTO t VALUES ('sender', :at)"), {"at": time.time()})
            waits.append(time.perf_counter() - t0)
    finally:
        stop.set()
        hog.join()
    # Each waits at most for the batch in progress (30 ms), with room for a loaded machine;
    # SQLite's busy handler alone let the greedy writer win for 100s of ms at a time.
    assert max(waits) < 0.5, waits
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM t WHERE who = 'sender'")).scalar() == 10
    engine.dispose()


def test_turns_are_first_come_first_served_reentrant_and_time_out() -> None:
    lock = _FairWriterLock()
    assert lock.acquire(1) and lock.acquire(1)  # the same thread again: nested
    order: list[int] = []
    started: list[threading.Thread] = []
    for n in range(5):

        def take(n: int = n) -> None:
            assert lock.acquire(10)
            order.append(n)
            lock.release()

        thread = threading.Thread(target=take)
        thread.start()
        started.append(thread)
        time.sleep(0.05)  # queued in this order
    late = threading.Thread(target=lambda: order.append(-1 if not lock.acquire(0.1) else 99))
    late.start()
    late.join()
    assert order == [-1]  # gave up after its timeout, while the lock was held
    lock.release()
    assert order == [-1]  # still held once (it was taken twice)
    lock.release()
    for thread in started:
        thread.join()
    assert order == [-1, 0, 1, 2, 3, 4]
