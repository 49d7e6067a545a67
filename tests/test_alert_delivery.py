"""The outbox in motion: real webhook receivers on loopback, a channel that fails then
recovers, one that stays down, and a worker process stopped or killed in the middle of
delivery. Every alert arrives; none arrives twice (after a kill, a repeat carries the same
Idempotency-Key for the receiver to drop)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.loopback import LoopbackServer, Reply, Request
from tingfeng.alerts import outbox
from tingfeng.alerts.dispatch import Dispatcher
from tingfeng.alerts.service import create_channel, create_rule
from tingfeng.collect.items import RawItem
from tingfeng.collect.sources import add_source
from tingfeng.db.engine import make_engine, write_transaction
from tingfeng.db.migrate import upgrade
from tingfeng.db.models import Delivery
from tingfeng.ingest.ingestor import Ingestor, SourceRef
from tingfeng.office.people import add_user
from tingfeng.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


class Receiver:
    """A webhook receiver that can fail its first N requests or answer slowly."""

    def __init__(self, server: LoopbackServer, fail_first: int = 0, delay_s: float = 0.0) -> None:
        self.server, self.fail_first, self.delay_s = server, fail_first, delay_s
        self.lock = threading.Lock()
        self.seen = 0
        self.keys: list[str] = []
        self.bodies: list[dict] = []
        server.route("/hook", self.handle)

    def handle(self, request: Request) -> Reply:
        with self.lock:
            self.seen += 1
            failing = self.seen <= self.fail_first
        if failing:
            return Reply(503, b"busy", content_type="text/plain")
        if self.delay_s:
            time.sleep(self.delay_s)
        with self.lock:
            self.keys.append(request.headers["idempotency-key"])
            self.bodies.append(json.loads(request.body))
        return Reply(200, b"{}", content_type="application/json")


def setup(settings: Settings, server: LoopbackServer, posts: int) -> tuple[object, SourceRef]:
    engine = make_engine(settings.database_url)
    upgrade(engine)
    now = datetime.now(UTC)
    with write_transaction(engine) as conn:
        source = add_source(conn, name="push", kind="push", config={})
        user = add_user(conn, "duty", "值班员")
        channel = create_channel(conn, settings, name="hook", kind="webhook",
                                 target=server.url("/hook"), config={})  # fmt: skip
        create_rule(
            conn,
            {"name": "所有停运", "conditions": {"query": "停运"}, "per": "post",
             "rate_limit_per_hour": 0, "recipients": {"user_ids": [user.id]},
             "channel_ids": [channel["id"]]},
            now,
        )  # fmt: skip
    ref = SourceRef(source.id, "Asia/Shanghai")
    items = [
        RawItem(text=f"地铁{n}号线停运，乘客滞留第{n}站。", external_id=f"p{n}", platform="weibo")
        for n in range(posts)
    ]
    Ingestor(engine, settings).ingest(ref, items)
    return engine, ref


def statuses(engine) -> Counter:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return Counter(
            conn.execute(select(Delivery.status).where(Delivery.channel_id.is_not(None))).scalars()
        )


def wait_for(predicate, timeout_s: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


def test_webhook_delivery_and_a_channel_that_fails_then_recovers(
    settings: Settings, loopback: LoopbackServer
) -> None:
    settings = settings.model_copy(update={"delivery_backoff_s": 0.05, "outbox_poll_s": 0.05})
    receiver = Receiver(loopback, fail_first=3)
    engine, _ = setup(settings, loopback, posts=2)
    assert statuses(engine) == {"pending": 2}
    dispatcher = Dispatcher(engine, settings).start()
    try:
        wait_for(lambda: statuses(engine) == {"sent": 2})
    finally:
        dispatcher.stop()
    # Three refusals, retried with backoff; each message arrived exactly once in the end.
    assert receiver.seen == 5 and sorted(Counter(receiver.keys).values()) == [1, 1]
    body = receiver.bodies[0]
    assert body["subject"].startswith("【预警·一般】地铁") and "/alerts/ack/" in body["ack_url"]
    assert body["data"]["reason"]["rule"] == "所有停运"
    with engine.connect() as conn:
        attempts = sorted(
            conn.execute(
                select(Delivery.attempts).where(Delivery.channel_id.is_not(None))
            ).scalars()
        )
    assert sum(attempts) == 5


def test_a_channel_down_too_long_is_marked_failed_then_retried(
    settings: Settings, loopback: LoopbackServer
) -> None:
    settings = settings.model_copy(
        update={"delivery_backoff_s": 0.01, "delivery_max_attempts": 3, "outbox_poll_s": 0.05}
    )
    receiver = Receiver(loopback, fail_first=10**6)
    engine, _ = setup(settings, loopback, posts=1)
    dispatcher = Dispatcher(engine, settings)
    for _ in range(40):
        dispatcher.run_once()
        if statuses(engine) == {"failed": 1}:
            break
        time.sleep(0.02)
    assert statuses(engine) == {"failed": 1}
    with engine.connect() as conn:
        (row,) = conn.execute(select(Delivery).where(Delivery.channel_id.is_not(None))).all()
    assert row.attempts == 3 and "503" in row.last_error
    receiver.fail_first = 0  # the receiver is back: an administrator retries
    with write_transaction(engine) as conn:
        assert outbox.retry(conn, None, datetime.now(UTC)) == 1
    dispatcher.run_once()
    assert statuses(engine) == {"sent": 1} and len(receiver.keys) == 1


def _worker(settings: Settings, tmp: Path) -> subprocess.Popen:
    env = os.environ | {
        "TINGFENG_DATABASE_URL": settings.database_url,
        "TINGFENG_DATA_DIR": str(settings.data_dir),
        "TINGFENG_FETCH_ALLOWED_NETWORKS": '["127.0.0.0/8"]',
        # Well above the receiver's 0.3 s: a send that times out on a loaded machine is sent
        # again (same Idempotency-Key), which the SIGTERM case would count as a duplicate.
        "TINGFENG_DELIVERY_TIMEOUT_S": "5",
        "TINGFENG_OUTBOX_POLL_S": "0.1",
        "TINGFENG_WORKERS": "1",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "tingfeng.cli", "serve", "--role", "worker"],
        cwd=tmp, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip


@pytest.mark.parametrize("stop", ["sigterm", "sigkill"])
def test_worker_restarted_in_the_middle_of_delivery_delivers_every_alert_once(
    settings: Settings, loopback: LoopbackServer, tmp_path: Path, stop: str
) -> None:
    posts = 40
    receiver = Receiver(loopback, delay_s=0.3)  # slow: the stop lands mid-delivery
    engine, _ = setup(settings, loopback, posts=posts)
    worker = _worker(settings, tmp_path)
    try:
        wait_for(lambda: len(receiver.keys) >= 4)
        worker.send_signal(signal.SIGTERM if stop == "sigterm" else signal.SIGKILL)
        worker.wait(timeout=30)
        at_stop = len(receiver.keys)
        assert at_stop < posts, "the worker finished before it was stopped"
        worker = _worker(settings, tmp_path)  # the restart
        # After a kill, messages claimed by the dead worker wait for their lease to end.
        wait_for(lambda: statuses(engine) == {"sent": posts}, timeout_s=40)
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    counts = Counter(receiver.keys)
    assert len(counts) == posts  # every alert arrived
    if stop == "sigterm":
        # A graceful stop finishes and records the sends in flight: nothing twice.
        assert max(counts.values()) == 1 and len(receiver.keys) == posts
    else:
        # A kill can interrupt a send after the receiver got it: that message goes again with
        # the same Idempotency-Key, for the receiver to drop. At most the sends in flight.
        assert len(receiver.keys) - posts <= 4
