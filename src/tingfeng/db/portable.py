"""Every table's rows in a form that is the same on SQLite and PostgreSQL (for backups).

A table is described by reflecting the database, not by the models, so a database at any schema
revision this version knows can be read. Each row becomes a JSON array of its column values:

- times as ISO 8601 in UTC with microseconds (`2026-11-22T08:00:00.123456+00:00`);
- JSON columns as the JSON text exactly as stored, so SQL NULL and JSON `null` stay apart and
  nothing is re-serialised on the way;
- booleans as true/false, binary values as base64, other values as they are.

Rows come ordered by primary key (text keys in byte order on both databases), so dumping a
restored database gives back the very same bytes: that is how a restore proves it is complete.
Values are read and written through the database drivers directly (COPY on PostgreSQL): at a
million posts the per-row work of the ORM layer would be most of the time.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from graphlib import CycleError, TopologicalSorter
from itertools import count
from typing import Any

from sqlalchemy import Connection, inspect
from sqlalchemy import types as sat

# Derived from posts and rebuilt on restore (tingfeng.search.index): never dumped.
SEARCH_INDEX_TABLES = ("post_fts", "post_search")
# The schema revision is recorded on its own; the migrations make this table.
SCHEMA_TABLE = "alembic_version"
BATCH = 2000

_cursor_names = count(1)


class PortableError(ValueError):
    """A table or value that cannot be carried between databases; the message says which."""


@dataclass(frozen=True)
class TableSpec:
    """A table as the backup sees it: columns with their portable kinds, and its key."""

    name: str
    columns: tuple[tuple[str, str], ...]  # (name, kind)
    primary_key: tuple[str, ...]

    @property
    def column_names(self) -> list[str]:
        return [name for name, _ in self.columns]

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "columns": [list(c) for c in self.columns],
            "primary_key": list(self.primary_key),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TableSpec:
        return cls(
            str(data["name"]),
            tuple((str(n), str(k)) for n, k in data["columns"]),
            tuple(str(c) for c in data["primary_key"]),
        )


def kind_of(type_: Any) -> str:
    """The portable kind of a reflected column type."""
    # Order matters: Boolean and Float are checked before the wider families they belong to.
    checks: list[tuple[type, str]] = [
        (sat.Boolean, "bool"),
        (sat.JSON, "json"),
        (sat.DateTime, "datetime"),
        (sat.Date, "date"),
        (sat.Integer, "int"),
        (sat.Float, "float"),
        (sat.Numeric, "decimal"),
        (sat.LargeBinary, "bytes"),
        (sat.String, "text"),
        (sat.Uuid, "text"),
    ]
    for cls, kind in checks:
        if isinstance(type_, cls):
            return kind
    raise PortableError(f"no portable form for the column type {type_!r}")


def is_dumped(name: str) -> bool:
    """Whether a table's rows go into a backup (not the schema version, not the search index)."""
    return not (
        name == SCHEMA_TABLE
        or name.startswith("sqlite_")
        or any(name == t or name.startswith(f"{t}_") for t in SEARCH_INDEX_TABLES)
    )


def table_specs(conn: Connection) -> list[TableSpec]:
    """The tables to carry, parents before the tables that refer to them."""
    insp = inspect(conn)
    names = sorted(n for n in insp.get_table_names() if is_dumped(n))
    graph: dict[str, set[str]] = {}
    specs: dict[str, TableSpec] = {}
    for name in names:
        columns = []
        for col in insp.get_columns(name):
            try:
                columns.append((col["name"], kind_of(col["type"])))
            except PortableError as exc:
                raise PortableError(f"table {name}, column {col['name']}: {exc}") from exc
        pk = tuple(insp.get_pk_constraint(name).get("constrained_columns") or ())
        specs[name] = TableSpec(name, tuple(columns), pk)
        # A table referring to itself (departments.parent_id) is loaded in one statement
        # (PostgreSQL) or with checks deferred to commit (SQLite), so its own edge is dropped.
        graph[name] = {
            fk["referred_table"]
            for fk in insp.get_foreign_keys(name)
            if fk["referred_table"] != name and fk["referred_table"] in names
        }
    try:
        order = list(TopologicalSorter(graph).static_order())
    except CycleError:  # tables referring to each other: the deferred checks cover it
        order = names
    return [specs[n] for n in order]


