"""`source test`: fetch once and show what would be stored, storing nothing."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from typing import Any

from sqlalchemy import Engine

from tingfeng.collect.connectors.base import CollectContext, get_connector
from tingfeng.collect.errors import CollectError
from tingfeng.collect.fetcher import Fetcher
from tingfeng.collect.items import ItemError
from tingfeng.collect.sources import find_source
from tingfeng.ingest.prepare import ItemRejected, Preparer, segmenter_for
from tingfeng.settings import Settings


@dataclass
class PreviewResult:
    items: list[dict[str, Any]] = field(default_factory=list)
    errors: int = 0
    error: str | None = None


def preview_source(
    settings: Settings,
    engine: Engine | None,
    *,
    ref: str | None = None,
    kind: str | None = None,
    config: dict[str, Any] | None = None,
    limit: int = 10,
) -> PreviewResult:
    timezone = settings.default_timezone
    if ref is not None:
        assert engine is not None
        with engine.connect() as conn:
            source = find_source(conn, ref)
        kind, config, timezone = source.kind, source.config, source.timezone
    result = PreviewResult()
    now = datetime.now(UTC)
    preparer = Preparer(segmenter_for(settings), timezone, settings.dedup_min_chars)
    try:
        connector = get_connector(kind or "", config or {})
        with Fetcher(settings) as fetcher:
            # A fresh state: no cursor and no conditional GET, so the test shows real items.
            ctx = CollectContext(fetcher=fetcher, state={}, limit=limit, source_name=ref or "test")
            for item in islice(connector.collect(ctx), limit * 2):
                if isinstance(item, ItemError):
                    result.errors += 1
                    result.items.append({"error": f"{item.where}: {item.message}"})
                    continue
                try:
                    row = preparer.prepare(item, 0, timezone, now).row
                except ItemRejected as exc:
                    result.errors += 1
                    result.items.append({"error": str(exc)})
                    continue
                result.items.append(
                    {
                        "kind": row["kind"],
                        "title": row["title"],
                        "url": row["url"],
                        "author": row["author"],
                        "published_at": row["published_at"].isoformat(),
                        "lang": row["lang"],
                        "text": row["text_clean"][:200],
                    }
                )
                if len(result.items) >= limit:
                    break
    except CollectError as exc:
        result.error = exc.message
    return result
