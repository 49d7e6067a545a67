"""Leads (线索): items submitted by hand by a liaison, stored like any other post."""

from __future__ import annotations

from sqlalchemy import Engine, select

from tingfeng.collect.errors import ConfigError
from tingfeng.collect.fetcher import Fetcher
from tingfeng.collect.sources import SourceNotFound, add_source, find_source
from tingfeng.db.engine import write_transaction
from tingfeng.db.models import Post
from tingfeng.ingest.ingestor import Ingestor, SourceRef
from tingfeng.settings import Settings

LEADS_SOURCE = "leads"


def leads_source(engine: Engine, settings: Settings) -> SourceRef:
    with write_transaction(engine) as conn:
        try:
            source = find_source(conn, LEADS_SOURCE)
        except SourceNotFound:
            source = add_source(
                conn, name=LEADS_SOURCE, kind="lead", config={}, timezone=settings.default_timezone
            )
    return SourceRef(source.id, source.timezone, source.region)


def submit_lead(
    settings: Settings,
    engine: Engine,
    *,
    url: str | None = None,
    text: str | None = None,
    submitted_by: str,
    note: str | None = None,
    fetcher: Fetcher | None = None,
    ingestor: Ingestor | None = None,
) -> tuple[int, bool]:
    """Store a lead; returns (post id, whether it was new)."""
    from tingfeng.collect.connectors.lead import lead_item

    if not url and not (text and text.strip()):
        raise ConfigError("A lead needs a URL or some text.")
    own_fetcher = fetcher is None
    fetcher = fetcher or Fetcher(settings)
    try:
        item = lead_item(fetcher, url=url, text=text, submitted_by=submitted_by, note=note)
    finally:
        if own_fetcher:
            fetcher.close()
    source = leads_source(engine, settings)
    ingestor = ingestor or Ingestor(engine, settings)
    stats = ingestor.ingest(source, [item])
    if stats.errors:
        raise ConfigError(f"The lead could not be stored: {stats.error_samples[0]}")
    draft = ingestor.preparer.prepare(item, source.id, source.timezone, ingestor.now())
    with engine.connect() as conn:
        post_id = conn.execute(select(Post.id).where(Post.uid == draft.row["uid"])).scalar_one()
    return post_id, stats.stored == 1
