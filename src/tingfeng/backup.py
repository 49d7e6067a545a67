"""Backup and restore of a whole installation, between SQLite and PostgreSQL in any direction.

A backup is one zip archive:

- `manifest.json`: the format, the Tingfeng version, the schema revision, and for every member
  its size and SHA-256 (for tables also the columns and the row count);
- `db/TABLE.jsonl`: each table's rows, one JSON array a line, in the portable form of
  `tingfeng.db.portable` (the full-text index is not kept: it is rebuilt from the posts);
- `files/evidence/…`, `files/reports/…`: the evidence files (WARC, screenshots) and the
  generated reports; `files/data/secret_key` and `files/dictionary/user_dict.txt`: the key
  that signs links and keys author pseudonyms, and the user dictionary, where they exist.

The tables are read in one snapshot (a read-only repeatable-read transaction on PostgreSQL,
one read transaction on SQLite), so a backup taken while Tingfeng runs is consistent.

A restore checks every checksum before it touches anything, loads into an empty database in one
transaction, dumps what it loaded again and compares it with the archive byte for byte, moves
PostgreSQL's id sequences past the largest ids, rebuilds the full-text index and only then
commits. A backup of an older schema revision is loaded at that revision and then upgraded.
`compare` (tingfeng.db.compare) checks two databases against each other row by row.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import IO, Any

from sqlalchemy import Connection, Engine, inspect

from tingfeng import __version__
from tingfeng.db import portable
from tingfeng.db.compare import Comparison, TableComparison, compare
from tingfeng.db.engine import write_transaction
from tingfeng.db.portable import TableSpec
from tingfeng.problems import ProblemsError
from tingfeng.settings import Settings

# `compare` is part of this module's service: the check after a restore, between two databases.
__all__ = [
    "BackupError",
    "Comparison",
    "Restored",
    "TableComparison",
    "backup",
    "compare",
    "known_revisions",
    "migrate_to",
    "restore",
    "verify",
]

FORMAT = "tingfeng-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
# Level 1: the dump is text that compresses well even so, and level 6 took three times longer.
COMPRESSLEVEL = 1
# Already compressed: stored as they are.
_STORED_SUFFIXES = (".gz", ".png", ".jpg", ".jpeg", ".zip", ".docx", ".xlsx", ".pdf")
_CHUNK = 1 << 20

Say = Callable[[str], None]


class BackupError(ProblemsError):
    """A backup that cannot be written, read or restored; the message says why and what to do."""

    what = "backup"


# --- the schema revision -----------------------------------------------------------------------


def _script() -> Any:
    from alembic.script import ScriptDirectory

    from tingfeng.db.migrate import alembic_config

    return ScriptDirectory.from_config(alembic_config("sqlite://"))


def known_revisions() -> list[str]:
    """Every schema revision this version knows, oldest first (the last is the newest)."""
    return [r.revision for r in reversed(list(_script().walk_revisions()))]


def current_revision(conn: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(conn).get_current_revision()


def migrate_to(engine: Engine, revision: str) -> None:
    """Bring the schema to `revision` (as `tingfeng.db.migrate.upgrade` does to the newest)."""
    from alembic import command

    from tingfeng.db.migrate import alembic_config

    config = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, revision)


# --- files of the data directory ---------------------------------------------------------------


def _areas(settings: Settings) -> dict[str, tuple[Path, frozenset[str] | None]]:
    """Each kind of file kept: its directory, and the only names taken there (None: all)."""
    from tingfeng.cases.evidence import evidence_root

    dictionary = Path(settings.user_dict_file)
    # As tingfeng.reports.service.reports_dir, whose import loads the report renderers (seconds).
    reports = Path(settings.reports_dir or Path(settings.data_dir) / "reports")
    return {
        "evidence": (Path(evidence_root(settings)), None),
        "reports": (reports, None),
        "data": (Path(settings.data_dir), frozenset({"secret_key"})),
        "dictionary": (dictionary.parent, frozenset({dictionary.name})),
    }


def _files(settings: Settings, skip: Path | None = None) -> Iterator[tuple[str, str, Path]]:
    """(area, path relative to it, file) for every file to keep; `skip`: the archive being
    written, should it be written inside one of these directories."""
    for area, (root, names) in _areas(settings).items():
        if not root.is_dir():
            continue
        found = (root / n for n in sorted(names)) if names is not None else sorted(root.rglob("*"))
        for path in found:
            # `.name.part`: a capture still being written (tingfeng.cases.evidence._new_file).
            if path.is_symlink() or not path.is_file() or path.name.endswith(".part"):
                continue
            if skip is not None and path.resolve() == skip:
                continue
            rel = path.relative_to(root).as_posix()
            yield area, ("user_dict.txt" if area == "dictionary" else rel), path


def _target(settings: Settings, area: str, rel: str) -> Path:
    """Where a file of the archive goes in this installation; refuses paths that leave it."""
    areas = _areas(settings)
    if area not in areas:
        raise BackupError(f"the archive holds a file of an unknown kind {area!r}.")
    root, names = areas[area]
    if area == "dictionary":
        return Path(settings.user_dict_file)
    parts = PurePosixPath(rel).parts
    if not parts or rel.startswith("/") or ".." in parts or (names and rel not in names):
        raise BackupError(f"the archive names a file outside its place: {area}/{rel}.")
    return root.joinpath(*parts)


# --- writing -----------------------------------------------------------------------------------


class _Member:
    """A member being written: its size and SHA-256 as it goes."""

    def __init__(self, handle: IO[bytes]) -> None:
        self._handle = handle
        self._digest = hashlib.sha256()
        self.bytes = 0

    def write(self, data: bytes) -> None:
        self._digest.update(data)
        self.bytes += len(data)
        self._handle.write(data)

    @property
    def sha256(self) -> str:
        return self._digest.hexdigest()


@contextmanager
def _member(
    zf: zipfile.ZipFile, name: str, *, compress: bool = True, mtime: float | None = None
) -> Iterator[_Member]:
    stamp = time.localtime(max(mtime or time.time(), 315532800))  # zip dates start in 1980
    info = zipfile.ZipInfo(name, date_time=stamp[:6])
    info.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    # Python 3.13 names it `compress_level` and keeps `_compresslevel` as an alias.
    info._compresslevel = COMPRESSLEVEL  # type: ignore[attr-defined]
    with zf.open(info, "w", force_zip64=True) as handle:
        yield _Member(handle)


def backup(
    engine: Engine, settings: Settings, out: Path, *, say: Say | None = None
) -> dict[str, Any]:
    """Write the archive to `out` (via `out.partial`, so a file of that name is always whole);
    returns a summary."""
    say = say or (lambda _line: None)
    started = time.perf_counter()
    out = Path(out)
    if out.is_dir():
        raise BackupError(f"{out} is a directory: give the name of the archive to write.")
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "tingfeng": __version__,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "search_index": "not kept; rebuilt from the posts on restore",
    }
    # Owner only: the archive holds password hashes and the installation's secret key.
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with (
            os.fdopen(fd, "wb") as handle,
            zipfile.ZipFile(handle, "w", allowZip64=True) as zf,
        ):
            manifest |= _write_tables(engine, zf, say)
            manifest |= _write_files(settings, zf, say, skip=partial.resolve())
            zf.writestr(MANIFEST, json.dumps(manifest, ensure_ascii=False, indent=1))
        os.replace(partial, out)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    seconds = time.perf_counter() - started
    rows = sum(t["rows"] for t in manifest["tables"])
    return {
        "path": str(out),
        "bytes": out.stat().st_size,
        "schema_revision": manifest["database"]["schema_revision"],
        "tables": len(manifest["tables"]),
        "rows": rows,
        "files": len(manifest["files"]),
        "file_bytes": sum(f["bytes"] for f in manifest["files"]),
        "seconds": round(seconds, 3),
        "rows_per_s": round(rows / seconds) if seconds else None,
    }


def _write_tables(engine: Engine, zf: zipfile.ZipFile, say: Say) -> dict[str, Any]:
    tables = []
    with engine.connect() as conn:
        portable.snapshot(conn)
        revision = current_revision(conn)
        if revision is None:
            raise BackupError(
                "this database has no Tingfeng schema (no alembic_version): check --db, or run "
                "`tingfeng init` if it is meant to be a new installation."
            )
        if revision not in known_revisions():
            raise BackupError(
                f"this database is at schema revision {revision}, which this version of Tingfeng "
                "does not know: back it up with the version that runs it."
            )
        for spec in portable.table_specs(conn):
            member = f"db/{spec.name}.jsonl"
            rows = 0
            with _member(zf, member) as done:
                for batch in portable.read_rows(conn, spec):
                    done.write(b"".join(portable.encode(values) for values in batch))
                    rows += len(batch)
            tables.append(
                spec.as_dict()
                | {"member": member, "rows": rows, "bytes": done.bytes, "sha256": done.sha256}
            )
            say(f"{spec.name}: {rows} rows")
        conn.rollback()
    return {
        "database": {"dialect": engine.dialect.name, "schema_revision": revision},
        "tables": tables,
    }


def _write_files(
    settings: Settings, zf: zipfile.ZipFile, say: Say, *, skip: Path
) -> dict[str, Any]:
    files = []
    for area, rel, path in _files(settings, skip):
        member = f"files/{area}/{rel}"
        stat = path.stat()
        with (
            path.open("rb") as source,
            _member(
                zf, member, compress=not path.name.endswith(_STORED_SUFFIXES), mtime=stat.st_mtime
            ) as done,
        ):
            for block in iter(lambda: source.read(_CHUNK), b""):
                done.write(block)
        files.append(
            {
                "area": area,
                "path": rel,
                "member": member,
                "bytes": done.bytes,
                "sha256": done.sha256,
                "mode": stat.st_mode & 0o777,
            }
        )
    if files:
        say(f"files: {len(files)} ({sum(f['bytes'] for f in files)} bytes)")
    roots = {area: str(root.resolve()) for area, (root, _) in _areas(settings).items()}
    return {"files": files, "places": roots}


# --- checking ----------------------------------------------------------------------------------


def _open(path: Path) -> zipfile.ZipFile:
    if not path.exists():
        raise BackupError(f"{path} does not exist: check the path of the backup.")
    if path.is_dir():
        raise BackupError(f"{path} is a directory: give the backup archive itself.")
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise BackupError(
            f"{path} is not a Tingfeng backup, or it is damaged (cut short?): {exc}. Use the "
            "archive `tingfeng backup --out` wrote, copied whole."
        ) from exc


def _manifest(zf: zipfile.ZipFile, path: Path) -> dict[str, Any]:
    try:
        data = json.loads(zf.read(MANIFEST))
    except KeyError as exc:
        raise BackupError(
            f"{path} is a zip archive but not a Tingfeng backup (no {MANIFEST})."
        ) from exc
    except (ValueError, zipfile.BadZipFile, zlib.error) as exc:
        raise BackupError(f"the {MANIFEST} of {path} is damaged ({exc}).") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise BackupError(
            f"{path} is a zip archive but not a Tingfeng backup ({MANIFEST} says otherwise)."
        )
    if int(data.get("format_version", 0)) > FORMAT_VERSION:
        raise BackupError(
            f"{path} was written by a newer Tingfeng (backup format {data.get('format_version')}, "
            f"this version reads {FORMAT_VERSION}): restore it with that version or newer."
        )
    return data


def _members(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    return [*manifest["tables"], *manifest["files"]]


def _stream(zf: zipfile.ZipFile, path: Path, member: str) -> Iterator[bytes]:
    try:
        with zf.open(member) as handle:
            yield from iter(lambda: handle.read(_CHUNK), b"")
    except KeyError as exc:
        raise BackupError(f"{path} is incomplete: {member} is missing.") from exc
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
        raise BackupError(f"{path} is damaged: {member} cannot be read ({exc}).") from exc


def verify(path: Path, *, say: Say | None = None) -> dict[str, Any]:
    """Check the archive without restoring: a backup, complete, every checksum right.
    Returns its manifest; BackupError says what is wrong."""
    path = Path(path)
    with _open(path) as zf:
        manifest = _manifest(zf, path)
        listed = {m["member"] for m in _members(manifest)}
        extra = sorted(set(zf.namelist()) - listed - {MANIFEST})
        if extra:
            raise BackupError(
                f"{path} holds members its manifest does not list: {', '.join(extra[:5])}."
            )
        for entry in _members(manifest):
            digest, size = hashlib.sha256(), 0
            for block in _stream(zf, path, entry["member"]):
                digest.update(block)
                size += len(block)
            if size != entry["bytes"] or digest.hexdigest() != entry["sha256"]:
                raise BackupError(
                    f"{path} is damaged: {entry['member']} does not match its checksum in the "
                    "manifest. Use another copy of the backup."
                )
        if say:
            rows = sum(t["rows"] for t in manifest["tables"])
            say(f"{path}: {len(manifest['tables'])} tables, {rows} rows, "
                f"files: {len(manifest['files'])}; every checksum matches")  # fmt: skip
    return manifest


# --- restoring ---------------------------------------------------------------------------------


@dataclass
class Restored:
    tables: list[dict[str, Any]] = field(default_factory=list)
    from_revision: str = ""
    to_revision: str = ""
    indexed_posts: int = 0
    sequences: int = 0
    report_paths: int = 0
    files_written: int = 0
    files_present: int = 0
    conflicts: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        rows = sum(t["rows"] for t in self.tables)
        return {
            "tables": self.tables,
            "rows": rows,
            "schema_revision": {"backup": self.from_revision, "database": self.to_revision},
            "indexed_posts": self.indexed_posts,
            "sequences_moved": self.sequences,
            "report_paths_moved": self.report_paths,
            "files_written": self.files_written,
            "files_already_there": self.files_present,
            "conflicts": self.conflicts,
            "notes": self.notes,
            "seconds": round(self.seconds, 3),
            "rows_per_s": round(rows / self.seconds) if self.seconds else None,
        }


def _prepare_target(engine: Engine, revision: str) -> None:
    """An empty database at the backup's revision, or a clear refusal."""
    url = engine.url.render_as_string(hide_password=True)
    with engine.connect() as conn:
        current = current_revision(conn)
        names = [n for n in inspect(conn).get_table_names() if portable.is_dumped(n)]
        specs = portable.table_specs(conn) if current else []
        full = portable.tables_with_rows(conn, specs)
    if current is None and names:
        raise BackupError(
            f"{url} already has tables ({', '.join(names[:5])}) but no Tingfeng schema: restore "
            "into a new, empty database."
        )
    if full:
        raise BackupError(
            f"{url} already holds data (in {', '.join(full[:5])}): a restore never mixes with or "
            "replaces data. Restore into a new, empty database (for SQLite a new file name; for "
            "PostgreSQL `createdb`), check it, then point Tingfeng at it."
        )
    if current is not None and current != revision:
        raise BackupError(
            f"{url} is at schema revision {current} and the backup at {revision}: restore into a "
            "new database without a schema (the restore creates it)."
        )
    if current is None:
        migrate_to(engine, revision)


