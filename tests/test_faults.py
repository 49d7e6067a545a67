"""Faults: processes killed with kill -9 in the middle of their work, PostgreSQL and Redis
restarted under load, a locked, read-only or full database, a clock that jumps, a source that
hangs. Real processes on real PostgreSQL and Redis servers (tests/servers.py).

Each test checks the invariants: every accepted post is stored once (counted by platform and
external id), every alert is delivered once (the webhook receiver counts Idempotency-Keys),
every case transition is done or not done (the case's state and its history and audit rows
agree). Each leaves its counts in test-artifacts/faults/<test>.json (tests/faults.py).

Known gaps that still fail are in tests/test_faults_pending.py.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import sqlite3
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, func, select

from tests.faults import (
    CED,
    InThreadWeb,
    Proc,
    Receiver,
    batches,
    ced_items,
    ced_texts,
    cli_env,
    free_port,
    posts_tally,
    queue_idle,
    redis_waiting,
    wait_for,
    write_tally,
)
from tests.loopback import LoopbackServer, Reply
from tests.servers import PersistentRedisServer, PostgresServer
from tingfeng import audit
from tingfeng.alerts import clock as alert_clock
from tingfeng.alerts.engine import AlertContext
from tingfeng.alerts.escalation import set_policy
from tingfeng.alerts.service import create_channel, create_rule
from tingfeng.cases.service import open_case
from tingfeng.collect.fetcher import Fetcher
from tingfeng.collect.health import health_report
from tingfeng.collect.items import RawItem
from tingfeng.collect.runner import run_source
from tingfeng.collect.scheduler import SchedulerLoop
from tingfeng.collect.sources import add_source, issue_push_token, list_sources
from tingfeng.db.engine import make_engine, write_transaction
from tingfeng.db.migrate import upgrade
from tingfeng.db.models import (
    Alert,
    AlertLog,
    AuditEntry,
    Case,
    CaseDeadline,
    CaseTransition,
    Delivery,
    FetchLog,
    Report,
    Source,
)
from tingfeng.ingest.ingestor import Ingestor, SourceRef
from tingfeng.office.people import add_user
from tingfeng.office.signin import issue_api_token
from tingfeng.settings import Settings
from tingfeng.tasks import Queue, build_queue

# --- 1. kill -9 of a worker in the middle of ingest (PostgreSQL + Redis) ----------------------

BATCH = 100
# Enough batches that two workers (COPY on PostgreSQL: tens of ms a batch) still have some
# queued when the victim is killed half-way.
POSTS = 4000
# The PostgreSQL and Redis restart test: imported posts (batches of BATCH) and pushed posts.
RESTART_POSTS = 10_000
RESTART_PUSHED = 2_000


def start_worker(db: str, queue: str, tmp: Path, name: str) -> Proc:
    # A worker silent for 3 s is taken for dead (20 s by default): its tasks come back sooner.
    return Proc(
        ["--db", db, "--queue", queue, "serve", "--role", "worker", "--workers", "1"],
        cli_env(worker_alive_s=3), tmp / f"{name}.log",
    )  # fmt: skip


def worker_killed_mid_ingest(
    db: str, queue_url: str, tmp: Path, kill_after: int, sigterm: bool = False
) -> tuple[Engine, Queue, set[tuple[str | None, str | None]], list[Proc]]:
    """Two workers ingest POSTS posts in batches; one is killed (kill -9, or SIGTERM) once
    `kill_after` batches are done while others are still queued, and a replacement is
    started. Returns when the queue is idle again: (engine, queue, accepted keys, running
    workers)."""
    engine = make_engine(db)
    upgrade(engine)
    with write_transaction(engine) as conn:
        source = add_source(conn, name="import:ced", kind="import", config={"path": str(CED)})
    workers = [start_worker(db, queue_url, tmp, f"worker{n}") for n in (1, 2)]
    try:
        wait_for(lambda: redis_waiting(queue_url) >= 2, 60, "two workers polling Redis", workers)
        settings = Settings(database_url=db, queue_url=queue_url, data_dir=tmp / "var")
        queue = build_queue(settings)
        items = ced_items(POSTS)
        for batch in batches(items, BATCH):
            queue.enqueue_items(source.id, "Asia/Shanghai", batch)

        def batches_done() -> int:
            with engine.connect() as conn:
                return conn.execute(select(func.count(FetchLog.id))).scalar_one()

        wait_for(lambda: batches_done() >= kill_after, 120, f"{kill_after} batches", workers)
        pending = queue.huey.pending_count()
        assert pending > 0, "all batches were taken before the kill: more posts"
        victim = workers.pop(0)
        victim.terminate() if sigterm else victim.kill9()
        workers.append(start_worker(db, queue_url, tmp, "worker3"))
        wait_for(lambda: queue_idle(queue.huey, queue_url, 2), 180, "the queue to drain", workers)
    except BaseException:
        for w in workers:  # left running, they would take the next tests' tasks
            w.stop()
        engine.dispose()
        raise
    return engine, queue, {(i.platform, i.external_id) for i in items}, workers


@pytest.mark.slow
@pytest.mark.parametrize("kill_after", [1, POSTS // BATCH // 2], ids=["first-batch", "half"])
def test_worker_killed_mid_ingest_loses_no_batch(
    fresh_postgres_db: str, fresh_redis_url: str, tmp_path: Path, kill_after: int
) -> None:
    """kill -9 of one of two workers while it holds a batch, a replacement started: the batch
    it held comes back (tingfeng.queue_recovery) and every post is stored once, without
    running the import again."""
    engine, _queue, accepted, workers = worker_killed_mid_ingest(
        fresh_postgres_db, fresh_redis_url, tmp_path, kill_after
    )
    try:
        tally = posts_tally(engine, accepted)
        write_tally(
            f"worker_kill9_mid_ingest_after_{kill_after}",
            notes=f"kill -9 of one of two workers after {kill_after} of {POSTS // BATCH} "
            "batches of 100, replacement started, no re-run of the import",
            **tally,
        )
        assert tally["posts_duplicated"] == 0
        assert tally["posts_lost"] == 0, f"{tally['posts_lost']} posts lost with the batch held"
        assert tally["posts_stored"] == len(accepted)
    finally:
        for w in workers:
            w.stop()
        engine.dispose()


@pytest.mark.slow
def test_worker_stopped_with_sigterm_mid_batch_finishes_it(
    fresh_postgres_db: str, fresh_redis_url: str, tmp_path: Path
) -> None:
    """SIGTERM (what systemd and `kill` send) to the only worker right after it took a batch
    of 600 posts, then a replacement: the batch is stored once (SIGTERM is a graceful stop)."""
    db, queue_url = fresh_postgres_db, fresh_redis_url
    engine = make_engine(db)
    upgrade(engine)
    with write_transaction(engine) as conn:
        source = add_source(conn, name="import:ced", kind="import", config={"path": str(CED)})
    worker = start_worker(db, queue_url, tmp_path, "worker1")
    workers = [worker]
    try:
        wait_for(lambda: redis_waiting(queue_url) >= 1, 60, "the worker polling Redis", workers)
        queue = build_queue(Settings(database_url=db, queue_url=queue_url))
        items = ced_items(600)
        queue.enqueue_items(source.id, "Asia/Shanghai", items)
        wait_for(
            lambda: queue.huey.pending_count() == 0 and redis_waiting(queue_url) == 0,
            60, "the worker to take the batch", workers,
        )  # fmt: skip
        worker.terminate()
        workers = [start_worker(db, queue_url, tmp_path, "worker2")]
        wait_for(lambda: queue_idle(queue.huey, queue_url, 1), 120, "an idle queue", workers)
        tally = posts_tally(engine, {(i.platform, i.external_id) for i in items})
        write_tally(
            "worker_sigterm_mid_ingest",
            notes="SIGTERM to the only worker right after it took a batch of 600 posts, "
            "replacement started",
            **tally,
        )
        assert tally["posts_lost"] == 0 and tally["posts_duplicated"] == 0
    finally:
        for w in workers:
            w.stop()
        engine.dispose()


# --- 2. kill -9 of the scheduler; sources and the alert clock go on after a restart -----------

FEED = """<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0"><channel><title>{name}</title>{items}</channel></rss>"""
ITEM = """<item><title>{name}第{n}条通报</title><link>{base}/{name}/{n}.html</link>
<guid>{name}-{n}</guid><description>{name}发布第{n}条情况通报，相关部门正在处置。</description></item>"""


