"""Database faults a person can act on: locked, read-only, full, out of reach.

A write that fails for one of these reasons is rolled back whole, so nothing of it is kept and
the same request or command can simply be repeated once the cause is gone. `fault_of` turns the
driver's exception (SQLite or PostgreSQL, however SQLAlchemy wrapped it) into a sentence saying
what is wrong and what to do; the web application answers it with 503 and Retry-After
(tingfeng.web.unavailable), the command line prints it instead of a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass

# What to do, per kind of fault.
ADVICE = {
    "locked": "another process holds the database's write lock longer than the busy timeout "
    "(a long import, a backup or a migration?); retry when it is done",
    "read_only": "the database accepts no writes now (read-only mode, a standby server or a "
    "read-only file); retry when it is writable again",
    "disk_full": "the disk holding the database is full or refuses the write; free space, "
    "then retry",
    "unavailable": "the database server cannot be reached or is restarting; retry in a moment "
    "and check that it is running",
}
# PostgreSQL SQLSTATEs, by the kind of fault they are.
_SQLSTATES = {
    "55P03": "locked",  # lock_not_available (lock_timeout)
    "25006": "read_only",  # read_only_sql_transaction
    "53100": "disk_full",  # disk_full
    "57P01": "unavailable",  # admin_shutdown
    "57P02": "unavailable",  # crash_shutdown
    "57P03": "unavailable",  # cannot_connect_now (starting up, shutting down)
    "08000": "unavailable",  # connection_exception and the ones below
    "08003": "unavailable",
    "08006": "unavailable",
    "08001": "unavailable",
    "08004": "unavailable",
}
# SQLite's messages, by the kind of fault they are.
_SQLITE = (
    ("database is locked", "locked"),
    ("database table is locked", "locked"),
    ("readonly database", "read_only"),
    ("database or disk is full", "disk_full"),
    ("disk i/o error", "disk_full"),  # a write refused by the file system (a size limit)
    ("unable to open database", "unavailable"),
)


@dataclass(frozen=True)
class DatabaseFault:
    kind: str  # locked, read_only, disk_full, unavailable
    detail: str  # the driver's own first line, e.g. "database is locked"

    @property
    def message(self) -> str:
        return f"{self.detail}: {ADVICE[self.kind]}. Nothing of the failed step was stored."


def _causes(exc: BaseException) -> list[BaseException]:
    """The exception, the driver's exception SQLAlchemy wraps, and their causes."""
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop(0)
        if e is None or any(e is s for s in seen):
            continue
        seen.append(e)
        todo.extend([getattr(e, "orig", None), e.__cause__, e.__context__])
    return seen


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or exc.__class__.__name__
    return text.splitlines()[0][:300]


def fault_of(exc: BaseException) -> DatabaseFault | None:
    """The fault behind `exc`, or None when it is something else (a bug, bad input)."""
    import sqlite3

    for e in _causes(exc):
        sqlstate = getattr(e, "sqlstate", None)
        if sqlstate in _SQLSTATES:
            return DatabaseFault(_SQLSTATES[sqlstate], _first_line(e))
        if isinstance(e, sqlite3.OperationalError | sqlite3.DatabaseError):
            text = str(e).lower()
            for needle, kind in _SQLITE:
                if needle in text:
                    return DatabaseFault(kind, _first_line(e))
    # psycopg: a connection refused or cut off carries no SQLSTATE.
    for e in _causes(exc):
        if (
            e.__class__.__module__.startswith("psycopg")
            and e.__class__.__name__ in ("OperationalError", "InterfaceError")
            and getattr(e, "sqlstate", None) is None
        ):
            return DatabaseFault("unavailable", _first_line(e))
    return None