_DECODER = json.JSONDecoder()


def _batches(zf: zipfile.ZipFile, path: Path, member: str) -> Iterator[list[list[Any]]]:
    """The rows of a table member, in batches (the archive was checked before)."""
    batch: list[list[Any]] = []
    decode = _DECODER.decode
    try:
        with zf.open(member) as raw, io.TextIOWrapper(raw, encoding="utf-8", newline="\n") as lines:
            for line in lines:
                batch.append(decode(line))
                if len(batch) >= portable.BATCH:
                    yield batch
                    batch = []
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as exc:
        raise BackupError(f"{path} is damaged: {member} cannot be read ({exc}).") from exc
    if batch:
        yield batch


def _check_columns(archived: TableSpec, here: TableSpec | None) -> None:
    if here is None:
        raise BackupError(f"the database has no table {archived.name} for the backup's rows.")
    if sorted(archived.columns) != sorted(here.columns):
        raise BackupError(
            f"table {archived.name} has other columns here than in the backup "
            f"({sorted(archived.columns)} against {sorted(here.columns)})."
        )


def _dump_digest(conn: Connection, spec: TableSpec) -> tuple[int, str]:
    digest, rows = hashlib.sha256(), 0
    for batch in portable.read_rows(conn, spec):
        digest.update(b"".join(portable.encode(values) for values in batch))
        rows += len(batch)
    return rows, digest.hexdigest()


