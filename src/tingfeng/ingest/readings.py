"""Storing readings of posts, the taxonomy in force, and re-analysis of stored posts.

Readings are written in the same transaction as their posts, so a post is never stored
without its reading (when analysis is on). `reanalyze` redoes readings whose version differs
from the current models and taxonomy; it commits per batch and picks up where it stopped.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, delete, insert, select, text

from tingfeng.analyze.categories import Taxonomy
from tingfeng.analyze.reading import Reader, Reading
from tingfeng.analyze.segment import Segmenter
from tingfeng.db.engine import write_transaction
from tingfeng.db.models import Post, PostLabel, PostReading, Source, TaxonomyVersion, utc_now
from tingfeng.settings import Settings

__all__ = [
    "TaxonomyWatcher",
    "current_taxonomy",
    "reader_for",
    "readings_of",
    "reanalyze",
    "save_taxonomy",
    "store_readings",
]

log = logging.getLogger(__name__)

_COLUMNS = (
    "post_id", "version", "analysed_at", "polarity", "polarity_score", "emotion",
    "emotion_score", "needs_verification", "credibility_score", "keywords", "entities",
    "regions", "categories", "problems",
)  # fmt: skip
_JSON = {"keywords", "entities", "regions", "categories", "problems"}


# Validating a taxonomy normalises every keyword (about 0.1 s for the packaged one), and pages
# that only show the categories' names ask for it on every request (the search page twice).
# A Taxonomy is immutable, so the parsed one is kept, keyed by its content.
_PARSED: dict[str, Taxonomy] = {}
_PARSED_MAX = 8


def current_taxonomy(conn: Connection) -> Taxonomy:
    """The newest saved taxonomy, or the packaged default when none was saved yet."""
    row = conn.execute(
        select(TaxonomyVersion.content).order_by(TaxonomyVersion.id.desc()).limit(1)
    ).first()
    key = json.dumps(row[0], ensure_ascii=False, sort_keys=True) if row else ""
    taxonomy = _PARSED.get(key)
    if taxonomy is None:
        taxonomy = Taxonomy.from_dict(row[0]) if row else Taxonomy.default()
        if len(_PARSED) >= _PARSED_MAX:
            _PARSED.clear()
        _PARSED[key] = taxonomy
    return taxonomy


def taxonomy_version(conn: Connection) -> str | None:
    return conn.execute(
        select(TaxonomyVersion.version).order_by(TaxonomyVersion.id.desc()).limit(1)
    ).scalar()


def save_taxonomy(conn: Connection, taxonomy: Taxonomy, note: str | None = None) -> str:
    """Put `taxonomy` in force (kept as a new version; earlier ones stay for the record)."""
    conn.execute(
        insert(TaxonomyVersion).values(
            version=taxonomy.version, content=taxonomy.to_dict(), created_at=utc_now(), note=note
        )
    )
    from tingfeng import audit

    audit.record(conn, None, "settings.taxonomy", "taxonomy",
                 {"version": taxonomy.version, "note": note})  # fmt: skip
    return taxonomy.version


def reader_for(settings: Settings, engine: Engine, segmenter: Segmenter) -> Reader:
    """The analysis stages as configured, with the taxonomy in force."""
    with engine.connect() as conn:
        taxonomy = current_taxonomy(conn)
    return Reader.from_settings(settings, segmenter, taxonomy)


class TaxonomyWatcher:
    """Swaps a reader's taxonomy when an administrator saves a new one (checked every `every_s`)."""

    def __init__(self, engine: Engine, reader: Reader, every_s: float = 30.0) -> None:
        self.engine, self.reader, self.every_s = engine, reader, every_s
        self._checked = time.monotonic()
        with engine.connect() as conn:
            self._seen = taxonomy_version(conn)

    def check(self, force: bool = False) -> None:
        if not force and time.monotonic() - self._checked < self.every_s:
            return
        self._checked = time.monotonic()
        with self.engine.connect() as conn:
            version = taxonomy_version(conn)
            if version != self._seen:
                self.reader.set_taxonomy(current_taxonomy(conn))
                self._seen = version


_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


_EMPTY_ENTITIES = {"persons": [], "organizations": [], "places": []}


def _json_text(value: Any) -> str | None:
    # Most readings have no regions, categories or entities: skip the encoder for those.
    if value is None:
        return None
    if not value:
        return "[]" if isinstance(value, list) else "{}"
    if value == _EMPTY_ENTITIES:
        return '{"persons":[],"organizations":[],"places":[]}'
    return _ENCODE(value)


def sqlite_encoded(reading: Reading) -> tuple[Any, ...]:
    """The reading's column values after post_id, version and analysed_at, JSON as text."""
    row = reading.to_row()
    return tuple(_json_text(row[c]) if c in _JSON else row[c] for c in _COLUMNS[3:])


