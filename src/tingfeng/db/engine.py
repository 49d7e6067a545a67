"""Engines for SQLite (embedded, WAL) and PostgreSQL (scale-out) from one URL."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url


def make_engine(url: str, *, echo: bool = False) -> Engine:
    """An engine configured for Tingfeng's access pattern on either database."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:":
            Path(database).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)
        timeout_s = _busy_timeout_s(parsed)
        # No bound on a file database's pool (its connections are cheap): the holder of the
        # write lock may need a second connection (the topic stage reads beside the ingest's
        # transaction), and with a bounded pool, requests waiting for that lock (sign-ins,
        # pushes) held every connection until the busy timeout: a stall, then errors.
        pool: dict[str, Any] = (
            {"pool_size": 10, "max_overflow": -1} if database and database != ":memory:" else {}
        )
        engine = create_engine(url, echo=echo, connect_args={"timeout": timeout_s}, **pool)
        _configure_sqlite(engine, timeout_s)
        return engine
    engine = create_engine(url, echo=echo, pool_pre_ping=True, pool_size=5, max_overflow=10)
    _configure_postgresql(engine)
    return engine


def _configure_postgresql(engine: Engine) -> None:
    @event.listens_for(engine, "handle_error")
    def _drop_read_only(context: Any) -> None:
        # A connection made while the database was read-only (a standby after a failover,
        # default_transaction_read_only) stays read-only for its life: on meeting one, renew
        # every pooled connection, so that writes work again as soon as the database does.
        if getattr(context.original_exception, "sqlstate", None) == "25006":
            context.is_disconnect = True


def _configure_sqlite(engine: Engine, timeout_s: float = 30.0) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not pysqlite, decide when transactions begin (see `_on_begin`).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # NORMAL is safe in WAL mode: a power cut may lose the last commits, never corrupt.
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={int(timeout_s * 1000)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA cache_size=-65536")
        # Checkpoint every ~40 MB of WAL rather than every 4 MB: each checkpoint syncs the
        # database file, and at the default a bulk ingest spent a sixth of its time there.
        cursor.execute("PRAGMA wal_autocheckpoint=10000")
        cursor.execute("PRAGMA temp_store=MEMORY")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Writers take the write lock up front: a deferred transaction that upgrades from
        # read to write fails with SQLITE_BUSY at once, ignoring busy_timeout.
        if conn.get_execution_options().get("sqlite_immediate"):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")


def is_sqlite(bind: Engine | Connection) -> bool:
    return bind.dialect.name == "sqlite"


class _FairWriterLock:
    """First come, first served turns at a SQLite database's single writer, within a process.

    SQLite's busy handler makes a waiting writer sleep in growing steps (up to 100 ms) and try
    again; a writer that commits and begins again at once (the ingest of back-to-back pushes)
    wins almost every time. The outbox sender waited behind it for seconds, and alerts with
    it. Here writers of one process queue in order instead; other processes still meet the
    busy handler. Re-entrant per thread: a nested write transaction behaves as before.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._queue: deque[object] = deque()
        self._owner: int | None = None
        self._depth = 0

    def acquire(self, timeout_s: float) -> bool:
        me = threading.get_ident()
        with self._cond:
            if self._owner == me:
                self._depth += 1
                return True
            ticket = object()
            self._queue.append(ticket)
            if not self._cond.wait_for(
                lambda: self._owner is None and self._queue[0] is ticket, timeout_s
            ):
                # Not our turn in time: go on to SQLite, which says "database is locked".
                self._queue.remove(ticket)
                self._cond.notify_all()
                return False
            self._queue.popleft()
            self._owner, self._depth = me, 1
            return True

    def release(self) -> None:
        with self._cond:
            self._depth -= 1
            if self._depth == 0:
                self._owner = None
                self._cond.notify_all()


_writer_locks: dict[str, _FairWriterLock] = {}  # by database file, resolved
_writer_lock_of: dict[str, tuple[_FairWriterLock, float] | None] = {}  # by URL, as given
_writer_locks_guard = threading.Lock()


def _writer_lock(engine: Engine) -> tuple[_FairWriterLock, float] | None:
    """The turn lock of a SQLite engine's file and its busy timeout (looked up once per URL:
    this runs for every write transaction)."""
    key = str(engine.url)
    found = _writer_lock_of.get(key, False)
    if found is not False:
        return found  # type: ignore[return-value]
    database = engine.url.database or ""
    entry = None
    if database and database != ":memory:":
        path = str(Path(database).expanduser().resolve())
        with _writer_locks_guard:
            entry = (_writer_locks.setdefault(path, _FairWriterLock()), _busy_timeout_s(engine.url))
    _writer_lock_of[key] = entry
    return entry


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction that will write: immediate on SQLite (writers of this process take their
    turns in order, `_FairWriterLock`), ordinary on PostgreSQL."""
    entry = _writer_lock(engine) if is_sqlite(engine) else None
    lock = entry[0] if entry is not None else None
    held = entry is not None and entry[0].acquire(entry[1])
    try:
        with engine.connect() as conn:
            if is_sqlite(engine):
                conn = conn.execution_options(sqlite_immediate=True)
            with conn.begin():
                yield conn
    finally:
        if held:
            assert lock is not None
            lock.release()


def _busy_timeout_s(url: Any) -> float:
    """How long a writer waits for another one's lock before "database is locked":
    sqlite:///FILE?timeout=SECONDS, 30 by default."""
    try:
        return float(url.query.get("timeout", 30))
    except (TypeError, ValueError):
        raise ValueError(
            f"timeout={url.query.get('timeout')!r} in the database URL is not a number of seconds"
        ) from None
