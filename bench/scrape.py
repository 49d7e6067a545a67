"""Scrape benchmark: what one /metrics scrape and one /readyz cost on a large installation.

A database is seeded (by plain inserts, no analysis) with N posts, a day of fetch-log runs and
pushes, alerts, outbox messages and cases; then the metrics collector and the readiness checks
run repeatedly. The baseline in the same run is the naive way to get the two headline numbers:
counting the posts table and summing the whole fetch log.

`python -m bench.scrape [--posts 100000] [--postgres]` prints a table and writes
bench/results/scrape-<time>.json. --postgres also runs it on a private PostgreSQL server
(tests/servers.py).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def seed(engine: Any, posts: int) -> dict[str, int]:
    from sqlalchemy import insert

    from tingfeng.db.models import (
        Alert,
        Case,
        CaseDeadline,
        Delivery,
        FetchLog,
        Post,
        Source,
    )

    now = datetime.now(UTC)
    n_sources, runs, alerts, cases = 200, 30_000, 5_000, 1_000
    with engine.begin() as conn:
        conn.execute(
            insert(Source),
            [{"id": i, "name": f"信源{i}", "kind": "push" if i % 4 == 0 else "feed",
              "config": {}, "enabled": True, "interval_s": 900, "hot_interval_s": 60,
              "timezone": "Asia/Shanghai", "state": {}, "created_at": now,
              "consecutive_failures": i % 7 == 0, "items_total": posts // n_sources,
              "last_attempt_at": now, "last_success_at": now, "last_item_at": now}
             for i in range(1, n_sources + 1)],
        )  # fmt: skip
        text = "网民反映某小区供暖不热，物业称正在检修，居民希望尽快解决。" * 3
        for start in range(0, posts, 5000):
            conn.execute(
                insert(Post),
                [{"uid": f"{i:032x}", "source_id": i % n_sources + 1, "kind": "post",
                  "text_clean": text, "title_norm": "", "text_norm": text, "tokens": "供暖 物业",
                  "lang": "zh", "content_hash": f"{i:032x}", "dup_kind": "original",
                  "fetched_at": now - timedelta(seconds=(posts - i) * 86400 / posts)}
                 for i in range(start, min(posts, start + 5000))],
            )  # fmt: skip
        conn.execute(
            insert(FetchLog),
            [{"source_id": i % n_sources + 1, "ok": True, "items_read": 10, "items_stored": 8,
              "duplicates": 2, "started_at": now - timedelta(seconds=(runs - i) * 86400 / runs),
              "finished_at": now - timedelta(seconds=(runs - i) * 86400 / runs - 1)}
             for i in range(runs)],
        )  # fmt: skip
        conn.execute(
            insert(Alert),
            [{"id": i, "dedup_key": f"r:post:{i}", "seq": 1, "subject": f"post:{i}",
              "level": "general", "status": "open" if i % 50 == 0 else "acknowledged",
              "reason": {}, "window_until": now, "created_at": now - timedelta(seconds=i * 17),
              "updated_at": now}
             for i in range(1, alerts + 1)],
        )  # fmt: skip
        # Each alert: ten people in-app, one channel message; a few still pending.
        rows = []
        for i in range(1, alerts + 1):
            created = now - timedelta(seconds=i * 17)
            for user in range(10):
                rows.append({"key": f"a{i}:u{user}", "alert_id": i, "purpose": "alert",
                             "message": {}, "status": "sent", "attempts": 0,
                             "next_attempt_at": created, "sent_at": created,
                             "created_at": created})  # fmt: skip
            rows.append({"key": f"a{i}:c", "alert_id": i, "purpose": "alert", "message": {},
                         "status": "pending" if i <= 5 else "sent", "attempts": 1,
                         "next_attempt_at": created, "created_at": created,
                         "sent_at": None if i <= 5 else created + timedelta(seconds=2)})  # fmt: skip
        conn.execute(insert(Delivery), rows)
        conn.execute(
            insert(Case),
            [{"id": i, "number": f"2026-{i:04d}", "title": "供暖", "origin": "manual",
              "origin_detail": {}, "state": "closed" if i % 3 else "assigned", "routing": {},
              "created_at": now, "updated_at": now}
             for i in range(1, cases + 1)],
        )  # fmt: skip
        conn.execute(
            insert(CaseDeadline),
            [{"case_id": i % cases + 1, "step": "reply",
              "due_at": now + timedelta(hours=(i % 48) - 24),
              "status": "open" if i % 3 == 0 else "met", "created_at": now}
             for i in range(3 * cases)],
        )  # fmt: skip
    return {"posts": posts, "sources": n_sources, "fetch_log": runs, "alerts": alerts,
            "deliveries": len(rows), "cases": cases}  # fmt: skip


def timed(fn: Any, repeat: int) -> dict[str, float]:
    fn()  # warm: the first run reads the pages into the cache
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return {"median_ms": round(statistics.median(times), 2), "max_ms": round(max(times), 2)}


def run(database_url: str, data_dir: Path, posts: int, repeat: int) -> dict[str, Any]:
    from prometheus_client import generate_latest
    from sqlalchemy import text

    from tingfeng.db.engine import make_engine
    from tingfeng.db.migrate import upgrade
    from tingfeng.metrics import build_registry
    from tingfeng.readiness import Readiness
    from tingfeng.settings import Settings

    settings = Settings(database_url=database_url, data_dir=data_dir)
    engine = make_engine(database_url)
    upgrade(engine)
    counts = seed(engine, posts)
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
    readiness = Readiness(settings, engine)
    registry = build_registry(engine, settings, readiness)

    def naive() -> None:
        with engine.connect() as conn:
            conn.execute(text("SELECT count(*) FROM posts")).scalar()
            conn.execute(text("SELECT sum(items_stored) FROM fetch_log")).scalar()

    result = {
        "database": engine.dialect.name,
        "rows": counts,
        "scrape": timed(lambda: generate_latest(registry), repeat),
        "readiness": timed(readiness.run, repeat),
        "baseline_count_posts": timed(naive, repeat),
        "bytes": len(generate_latest(registry)),
    }
    result["scrape_vs_baseline"] = round(
        result["scrape"]["median_ms"] / result["baseline_count_posts"]["median_ms"], 2
    )
    engine.dispose()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--postgres", action="store_true")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        results.append(run(f"sqlite:///{work / 'tf.db'}", work / "var", args.posts, args.repeat))
        if args.postgres:
            sys.path.insert(0, str(ROOT))
            from tests.servers import PostgresServer

            with PostgresServer() as server:
                name = server.create_database()
                results.append(run(server.url(name), work / "var", args.posts, args.repeat))
    print(f"{'database':<11} {'scrape ms':>10} {'max':>7} {'readyz ms':>10} "
          f"{'count(*) ms':>12} {'ratio':>6} {'bytes':>7}")  # fmt: skip
    for r in results:
        print(f"{r['database']:<11} {r['scrape']['median_ms']:>10} {r['scrape']['max_ms']:>7} "
              f"{r['readiness']['median_ms']:>10} {r['baseline_count_posts']['median_ms']:>12} "
              f"{r['scrape_vs_baseline']:>6} {r['bytes']:>7}")  # fmt: skip
    out = ROOT / "bench" / "results" / f"scrape-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"posts": args.posts, "results": results}, indent=2))
    print(f"written: {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
