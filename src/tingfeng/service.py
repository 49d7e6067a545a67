"""Running Tingfeng: everything in one process (embedded), or one role of a scale-out setup.

all        web + scheduler + queue workers in one process (SQLite, no other server)
web        the web application and API only
scheduler  enqueues due sources; run exactly one
worker     consumes the queue; run as many as the load needs
"""

from __future__ import annotations

import logging
import signal
import threading
from datetime import UTC, datetime
from typing import Any

from tingfeng.collect.scheduler import SchedulerLoop
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
    return Consumer(
        queue.huey,
        workers=max(1, workers),
        worker_type="thread",
        periodic=False,
        check_worker_health=True,
    )


def run_role(settings: Settings, role: str) -> None:
    # Huey logs every task at INFO; with a source every few seconds that drowns everything else.
    logging.getLogger("huey").setLevel(max(logging.WARNING, logging.getLogger().level))
    queue = build_queue(settings)
    if role == "worker":
        make_consumer(queue, settings.workers).run()
        return
    if role == "scheduler":
        loop = make_scheduler(queue)
        signal.signal(signal.SIGTERM, lambda *_: loop.stop())
        signal.signal(signal.SIGINT, lambda *_: loop.stop())
        log.info("scheduler running (tick %.1fs)", settings.scheduler_tick_s)
        loop.run()
        return
    import uvicorn

    from tingfeng.web.app import create_app

    consumer = loop = None
    if role == "all":
        consumer = make_consumer(queue, settings.workers)
        consumer.start()
        loop = make_scheduler(queue)
        threading.Thread(target=loop.run, name="scheduler", daemon=True).start()
    app = create_app(settings, queue=queue)
    try:
        uvicorn.run(app, host=settings.web_host, port=settings.web_port, log_level="warning")
    finally:
        if loop is not None:
            loop.stop()
        if consumer is not None:
            consumer.stop(graceful=True)
        queue.runtime.close()
