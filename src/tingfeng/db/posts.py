"""Writing posts: id allocation, existing-key lookups, parent links, the insert itself."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC
from operator import itemgetter
from typing import Any

from sqlalchemy import Connection, bindparam, text, update

from tingfeng.db.bulk import copy_new_rows
from tingfeng.db.models import Post, Source

# Stay well below SQLite's bound-parameter limit in IN (...) lists.
_CHUNK = 900


def _chunks(values: Sequence[Any], size: int = _CHUNK) -> Iterable[Sequence[Any]]:
    for i in range(0, len(values), size):
        yield values[i : i + size]


def _rows_in(conn: Connection, sql: str, values: Sequence[Any]) -> Iterator[Any]:
    """Run `sql`, which has one `IN ({})` slot, over `values` in chunks.

    Raw driver parameters: SQLAlchemy renders an expanding IN anew for every call, which cost
    more than the lookups themselves on the ingest path.
    """
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    for part in _chunks(values):
        yield from conn.exec_driver_sql(sql.format(", ".join([mark] * len(part))), tuple(part))


def existing_uids(conn: Connection, uids: Sequence[str]) -> set[str]:
    return {row[0] for row in _rows_in(conn, "SELECT uid FROM posts WHERE uid IN ({})", uids)}


def ids_by_uid(conn: Connection, uids: Sequence[str]) -> dict[str, int]:
    return dict(_rows_in(conn, "SELECT uid, id FROM posts WHERE uid IN ({})", uids))


def groups_by_hash(conn: Connection, hashes: Sequence[str]) -> dict[str, int]:
    """For each content hash already stored, the duplicate group of its first post."""
    out: dict[str, int] = {}
    rows = _rows_in(
        conn,
        "SELECT content_hash, coalesce(dup_group, id), id FROM posts WHERE content_hash IN ({})",
        hashes,
    )
    for chash, group, _id in sorted(rows, key=lambda r: r[2]):
        out.setdefault(chash, group)
    return out


def allocate_ids(conn: Connection, n: int) -> list[int]:
    """Reserve `n` post ids before inserting, so duplicate groups can point at them.

    SQLite: the caller holds the write lock (BEGIN IMMEDIATE), so max+1.. is safe.
    PostgreSQL: the column's sequence, safe across concurrent workers.
    """
    if n <= 0:
        return []
    if conn.dialect.name == "sqlite":
        top = conn.execute(text("SELECT coalesce(max(id), 0) FROM posts")).scalar_one()
        return list(range(top + 1, top + 1 + n))
    rows = conn.execute(
        text("SELECT nextval(pg_get_serial_sequence('posts', 'id')) FROM generate_series(1, :n)"),
        {"n": n},
    )
    return [r[0] for r in rows]


_COLUMNS: tuple[str, ...] = tuple(c.name for c in Post.__table__.columns)
_DATETIMES = frozenset(
    c.name for c in Post.__table__.columns if c.type.__class__.__name__ == "UtcDateTime"
)
_JSONS = frozenset(c.name for c in Post.__table__.columns if c.type.__class__.__name__ == "JSON")


def _sqlite_insert_sql() -> str:
    return f"INSERT INTO posts ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})"


def _sqlite_time(value: Any) -> str:
    # The same text form SQLAlchemy's SQLite DateTime writes ("2024-03-05 08:00:00.000000"),
    # so rows from both paths compare and sort alike; isoformat is several times faster than
    # strftime here.
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


# json.dumps with a keyword argument builds a new encoder at every call; the same output.
_sqlite_json = json.JSONEncoder(ensure_ascii=False).encode


_CONVERT = tuple(
    (i, _sqlite_time if name in _DATETIMES else _sqlite_json)
    for i, name in enumerate(_COLUMNS)
    if name in _DATETIMES or name in _JSONS
)
_ROW_VALUES = itemgetter(*_COLUMNS)


def sqlite_values(row: dict[str, Any]) -> list[Any]:
    """A row as SQLite column values; the fields set at write time are filled by `insert_posts`.

    Computed by the analysis process for large imports (time and JSON formatting were a sixth
    of the writer's time).
    """
    try:
        values = list(_ROW_VALUES(row))
    except KeyError:
        values = [row.get(name) for name in _COLUMNS]
    for i, convert in _CONVERT:
        if values[i] is not None:
            values[i] = convert(values[i])
    return values


# Assigned when the batch is written: ids, duplicate groups, resolved parents.
_WRITE_TIME = tuple(
    (_COLUMNS.index(name), name)
    for name in ("id", "dup_group", "dup_kind", "reposts_of_id", "reply_to_id")
)


def _sqlite_tuple(row: dict[str, Any], values: list[Any] | None) -> tuple[Any, ...]:
    if values is None:
        return tuple(sqlite_values(row))
    for i, name in _WRITE_TIME:
        values[i] = row[name]
    return tuple(values)


def insert_posts(
    conn: Connection, rows: list[dict[str, Any]], prebuilt: list[list[Any] | None] | None = None
) -> set[int]:
    """Insert rows (ids included); a row whose uid appeared meanwhile is skipped.

    `prebuilt` are `sqlite_values` of the rows, when computed ahead. Returns the ids inserted.
    """
    if not rows:
        return set()
    if conn.dialect.name == "sqlite":
        # Under the write lock nobody else can insert, so a plain DBAPI executemany is safe;
        # it skips SQLAlchemy's per-row parameter processing, about a fifth of ingest time.
        ahead = prebuilt or [None] * len(rows)
        conn.exec_driver_sql(
            _sqlite_insert_sql(), [_sqlite_tuple(r, v) for r, v in zip(rows, ahead, strict=True)]
        )
        return {r["id"] for r in rows}
    return _pg_insert(conn, rows)


def _pg_value(name: str, value: Any) -> Any:
    if value is None:
        return None
    if name in _JSONS:
        return json.dumps(value, ensure_ascii=False)
    if name in _DATETIMES:
        if value.tzinfo is None:
            raise ValueError(f"naive datetime in {name}; attach a time zone first")
        return value.astimezone(UTC)
    return value


_PG_CONVERT = tuple(
    (i, name) for i, name in enumerate(_COLUMNS) if name in _JSONS or name in _DATETIMES
)


def _pg_values(row: dict[str, Any]) -> list[Any]:
    try:
        values = list(_ROW_VALUES(row))
    except KeyError:
        values = [row.get(name) for name in _COLUMNS]
    for i, name in _PG_CONVERT:
        values[i] = _pg_value(name, values[i])
    return values


def _pg_insert(conn: Connection, rows: list[dict[str, Any]]) -> set[int]:
    # COPY through a staging table (tingfeng.db.bulk): a uid stored meanwhile by another
    # worker is skipped, as ON CONFLICT did for the INSERT this replaces.
    ids = copy_new_rows(
        conn, "posts", _COLUMNS, (_pg_values(r) for r in rows), conflict="uid", returning="id"
    )
    return set(ids)


def link_waiting_children(conn: Connection, new: dict[str, int]) -> None:
    """Posts stored before the post they repost/reply to get its id now that it exists."""
    if not new:
        return
    uids = list(new)
    for key_col, id_col in (("reposts_of_key", "reposts_of_id"), ("reply_to_key", "reply_to_id")):
        waiting = list(
            _rows_in(
                conn,
                f"SELECT id, {key_col} FROM posts WHERE {id_col} IS NULL AND {key_col} IN ({{}})",
                uids,
            )
        )
        if waiting:
            conn.execute(
                update(Post.__table__)
                .where(Post.__table__.c.id == bindparam("pid"))
                .values({id_col: bindparam("parent")}),
                [{"pid": pid, "parent": new[key]} for pid, key in waiting],
            )


def bump_source(conn: Connection, source_id: int, stored: int, last_item_at: Any) -> None:
    if stored:
        conn.execute(
            update(Source)
            .where(Source.id == source_id)
            .values(items_total=Source.items_total + stored, last_item_at=last_item_at)
        )
