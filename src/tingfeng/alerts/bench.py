"""`tingfeng bench alerts`: how soon a warning reaches its receiver, and that none is lost or
repeated.

A fresh embedded instance (`tingfeng serve`, SQLite, in a temporary directory) gets posts
through the push API at a steady rate; one post in `fire_every` carries words a rule fires on.
The rule sends each alert to a webhook receiver on loopback in this process. Latency runs from
the moment the request carrying the post is sent to the moment the receiver has the alert
(so it includes the push, analysis, storage, the rule and the outbox). Lost: posts accepted
whose alert had not arrived `drain_s` after the last push; duplicated: arrivals beyond the
first of an alert. A warm-up post (not counted) loads the models first.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

MARK = re.compile(r"TFB(\d{7})")
# Ordinary posts: varied, realistic Chinese that the rule does not fire on.
TEXTS = (
    "今天地铁早高峰人很多，希望增加班次。",
    "小区门口的道路施工已经两个月了，什么时候能完工？",
    "市图书馆新馆开放，周末带孩子去看看。",
    "菜市场的菜价最近涨得厉害，猪肉又贵了。",
    "学校门口的交通秩序比以前好多了，点赞交警。",
    "医院挂号还是难，专家号一放出来就没了。",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Receiver:
    """A webhook receiver on loopback noting when each alert arrived."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.first: dict[int, float] = {}
        self.arrivals = 0
        self.keys: set[str] = set()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                at = time.perf_counter()
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                found = MARK.search(body.decode("utf-8", "replace"))
                with receiver.lock:
                    receiver.arrivals += 1
                    receiver.keys.add(self.headers.get("Idempotency-Key", ""))
                    if found:
                        receiver.first.setdefault(int(found.group(1)), at)
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _prepare(workdir: Path, receiver: Receiver) -> tuple[dict[str, str], int, str]:
    """A fresh database with a push source, a person, a webhook channel and the rule."""
    from tingfeng.alerts.service import create_channel, create_rule
    from tingfeng.collect.sources import add_source, issue_push_token
    from tingfeng.db.engine import make_engine, write_transaction
    from tingfeng.db.migrate import upgrade
    from tingfeng.office.people import add_user
    from tingfeng.settings import Settings

    env = {
        "TINGFENG_DATABASE_URL": f"sqlite:///{workdir / 'tingfeng.db'}",
        "TINGFENG_DATA_DIR": str(workdir / "var"),
        "TINGFENG_FETCH_ALLOWED_NETWORKS": '["127.0.0.0/8"]',
        "TINGFENG_LOG_LEVEL": "WARNING",
    }
    settings = Settings(
        database_url=env["TINGFENG_DATABASE_URL"],
        data_dir=workdir / "var",
        fetch_allowed_networks=["127.0.0.0/8"],
    )
    engine = make_engine(settings.database_url)
    upgrade(engine)
    with write_transaction(engine) as conn:
        source = add_source(conn, name="bench-push", kind="push", config={"platform": "weibo"})
        token = issue_push_token(conn, source.id)
        person = add_user(conn, "bench", "值班员")
        channel = create_channel(
            conn, settings, name="bench-hook", kind="webhook", target=receiver.url, config={}
        )
        create_rule(
            conn,
            {
                "name": "基准测试",
                "conditions": {"query": "预警测试"},
                "per": "post",
                "rate_limit_per_hour": 0,
                "escalate": False,
                "recipients": {"user_ids": [person.id]},
                "channel_ids": [channel["id"]],
            },
            datetime.now(UTC),
        )
    engine.dispose()
    return env, source.id, token


def _start_server(
    workdir: Path, env: dict[str, str], port: int, wake: bool, helper: bool = True
) -> subprocess.Popen:
    full = os.environ | env | {"TINGFENG_OUTBOX_WAKE": "true" if wake else "false"}
    if not helper:  # the baseline: every pushed post analysed in the web process
        full["TINGFENG_PREPARE_PROCESSES"] = "0"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tingfeng.cli", "serve", "--port", str(port)],
        cwd=workdir,
        env=full,
        stdout=subprocess.DEVNULL,
        stderr=open(workdir / "server.log", "ab"),  # noqa: SIM115 (the child keeps it)
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server stopped at start: see {workdir / 'server.log'}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("the server did not start within 60 s")


def run_alert_bench(
    rate: float,
    seconds: float,
    *,
    fire_every: int = 20,
    wake: bool = True,
    helper: bool = True,
    drain_s: float = 90.0,
) -> dict[str, Any]:
    """Push `rate` posts/s for `seconds`; one in `fire_every` fires the rule. `helper=False`
    analyses pushed posts in the web process (tingfeng.ingest.helper), as before it existed."""
    import logging

    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per push otherwise
    receiver = Receiver()
    with tempfile.TemporaryDirectory(prefix="tingfeng-bench-alerts-") as tmp:
        workdir = Path(tmp)
        env, source_id, token = _prepare(workdir, receiver)
        port = _free_port()
        server = _start_server(workdir, env, port, wake, helper)
        try:
            result = _drive(port, source_id, token, receiver, rate, seconds, fire_every, drain_s)
        finally:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
            receiver.close()
    result.update(rate=rate, seconds=seconds, fire_every=fire_every, wake=wake, helper=helper)
    return result


