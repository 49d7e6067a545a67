"""The posts arriving during the load benchmark (bench/load.py): CED reposts as the push API
takes them, the push driver (its own process, paced by a token bucket) and the alternative, a
`tingfeng ingest` process reading a file at full speed."""

from __future__ import annotations

import gzip
import itertools
import json
import multiprocessing
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench.load import Instance

# `demo seed` ingests the first stories of CED; ours start after them, so that nothing pushed
# is a duplicate of a stored post (a duplicate is not stored and would read as a lost rate).
SKIP_CASCADES = 300
# Reposts kept per story: many stories, as an office follows, rather than a few huge ones.
REPOSTS_PER_STORY = 200
PUSH_BATCH_MAX = 1000  # the push API's limit per request
PUSH_IN_FLIGHT = 4
EMPTY_REPOST_TEXT = "转发微博"  # what Weibo shows for a repost without words (as CED import)


# --- the posts -------------------------------------------------------------------------------


def ced_posts(path: Path, skip: int = SKIP_CASCADES) -> Iterator[dict[str, Any]]:
    """CED cascades after the first `skip`, as push-API posts: the source post, then up to
    REPOSTS_PER_STORY of its reposts, each linked to what it reposts (spread paths)."""
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        for i, line in enumerate(handle):
            if i < skip:
                continue
            record = json.loads(line)
            story = str(record["id"])
            yield {"id": story, "text": record.get("text") or EMPTY_REPOST_TEXT,
                   "platform": "weibo"}  # fmt: skip
            for repost in record.get("reposts", [])[:REPOSTS_PER_STORY]:
                yield {
                    "id": str(repost["mid"]),
                    "text": repost.get("text") or EMPTY_REPOST_TEXT,
                    "author": repost.get("uid") or None,
                    "reposts_of": repost.get("parent") or story,
                    "kind": "repost",
                    "platform": "weibo",
                }


def write_posts(path: Path, posts: Iterator[dict[str, Any]], n: int, *, day: bool) -> int:
    """`n` posts as JSONL; `day`: dated evenly over the last 24 hours (else undated)."""
    now = datetime.now(UTC)
    written = 0
    with path.open("w", encoding="utf-8") as out:
        for post in itertools.islice(posts, n):
            if day:
                at = now - timedelta(hours=24) + timedelta(hours=24) * written / max(n, 1)
                post = post | {"published_at": at.isoformat(timespec="seconds")}
            out.write(json.dumps(post, ensure_ascii=False) + "\n")
            written += 1
    return written


# --- the ingest drivers ------------------------------------------------------------------------