def _move_report_paths(conn: Connection, manifest: dict[str, Any], settings: Settings) -> int:
    """Reports keep absolute paths: point them at this installation's reports directory."""
    if not any(t["name"] == "reports" for t in manifest["tables"]):
        return 0
    old = manifest.get("places", {}).get("reports")
    new = str(_areas(settings)["reports"][0].resolve())
    if not old or old == new:
        return 0
    moved = 0
    for rid, path in conn.exec_driver_sql("SELECT id, path FROM reports").all():
        if path and path.startswith(old + os.sep):
            conn.exec_driver_sql(
                "UPDATE reports SET path = ? WHERE id = ?"
                if conn.dialect.name == "sqlite"
                else "UPDATE reports SET path = %s WHERE id = %s",
                (new + path[len(old) :], rid),
            )
            moved += 1
    return moved


def restore(engine: Engine, settings: Settings, path: Path, *, say: Say | None = None) -> Restored:
    """Restore the archive into an empty database (its schema is made here) and this
    installation's data directory."""
    say = say or (lambda _line: None)
    started = time.perf_counter()
    path = Path(path)
    manifest = verify(path, say=say)
    revision = str(manifest["database"]["schema_revision"])
    known = known_revisions()
    if revision not in known:
        raise BackupError(
            f"the backup is at schema revision {revision}, newer than this version of Tingfeng "
            f"knows (up to {known[-1]}): upgrade Tingfeng, then restore."
        )
    _prepare_target(engine, revision)
    result = Restored(from_revision=revision)
    specs = [TableSpec.from_dict(t) for t in manifest["tables"]]
    with _open(path) as zf, write_transaction(engine) as conn:
        here = {s.name: s for s in portable.table_specs(conn)}
        for spec in specs:
            _check_columns(spec, here.get(spec.name))
        portable.defer_foreign_keys(conn)
        for spec, entry in zip(specs, manifest["tables"], strict=True):
            try:
                rows = portable.write_rows(conn, spec, _batches(zf, path, entry["member"]))
            except BackupError:
                raise
            except Exception as exc:
                raise BackupError(f"could not load table {spec.name}: {exc}") from exc
            say(f"{spec.name}: {rows} rows loaded")
        # Read back what was loaded: the same bytes as the archive, or nothing is committed.
        for spec, entry in zip(specs, manifest["tables"], strict=True):
            rows, digest = _dump_digest(conn, spec)
            if (rows, digest) != (entry["rows"], entry["sha256"]):
                raise BackupError(
                    f"table {spec.name} reads back differently than it was backed up ({rows} rows "
                    f"against {entry['rows']}): nothing was restored."
                )
            result.tables.append({"name": spec.name, "rows": rows, "checked": True})
        result.sequences = portable.reset_sequences(conn, specs)
        result.indexed_posts = portable.rebuild_search_index(conn) if "posts" in here else 0
        say(f"search index rebuilt: {result.indexed_posts} posts")
        result.report_paths = _move_report_paths(conn, manifest, settings)
    if revision != known[-1]:
        say(f"upgrading the schema from {revision} to {known[-1]}")
        migrate_to(engine, "head")
    result.to_revision = known[-1]
    _restore_files(settings, path, manifest, result)
    if result.conflicts:
        result.notes.append(
            f"{len(result.conflicts)} files were already there with other contents and were "
            "kept as they are; move them away and restore again to take the backup's."
        )
    result.seconds = time.perf_counter() - started
    return result


def _restore_files(
    settings: Settings, path: Path, manifest: dict[str, Any], result: Restored
) -> None:
    from tingfeng.cases.evidence import sha256_file

    with _open(path) as zf:
        for entry in manifest["files"]:
            target = _target(settings, entry["area"], entry["path"])
            if target.exists():
                if sha256_file(target) == entry["sha256"]:
                    result.files_present += 1
                else:
                    result.conflicts.append(str(target))
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(f".{target.name}.restoring")
            digest = hashlib.sha256()
            try:
                with partial.open("wb") as handle:
                    for block in _stream(zf, path, entry["member"]):
                        digest.update(block)
                        handle.write(block)
                if digest.hexdigest() != entry["sha256"]:
                    raise BackupError(f"{entry['member']} changed while it was restored.")
                partial.chmod(int(entry.get("mode") or 0o600))
                os.replace(partial, target)
            except BaseException:
                partial.unlink(missing_ok=True)
                raise
            result.files_written += 1