def _drive(
    port: int,
    source_id: int,
    token: str,
    receiver: Receiver,
    rate: float,
    seconds: float,
    fire_every: int,
    drain_s: float,
) -> dict[str, Any]:
    # A request every 100 ms carries the posts due by then (10 at 100 posts/s, 100 at 1,000):
    # a steady stream, in batches as a platform pushing to us would send them.
    tick = 0.1
    per_tick = rate * tick
    url = f"http://127.0.0.1:{port}/api/v1/sources/{source_id}/posts"
    headers = {"Authorization": f"Bearer {token}"}
    sent_at: dict[int, float] = {}
    accepted: set[int] = set()
    errors: list[str] = []
    request_ms: list[float] = []  # how long each push request took (to its answer)
    lock = threading.Lock()
    client = httpx.Client(timeout=30, limits=httpx.Limits(max_connections=8))

    def push(batch: list[dict[str, Any]], marks: list[int]) -> None:
        t0 = time.perf_counter()
        with lock:
            for m in marks:
                sent_at[m] = t0
        try:
            r = client.post(url, headers=headers, json={"posts": batch})
            with lock:
                request_ms.append((time.perf_counter() - t0) * 1000)
            ok = r.status_code == 200
            if not ok:
                errors.append(f"{r.status_code}: {r.text[:200]}")
        except httpx.HTTPError as exc:
            ok = False
            errors.append(str(exc))
        if ok:
            with lock:
                accepted.update(marks)

    # Warm-up, not measured: the first request loads the models, the first alert the rules.
    # As many posts as a batch the helper process analyses (push_helper_min_posts), so that
    # it has loaded its models too.
    warm_posts = [{"id": "warm", "text": "预警测试 TFB9999999 热身"}]
    warm_posts += [
        {"id": f"warm{i}", "text": f"{TEXTS[i % len(TEXTS)]}（热身{i}）"} for i in range(40)
    ]
    warm = client.post(url, headers=headers, json={"posts": warm_posts})
    if warm.status_code != 200:
        raise RuntimeError(f"the push API refused the warm-up post: {warm.text[:300]}")
    deadline = time.perf_counter() + 60
    while 9999999 not in receiver.first and time.perf_counter() < deadline:
        time.sleep(0.05)
    n = 0
    owed = 0.0
    start = time.perf_counter()
    pool = ThreadPoolExecutor(max_workers=8)
    next_at = start
    while time.perf_counter() - start < seconds:
        owed += per_tick
        count = int(owed)
        owed -= count
        batch, marks = [], []
        for _ in range(count):
            n += 1
            if n % fire_every == 0:
                marks.append(n)
                text = f"地铁停运预警测试 TFB{n:07d} 乘客滞留，请核实。"
            else:
                text = f"{TEXTS[n % len(TEXTS)]}（{n}）"
            batch.append({"id": f"b{n}", "text": text})
        if batch:
            pool.submit(push, batch, marks)
        next_at += tick
        time.sleep(max(0.0, next_at - time.perf_counter()))
    pool.shutdown(wait=True)
    pushed_s = time.perf_counter() - start
    deadline = time.perf_counter() + drain_s
    while time.perf_counter() < deadline:
        with receiver.lock:
            if accepted.issubset(receiver.first):
                break
        time.sleep(0.05)
    client.close()
    with receiver.lock:
        got = {m: t for m, t in receiver.first.items() if m in accepted}
        arrivals, distinct = receiver.arrivals, len(receiver.first)
    latencies = sorted((got[m] - sent_at[m]) * 1000 for m in got)
    late = sum(1 for m in got if (got[m] - sent_at[m]) > 1.0)

    def pct(p: float) -> float | None:
        if not latencies:
            return None
        return round(latencies[min(len(latencies) - 1, round(p / 100 * (len(latencies) - 1)))], 1)

    return {
        "posts": n,
        "posts_per_s_achieved": round(n / pushed_s, 1),
        "sent": len(accepted),
        "received": len(got),
        "lost": len(accepted) - len(got),
        "duplicated": arrivals - distinct,
        "push_errors": len(errors),
        "push_error_samples": errors[:3],
        "p50_ms": pct(50),
        "p95_ms": pct(95),
        "p99_ms": pct(99),
        "max_ms": round(latencies[-1], 1) if latencies else None,
        "over_1s": late,
        "drain_s": round(time.perf_counter() - start - pushed_s, 1),
        "mean_ms": round(statistics.fmean(latencies), 1) if latencies else None,
        # Where the latency goes: the push request itself (analysis, storage, the rule) …
        "push_p50_ms": _percentile(request_ms, 50),
        "push_p99_ms": _percentile(request_ms, 99),
    }


def _percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))], 1)


def main_json(rate: float, seconds: float) -> str:
    return json.dumps(run_alert_bench(rate, seconds), ensure_ascii=False)
