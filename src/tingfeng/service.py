"""Running Tingfeng: everything in one process (embedded), or one role of a scale-out setup.

all        web + scheduler + queue workers + alert clock + outbox sender, in one process (SQLite,
           no other server)
web        the web application and API only
scheduler  enqueues due sources and runs the alert clock (escalations, digests, missing shift
           reports); run exactly one
worker     consumes the queue and sends the outbox; run as many as the load needs
"""

from __future__ import annotations

import logging
import signal
import threading
from datetime import UTC, datetime
from typing import Any

from tingfeng.collect.scheduler import SchedulerLoop
from tingfeng.heap import settle_heap
from tingfeng.settings import Settings
from tingfeng.tasks import Queue, build_queue

log = logging.getLogger(__name__)

ROLES = ("all", "web", "scheduler", "worker")


def _now() -> datetime:
    return datetime.now(UTC)


def make_scheduler(queue: Queue) -> SchedulerLoop:
    return SchedulerLoop(
        queue.runtime.engine,
        queue.enqueue_collect,
        tick_s=queue.runtime.settings.scheduler_tick_s,
        now=_now,
    )


def make_consumer(queue: Queue, workers: int) -> Any:
    from huey.consumer import Consumer

    # Threads, not processes: tasks wait on the network and the database, and threads share
    # one Ingestor (and its near-duplicate memory) per process.
    # SIGTERM (systemd's stop) is graceful: the tasks in hand finish first.
    return Consumer(
        queue.huey,
        workers=max(1, workers),
        worker_type="thread",
        periodic=False,
        check_worker_health=True,
        graceful_signal="TERM",
    )


def start_keeper(queue: Queue) -> Any:
    """The heartbeat and recovery of lost tasks, where the queue is on Redis."""
    from tingfeng.queue_recovery import Keeper, ReliableRedisStorage

    storage = queue.huey.storage
    return Keeper(storage).start() if isinstance(storage, ReliableRedisStorage) else None


def start_alerts(queue: Queue, *, clock: bool, dispatcher: bool) -> list[Any]:
    """The alert clock with evidence at alert time (one per installation) and the outbox sender
    (any number), in threads."""
    from tingfeng.alerts.clock import AlertClock
    from tingfeng.alerts.dispatch import Dispatcher
    from tingfeng.alerts.engine import AlertContext

    settings = queue.runtime.settings
    engine = queue.runtime.engine
    started: list[Any] = []
    if dispatcher:
        started.append(Dispatcher(engine, settings).start())
    if clock:
        alert_clock = AlertClock(engine, AlertContext(settings), settings.alert_clock_s, _now)
        threading.Thread(target=alert_clock.run, name="alert-clock", daemon=True).start()
        started.append(alert_clock)
        if settings.evidence_on_alert != "off":
            # Beside the clock: one per installation, so an alert's post is captured once.
            from tingfeng.cases.alert_evidence import AlertEvidence

            started.append(AlertEvidence(engine, settings, settings.alert_clock_s, _now).start())
    return started


def run_worker(queue: Queue, workers: int) -> None:
    """The queue consumer and the outbox sender. A stop signal reaches the sender first: Huey's
    threads may sleep for seconds before they notice it, and the sender must not keep claiming
    messages meanwhile."""
    from huey.consumer import ConsumerStopped

    (dispatcher,) = start_alerts(queue, clock=False, dispatcher=True)
    keeper = start_keeper(queue)
    consumer = make_consumer(queue, workers)
    consumer.start()  # installs Huey's signal handlers; ours go in front of them
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}

    def on_signal(signum: int, frame: Any) -> None:
        dispatcher.request_stop()
        handler = handlers[signum]
        if callable(handler):
            handler(signum, frame)

    for sig in handlers:
        signal.signal(sig, on_signal)
    try:
        health = None
        while True:  # Consumer.run without its start()
            try:
                health = consumer.loop(health)
            except ConsumerStopped:
                break
    finally:
        dispatcher.stop()
        if keeper is not None:
            keeper.stop()


def _settle(queue: Queue) -> None:
    """Load what ingest keeps (models, near-duplicate memory) now rather than at the first
    batch, then set it aside from the garbage collector (tingfeng.heap)."""
    queue.runtime.ingestor.ready()
    log.info("start-up objects set aside from garbage collection: %d", settle_heap())


def run_role(settings: Settings, role: str) -> None:
    # Huey logs every task at INFO; with a source every few seconds that drowns everything else.
    logging.getLogger("huey").setLevel(max(logging.WARNING, logging.getLogger().level))
    queue = build_queue(settings)
    if role == "worker":
        _settle(queue)
        run_worker(queue, settings.workers)
        return
    if role == "scheduler":
        loop = make_scheduler(queue)
        alerts = start_alerts(queue, clock=True, dispatcher=False)
        signal.signal(signal.SIGTERM, lambda *_: loop.stop())
        signal.signal(signal.SIGINT, lambda *_: loop.stop())
        log.info("scheduler running (tick %.1fs)", settings.scheduler_tick_s)
        loop.run()
        for part in alerts:
            part.stop()
        return
    import uvicorn

    from tingfeng.web.app import create_app

    consumer = loop = keeper = None
    alerts: list[Any] = []
    if role == "all":
        keeper = start_keeper(queue)
        consumer = make_consumer(queue, settings.workers)
        consumer.start()
        loop = make_scheduler(queue)
        threading.Thread(target=loop.run, name="scheduler", daemon=True).start()
        alerts = start_alerts(queue, clock=True, dispatcher=True)
    app = create_app(settings, queue=queue)
    # The helpers that analyse pushed batches load their models now, not at the first push.
    queue.runtime.prepare_helper.start()
    _settle(queue)
    try:
        extra: dict[str, Any] = {}
        if settings.log_format == "json":
            extra["log_config"] = None  # keep our JSON handler; uvicorn's would print text
        uvicorn.run(
            app, host=settings.web_host, port=settings.web_port, log_level="warning", **extra
        )
    finally:
        if loop is not None:
            loop.stop()
        for part in alerts:
            part.stop()  # the sender finishes and records the messages in flight
        if consumer is not None:
            consumer.stop(graceful=True)
        if keeper is not None:
            keeper.stop()
        queue.runtime.close()
