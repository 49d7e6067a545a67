"""Readiness: may this process take work? The database writable, the queue reachable, the disk
not full, the schema migrated, the clock right.

Each check says what is wrong and what to do, in words an operator on duty can act on. A check
with severity "fail" makes the process not ready (`/readyz` answers 503, `tingfeng ready` exits
1); a "warn" is reported but keeps it ready (a clock that went back on a single machine, a schema
already migrated by a newer version during a rolling upgrade). Every check runs again on every
call, so the signal clears by itself once the cause goes away.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, insert, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from tingfeng.db.models import DetectorState, FetchLog, Post
from tingfeng.settings import Settings

MB = 1024 * 1024


@dataclass
class Check:
    name: str
    ok: bool
    message: str
    severity: str = "fail"  # fail: not ready; warn: ready, but someone should look
    detail: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def failing(self) -> bool:
        return not self.ok and self.severity == "fail"

    def as_dict(self) -> dict[str, Any]:
        out = {"ok": self.ok, "message": self.message, "seconds": round(self.seconds, 4)}
        if not self.ok:
            out["severity"] = self.severity
        return out | self.detail


def _sqlite_file(engine: Engine) -> Path | None:
    if engine.dialect.name != "sqlite":
        return None
    database = make_url(str(engine.url)).database or ""
    return Path(database).expanduser().resolve() if database and database != ":memory:" else None


def _existing(path: Path) -> Path:
    """The nearest existing directory: a data directory not made yet lies on its parent's disk."""
    path = path.expanduser().resolve()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _is_read_only_error(exc: BaseException) -> bool:
    orig = getattr(exc, "orig", exc)
    return getattr(orig, "sqlstate", None) == "25006" or "read-only" in str(orig).lower()


