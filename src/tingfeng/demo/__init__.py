"""The demo: a live replay of the CED Weibo data set and a starter set of public news feeds."""

from __future__ import annotations

import json
import os
from pathlib import Path

from sqlalchemy import Engine

from tingfeng.collect.errors import ConfigError
from tingfeng.collect.sources import SourceNotFound, add_source, find_source
from tingfeng.db.engine import write_transaction
from tingfeng.settings import Settings

REPLAY_SOURCE = "演示·微博谣言数据集回放 (CED replay)"
# CED is sparse before April 2012 (a few posts a day); the replay starts where Weibo was busy,
# so the demo shows a steady stream at once.
REPLAY_START = "2012-08-01"
# Where the shared data sits relative to a checkout (README runs the demo from the repo root).
DEFAULT_CED = Path("../shared/data/rumor/ced/cascades.jsonl.gz")


def find_ced(explicit: Path | None) -> Path | None:
    for candidate in (explicit, os.environ.get("TINGFENG_DEMO_CED"), DEFAULT_CED):
        if candidate and Path(candidate).exists():
            return Path(candidate).resolve()
    return None


def starter_feeds() -> list[dict[str, str]]:
    return json.loads(Path(__file__).with_name("starter_feeds.json").read_text(encoding="utf-8"))


def ensure_demo_topics(engine: Engine) -> list[str]:
    """Example topics (监测方案) for the replayed Weibo stream, added when there are none."""
    from tingfeng.topics.store import create_topic, list_topics

    with write_transaction(engine) as conn:
        if list_topics(conn):
            return []
        topics = json.loads((Path(__file__).with_name("demo_topics.json")).read_text("utf-8"))
        for t in topics:
            create_topic(conn, t["name"], t["query"], exclusions=t.get("exclusions", ()), by="demo")
    return [f"added {len(topics)} example topics (tingfeng topics list); events appear at /events"]


def _ensure(engine: Engine, name: str, **kwargs: object) -> bool:
    with write_transaction(engine) as conn:
        try:
            find_source(conn, name)
            return False
        except SourceNotFound:
            add_source(conn, name=name, **kwargs)  # type: ignore[arg-type]
            return True


def setup_demo(
    settings: Settings,
    engine: Engine,
    *,
    speed: float = 1800.0,
    with_feeds: bool = True,
    ced_path: Path | None = None,
) -> list[str]:
    """Add the demo sources if missing; returns lines to show the user."""
    lines: list[str] = []
    ced = find_ced(ced_path)
    if ced is None:
        lines.append(
            "CED data set not found (looked for ../shared/data/rumor/ced/cascades.jsonl.gz); "
            "pass --ced FILE to replay it."
        )
    else:
        try:
            added = _ensure(
                engine,
                REPLAY_SOURCE,
                kind="replay",
                config={
                    "path": str(ced),
                    "format": "ced",
                    "speed": speed,
                    "start_at": REPLAY_START,
                },
                interval_s=2,
                hot_interval_s=2,
                timezone="Asia/Shanghai",
            )
        except ConfigError as exc:
            lines.append(f"could not add the replay source: {exc.message}")
        else:
            lines.append(
                ("added" if added else "kept") + f" replay source: {ced} at {speed:g}× speed"
            )
    lines.extend(ensure_demo_topics(engine))
    if with_feeds:
        for feed in starter_feeds():
            added = _ensure(
                engine,
                feed["name"],
                kind="feed",
                config={"url": feed["url"]},
                interval_s=900,
                timezone="Asia/Shanghai",
            )
            if added:
                lines.append(f"added feed {feed['name']}: {feed['url']}")
        lines.append(
            "news feeds need internet access; without it they show as failing under 信源状态"
        )
    return lines
