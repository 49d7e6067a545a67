"""Sending the outbox: claim due deliveries, send each on its channel, record what happened.

Woken at once when this process writes deliveries (tingfeng.alerts.outbox.notify), otherwise
polls every `outbox_poll_s`. Sends run on a few threads so one slow channel does not hold up
the others; a stop finishes the sends in flight and records them before returning, so a
graceful restart sends nothing twice.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, select

from tingfeng.alerts import outbox
from tingfeng.db.engine import write_transaction
from tingfeng.db.models import Channel
from tingfeng.settings import Settings

log = logging.getLogger(__name__)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class Dispatcher:
    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        *,
        threads: int = 4,
        now: Callable[[], datetime] = _utc_now,
        send: Callable[..., None] | None = None,
    ) -> None:
        self.engine, self.settings, self.now = engine, settings, now
        self._send = send
        self.threads = threads
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="tf-send")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.sent = 0
        self.failed = 0

    def _sender(self) -> Callable[..., None]:
        if self._send is None:
            from tingfeng.alerts.channels import send

            self._send = send
        return self._send

    def run_once(self, limit: int | None = None) -> int:
        """Claim and send one batch; returns how many were claimed.

        A batch is up to 8 messages per sending thread. Each claim waits its turn for the
        database's writer behind the ingest's transactions, so 2 per thread capped the sender
        at about 50 messages a second. What a stop has not started is given back at once; after
        a crash, what was claimed and not sent waits for its lease, and only the sends in flight
        can go twice (with the same key).
        """
        limit = limit or self.threads * 8
        # Long enough for a send that keeps to its timeout; a process that died mid-send leaves
        # its messages to be sent again when the lease ends.
        lease = self.settings.delivery_timeout_s * 2 + 5
        with write_transaction(self.engine) as conn:
            claimed = outbox.claim(conn, self.now(), limit=limit, lease_s=lease)
            channels: dict[int, Any] = {}
            if claimed:
                ids = {c.channel_id for c in claimed}
                channels = {
                    r.id: r for r in conn.execute(select(Channel).where(Channel.id.in_(ids))).all()
                }
        if not claimed:
            return 0
        # At most one send per thread is started and not yet recorded, so a kill can make at
        # most `threads` messages go twice (same key). What finished meanwhile is recorded in
        # one transaction: one per message queued each behind the ingest's transactions for
        # the database's single writer, and at 50 alerts/s the sender fell seconds behind.
        waiting = list(claimed)
        pending: dict[Any, outbox.Claimed] = {}
        untried: list[int] = []
        while waiting or pending:
            if self._stop.is_set():
                untried += [item.id for item in waiting]
                waiting = []
            while waiting and len(pending) < self.threads:
                item = waiting.pop(0)
                future = self._pool.submit(self._deliver, item, channels.get(item.channel_id))
                pending[future] = item
            if not pending:
                break
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            self._record([(pending.pop(f), f.result()) for f in done])
        if untried:
            with write_transaction(self.engine) as conn:
                outbox.release(conn, untried)
        return len(claimed)

    def _record(self, results: list[tuple[outbox.Claimed, tuple[str | None, bool]]]) -> None:
        try:
            with write_transaction(self.engine) as conn:
                for item, (error, permanent) in results:
                    if error is None:
                        outbox.mark_sent(conn, item.id, self.now())
                    else:
                        status = outbox.mark_failed(
                            conn, item, error, self.now(), self.settings, permanent=permanent
                        )
                        log.warning("delivery %s (%s) %s: %s", item.id, item.key, status, error)
        except Exception:  # the lease runs out and they are sent again: better than lost
            log.exception("could not record deliveries %s", [item.id for item, _ in results])
            return
        for _item, (error, _permanent) in results:
            if error is None:
                self.sent += 1
            else:
                self.failed += 1

    def _deliver(self, item: outbox.Claimed, channel: Any) -> tuple[str | None, bool]:
        from tingfeng.alerts.channels import ChannelError, ChannelSpec

        if channel is None:
            return "the channel was removed", True
        if not channel.enabled:
            return "the channel is switched off", True
        try:
            self._sender()(
                ChannelSpec.of(channel), item.message, self.settings, address=item.address
            )
        except ChannelError as exc:
            return exc.message, exc.permanent
        except Exception as exc:  # a bug in a channel must not stop the others
            log.exception("channel %s failed", channel.name)
            return f"{exc.__class__.__name__}: {exc}", False
        return None, False

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                claimed = self.run_once()
            except Exception:
                log.exception("outbox dispatch failed; retrying")
                claimed = 0
            if claimed:
                continue  # there may be more
            outbox.wait(self.settings.outbox_poll_s)

    def start(self) -> Dispatcher:
        self._thread = threading.Thread(target=self.run, name="tf-dispatch", daemon=True)
        self._thread.start()
        return self

    def request_stop(self) -> None:
        """Stop claiming; what is being sent is finished and recorded (safe in a signal handler)."""
        self._stop.set()
        outbox.notify()

    def stop(self, timeout: float = 30.0) -> None:
        self.request_stop()
        if self._thread is not None:
            self._thread.join(timeout)
        self._pool.shutdown(wait=True)