class Readiness:
    """The checks of one process; built once (it keeps the queue client and the schema heads)."""

    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.settings = settings
        self.engine = engine
        self._lock = threading.Lock()
        self._storage: Any = None
        self._revisions: tuple[frozenset[str], frozenset[str]] | None = None

    # --- the database: reachable and writable ------------------------------------------------

    def database(self) -> Check:
        """Write a row and roll it back, within `readiness_timeout_s`: reachable, not locked,
        not read-only. Reading alone would call a read-only or locked database healthy."""
        try:
            self._write_probe()
        except SQLAlchemyError as exc:
            if self.engine.dialect.name == "postgresql" and _is_read_only_error(exc):
                # Connections keep the read-only default of the moment they were opened: renew
                # the pool (the application's too) so that, once the database is writable
                # again, no connection opened during the outage keeps failing writes.
                self.engine.dispose()
                try:
                    self._write_probe()
                    return Check("database", True, "writable (connections renewed)")
                except SQLAlchemyError as again:
                    exc = again
            return Check("database", False, self._explain(exc))
        return Check("database", True, f"reachable and writable ({self.engine.dialect.name})")

    def _write_probe(self) -> None:
        timeout = self.settings.readiness_timeout_s
        row = {
            "name": f"readyz:{os.getpid()}"[:40],
            "state": {},
            "updated_at": datetime.now(UTC),
        }
        with self.engine.connect() as conn:
            if self.engine.dialect.name == "sqlite":
                raw = conn.connection.driver_connection
                assert raw is not None
                # A short wait for the write lock here, the engine's usual one for everything else.
                (before,) = raw.execute("PRAGMA busy_timeout").fetchone()
                raw.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
                try:
                    conn = conn.execution_options(sqlite_immediate=True)
                    with conn.begin() as tx:
                        conn.execute(insert(DetectorState).values(row))
                        tx.rollback()
                finally:
                    raw.execute(f"PRAGMA busy_timeout={int(before)}")
                return
            with conn.begin() as tx:
                ms = int(timeout * 1000)
                conn.execute(text(f"SET LOCAL statement_timeout = {ms}"))
                conn.execute(text(f"SET LOCAL lock_timeout = {ms}"))
                conn.execute(insert(DetectorState).values(row))
                tx.rollback()

    def _explain(self, exc: SQLAlchemyError) -> str:
        said = str(getattr(exc, "orig", None) or exc).strip()
        orig = said.splitlines()[0] if said else repr(exc)
        lowered = orig.lower()
        where = _sqlite_file(self.engine) or self.engine.url.render_as_string(hide_password=True)
        sqlstate = getattr(getattr(exc, "orig", None), "sqlstate", None)
        if "no such table" in lowered or sqlstate == "42P01":  # 42P01: undefined table
            return f"the database {where} has no Tingfeng schema ({orig}): run `tingfeng init`."
        if "locked" in lowered or "lock timeout" in lowered or "statement timeout" in lowered:
            return (
                f"database locked: no write lock within {self.settings.readiness_timeout_s:g} s "
                f"on {where} ({orig}). Another process holds a long write transaction: find it "
                "(`fuser` on the file, pg_stat_activity on PostgreSQL) and let it finish or stop it."
            )
        if _is_read_only_error(exc) or "readonly" in lowered:
            return (
                f"database read-only: writes to {where} are refused ({orig}). Make it writable "
                "again (file and directory permissions, a read-only mount, "
                "default_transaction_read_only, a standby that was not promoted)."
            )
        if "disk" in lowered or "full" in lowered or "no space" in lowered:
            return f"database disk full ({orig}): free space on the disk of {where}."
        if "connect" in lowered or (isinstance(exc, DBAPIError) and exc.connection_invalidated):
            return f"database unreachable: {orig}. Start the database server or check the network."
        return f"database unreachable or failing: {orig}. Check the server and database_url."

    # --- the schema ----------------------------------------------------------------------------

    def _script(self) -> tuple[frozenset[str], frozenset[str]]:
        """This version's head revisions and every revision it knows (read once)."""
        if self._revisions is None:
            from alembic.script import ScriptDirectory

            from tingfeng.db.migrate import alembic_config

            config = alembic_config(self.engine.url.render_as_string(hide_password=False))
            script = ScriptDirectory.from_config(config)
            self._revisions = (
                frozenset(script.get_heads()),
                frozenset(rev.revision for rev in script.walk_revisions()),
            )
        return self._revisions

    def migrations(self) -> Check:
        from alembic.runtime.migration import MigrationContext

        heads, known = self._script()
        try:
            with self.engine.connect() as conn:
                current = frozenset(MigrationContext.configure(conn).get_current_heads())
        except SQLAlchemyError as exc:
            return Check("migrations", False, f"schema version unreadable: {self._explain(exc)}")
        detail = {"database": sorted(current), "code": sorted(heads)}
        if current == heads:
            return Check("migrations", True, "schema at head", detail=detail)
        if not current:
            message = "the database has no schema: run `tingfeng init` to create it."
            return Check("migrations", False, message, detail=detail)
        if not current <= known:
            # A rolling upgrade: a newer version migrated; this one can still read, so it
            # stays in service until it is upgraded in turn.
            message = (
                "the database was migrated by a newer Tingfeng: upgrade this machine's "
                "installation."
            )
            return Check("migrations", False, message, severity="warn", detail=detail)
        message = "the database schema is older than this version: run `tingfeng init`."
        return Check("migrations", False, message, detail=detail)

    # --- the queue -----------------------------------------------------------------------------

    def queue_storage(self) -> Any:
        """Huey's storage for this installation's queue, with short timeouts on Redis so a
        hung server makes a failing check instead of a hung probe."""
        with self._lock:
            if self._storage is None:
                from tingfeng.tasks import build_queue

                storage = build_queue(self.settings).huey.storage
                pool = getattr(storage, "pool", None)
                if pool is not None:  # Redis: no connection is made before the first command
                    timeout = self.settings.readiness_timeout_s
                    pool.connection_kwargs["socket_timeout"] = timeout
                    pool.connection_kwargs["socket_connect_timeout"] = timeout
                self._storage = storage
            return self._storage

    def queue(self) -> Check:
        where = self.settings.queue_url or str(self.settings.queue_file)
        try:
            storage = self.queue_storage()
            if self.settings.queue_url:
                storage.conn.ping()
            pending = int(storage.queue_size())
        except Exception as exc:  # redis, sqlite3 and OS errors alike
            what = "Start Redis or check queue_url" if self.settings.queue_url else (
                "Check the data directory (permissions, disk)"
            )  # fmt: skip
            reason = str(exc).rstrip(".") or repr(exc)
            return Check("queue", False, f"queue unreachable at {where}: {reason}. {what}.")
        return Check("queue", True, "reachable", detail={"pending": pending})

    # --- the disk ------------------------------------------------------------------------------

    def disk_paths(self) -> list[Path]:
        """The directories Tingfeng writes to on this machine, one per file system."""
        paths = [self.settings.data_dir]
        db_file = _sqlite_file(self.engine)
        if db_file is not None:
            paths.append(db_file.parent)
        out: list[Path] = []
        devices: set[int] = set()
        for path in paths:
            existing = _existing(path)
            device = existing.stat().st_dev
            if device not in devices:
                devices.add(device)
                out.append(existing)
        return out

    def disk(self) -> Check:
        need = self.settings.disk_free_min_mb * MB
        free: dict[str, int] = {}
        full: list[str] = []
        for path in self.disk_paths():
            left = shutil.disk_usage(path).free
            free[str(path)] = left
            if left < need:
                full.append(f"{left // MB} MB free under {path}")
        detail = {"free_bytes": free}
        if full:
            return Check(
                "disk",
                False,
                f"disk full: {'; '.join(full)} (needs {self.settings.disk_free_min_mb} MB). Free "
                "space there (old reports, evidence, logs, backups) or grow the disk; "
                "disk_free_min_mb sets the limit.",
                detail=detail,
            )
        return Check("disk", True, "enough free space", detail=detail)

    # --- the clock -----------------------------------------------------------------------------

    def clock(self) -> Check:
        """PostgreSQL: this machine's clock against the server's. SQLite has no other clock, so
        records dated in the future mean this clock went back (a warning: it clears once the
        clock passes them)."""
        limit = self.settings.clock_skew_max_s
        try:
            with self.engine.connect() as conn:
                if self.engine.dialect.name == "postgresql":
                    before = time.time()
                    server = conn.execute(text("SELECT clock_timestamp()")).scalar_one()
                    after = time.time()
                    skew = server.timestamp() - (before + after) / 2
                    detail = {"skew_s": round(skew, 3)}
                    if abs(skew) > limit:
                        ahead = "behind" if skew > 0 else "ahead of"
                        return Check(
                            "clock",
                            False,
                            f"clock wrong: this machine is {abs(skew):.0f} s {ahead} the "
                            f"database server (limit {limit:g} s). Synchronise the clocks "
                            "(chrony or systemd-timesyncd on every machine).",
                            detail=detail,
                        )
                    return Check("clock", True, "in step with the database server", detail=detail)
                newest = _newest_record(conn)
        except SQLAlchemyError as exc:
            return Check("clock", False, f"clock not checked: {self._explain(exc)}", "warn")
        now = datetime.now(UTC)
        ahead_s = (newest - now).total_seconds() if newest else 0.0
        detail = {"skew_s": round(max(ahead_s, 0.0), 3)}
        if ahead_s > limit:
            return Check(
                "clock",
                False,
                f"clock went back: the newest record is dated {ahead_s:.0f} s in the future "
                f"({newest:%Y-%m-%d %H:%M:%S} UTC). Check the time (timedatectl) and its "
                "synchronisation; times recorded meanwhile may be out of order.",
                severity="warn",
                detail=detail,
            )
        return Check("clock", True, "no record dated in the future", detail=detail)

    # --- all of them -----------------------------------------------------------------------------

    def checks(self) -> dict[str, Callable[[], Check]]:
        return {
            "database": self.database,
            "migrations": self.migrations,
            "queue": self.queue,
            "disk": self.disk,
            "clock": self.clock,
        }

    def run(self) -> list[Check]:
        out = []
        for name, check in self.checks().items():
            started = time.perf_counter()
            try:
                result = check()
            except Exception as exc:  # a check must report, never take the probe down
                result = Check(name, False, f"{name} check failed: {exc!r}")
            result.seconds = time.perf_counter() - started
            out.append(result)
        return out


def _newest_record(conn: Any) -> datetime | None:
    """The newest time this installation wrote: its last run or push, its last post (by id)."""
    times = [
        conn.execute(select(FetchLog.finished_at).order_by(FetchLog.id.desc()).limit(1)).scalar(),
        conn.execute(select(Post.fetched_at).order_by(Post.id.desc()).limit(1)).scalar(),
    ]
    found = [t for t in times if t is not None]
    return max(found) if found else None


def summary(checks: list[Check]) -> dict[str, Any]:
    """The JSON of /readyz and `tingfeng ready --json`."""
    failing = [c for c in checks if c.failing]
    warnings = [c for c in checks if not c.ok and not c.failing]
    out: dict[str, Any] = {
        "status": "fail" if failing else "ok",
        "checks": {c.name: c.as_dict() for c in checks},
    }
    if failing:
        out["failing"] = [c.name for c in failing]
        out["message"] = " ".join(c.message for c in failing)
    if warnings:
        out["warnings"] = [c.name for c in warnings]
    return out