def growing_feed(loopback: LoopbackServer, name: str) -> str:
    """A feed that has one more item at each request and answers slowly, so a run lasts."""
    count = [0]
    path = f"/feed{len(loopback.routes)}.xml"

    def feed(_request: object) -> Reply:
        count[0] += 1
        items = "".join(
            ITEM.format(name=name, n=n, base=loopback.url(path)) for n in range(count[0])
        )
        body = FEED.format(name=name, items=items).encode()
        return Reply(200, body, content_type="application/rss+xml", delay_s=0.2)

    loopback.route(path, feed)
    return loopback.url(path)


def fetch_runs(engine: Engine, ok: bool = True) -> dict[int, list[tuple[datetime, datetime]]]:
    """(started, finished) of every (successful) run of every polled source, in order."""
    runs: dict[int, list[tuple[datetime, datetime]]] = {}
    query = (
        select(FetchLog.source_id, FetchLog.started_at, FetchLog.finished_at)
        .join(Source, Source.id == FetchLog.source_id)
        .where(Source.kind == "feed")
        .order_by(FetchLog.started_at)
    )
    with engine.connect() as conn:
        rows = conn.execute(query.where(FetchLog.ok.is_(True)) if ok else query).all()
    for sid, started, finished in rows:
        runs.setdefault(sid, []).append((started, finished))
    return runs


def escalations(engine: Engine) -> list[tuple[int, int]]:
    with engine.connect() as conn:
        return [
            (a, d["step"])
            for a, d in conn.execute(
                select(AlertLog.alert_id, AlertLog.detail).where(AlertLog.what == "escalated")
            )
        ]


