"""Benchmarks: `python -m bench [ingest|analysis]` (or `make bench`); no argument runs all.

1. Ingest: the CED cascades (1.27 M reposts) end to end into a fresh SQLite database, with
   posts/s, peak RSS and time per stage; the baseline in the same run is a bare `executemany`
   of the same number of rows into SQLite (what storage alone costs).
2. Search: p50/p95 latency of 2-character, 4-character and multi-term queries (first page and
   count), each against a brute-force substring scan of the same posts in the same run, with
   recall against that scan (must be 100%).
3. Analysis (`bench/analysis.py`): every test split scored with the shipped models, CED
   credibility 5-fold by cascade, posts/s per core of polarity and of all analyses (with the
   split by stage), and snownlp on the same rows and posts in the same run.

4. Topics (`bench/topics.py`): matching throughput with 100, 1,000 and 10,000 topics built
   from real keywords, against a naive regular-expression matcher in the same run.
5. Events (`bench/events.py`): B-cubed grouping scores on the labelled event files against a
   TF-IDF + average-linkage baseline, grouping speed and the CED repost share.
6. Spikes (`bench/spikes.py`): detection delay and false spikes per week on CrisisLexT26,
   against a naive fixed-ratio detector. 7. Spread (`bench/spread.py`): CED repost trees.
8. Alerts (`bench/alerts.py`): push → webhook latency p50/p95/p99, lost and duplicated, at
   100 and 1,000 posts/s, against the same pipeline with the sender only polling.
10. Scale-out (`bench/scaleout.py`): the CED file queued on Redis and drained by 1 and 2 worker
   processes, on PostgreSQL and on SQLite; the speed-up of two workers over one.
9. Load (`bench/load.py`, not part of `all`: about 5 min): 50 signed-in users on the pages and
   the API while posts are pushed at 1,000/s, against the same users with no ingest;
   `python -m bench load --help` for its options.

Prints a table, writes JSON to bench/results/, records the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "data"
DEFAULT_CED = DEFAULT_DATA / "rumor" / "ced" / "cascades.jsonl.gz"
FLOORS = {"posts_per_s": 5000.0, "search_p95_ms": 50.0, "recall": 1.0}


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import psutil

    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 1024**3, 1),
        "sqlite": sqlite3.sqlite_version,
        "git": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip(),
    }


def storage_baseline(n: int, workdir: Path) -> float:
    """Rows/s of a bare batched executemany into SQLite: the floor under any ingest."""
    con = sqlite3.connect(workdir / "baseline.db")
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    con.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, uid TEXT UNIQUE, text TEXT, ts TEXT)")
    rows = [(i, f"{i:032x}", "转发微博" * 8, "2016-01-01 00:00:00") for i in range(n)]
    t0 = time.perf_counter()
    for i in range(0, n, 1000):
        con.executemany("INSERT INTO t VALUES (?, ?, ?, ?)", rows[i : i + 1000])
        con.commit()
    seconds = time.perf_counter() - t0
    con.close()
    return n / seconds if seconds else 0.0


def bench_ingest(
    db_url: str, ced: Path, limit: int | None, *, topics: bool = False
) -> dict[str, Any]:
    from tingfeng.db.engine import make_engine
    from tingfeng.db.migrate import upgrade
    from tingfeng.ingest.bench import run_ingest_bench
    from tingfeng.settings import Settings

    settings = Settings(database_url=db_url)
    engine = make_engine(db_url)
    upgrade(engine)
    if topics:
        # The demo's five topics: matching, event grouping and spikes run on every batch.
        from tingfeng.demo import ensure_demo_topics

        ensure_demo_topics(engine)
    result = run_ingest_bench(settings, engine, ced, limit=limit)
    if topics:
        from sqlalchemy import text

        with engine.connect() as conn:
            result["topic_matches"] = conn.execute(
                text("SELECT count(*) FROM topic_matches")
            ).scalar()
            result["event_posts"] = conn.execute(text("SELECT count(*) FROM event_posts")).scalar()
            result["events"] = conn.execute(text("SELECT count(*) FROM events")).scalar()
    result["topics"] = 5 if topics else 0
    return result


def _queries(texts: list[str], rng: random.Random) -> dict[str, list[str]]:
    """Query strings sampled from the stored texts themselves (so most have matches)."""
    import re

    han = re.compile(r"[\u4e00-\u9fff]{4,}")
    runs = [m.group(0) for t in rng.sample(texts, min(len(texts), 20000)) for m in han.finditer(t)]
    rng.shuffle(runs)
    two, four, multi = [], [], []
    for run in runs:
        if len(two) < 30:
            i = rng.randrange(len(run) - 1)
            two.append(run[i : i + 2])
        elif len(four) < 30:
            i = rng.randrange(len(run) - 3)
            four.append(run[i : i + 4])
        elif len(multi) < 30:
            other = runs[rng.randrange(len(runs))]
            j = rng.randrange(len(other) - 1)
            multi.append(f"{run[:2]} {other[j : j + 2]}")
        else:
            break
    return {"2-char": two, "4-char": four, "multi-term": multi}


def bench_search(db_url: str, rng: random.Random) -> dict[str, Any]:
    from sqlalchemy import text

    from tingfeng.db.engine import make_engine
    from tingfeng.search.service import SearchFilters, count, matching_ids, search

    engine = make_engine(db_url)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT id, title_norm, text_norm FROM posts")).all()
    ids = [r[0] for r in rows]
    texts = [r[2] for r in rows]
    titles = [r[1] for r in rows]
    out: dict[str, Any] = {"posts": len(rows)}
    for family, queries in _queries(texts, rng).items():
        page_ms, count_ms, brute_ms = [], [], []
        found = expected = 0
        with engine.connect() as conn:
            for q in queries:
                t0 = time.perf_counter()
                search(conn, q, SearchFilters(), limit=20)
                page_ms.append((time.perf_counter() - t0) * 1000)
                t0 = time.perf_counter()
                n = count(conn, q)
                count_ms.append((time.perf_counter() - t0) * 1000)
                terms = q.split()
                t0 = time.perf_counter()
                brute = {
                    pid
                    for pid, t, ti in zip(ids, texts, titles, strict=True)
                    if all(term in t or term in ti for term in terms)
                }
                brute_ms.append((time.perf_counter() - t0) * 1000)
                got = matching_ids(conn, q)
                expected += len(brute)
                found += len(brute & got)
                if n != len(brute):
                    print(
                        f"  count mismatch for {q!r}: index {n}, scan {len(brute)}", file=sys.stderr
                    )
        out[family] = {
            "queries": len(queries),
            "page_p50_ms": round(statistics.median(page_ms), 2),
            "page_p95_ms": round(_p95(page_ms), 2),
            "count_p50_ms": round(statistics.median(count_ms), 2),
            "count_p95_ms": round(_p95(count_ms), 2),
            "brute_p50_ms": round(statistics.median(brute_ms), 2),
            "speedup_vs_scan": round(
                statistics.median(brute_ms) / max(statistics.median(page_ms), 1e-6), 1
            ),
            "recall": round(found / expected, 6) if expected else 1.0,
            "matches": expected,
        }
    return out


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def main() -> int:
    if sys.argv[1:2] == ["load"]:  # its own options (bench/load.py)
        from bench import load

        return load.main(sys.argv[2:])
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument(
        "what",
        nargs="?",
        choices=(
            "all",
            "ingest",
            "analysis",
            "topics",
            "events",
            "spikes",
            "spread",
            "alerts",
            "scaleout",
            "load",
        ),
        default="all",
        help="ingest (with search, which reads the ingested database), analysis, topics "
        "(matching throughput), events (grouping quality and speed), spikes (CrisisLexT26), "
        "spread (CED repost trees), alerts (push to webhook latency), load (50 users on the "
        "pages and API while posts arrive; `load --help` for its options; not in all), or all "
        "(default)",
    )
    parser.add_argument("--ced", type=Path, default=DEFAULT_CED, help="CED cascades file")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="shared data directory")
    parser.add_argument("--limit", type=int, default=None, help="ingest at most N items")
    parser.add_argument("--db", default=None, help="database URL (default: a fresh SQLite file)")
    parser.add_argument(
        "--topics",
        action="store_true",
        help="ingest: with the demo's five topics active (matching, events, spikes per batch)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="analysis: score snownlp on 300 rows a set and 500 posts (about 2 min less)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    if not args.ced.exists():
        print(f"error: {args.ced} not found (pass --ced FILE)", file=sys.stderr)
        return 2
    if args.what in ("all", "ingest"):
        _run_ingest_and_search(args)
    if args.what in ("all", "analysis"):
        if not (args.data / "sentiment").is_dir():
            print(f"error: {args.data} has no sentiment/ (pass --data DIR)", file=sys.stderr)
            return 2
        from bench import analysis

        result = {
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": machine(),
            **analysis.run(args.data, args.ced, quick=args.quick),
        }
        m = result["machine"]
        print(
            f"\nmachine: {m['cpu']} · {m['cores']} cores · {m['memory_gb']} GB · "
            f"Python {m['python']} · {m['git']}"
        )
        analysis.print_table(result)
        _write(args.out, "analysis", result, latest=False)
    for name in ("topics", "events", "spikes", "spread", "alerts", "scaleout"):
        if args.what in ("all", name):
            _run_module(name, args)
    return 0


def _run_module(name: str, args: argparse.Namespace) -> None:
    """One of the issue-4 benchmarks (bench/<name>.py: run(data, quick=) and print_table)."""
    import importlib

    module = importlib.import_module(f"bench.{name}")
    print(f"\nrunning the {name} benchmark …", file=sys.stderr)
    result = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        **module.run(args.data, quick=args.quick),
    }
    m = result["machine"]
    print(
        f"\nmachine: {m['cpu']} · {m['cores']} cores · {m['memory_gb']} GB · "
        f"Python {m['python']} · {m['git']}"
    )
    module.print_table(result)
    _write(args.out, name, result, latest=False)


def _run_ingest_and_search(args: argparse.Namespace) -> None:
    rng = random.Random(20261121)
    with tempfile.TemporaryDirectory(prefix="tingfeng-bench-") as tmp:
        workdir = Path(tmp)
        db_url = args.db or f"sqlite:///{workdir / 'bench.db'}"
        print(f"ingesting {args.ced} into {db_url} …", file=sys.stderr)
        ingest = bench_ingest(db_url, args.ced, args.limit, topics=args.topics)
        baseline = storage_baseline(min(ingest["posts"], 200_000), workdir)
        print("searching …", file=sys.stderr)
        searches = bench_search(db_url, rng)
    result = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "ingest": ingest,
        "baseline_sqlite_rows_per_s": round(baseline, 1),
        "search": searches,
        "floors": FLOORS,
    }
    _print_table(result)
    _write(args.out, "bench", result, latest=True)


def _write(out: Path, prefix: str, result: dict[str, Any], *, latest: bool) -> None:
    """`<prefix>-<time>.json`; `latest.json` stays the ingest/search result it always was."""
    out.mkdir(parents=True, exist_ok=True)
    body = json.dumps(result, ensure_ascii=False, indent=2)
    path = out / f"{prefix}-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    path.write_text(body, encoding="utf-8")
    if latest:
        (out / "latest.json").write_text(body, encoding="utf-8")
    print(f"\nwrote {path}")


def _print_table(r: dict[str, Any]) -> None:
    m, ing = r["machine"], r["ingest"]
    print(
        f"\nmachine: {m['cpu']} · {m['cores']} cores · {m['memory_gb']} GB · Python {m['python']} · "
        f"SQLite {m['sqlite']} · {m['git']}"
    )
    print("\n| ingest | value | floor |\n|---|---:|---:|")
    print(f"| posts | {ing['posts']:,} | |")
    if ing.get("topics"):
        print(
            f"| active topics / matched posts / posts in events / events | {ing['topics']} / "
            f"{ing['topic_matches']:,} / {ing['event_posts']:,} / {ing['events']:,} | |"
        )
    print(f"| posts/s end to end | {ing['posts_per_s']:,.0f} | ≥ {FLOORS['posts_per_s']:,.0f} |")
    print(
        f"| bare SQLite executemany rows/s (baseline) | {r['baseline_sqlite_rows_per_s']:,.0f} | |"
    )
    print(
        f"| ratio to baseline | {ing['posts_per_s'] / max(r['baseline_sqlite_rows_per_s'], 1):.3f} | |"
    )
    print(f"| peak RSS MB | {ing['peak_rss_mb']} | |")
    for stage, secs in ing["stages_s"].items():
        print(f"| stage {stage} s | {secs} | |")
    print("\n| search | page p50 ms | page p95 ms | count p95 ms | scan p50 ms | × scan | recall |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for family, s in r["search"].items():
        if family == "posts":
            continue
        print(
            f"| {family} | {s['page_p50_ms']} | {s['page_p95_ms']} | {s['count_p95_ms']} | "
            f"{s['brute_p50_ms']} | {s['speedup_vs_scan']} | {s['recall']} |"
        )


if __name__ == "__main__":
    raise SystemExit(main())
