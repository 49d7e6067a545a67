"""The full-text index behind one interface: SQLite FTS5 or a PostgreSQL tsvector + GIN.

Both are given the same token stream (see `tokens`), so both find the same posts.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from sqlalchemy import Connection, text

from tingfeng.search.tokens import index_body, tsvector_literal

_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def sort_key(published_at: datetime, post_id: int) -> int:
    """The index key of a post: seconds since 2000 in the high 31 bits, the id in the low 32.

    Ordered by publication time, so "newest first" is the index's own order and a time filter
    is a key range. On SQLite it is the FTS rowid and the post id is its low 32 bits (so up to
    four billion posts); nothing else needs storing. Times before 2000 share second 0; after
    2068 they are capped.
    """
    seconds = int((published_at - _EPOCH).total_seconds())
    return (min(max(seconds, 0), 2**31 - 1) << 32) | (post_id & 0xFFFFFFFF)


def key_at(moment: datetime) -> int:
    """The smallest sort key at `moment`, for time ranges."""
    return sort_key(moment, 0)


_SQLITE_DELETE = text(
    "INSERT INTO post_fts(post_fts, rowid, title, body) VALUES ('delete', :id, :title, :body)"
)
_PG_DELETE = text("DELETE FROM post_search WHERE post_id = :id")


IndexRow = tuple[int, int, str, str]
"""(post id, sort key, normalised title, normalised text)"""

IndexTerms = tuple[str, str] | str
"""What the index is given for one post: FTS5 (title, body) token strings, or a tsvector."""


def index_terms(dialect: str, title: str, text: str) -> IndexTerms:
    """Compute a post's index terms ahead of the write (in the analysis process)."""
    if dialect == "sqlite":
        return (index_body(title), index_body(text))
    return tsvector_literal(title, text)


def _sqlite_rows(rows: Iterable[IndexRow]) -> list[dict[str, object]]:
    return [
        {"id": key, "title": index_body(title), "body": index_body(body)}
        for _, key, title, body in rows
    ]


def _by_key(row: tuple[int, int, IndexTerms]) -> int:
    return row[1]


def add_to_index(conn: Connection, rows: Sequence[tuple[int, int, IndexTerms]]) -> None:
    """Index posts given as (post id, sort key, terms from `index_terms`); none of them may be
    in the index already (they were just stored, or the index is being rebuilt)."""
    if not rows:
        return
    if conn.dialect.name == "sqlite":
        # Ascending keys: FTS5 flushes its pending terms whenever a rowid is lower than the
        # previous one, and an import in any order other than time made indexing 4× slower.
        conn.exec_driver_sql(
            "INSERT INTO post_fts(rowid, title, body) VALUES (?, ?, ?)",
            [(key, terms[0], terms[1]) for _, key, terms in sorted(rows, key=_by_key)],
        )
    else:
        # COPY (tingfeng.db.bulk): the posts were just stored, so none is indexed yet; the
        # vector's text form is what the CAST read before.
        from tingfeng.db.bulk import copy_rows

        copy_rows(conn, "post_search", ("post_id", "sort_key", "vector"), rows)


def remove_from_index(conn: Connection, rows: Sequence[IndexRow]) -> None:
    """Remove posts from the index; SQLite's contentless table needs the indexed values again."""
    if not rows:
        return
    if conn.dialect.name == "sqlite":
        conn.execute(_SQLITE_DELETE, _sqlite_rows(rows))
    else:
        conn.execute(_PG_DELETE, [{"id": pid} for pid, _, _, _ in rows])