@pytest.mark.slow
def test_scheduler_killed_and_restarted_keeps_collecting_and_escalating(
    fresh_postgres_db: str, fresh_redis_url: str, loopback: LoopbackServer, tmp_path: Path
) -> None:
    db, queue_url = fresh_postgres_db, fresh_redis_url
    receiver = Receiver(loopback)
    settings = Settings(
        database_url=db, data_dir=tmp_path / "var", fetch_allowed_networks=["127.0.0.0/8"],
        analyze_on_ingest=False,
    )  # fmt: skip
    engine = make_engine(db)
    upgrade(engine)
    now = datetime.now(UTC)
    with write_transaction(engine) as conn:
        for name in ("县融媒", "市应急局", "区住建局"):
            add_source(conn, name=name, kind="feed", interval_s=1,
                       config={"url": growing_feed(loopback, name), "fetch_article": "never"})  # fmt: skip
        push = add_source(conn, name="对接平台", kind="push", config={})
        duty = add_user(conn, "duty", "值班员")
        hook = create_channel(conn, settings, name="hook", kind="webhook", target=receiver.url,
                              config={})  # fmt: skip
        # Two steps three seconds apart; the scheduler is killed before each of them.
        step = {"after_minutes": 0.05, "recipients": {"user_ids": [duty.id]},
                "channel_ids": [hook["id"]]}  # fmt: skip
        set_policy(conn, "general", [step, step], now=now)
        create_rule(conn, {"name": "停运", "conditions": {"query": "停运"}, "per": "post",
                           "recipients": {"user_ids": [duty.id]}, "channel_ids": [hook["id"]]},
                    now)  # fmt: skip
    env = cli_env(
        database_url=db, queue_url=queue_url, data_dir=tmp_path / "var",
        fetch_allowed_networks=["127.0.0.0/8"], fetch_per_host_interval_s=0,
        fetch_respect_robots=False, scheduler_tick_s=0.2, alert_clock_s=0.2,
        outbox_poll_s=0.1, delivery_timeout_s=2, workers=2, analyze_on_ingest=False,
    )  # fmt: skip
    worker = Proc(["serve", "--role", "worker"], env, tmp_path / "worker.log")
    schedulers = [Proc(["serve", "--role", "scheduler"], env, tmp_path / "scheduler1.log")]
    try:

        def every_source_ran(times: int) -> bool:
            runs = fetch_runs(engine)
            return len(runs) == 3 and all(len(r) >= times for r in runs.values())

        wait_for(lambda: every_source_ran(2), 90, "each source run twice", [worker, *schedulers])
        Ingestor(engine, settings).ingest(
            SourceRef(push.id), [RawItem(text="地铁2号线停运，乘客滞留。", external_id="s1")]
        )
        # Killed before the first step is due, then between the first and the second.
        for n, escalated in ((2, 0), (3, 1)):
            wait_for(lambda e=escalated: len(escalations(engine)) >= e, 60, f"{escalated} steps",
                     [worker, schedulers[-1]])  # fmt: skip
            before = {sid: len(r) for sid, r in fetch_runs(engine).items()}
            schedulers[-1].kill9()
            schedulers.append(Proc(["serve", "--role", "scheduler"], env,
                                   tmp_path / f"scheduler{n}.log"))  # fmt: skip
            # Collecting goes on: every source runs again after the restart.
            wait_for(
                lambda b=before: all(len(r) > b[sid] for sid, r in fetch_runs(engine).items()),
                120, "every source to run after the restart", [worker, schedulers[-1]],
            )  # fmt: skip
        wait_for(lambda: len(escalations(engine)) >= 2, 60, "both steps", [worker])
        wait_for(lambda: len(receiver.received("escalation:")) >= 2, 30, "their delivery")
    finally:
        for p in (*schedulers, worker):
            p.stop()
    # Each step once: the chain resumed where it was, nothing was told twice.
    assert sorted(step for _, step in escalations(engine)) == [1, 2]
    tally = receiver.tally(sent=3)  # the alert and its two escalations
    assert sorted(Counter(receiver.received("escalation:")).values()) == [1, 1]
    assert tally["alerts_received"] == 3 and tally["alerts_duplicated"] == 0
    # No source was ever fetched by two runs at once.
    runs = fetch_runs(engine, ok=False)
    for sid, spans in runs.items():
        for (_, finished), (started, _) in itertools.pairwise(spans):
            assert started >= finished, f"source {sid}: runs overlap ({finished} > {started})"
    write_tally(
        "scheduler_kill9_mid_run",
        notes="kill -9 of the scheduler role twice (before the first and between the two "
        f"escalation steps), restarted each time; {sum(map(len, runs.values()))} runs of 3 "
        "sources, none overlapping",
        **tally,
    )
    engine.dispose()


# --- 3 and 4. kill -9 of a web process in the middle of pushes and case transitions -----------


def start_web(env: dict[str, str], port: int, log: Path) -> Proc:
    """`tingfeng serve --role web` on `port`, once it answers /healthz."""
    web = Proc(["serve", "--role", "web", "--port", str(port)], env, log)

    def up() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(up, 90, "the web process to answer", [web])
    return web


class Pusher(threading.Thread):
    """Pushes batches of posts one request after another, retrying a request that got no 2xx
    answer (the connection cut, refused, or a 5xx) until it is accepted."""

    def __init__(self, url: str, token: str, items: list[dict[str, Any]], size: int) -> None:
        super().__init__(daemon=True)
        self.url, self.token, self.size = url, token, size
        self.batches = batches(items, size)
        self.accepted: list[dict[str, Any]] = []  # the answers, one per batch
        self.retried = 0  # requests that needed more than one try
        self.in_flight = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with httpx.Client(timeout=30) as client:
                for batch in self.batches:
                    self.accepted.append(self.push(client, batch))
        except BaseException as exc:  # shown by the test
            self.error = exc

    def push(self, client: httpx.Client, batch: list[dict[str, Any]]) -> dict[str, Any]:
        deadline = time.monotonic() + 120
        tries = 0
        while True:
            tries += 1
            self.in_flight.set()
            try:
                r = client.post(self.url, json={"posts": batch},
                                headers={"Authorization": f"Bearer {self.token}"})  # fmt: skip
                if r.status_code == 200:
                    self.retried += tries > 1
                    return r.json()
                assert r.status_code >= 500, r.text  # a refusal would be our bug, not a fault
            except httpx.TransportError:
                pass
            finally:
                self.in_flight.clear()
            assert time.monotonic() < deadline, "a push was not accepted in 2 minutes"
            time.sleep(0.05)  # the retry interval of a polite client


def push_items(n: int, prefix: str = "w") -> list[dict[str, Any]]:
    return [
        {"id": f"{prefix}{i}", "text": text, "platform": "weibo", "author": f"网友{i % 97}"}
        for i, text in enumerate(ced_texts(n))
    ]


# The next action on a case in each state, and the role that takes it.
ROUND = {"new": ("assess", "admin"), "assessed": ("return_assessment", "approver")}


class Mover(threading.Thread):
    """Moves cases back and forth (assess, then return the assessment) through the API, one
    request after another, as an analyst and a leader would; after a request that got no
    answer it reads the case again to see whether the transition happened."""

    def __init__(self, base: str, tokens: dict[str, str], cases: list[int], moves: int) -> None:
        super().__init__(daemon=True)
        self.base, self.tokens, self.cases, self.moves = base, tokens, cases, moves
        self.state = dict.fromkeys(cases, "new")
        self.accepted: Counter[int] = Counter()  # transitions answered 2xx, per case
        self.unanswered = 0  # requests cut off by the kill: done or not, we cannot know
        self.in_flight = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with httpx.Client(base_url=self.base, timeout=30) as client:
                for n in range(self.moves):
                    self.move(client, self.cases[n % len(self.cases)])
        except BaseException as exc:
            self.error = exc

    def call(self, client: httpx.Client, method: str, path: str, role: str, **kw: Any) -> Any:
        """The answer, or None when the request got none (the server was killed or is down)."""
        self.in_flight.set()
        try:
            r = client.request(method, path, headers={"Authorization": f"Bearer {self.tokens[role]}"},
                               **kw)  # fmt: skip
        except httpx.TransportError:
            return None
        finally:
            self.in_flight.clear()
        if r.status_code >= 500:
            return None
        assert r.status_code == 200, r.text
        return r.json()

    def move(self, client: httpx.Client, case_id: int) -> None:
        action, role = ROUND[self.state[case_id]]
        body = {"handling": "核实情况并回应", "reason": "事实不清，重新研判"}
        done = self.call(client, "POST", f"/api/v1/cases/{case_id}/actions/{action}", role,
                         json=body)  # fmt: skip
        if done is not None:
            self.accepted[case_id] += 1
            self.state[case_id] = done["state"]
            return
        self.unanswered += 1
        deadline = time.monotonic() + 120
        while (case := self.call(client, "GET", f"/api/v1/cases/{case_id}", "admin")) is None:
            assert time.monotonic() < deadline, "the web process did not come back"
            time.sleep(0.05)
        self.state[case_id] = case["state"]