def store_readings(
    conn: Connection,
    readings: Sequence[tuple[int, Reading]],
    version: str,
    *,
    replace: bool = False,
) -> None:
    """Write readings (and their filter labels) of posts; `replace` drops earlier ones first."""
    if not readings:
        return
    sqlite = conn.dialect.name == "sqlite"
    ids = [pid for pid, _ in readings]
    if replace:
        for start in range(0, len(ids), 500):
            part = ids[start : start + 500]
            conn.execute(delete(PostReading).where(PostReading.post_id.in_(part)))
            conn.execute(delete(PostLabel).where(PostLabel.post_id.in_(part)))
    now = utc_now()
    if sqlite:
        # Raw executemany: ~3x faster than SQLAlchemy's insert for 5,000-row batches; the JSON
        # columns are usually encoded already, in the process that prepared the batch.
        stamp = now.replace(tzinfo=None).isoformat(sep=" ")
        marks = ", ".join("?" for _ in _COLUMNS)
        conn.exec_driver_sql(
            f"INSERT INTO readings ({', '.join(_COLUMNS)}) VALUES ({marks})",
            [(pid, version, stamp, *(r.encoded or sqlite_encoded(r))) for pid, r in readings],
        )
        labels = [(k, v[:64], pid) for pid, r in readings for k, v in r.labels()]
        if labels:
            conn.exec_driver_sql(
                "INSERT OR IGNORE INTO post_labels (kind, value, post_id) VALUES (?, ?, ?)", labels
            )
        return
    # COPY (tingfeng.db.bulk): these are readings of posts just stored, or re-read after the
    # delete above, so no row exists yet; the JSON columns are text, as for SQLite.
    from tingfeng.db.bulk import copy_rows

    copy_rows(
        conn,
        "readings",
        _COLUMNS,
        ((pid, version, now, *(r.encoded or sqlite_encoded(r))) for pid, r in readings),
    )
    labels = {(k, v[:64], pid) for pid, r in readings for k, v in r.labels()}
    if labels:
        copy_rows(conn, "post_labels", ("kind", "value", "post_id"), sorted(labels))


def readings_of(conn: Connection, post_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """Stored readings of posts, as JSON-ready dicts by post id."""
    if not post_ids:
        return {}
    # The table, not the mapped class: on a Connection, select(PostReading).scalars() gives ids.
    rows = conn.execute(
        select(PostReading.__table__).where(PostReading.post_id.in_(list(post_ids)))
    )
    out = {}
    for r in rows:
        out[r.post_id] = {
            "version": r.version,
            "analysed_at": r.analysed_at.isoformat() if r.analysed_at else None,
            "polarity": r.polarity, "polarity_score": r.polarity_score,
            "emotion": r.emotion, "emotion_score": r.emotion_score,
            "needs_verification": r.needs_verification, "credibility_score": r.credibility_score,
            "keywords": r.keywords, "entities": r.entities, "regions": r.regions,
            "categories": r.categories, "problems": r.problems,
        }  # fmt: skip
    return out


@dataclass
class ReanalyzeStats:
    examined: int = 0
    analysed: int = 0
    last_id: int = 0
    seconds: float = 0.0


def reanalyze(
    engine: Engine,
    reader: Reader,
    *,
    since: datetime | None = None,
    batch_size: int = 2000,
    everything: bool = False,
    on_batch: Callable[[ReanalyzeStats], None] | None = None,
) -> ReanalyzeStats:
    """Re-read stored posts whose reading is missing or of another version (all with `everything`).

    Walks posts in id order and commits each batch, so an interrupted run loses at most one
    batch, and running it again skips what is done (the versions already match).
    """
    stats = ReanalyzeStats()
    start = time.perf_counter()
    version = reader.version
    last = 0
    while True:
        query = (
            select(
                Post.id,
                Post.title_norm,
                Post.text_norm,
                Post.lang,
                Source.region,
                PostReading.version,
            )
            .join(Source, Source.id == Post.source_id)
            .outerjoin(PostReading, PostReading.post_id == Post.id)
            .where(Post.id > last)
            .order_by(Post.id)
            .limit(batch_size)
        )
        if since is not None:
            query = query.where(Post.published_at >= since)
        with engine.connect() as conn:
            rows = conn.execute(query).all()
        if not rows:
            break
        last = rows[-1].id
        stats.examined += len(rows)
        todo = [r for r in rows if everything or r.version != version]
        if todo:
            texts = [f"{r.title_norm} {r.text_norm}" if r.title_norm else r.text_norm for r in todo]
            readings = reader.read_batch(texts, [r.lang for r in todo], [r.region for r in todo])
            with write_transaction(engine) as conn:
                # Posts deleted meanwhile (retention) must not get an orphan reading.
                alive = set(
                    conn.execute(
                        text("SELECT id FROM posts WHERE id >= :a AND id <= :b"),
                        {"a": todo[0].id, "b": todo[-1].id},
                    ).scalars()
                )
                pairs = [
                    (r.id, reading)
                    for r, reading in zip(todo, readings, strict=True)
                    if r.id in alive
                ]
                store_readings(conn, pairs, version, replace=True)
            stats.analysed += len(pairs)
        stats.last_id = last
        stats.seconds = time.perf_counter() - start
        if on_batch is not None:
            on_batch(stats)
    stats.seconds = time.perf_counter() - start
    return stats
