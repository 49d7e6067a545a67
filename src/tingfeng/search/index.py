"""The full-text index behind one interface: SQLite FTS5 or a PostgreSQL tsvector + GIN.

Both are given the same token stream (see `tokens`), so both find the same posts.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import Connection, text

from tingfeng.search.tokens import index_body, tsvector_literal

_SQLITE_DELETE = text(
    "INSERT INTO post_fts(post_fts, rowid, title, body) VALUES ('delete', :id, :title, :body)"
)
_PG_ADD = text(
    "INSERT INTO post_search(post_id, vector) VALUES (:id, CAST(:vector AS tsvector)) "
    "ON CONFLICT (post_id) DO NOTHING"
)
_PG_DELETE = text("DELETE FROM post_search WHERE post_id = :id")


def _sqlite_rows(rows: Iterable[tuple[int, str, str]]) -> list[dict[str, object]]:
    return [{"id": pid, "title": index_body(title), "body": index_body(body)} for pid, title, body in rows]


def add_to_index(conn: Connection, rows: Sequence[tuple[int, str, str]]) -> None:
    """Index posts given as (post id, normalised title, normalised text)."""
    if not rows:
        return
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql(
            "INSERT INTO post_fts(rowid, title, body) VALUES (?, ?, ?)",
            [(pid, index_body(title), index_body(body)) for pid, title, body in rows],
        )
    else:
        conn.execute(
            _PG_ADD, [{"id": pid, "vector": tsvector_literal(title, body)} for pid, title, body in rows]
        )


def remove_from_index(conn: Connection, rows: Sequence[tuple[int, str, str]]) -> None:
    """Remove posts from the index; SQLite's contentless table needs the indexed values again."""
    if not rows:
        return
    if conn.dialect.name == "sqlite":
        conn.execute(_SQLITE_DELETE, _sqlite_rows(rows))
    else:
        conn.execute(_PG_DELETE, [{"id": pid} for pid, _, _ in rows])