def open_cases(engine: Engine, settings: Settings, n: int) -> tuple[list[int], dict[str, str]]:
    """`n` new cases, and API tokens of an administrator and a leader (approver)."""
    now = datetime.now(UTC)
    with write_transaction(engine) as conn:
        tokens = {
            role: issue_api_token(conn, add_user(conn, role, role, role=role), "faults", now)
            for role in ("admin", "approver")
        }
        cases = [
            open_case(conn, None, settings, title=f"第{k}号处理单：群众反映道路积水", now=now)
            for k in range(n)
        ]
    return cases, tokens


def check_cases(engine: Engine, mover: Mover) -> int:
    """Each case whole: its state is where its last transition went, each transition starts
    where the one before ended and has its audit entry, in the same order; the audit chain is
    unbroken. Returns the transitions recorded (less the openings)."""
    recorded = 0
    with engine.connect() as conn:
        for case_id in mover.cases:
            state = conn.execute(select(Case.state).where(Case.id == case_id)).scalar_one()
            history = conn.execute(
                select(CaseTransition.action, CaseTransition.from_state, CaseTransition.to_state)
                .where(CaseTransition.case_id == case_id)
                .order_by(CaseTransition.id)
            ).all()
            audited = (
                conn.execute(
                    select(AuditEntry.action)
                    .where(AuditEntry.subject == f"case:{case_id}")
                    .order_by(AuditEntry.id)
                )
                .scalars()
                .all()
            )
            assert history[-1].to_state == state
            assert all(b.from_state == a.to_state for a, b in itertools.pairwise(history))
            assert audited == [f"case.{h.action}" for h in history]
            moved = len(history) - 1
            # Every transition answered 2xx is there; one cut off by a kill may be or not.
            assert mover.accepted[case_id] <= moved <= mover.accepted[case_id] + 2
            recorded += moved
        chain = audit.verify(conn)
    assert chain.ok, chain.problem
    assert mover.accepted.total() <= recorded <= mover.accepted.total() + mover.unanswered
    return recorded


