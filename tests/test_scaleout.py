"""Scale-out: several ingest processes share one event grouper through the grouping journal.

Two ingestors (as two worker processes would, each with its own grouper) store alternate
batches of the same CED posts; the events, memberships and spikes must be exactly those one
ingestor makes from the same batches in the same order. On SQLite and a real PostgreSQL.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from itertools import islice
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from tingfeng.collect.connectors.imports import read_items
from tingfeng.collect.sources import add_source
from tingfeng.db.engine import make_engine, write_transaction
from tingfeng.db.migrate import upgrade
from tingfeng.db.models import Event, EventPost, Post, SpikeRecord
from tingfeng.ingest.ingestor import Ingestor, SourceRef
from tingfeng.settings import Settings
from tingfeng.topics.store import create_topic

CED = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "rumor" / "ced" / "cascades.jsonl.gz"
)
TOPICS = Path(__file__).resolve().parents[1] / "src" / "tingfeng" / "demo" / "demo_topics.json"
POSTS = 3000
BATCH = 150


def _prepare(url: str) -> tuple[Engine, SourceRef]:
    engine = make_engine(url)
    upgrade(engine)
    with write_transaction(engine) as conn:
        for t in json.loads(TOPICS.read_text(encoding="utf-8")):
            create_topic(conn, t["name"], t["query"], exclusions=t.get("exclusions", ()))
        # One broad topic too, so that many posts are grouped.
        create_topic(conn, "转发", "转发 OR 微博")
        source = add_source(
            conn,
            name="ced",
            kind="import",
            config={"path": str(CED), "format": "ced"},
            timezone="Asia/Shanghai",
        )
    return engine, SourceRef(source.id, source.timezone, source.region)


def _outcome(engine: Engine) -> dict[str, object]:
    with engine.connect() as conn:
        members = conn.execute(
            select(EventPost.event_id, Post.external_id).join(Post, Post.id == EventPost.post_id)
        ).all()
        # Titles and first posts are refreshed on a timer (profile), not by grouping.
        events = conn.execute(select(Event.id, Event.posts).order_by(Event.id)).all()
        spikes = conn.execute(
            select(SpikeRecord.series, SpikeRecord.hour, SpikeRecord.count).order_by(
                SpikeRecord.series, SpikeRecord.hour
            )
        ).all()
    partition: dict[int, set[str]] = {}
    for event_id, external_id in members:
        partition.setdefault(event_id, set()).add(external_id)
    return {
        "partition": {event_id: sorted(m) for event_id, m in partition.items()},
        "events": [tuple(e) for e in events],
        "spikes": [tuple(s) for s in spikes],
    }


@pytest.fixture
def second_db(request, tmp_path) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """Another fresh database of the same kind as `db_url`."""
    if request.node.callspec.params["db_url"] == "sqlite":
        yield f"sqlite:///{tmp_path / 'second.db'}"
        return
    server = request.getfixturevalue("postgres_server")
    name = server.create_database()
    try:
        yield server.url(name)
    finally:
        server.drop_database(name)


@pytest.mark.slow
def test_two_ingest_processes_group_as_one(db_url: str, second_db: str, tmp_path: Path) -> None:
    items = list(islice(read_items(CED, format="ced"), POSTS))
    batches = [items[i : i + BATCH] for i in range(0, len(items), BATCH)]
    settings = Settings(database_url=db_url, data_dir=tmp_path / "data")

    one_engine, one_source = _prepare(db_url)
    one = Ingestor(one_engine, settings)
    for batch in batches:
        one.ingest(one_source, batch)
    expected = _outcome(one_engine)

    two_engine, two_source = _prepare(second_db)
    first, second = Ingestor(two_engine, settings), Ingestor(two_engine, settings)
    for i, batch in enumerate(batches):
        (first if i % 2 == 0 else second).ingest(two_source, batch)
    got = _outcome(two_engine)

    assert len(expected["partition"]) >= 20, "too few events to say anything: widen the topics"
    # Stories told across both processes' batches were grouped into one event, not split.
    assert max(len(m) for m in got["partition"].values()) > BATCH
    assert got["partition"] == expected["partition"]
    assert got["events"] == expected["events"]
    assert got["spikes"] == expected["spikes"]
    assert first.event_stage is not None and second.event_stage is not None