def drive(
    urls: list[str],
    source_id: int,
    token: str,
    posts_file: str,
    rate: float,
    seconds: float,
    out: str,
    ready: Any = None,
) -> None:
    """The push driver (its own process): `rate` posts/s through the push API for `seconds`.

    A token bucket fills at `rate` and holds at most one second's worth; every 100 ms the
    posts due go out in one request if fewer than PUSH_IN_FLIGHT are in flight. When the
    server falls behind, requests grow (up to 1,000 posts) and then tokens overflow: those
    posts are not sent, and the rate stored shows it."""
    import httpx

    with open(posts_file, encoding="utf-8") as handle:
        pending = [json.loads(line) for line in handle]
    pending.reverse()  # pop() from the end = file order
    client = httpx.Client(timeout=120, limits=httpx.Limits(max_connections=PUSH_IN_FLIGHT))
    endpoints = itertools.cycle(f"{url}/api/v1/sources/{source_id}/posts" for url in urls)
    lock = threading.Lock()
    slots = threading.Semaphore(PUSH_IN_FLIGHT)
    stats: dict[str, Any] = {"sent": 0, "accepted": 0, "stored": 0, "requests": 0,
                             "errors": 0, "error_samples": [], "overflow": 0}  # fmt: skip
    latencies: list[float] = []

    def push(endpoint: str, batch: list[dict[str, Any]]) -> None:
        t0 = time.perf_counter()
        try:
            r = client.post(endpoint, headers={"Authorization": f"Bearer {token}"},
                            json={"posts": batch})  # fmt: skip
            ok = r.status_code == 200
            body = r.json() if ok else {}
            problem = "" if ok else f"{r.status_code}: {r.text[:200]}"
        except (httpx.HTTPError, ValueError) as exc:
            ok, body, problem = False, {}, f"{type(exc).__name__}: {exc}"
        finally:
            slots.release()
        with lock:
            stats["requests"] += 1
            latencies.append((time.perf_counter() - t0) * 1000)
            if ok:
                stats["accepted"] += int(body.get("stored", 0)) + int(body.get("duplicates", 0))
                stats["stored"] += int(body.get("stored", 0))
            else:
                stats["errors"] += 1
                if len(stats["error_samples"]) < 3:
                    stats["error_samples"].append(problem)

    pool = ThreadPoolExecutor(max_workers=PUSH_IN_FLIGHT)
    tick = 0.1
    tokens = 0.0
    if ready is not None:
        ready.set()  # the window opens now
    start = last = time.perf_counter()
    next_at = start + tick
    while (now := time.perf_counter()) - start < seconds and pending:
        tokens += rate * (now - last)
        last = now
        if tokens > rate:  # at most a second's worth waits: the rest is not sent
            stats["overflow"] += int(tokens - rate)
            tokens = rate
        n = min(int(tokens), PUSH_BATCH_MAX, len(pending))
        if n >= 1 and slots.acquire(blocking=False):
            stamp = datetime.now(UTC).isoformat(timespec="seconds")
            batch = [pending.pop() | {"published_at": stamp} for _ in range(n)]
            tokens -= n
            stats["sent"] += n
            pool.submit(push, next(endpoints), batch)
        time.sleep(max(0.0, next_at - time.perf_counter()))
        next_at += tick
    sending_s = time.perf_counter() - start
    pool.shutdown(wait=True)
    client.close()
    latencies.sort()
    stats.update(
        sending_s=round(sending_s, 2),
        finished_s=round(time.perf_counter() - start, 2),
        push_p50_ms=percentile(latencies, 50),
        push_p95_ms=percentile(latencies, 95),
        push_max_ms=round(latencies[-1], 1) if latencies else None,
        ran_out=not pending,
    )
    Path(out).write_text(json.dumps(stats), encoding="utf-8")


class Ingest:
    """Posts arriving during a phase: the push driver or a `tingfeng ingest` of a file."""

    def __init__(self, instance: Instance, mode: str, rate: float, seconds: float,
                 posts: Iterator[dict[str, Any]]) -> None:  # fmt: skip
        self.instance, self.mode, self.rate, self.seconds = instance, mode, rate, seconds
        workdir = instance.workdir
        self.out = workdir / "driver.json"
        # push: what the driver can send at most; file: enough for the ingest not to run dry.
        n = int(rate * seconds * (1.2 if mode == "push" else 5)) + 1000
        self.file = workdir / "arriving.jsonl"
        self.prepared = write_posts(self.file, posts, n, day=False)
        self.proc: Any = None

    def start(self) -> None:
        if self.mode == "push":
            ctx = multiprocessing.get_context("spawn")
            ready = ctx.Event()
            self.proc = ctx.Process(
                target=drive,
                args=(self.instance.urls, self.instance.source_id, self.instance.token,
                      str(self.file), self.rate, self.seconds, str(self.out), ready),
                daemon=True,
            )  # fmt: skip
            self.proc.start()
            if not ready.wait(timeout=120):
                raise RuntimeError("the push driver did not start within 120 s")
        else:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tingfeng.cli", "ingest", str(self.file),
                 "--source", "导入·压测"],
                cwd=self.instance.workdir, env=self.instance.env,
                stdout=subprocess.DEVNULL, stderr=open(self.instance.workdir / "ingest.log", "ab"),  # noqa: SIM115
            )  # fmt: skip
            # The window opens with its first stored batch, not with its start-up (models).
            before = self.instance.count_posts()
            deadline = time.monotonic() + 120
            while self.instance.count_posts() == before:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the file ingest stored nothing: see ingest.log")
                time.sleep(0.2)

    def finish(self) -> dict[str, Any]:
        """Waits for the driver (push), or stops the file ingest at the end of the window."""
        if self.mode == "push":
            self.proc.join(timeout=300)
            if not self.out.exists():
                raise RuntimeError("the push driver wrote no result")
            return json.loads(self.out.read_text(encoding="utf-8"))
        finished = self.proc.poll() is not None
        if not finished:
            self.proc.terminate()
        self.proc.wait(timeout=60)
        return {"file_posts": self.prepared, "finished_before_the_end": finished}


def percentile(ordered: list[float], p: float) -> float | None:
    """The `p`th percentile (nearest rank) of sorted values; None when there are none."""
    if not ordered:
        return None
    return round(ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))], 1)
