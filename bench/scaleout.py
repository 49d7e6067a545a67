"""Scale-out ingest: the CED file drained from Redis by 1 and 2 worker processes, on
PostgreSQL and on SQLite, each on a fresh database (`tingfeng bench ingest --queue … --workers N`).

The baseline in the same run is one worker; the figure is the speed-up of two. Throwaway
PostgreSQL and Redis servers are started for the run (tests/servers.py; PostgreSQL with
fsync off, as in the tests, so the disk of this machine does not decide the result).

`python -m bench scaleout [--quick] [--limit N]`; --quick ingests 20,000 posts instead of 60,000.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

FLOORS = {"speedup_2_workers_postgresql": 1.6}
ROOT = Path(__file__).resolve().parent.parent


def _bench(db: str, queue: str, ced: Path, limit: int, workers: int) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "tingfeng.cli", "--db", db, "bench", "ingest"]
    cmd += ["--input", str(ced), "--limit", str(limit), "--queue", queue]
    cmd += ["--workers", str(workers), "--json"]
    env = os.environ | {"TINGFENG_CONFIG": "/nonexistent.toml", "TINGFENG_LOG_LEVEL": "WARNING"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(data: Path, *, quick: bool = False, limit: int | None = None) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT))
    import redis
    from tests import servers

    ced = data / "rumor" / "ced" / "cascades.jsonl.gz"
    limit = limit or (20_000 if quick else 60_000)
    runs: list[dict[str, Any]] = []
    with (
        servers.PostgresServer() as pg,
        servers.RedisServer() as rd,
        tempfile.TemporaryDirectory(prefix="tingfeng-scaleout-") as tmp,
    ):
        for backend in ("postgresql", "sqlite"):
            for workers in (1, 2):
                redis.Redis.from_url(rd.url).flushall()
                if backend == "postgresql":
                    db = pg.url(pg.create_database())
                else:
                    db = f"sqlite:///{Path(tmp) / f'w{workers}.db'}"
                print(f"  {backend}, {workers} worker(s) …", file=sys.stderr)
                runs.append(_bench(db, rd.url, ced, limit, workers))
    speedup = {
        backend: round(
            next(r for r in runs if r["backend"] == backend and r["workers"] == 2)["posts_per_s"]
            / max(
                next(r for r in runs if r["backend"] == backend and r["workers"] == 1)[
                    "posts_per_s"
                ],
                1e-9,
            ),
            2,
        )
        for backend in ("postgresql", "sqlite")
    }
    return {"limit": limit, "runs": runs, "speedup": speedup, "floors": FLOORS}


def print_table(r: dict[str, Any]) -> None:
    print(f"\nscale-out ingest: {r['limit']:,} CED posts queued on Redis, drained by N workers")
    print("\n| database | workers | posts/s | seconds | stored | duplicates | workers used |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for x in r["runs"]:
        print(
            f"| {x['backend']} | {x['workers']} | {x['posts_per_s']:,.0f} | {x['seconds']} "
            f"| {x['stored']:,} | {x['duplicates']:,} | {x['workers_used']} |"
        )
    floor = r["floors"]["speedup_2_workers_postgresql"]
    print("\n| speed-up of 2 workers over 1 (baseline) | value | floor |\n|---|---:|---:|")
    print(f"| PostgreSQL + Redis | {r['speedup']['postgresql']:.2f}× | ≥ {floor}× |")
    print(f"| SQLite + Redis (one writer at a time) | {r['speedup']['sqlite']:.2f}× | |")