@pytest.mark.slow
def test_web_killed_mid_push_and_mid_case_transitions_keeps_posts_once_and_cases_whole(
    fresh_postgres_db: str, tmp_path: Path
) -> None:
    """A client pushes posts and another moves cases, both through one web process that is
    killed (kill -9) twice while requests are in flight: after the first answers, half-way."""
    db = fresh_postgres_db
    engine = make_engine(db)
    upgrade(engine)
    settings = Settings(database_url=db, data_dir=tmp_path / "var")
    with write_transaction(engine) as conn:
        source = add_source(conn, name="对接平台", kind="push", config={"platform": "weibo"})
        token = issue_push_token(conn, source.id)
    cases, tokens = open_cases(engine, settings, 8)
    port = free_port()
    env = cli_env(database_url=db, data_dir=tmp_path / "var", analyze_on_ingest=False)
    web = start_web(env, port, tmp_path / "web1.log")
    items = push_items(1200)
    pusher = Pusher(f"http://127.0.0.1:{port}/api/v1/sources/{source.id}/posts", token,
                    items, 40)  # fmt: skip
    mover = Mover(f"http://127.0.0.1:{port}", tokens, cases, moves=160)
    pusher.start()
    mover.start()
    try:
        for n, pushes, moves in ((2, 1, 10), (3, len(pusher.batches) // 2, 80)):
            wait_for(
                lambda p=pushes, m=moves: len(pusher.accepted) >= p
                and mover.accepted.total() >= m
                and (pusher.in_flight.is_set() or mover.in_flight.is_set()),
                90, f"{pushes} pushes and {moves} transitions", [web],
            )  # fmt: skip
            web.kill9()
            web = start_web(env, port, tmp_path / f"web{n}.log")
        pusher.join(timeout=180)
        mover.join(timeout=180)
        assert pusher.error is None, repr(pusher.error)
        assert mover.error is None, repr(mover.error)
        assert len(pusher.accepted) == len(pusher.batches)
    finally:
        web.stop()
    tally = posts_tally(engine, {("weibo", i["id"]) for i in items})
    # The answers agree with the table: a retried request whose transaction had committed
    # before the kill reports its posts as duplicates, not as new posts.
    stored = sum(a["stored"] for a in pusher.accepted)
    repeated = sum(a["duplicates"] for a in pusher.accepted)
    write_tally(
        "web_kill9_mid_push",
        notes="kill -9 of the web process twice while a client pushed 40 posts a request "
        f"(PostgreSQL); {pusher.retried} requests retried, {repeated} posts of them already "
        "stored",
        **tally,
    )
    assert tally["posts_lost"] == 0 and tally["posts_duplicated"] == 0
    assert tally["posts_stored"] == len(items) and stored + repeated == len(items)
    recorded = check_cases(engine, mover)
    write_tally(
        "web_kill9_mid_case_transitions",
        notes="kill -9 of the web process twice during 160 transitions of 8 cases "
        f"(PostgreSQL): {recorded} recorded, {mover.accepted.total()} answered, "
        f"{mover.unanswered} cut off; every case's state equals its last history row, each "
        "with its audit entry, audit chain intact",
    )
    engine.dispose()


# --- 5. report generation cut off half-way -----------------------------------------------------

# The daily report of an empty office is ~55 KB: a disk with 24 KB left cuts it half-way.
ROOM_LEFT = 24 * 1024


def scheduled_reports(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return conn.execute(
            select(Report.kind, Report.period, Report.path, Report.sha256, Report.bytes)
            .where(Report.created_by == "schedule")
            .order_by(Report.id)
        ).all()


def visible_files(folder: Path) -> list[Path]:
    """Files a person would see (a temporary `.name.part` left by a kill -9 is hidden)."""
    return sorted(p for p in folder.glob("*") if not p.name.startswith("."))


@pytest.mark.slow
def test_report_cut_off_mid_write_leaves_no_half_file_and_the_clock_makes_it_once(
    fresh_postgres_db: str, fresh_redis_url: str, tmp_path: Path
) -> None:
    db = fresh_postgres_db
    engine = make_engine(db)
    upgrade(engine)
    out = tmp_path / "out" / "daily.docx"
    out.parent.mkdir()
    env = cli_env(database_url=db, data_dir=tmp_path / "var")
    cut = Proc(["report", "daily", "--out", str(out)], env, tmp_path / "report.log",
               max_file_bytes=ROOM_LEFT)  # fmt: skip
    assert cut.wait() == 2, cut.tail()
    assert "cannot write the report" in cut.tail() and "File too large" in cut.tail()
    assert list(out.parent.iterdir()) == [], "a half-written report was left behind"
    with engine.connect() as conn:
        assert conn.execute(select(func.count(Report.id))).scalar_one() == 0

    # The clock's daily report: cut off the same way (and retried at each tick), the
    # scheduler killed with kill -9 in the middle of that, then started again.
    folder = tmp_path / "var" / "reports"
    env = cli_env(
        database_url=db, queue_url=fresh_redis_url, data_dir=tmp_path / "var",
        report_schedule="daily@00:00", alert_clock_s=0.5,
    )  # fmt: skip
    first = Proc(["serve", "--role", "scheduler"], env, tmp_path / "scheduler1.log",
                 max_file_bytes=ROOM_LEFT)  # fmt: skip
    wait_for(lambda: "scheduled daily report" in first.tail(), 120, "the cut-off report",
             [first])  # fmt: skip
    first.kill9()
    assert scheduled_reports(engine) == [] and visible_files(folder) == []
    second = Proc(["serve", "--role", "scheduler"], env, tmp_path / "scheduler2.log")
    try:
        # An empty office had a quiet day: the daily report, then the zero report (零报告).
        wait_for(lambda: len(scheduled_reports(engine)) >= 2, 120, "the scheduled reports",
                 [second])  # fmt: skip
    finally:
        second.stop()
    made = scheduled_reports(engine)
    assert [r.kind for r in made] == ["daily", "zero"] and made[0].period == made[1].period
    for r in made:
        content = Path(r.path).read_bytes()
        assert len(content) == r.bytes and hashlib.sha256(content).hexdigest() == r.sha256
        assert content[:2] == b"PK"  # a whole Office file
    assert visible_files(folder) == sorted(Path(r.path) for r in made)
    write_tally(
        "report_cut_off_mid_write",
        notes="`tingfeng report` and the scheduled report cut off half-way (RLIMIT_FSIZE), the "
        "scheduler killed with kill -9 while retrying and restarted: no half file, each "
        "scheduled report recorded once with a whole file",
    )
    engine.dispose()


# --- 6. PostgreSQL and Redis restarted under load ----------------------------------------------


@pytest.mark.slow
def test_postgres_and_redis_restarted_under_load_lose_nothing(
    postgres_server: PostgresServer, fresh_postgres_db: str, tmp_path: Path
) -> None:
    """Workers ingest from the queue and a client pushes to a web process while PostgreSQL is
    restarted, then Redis is killed (kill -9) and started again. Nothing is restarted by hand:
    failed tasks are retried by Huey, failed pushes by the client."""
    db = fresh_postgres_db
    engine = make_engine(db)
    upgrade(engine)
    with write_transaction(engine) as conn:
        imported = add_source(conn, name="import:ced", kind="import", config={"path": str(CED)})
        push = add_source(conn, name="对接平台", kind="push", config={"platform": "weibo"})
        token = issue_push_token(conn, push.id)
    with PersistentRedisServer() as redis_server:
        queue_url = redis_server.url
        env = cli_env(database_url=db, queue_url=queue_url, data_dir=tmp_path / "var",
                      analyze_on_ingest=False)  # fmt: skip
        port = free_port()
        procs = [Proc(["serve", "--role", "worker", "--workers", "1"], env,
                      tmp_path / f"worker{n}.log") for n in (1, 2)]  # fmt: skip
        web = start_web(env, port, tmp_path / "web.log")
        procs.append(web)
        try:
            wait_for(lambda: redis_waiting(queue_url) >= 2, 90, "two workers", procs)
            queue = build_queue(Settings(database_url=db, queue_url=queue_url))
            # Enough work that both restarts land in the middle of it: with COPY, the 1,600
            # posts this test once used were all stored before PostgreSQL was restarted.
            items = ced_items(RESTART_POSTS)
            for batch in batches(items, BATCH):
                queue.enqueue_items(imported.id, "Asia/Shanghai", batch)
            total = -(-len(items) // BATCH)
            pushed = push_items(RESTART_PUSHED, prefix="r")
            pusher = Pusher(f"http://127.0.0.1:{port}/api/v1/sources/{push.id}/posts", token,
                            pushed, 40)  # fmt: skip
            pusher.start()

            def batches_done() -> int:
                with engine.connect() as conn:
                    return conn.execute(
                        select(func.count(FetchLog.id)).where(FetchLog.source_id == imported.id)
                    ).scalar_one()

            wait_for(lambda: batches_done() >= 2 and len(pusher.accepted) >= 2, 120,
                     "work before the PostgreSQL restart", procs)  # fmt: skip
            assert queue.huey.pending_count() > 0, "all done before the restart: more posts"
            postgres_server.restart()
            done = batches_done()
            wait_for(lambda: batches_done() >= min(done + 2, total) and len(pusher.accepted) >= 8,
                     120, "work after the PostgreSQL restart", procs)  # fmt: skip
            redis_server.kill()
            redis_server.start()
            pusher.join(timeout=180)
            assert pusher.error is None, repr(pusher.error)
            wait_for(lambda: queue_idle(queue.huey, queue_url, 2), 420, "the queue to drain", procs)
            # A task whose run Redis missed was once taken for an unreadable one, set apart.
            assert queue.huey.storage.set_aside_count() == 0
            # The processes were never restarted: they recovered by themselves.
            assert all(p.alive for p in procs), [p.tail() for p in procs if not p.alive]
        finally:
            for p in procs:
                p.stop()
    accepted = {(i.platform, i.external_id) for i in items} | {("weibo", i["id"]) for i in pushed}
    tally = posts_tally(engine, accepted)
    write_tally(
        "postgres_and_redis_restart_under_load",
        notes=f"2 workers ingesting {total} batches from Redis and a client pushing "
        f"{-(-RESTART_PUSHED // 40)} requests to a web process; PostgreSQL restarted (fast "
        "shutdown) after 2 batches, Redis (appendonly, fsync always) killed with kill -9 and "
        f"started again; {pusher.retried} pushes retried",
        **tally,
    )
    assert tally["posts_lost"] == 0 and tally["posts_duplicated"] == 0
    assert tally["posts_stored"] == len(accepted)
    engine.dispose()


# --- 7. a locked, read-only or full database ---------------------------------------------------


def push(
    web: InThreadWeb, source_id: int, token: str, posts: list[dict[str, Any]]
) -> httpx.Response:
    return httpx.post(f"{web.url}/api/v1/sources/{source_id}/posts", json={"posts": posts},
                      headers={"Authorization": f"Bearer {token}"}, timeout=60)  # fmt: skip


def sqlite_integrity(path: Path) -> str:
    con = sqlite3.connect(path)
    try:
        return con.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        con.close()


def test_sqlite_locked_during_a_push_answers_503_and_works_when_the_lock_goes(
    tmp_path: Path,
) -> None:
    path = tmp_path / "tf.db"
    db = f"sqlite:///{path}?timeout=0.5"  # the busy timeout, short for the test
    engine = make_engine(db)
    upgrade(engine)
    with write_transaction(engine) as conn:
        source = add_source(conn, name="对接平台", kind="push", config={"platform": "weibo"})
        token = issue_push_token(conn, source.id)
    settings = Settings(database_url=db, data_dir=tmp_path / "var", analyze_on_ingest=False)
    first, second = batches(push_items(60, prefix="l"), 30)
    with InThreadWeb(settings) as web:
        assert push(web, source.id, token, first).json()["stored"] == 30
        # A backup, a migration or a stuck command holds the write lock.
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        try:
            refused = push(web, source.id, token, second)
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert refused.status_code == 503, refused.text
        assert refused.headers["Retry-After"] and refused.json()["fault"] == "locked"
        assert "database is locked" in refused.json()["error"]
        assert "Send the same request again" in refused.json()["error"]
        again = push(web, source.id, token, second)
    assert again.status_code == 200 and again.json()["stored"] == 30
    accepted = {("weibo", p["id"]) for p in first + second}
    tally = posts_tally(engine, accepted)
    assert tally["posts_lost"] == 0 and tally["posts_duplicated"] == 0
    assert tally["posts_stored"] == 60 and sqlite_integrity(path) == "ok"
    write_tally(
        "sqlite_locked_push",
        notes="a push while another connection held BEGIN EXCLUSIVE past the busy timeout: "
        "503 with Retry-After, stored once when sent again after the lock went",
        **tally,
    )
    engine.dispose()


def write_jsonl(path: Path, posts: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(p, ensure_ascii=False) + "\n" for p in posts), "utf-8")
    return path


@pytest.mark.slow
def test_sqlite_locked_during_an_import_says_so_and_running_it_again_completes(
    tmp_path: Path,
) -> None:
    path = tmp_path / "tf.db"
    db = f"sqlite:///{path}?timeout=0.5"
    engine = make_engine(db)
    upgrade(engine)
    posts = push_items(300, prefix="f")
    file = write_jsonl(tmp_path / "posts.jsonl", posts)
    args = ["--db", db, "ingest", str(file), "--source", "import:posts", "--platform", "weibo"]
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        locked = Proc(args, cli_env(), tmp_path / "locked.log")
        code = locked.wait()
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert code != 0
    said = locked.tail()
    assert "error: database is locked" in said and "run the same command again" in said, said
    assert "Traceback" not in said
    done = Proc(args, cli_env(), tmp_path / "done.log")
    assert done.wait() == 0, done.tail()
    accepted = {("weibo", p["id"]) for p in posts}
    tally = posts_tally(engine, accepted)
    assert tally["posts_lost"] == 0 and tally["posts_duplicated"] == 0
    assert sqlite_integrity(path) == "ok"
    write_tally(
        "sqlite_locked_import",
        notes="`tingfeng ingest` while another connection held BEGIN EXCLUSIVE: a one-line "
        "'database is locked' error, then the same command stored everything once",
        **tally,
    )
    engine.dispose()


def test_postgres_read_only_answers_503_and_writes_work_again_when_it_is_writable(
    postgres_server: PostgresServer, fresh_postgres_db: str, tmp_path: Path
) -> None:
    db = fresh_postgres_db
    name = db.rsplit("/", 1)[1]
    engine = make_engine(db)
    upgrade(engine)
    with write_transaction(engine) as conn:
        source = add_source(conn, name="对接平台", kind="push", config={"platform": "weibo"})
        token = issue_push_token(conn, source.id)
    settings = Settings(database_url=db, data_dir=tmp_path / "var", analyze_on_ingest=False)
    first, second = batches(push_items(60, prefix="o"), 30)

    def cut_connections() -> None:
        # As in a failover: the server's sessions end, the pool connects again.
        postgres_server.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = '{name}' AND pid <> pg_backend_pid()"
        )

    with InThreadWeb(settings) as web:
        assert push(web, source.id, token, first).json()["stored"] == 30
        postgres_server.execute(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
        cut_connections()
        refused = push(web, source.id, token, second)
        assert refused.status_code == 503, refused.text
        assert refused.json()["fault"] == "read_only" and "read-only" in refused.json()["error"]
        # Writable again: the next request works, without restarting anything (connections
        # that met the read-only database were dropped, not pooled).
        postgres_server.execute(f'ALTER DATABASE "{name}" RESET default_transaction_read_only')
        again = push(web, source.id, token, second)
        assert again.status_code == 200, again.text
    assert again.json()["stored"] == 30
    tally = posts_tally(engine, {("weibo", p["id"]) for p in first + second})
    assert tally["posts_lost"] == 0 and tally["posts_duplicated"] == 0
    write_tally(
        "postgres_read_only_push",
        notes="a push while the database was read-only (default_transaction_read_only, "
        "connections cut as in a failover): 503, then stored once when writable again",
        **tally,
    )
    engine.dispose()


@contextlib.contextmanager
def small_disk(folder: Path, size_mb: int) -> Iterator[Callable[[], None] | None]:
    """A file system of `size_mb` at `folder` (a tmpfs, when this runs as root), and the way
    to free space on it (grow it to 256 MB). None where mounting is not allowed: the caller
    limits the size of the process's files instead (RLIMIT_FSIZE)."""
    folder.mkdir(parents=True, exist_ok=True)
    mount = ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(folder)]
    if os.geteuid() != 0 or subprocess.run(mount, capture_output=True).returncode != 0:
        yield None
        return

    def grow() -> None:
        subprocess.run(["mount", "-o", "remount,size=256m", str(folder)], check=True)

    try:
        yield grow
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.mark.slow
def test_disk_full_during_an_import_is_a_clear_error_and_it_resumes_after_space_is_freed(
    tmp_path: Path,
) -> None:
    posts = push_items(4000, prefix="d")
    file = write_jsonl(tmp_path / "posts.jsonl", posts)
    env = cli_env(ingest_batch_size=250, analyze_on_ingest=False)
    with small_disk(tmp_path / "disk", size_mb=3) as free_space:
        path = tmp_path / "disk" / "tf.db"
        db = f"sqlite:///{path}"
        engine = make_engine(db)
        upgrade(engine)
        engine.dispose()
        # Without a tmpfs: the files may grow by 1.5 MB, as on a disk with that much left.
        room = 0 if free_space else path.stat().st_size + 1536 * 1024
        args = ["--db", db, "ingest", str(file), "--source", "import:posts", "--platform", "weibo"]
        full = Proc(args, env, tmp_path / "full.log", max_file_bytes=room)
        assert full.wait() != 0
        said = full.tail()
        assert "error: database or disk is full" in said or "error: disk I/O error" in said, said
        assert "free space" in said and "Traceback" not in said
        assert sqlite_integrity(path) == "ok"
        partial = posts_tally(make_engine(db), {("weibo", p["id"]) for p in posts})
        assert 0 < partial["posts_stored"] < len(posts), "the disk did not fill mid-import"
        if free_space:
            free_space()
        done = Proc(args, env, tmp_path / "done.log")
        assert done.wait() == 0, done.tail()
        assert json.loads(done.tail(1))["stored"] == len(posts) - partial["posts_stored"]
        engine = make_engine(db)
        tally = posts_tally(engine, {("weibo", p["id"]) for p in posts})
        assert tally["posts_lost"] == 0 and tally["posts_duplicated"] == 0
        assert sqlite_integrity(path) == "ok"
        engine.dispose()
    write_tally(
        "disk_full_import",
        notes=f"`tingfeng ingest` on a {'3 MB tmpfs' if free_space else 'file size limit'} that "
        f"filled after {partial['posts_stored']} posts: a one-line 'disk is full' error, "
        "integrity_check ok, the same command stored the rest once space was freed",
        **tally,
    )


# --- 8. a clock that jumps ---------------------------------------------------------------------


def test_a_clock_jump_fires_what_is_due_once_and_a_jump_back_repeats_nothing(
    settings: Settings,
) -> None:
    """The alert clock (escalations, case deadlines) and the scheduler, with a clock that jumps
    40 days ahead, then back (a wrong clock put right), then ahead again."""
    engine = make_engine(settings.database_url)
    upgrade(engine)
    # A minute from now: the source just added is due then.
    t0 = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
    clock = [t0]
    with write_transaction(engine) as conn:
        push_source = add_source(conn, name="对接平台", kind="push", config={})
        feed = add_source(conn, name="县融媒", kind="feed", interval_s=900,
                          config={"url": "https://www.example.gov.cn/rss.xml"})  # fmt: skip
        duty = add_user(conn, "duty", "值班员", role="analyst")
        boss = add_user(conn, "boss", "王主任", role="approver")
        set_policy(conn, "general",
                   [{"after_minutes": 15, "recipients": {"user_ids": [duty.id]}},
                    {"after_minutes": 30, "recipients": {"user_ids": [boss.id]}}],
                   repeat_minutes=60, max_repeats=1, now=t0)  # fmt: skip
        create_rule(conn, {"name": "地铁", "conditions": {"query": "地铁"}, "per": "post",
                           "recipients": {"user_ids": [duty.id]}}, t0)  # fmt: skip
        case_id = open_case(conn, None, settings, title="地铁停运处置", now=t0)
    Ingestor(engine, settings.model_copy(update={"analyze_on_ingest": False}),
             now=lambda: clock[0]).ingest(
        SourceRef(push_source.id), [RawItem(text="地铁2号线停运，乘客滞留。", external_id="m1")]
    )  # fmt: skip
    enqueued: list[int] = []
    loop = SchedulerLoop(engine, enqueued.append, tick_s=1, now=lambda: clock[0])
    ctx = AlertContext(settings)

    def ticks(at: datetime, n: int = 6) -> None:
        """The clock and the scheduler ticking every few seconds from `at`."""
        for k in range(n):
            clock[0] = at + timedelta(seconds=5 * k)
            alert_clock.tick(engine, ctx, clock[0])
            loop.tick()

    def counts() -> dict[str, int]:
        with engine.connect() as conn:
            return {
                "escalated": conn.execute(select(func.count()).where(
                    AlertLog.what == "escalated")).scalar_one(),
                "alerts": conn.execute(select(func.count(Alert.id))).scalar_one(),
                "deliveries": conn.execute(select(func.count(Delivery.id))).scalar_one(),
                "overdue": conn.execute(select(func.count()).where(
                    CaseDeadline.case_id == case_id,
                    CaseDeadline.overdue_at.is_not(None))).scalar_one(),
            }  # fmt: skip

    ticks(t0)
    assert enqueued == [feed.id] and counts()["escalated"] == 0
    # 40 days ahead: thousands of missed ticks and intervals; each due thing happens once.
    ahead = t0 + timedelta(days=40)
    ticks(ahead)
    after_jump = counts()
    with engine.connect() as conn:
        steps = conn.execute(select(AlertLog.detail).where(AlertLog.what == "escalated")).all()
        open_deadlines = conn.execute(
            select(func.count()).where(CaseDeadline.case_id == case_id,
                                       CaseDeadline.status == "open")).scalar_one()  # fmt: skip
    assert sorted(d.detail["step"] for d in steps) == [1, 2, 3]  # two steps and the repeat
    assert after_jump["overdue"] == open_deadlines > 0  # each deadline overdue once
    assert enqueued == [feed.id, feed.id]  # once, not once per missed interval
    ticks(ahead + timedelta(minutes=1))
    assert counts() == after_jump and len(enqueued) == 2
    # Back to real time (the clock had been 40 days ahead): nothing fires again...
    ticks(t0 + timedelta(hours=1))
    assert counts() == after_jump
    # ...but the source, scheduled 40 days ahead by the wrong clock, runs again (once).
    assert enqueued == [feed.id, feed.id, feed.id]
    ticks(ahead + timedelta(minutes=2))
    assert counts() == after_jump
    with engine.connect() as conn:
        keys = conn.execute(select(Delivery.key)).scalars().all()
    assert len(keys) == len(set(keys))
    write_tally(
        "clock_jumps",
        notes="a clock 40 days ahead, then back, then ahead again: escalation steps 1, 2 and "
        f"the repeat once each, {after_jump['overdue']} case deadlines overdue once each, "
        f"{after_jump['deliveries']} messages, none repeated; the source ran once after each "
        "jump",
        alerts_sent=after_jump["deliveries"],
        alerts_received=len(set(keys)),
        alerts_duplicated=len(keys) - len(set(keys)),
    )
    engine.dispose()


# --- a source that hangs, trickles, redirects for ever or sends gigabytes ----------------------


def misbehave(loopback: LoopbackServer, how: str) -> str:
    """A feed address on `loopback` that misbehaves in the way `how`."""
    if how == "hangs":
        loopback.route("/bad.xml", Reply(body=b"<rss/>", delay_s=30))
    elif how == "trickles":
        loopback.route("/bad.xml", Reply(body=[b"<rss>"] + [b" "] * 600, chunk_delay_s=0.05))
    elif how == "redirects":
        loopback.route("/bad.xml", Reply(302, headers={"Location": "/bad2.xml"}))
        loopback.route("/bad2.xml", Reply(302, headers={"Location": "/bad.xml"}))
    else:  # gigabytes, as long as anyone reads them

        def endless() -> Iterator[bytes]:
            while True:
                yield b" " * 65536

        loopback.route("/bad.xml", Reply(body=endless(), content_type="application/rss+xml"))
    return loopback.url("/bad.xml")


@pytest.mark.parametrize("how", ["hangs", "trickles", "redirects", "gigabytes"])
def test_a_misbehaving_source_is_marked_failing_while_another_keeps_being_collected(
    settings: Settings, loopback: LoopbackServer, how: str
) -> None:
    settings = settings.model_copy(
        update={"fetch_read_timeout_s": 1.0, "fetch_total_timeout_s": 2.0, "fetch_retries": 1,
                "fetch_max_bytes": 1024 * 1024, "fetch_max_redirects": 3,
                "fetch_respect_robots": False, "analyze_on_ingest": False}
    )  # fmt: skip
    engine = make_engine(settings.database_url)
    upgrade(engine)
    with write_transaction(engine) as conn:
        bad = add_source(conn, name="坏信源", kind="feed",
                         config={"url": misbehave(loopback, how), "fetch_article": "never"})  # fmt: skip
        good = add_source(conn, name="县融媒", kind="feed",
                          config={"url": growing_feed(loopback, "县融媒"), "fetch_article": "never"})  # fmt: skip
    ingestor = Ingestor(engine, settings)
    with Fetcher(settings) as fetcher:
        outcome: list[Any] = []
        started = time.monotonic()
        stuck = threading.Thread(
            target=lambda: outcome.append(run_source(engine, ingestor, fetcher, bad.id))
        )
        stuck.start()
        good_runs = 0
        while stuck.is_alive() and time.monotonic() - started < 30:
            result = run_source(engine, ingestor, fetcher, good.id)
            assert result.ok, result.error
            good_runs += 1
        stuck.join(timeout=30)
        took = time.monotonic() - started
        assert run_source(engine, ingestor, fetcher, good.id).ok
    # Bounded: the misbehaving source gave up within the limits (two tries of 2 s at most).
    assert outcome and not outcome[0].ok and took < 10, (outcome, took)
    if how in ("hangs", "trickles"):
        assert good_runs >= 2  # collecting went on meanwhile
    with engine.connect() as conn:
        report = {h.id: h for h in health_report(conn, list_sources(conn), datetime.now(UTC))}
    assert report[bad.id].status == "failing" and report[bad.id].last_error
    assert report[good.id].status == "healthy" and report[good.id].items_last_24h >= 1
    engine.dispose()