# --- reading ----------------------------------------------------------------------------------


def snapshot(conn: Connection) -> None:
    """Begin a transaction in which every table is read as of one moment (read-only on
    PostgreSQL; on SQLite the first read fixes the snapshot)."""
    conn.begin()
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _iso(value: datetime) -> str:
    if value.tzinfo is None:  # SQLite keeps UTC without a zone (tingfeng.db.models.UtcDateTime)
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def _from_datetime(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, str):
        # SQLite's usual text ("2026-11-22 08:00:00.123456", naive UTC) turned around without
        # parsing: at a million posts parsing was a third of the backup's time.
        if len(value) == 26 and value[10] == " " and value[19] == ".":
            return f"{value[:10]}T{value[11:]}+00:00"
        value = datetime.fromisoformat(value)
    return _iso(value)


def _from_date(value: Any) -> Any:
    return value.isoformat() if isinstance(value, date) else value


def _from_bool(value: Any) -> Any:
    return None if value is None else bool(value)


def _from_float(value: Any) -> Any:
    return None if value is None else float(value)


def _from_decimal(value: Any) -> Any:
    return None if value is None else str(value)


def _from_bytes(value: Any) -> Any:
    return None if value is None else base64.b64encode(bytes(value)).decode("ascii")


_READERS: dict[str, Callable[[Any], Any]] = {
    "datetime": _from_datetime,
    "date": _from_date,
    "bool": _from_bool,
    "float": _from_float,
    "decimal": _from_decimal,
    "bytes": _from_bytes,
}


def _select_sql(conn: Connection, spec: TableSpec) -> str:
    pg = conn.dialect.name == "postgresql"
    kinds = dict(spec.columns)

    def column(name: str) -> str:
        # JSON as its stored text: psycopg would parse it, SQL NULL and JSON null would merge,
        # and SQLite (numeric affinity) may hold a JSON number as a number.
        if kinds[name] == "json":
            return f"CAST({_q(name)} AS TEXT)"
        return _q(name)

    def key(name: str) -> str:
        # Text keys in byte order, as SQLite's BINARY collation orders them.
        return (
            f'{column(name)} COLLATE "C"'
            if pg and kinds[name] in ("text", "json")
            else column(name)
        )

    keys = spec.primary_key or tuple(spec.column_names)
    return (
        f"SELECT {', '.join(column(n) for n in spec.column_names)} FROM {_q(spec.name)} "
        f"ORDER BY {', '.join(key(k) for k in keys)}"
    )


def read_rows(conn: Connection, spec: TableSpec, batch: int = BATCH) -> Iterator[list[list[Any]]]:
    """The table's rows in portable form, in batches, ordered by primary key."""
    raw = conn.connection.driver_connection
    assert raw is not None
    if conn.dialect.name == "postgresql":
        # A server-side cursor: a million rows are never held at once.
        cursor = raw.cursor(name=f"tf_rows_{next(_cursor_names)}")
        cursor.itersize = batch
    else:
        cursor = raw.cursor()
    convert = [(i, _READERS[k]) for i, (_, k) in enumerate(spec.columns) if k in _READERS]
    try:
        cursor.execute(_select_sql(conn, spec))
        while rows := cursor.fetchmany(batch):
            out = []
            for row in rows:
                values = list(row)
                for i, fn in convert:
                    values[i] = fn(values[i])
                out.append(values)
            yield out
    finally:
        cursor.close()


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def encode(values: Sequence[Any]) -> bytes:
    """One row as one line of the dump."""
    return _ENCODER.encode(values).encode("utf-8") + b"\n"


# --- writing ----------------------------------------------------------------------------------


def _sqlite_time(value: Any) -> Any:
    if value is None:
        return None
    # The text form SQLAlchemy's SQLite DateTime writes: naive UTC, space, microseconds.
    if len(value) == 32 and value.endswith("+00:00") and value[10] == "T":
        return f"{value[:10]} {value[11:26]}"
    moment = datetime.fromisoformat(value).astimezone(UTC).replace(tzinfo=None)
    return moment.isoformat(" ", "microseconds")


def _to_bytes(value: Any) -> Any:
    return None if value is None else base64.b64decode(value)


def _to_decimal(value: Any) -> Any:
    return None if value is None else Decimal(value)


def _writers(dialect: str) -> dict[str, Callable[[Any], Any]]:
    if dialect == "sqlite":
        # A decimal stays text: SQLite's numeric affinity makes a number of it.
        return {"bytes": _to_bytes, "datetime": _sqlite_time}
    # COPY takes times and dates as the ISO text they are.
    return {"bytes": _to_bytes, "decimal": _to_decimal}


def write_rows(conn: Connection, spec: TableSpec, batches: Iterable[list[list[Any]]]) -> int:
    """Insert portable rows into the (empty) table; returns how many."""
    writers = _writers(conn.dialect.name)
    convert = [(i, writers[k]) for i, (_, k) in enumerate(spec.columns) if k in writers]

    def native(rows: list[list[Any]]) -> list[list[Any]]:
        for values in rows:
            for i, fn in convert:
                values[i] = fn(values[i])
        return rows

    cols = ", ".join(_q(n) for n in spec.column_names)
    raw = conn.connection.driver_connection
    assert raw is not None
    written = 0
    if conn.dialect.name == "postgresql":
        # One COPY per table: the fastest load, and a row referring to a later row of the same
        # table (a department under one made after it) is checked at the end of the statement.
        with raw.cursor() as cursor, cursor.copy(f"COPY {_q(spec.name)} ({cols}) FROM STDIN") as cp:
            for rows in batches:
                for values in native(rows):
                    cp.write_row(values)
                written += len(rows)
        return written
    marks = ", ".join("?" * len(spec.columns))
    sql = f"INSERT INTO {_q(spec.name)} ({cols}) VALUES ({marks})"
    cursor = raw.cursor()
    try:
        for rows in batches:
            cursor.executemany(sql, native(rows))
            written += len(rows)
    finally:
        cursor.close()
    return written


def defer_foreign_keys(conn: Connection) -> None:
    """SQLite: check foreign keys at commit, so rows may arrive in any order within a table."""
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("PRAGMA defer_foreign_keys = ON")


def tables_with_rows(conn: Connection, specs: Iterable[TableSpec]) -> list[str]:
    return [
        s.name
        for s in specs
        if conn.exec_driver_sql(f"SELECT 1 FROM {_q(s.name)} LIMIT 1").first() is not None
    ]


def reset_sequences(conn: Connection, specs: Iterable[TableSpec]) -> int:
    """PostgreSQL: move each id sequence past the largest id loaded, so new rows get new ids.
    (SQLite takes max(id) + 1 by itself.) Returns how many sequences were moved."""
    if conn.dialect.name != "postgresql":
        return 0
    moved = 0
    for spec in specs:
        if len(spec.primary_key) != 1 or dict(spec.columns)[spec.primary_key[0]] != "int":
            continue
        column = spec.primary_key[0]
        sequence = conn.exec_driver_sql(
            "SELECT pg_get_serial_sequence(%s, %s)", (_q(spec.name), column)
        ).scalar()
        if sequence is None:
            continue
        conn.exec_driver_sql(
            f"SELECT setval(%s, coalesce((SELECT max({_q(column)}) FROM {_q(spec.name)}), 0) + 1, "
            "false)",
            (sequence,),
        )
        moved += 1
    return moved


def rebuild_search_index(conn: Connection, batch: int = 5000) -> int:
    """Index every post again, as the ingest does (tingfeng.search.index); returns how many."""
    from tingfeng.db.models import Post, as_utc
    from tingfeng.search.index import add_to_index, index_terms, sort_key

    t = Post.__table__
    dialect = conn.dialect.name
    last, done = 0, 0
    while True:
        rows = conn.execute(
            t.select()
            .with_only_columns(
                t.c.id, t.c.published_at, t.c.fetched_at, t.c.title_norm, t.c.text_norm
            )
            .where(t.c.id > last)
            .order_by(t.c.id)
            .limit(batch)
        ).all()
        if not rows:
            return done
        add_to_index(
            conn,
            [
                (
                    r.id,
                    sort_key(as_utc(r.published_at or r.fetched_at), r.id),  # type: ignore[arg-type]
                    index_terms(dialect, r.title_norm or "", r.text_norm or ""),
                )
                for r in rows
            ],
        )
        done += len(rows)
        last = rows[-1].id
