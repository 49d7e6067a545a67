"""Tasks held by a worker that dies come back: a reliable queue on Redis.

Huey's Redis storage takes a task off the queue with BRPOP, so a worker killed (SIGKILL, a
power cut, an out-of-memory kill) while it holds a batch loses the batch. Here a worker moves
each task into its own list of tasks in hand (BLMOVE, atomic) and removes it from there only
when the task has run (or has been handed to Huey's retry schedule). Every worker refreshes a
short-lived "alive" key; any worker that finds another's key expired puts that worker's tasks
in hand back at the head of the queue. Tasks are idempotent (a batch stored twice is stored
once), so a task that ran just before its worker died does no harm when it runs again.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from typing import Any

from huey import Huey
from huey.storage import RedisStorage

log = logging.getLogger(__name__)

ALIVE_TTL_S = 20


def consumer_id() -> str:
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{secrets.token_hex(3)}"


class ReliableRedisStorage(RedisStorage):
    """RedisStorage whose dequeue keeps the task in a per-consumer list until acknowledged."""

    def __init__(
        self,
        *args: Any,
        consumer: str | None = None,
        alive_ttl_s: int = ALIVE_TTL_S,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.consumer = consumer or consumer_id()
        self.alive_ttl_s = alive_ttl_s
        self.consumers_key = f"{self.queue_key}.consumers"
        self.in_hand_key = self._in_hand(self.consumer)
        self.dead_key = f"{self.queue_key}.unreadable"
        self._local = threading.local()

    def _in_hand(self, consumer: str) -> str:
        return f"{self.queue_key}.in_hand.{consumer}"

    def _alive(self, consumer: str) -> str:
        return f"{self.queue_key}.alive.{consumer}"

    # -- taking and acknowledging -------------------------------------------------------------

    def dequeue(self) -> bytes | None:
        try:
            data = self.conn.blmove(
                self.queue_key, self.in_hand_key, self.read_timeout, "RIGHT", "LEFT"
            )
        except (TimeoutError, TypeError, IndexError):
            return None
        self._local.data = data
        return data  # type: ignore[no-any-return]

    def ack(self) -> None:
        """The task this thread took last has run (or been rescheduled): forget it."""
        data = getattr(self._local, "data", None)
        if data is not None:
            self.conn.lrem(self.in_hand_key, 1, data)
            self._local.data = None

    def set_aside(self) -> None:
        """The task this thread took cannot even be read: keep it apart, out of the queue."""
        data = getattr(self._local, "data", None)
        if data is not None:
            with self.conn.pipeline() as pipe:
                pipe.lpush(self.dead_key, data)
                pipe.lrem(self.in_hand_key, 1, data)
                pipe.execute()
            self._local.data = None

    def in_hand(self) -> int:
        return int(self.conn.llen(self.in_hand_key))

    def held_anywhere(self) -> int:
        """Tasks in the hands of any worker, alive or not (0 when the queue is settled)."""
        total = 0
        for raw in self.conn.smembers(self.consumers_key):
            consumer = raw.decode() if isinstance(raw, bytes) else str(raw)
            total += int(self.conn.llen(self._in_hand(consumer)))
        return total

    # -- being alive, and recovering the tasks of workers that are not --------------------------

    def heartbeat(self) -> None:
        with self.conn.pipeline() as pipe:
            pipe.set(self._alive(self.consumer), "1", ex=self.alive_ttl_s)
            pipe.sadd(self.consumers_key, self.consumer)
            pipe.execute()

    def leave(self) -> None:
        """A clean stop: this worker's tasks in hand (normally none) go back to the queue."""
        self._requeue(self.consumer)
        self.conn.delete(self._alive(self.consumer))

    def recover(self) -> int:
        """Put back the tasks in hand of every worker whose alive key has expired."""
        recovered = 0
        for raw in self.conn.smembers(self.consumers_key):
            consumer = raw.decode() if isinstance(raw, bytes) else str(raw)
            if consumer == self.consumer or self.conn.exists(self._alive(consumer)):
                continue
            moved = self._requeue(consumer)
            if moved:
                log.warning("worker %s stopped answering: %d task(s) it held are queued again",
                            consumer, moved)  # fmt: skip
            recovered += moved
        return recovered

    def _requeue(self, consumer: str) -> int:
        key = self._in_hand(consumer)
        moved = 0
        # RIGHT to RIGHT: the tasks go to the head of the queue, taken next.
        while self.conn.lmove(key, self.queue_key, "RIGHT", "RIGHT") is not None:
            moved += 1
        self.conn.delete(key)
        self.conn.srem(self.consumers_key, consumer)
        return moved


class ReliableHuey(Huey):
    """Huey that acknowledges each task once `execute` is done with it.

    A task interrupted by shutdown is not acknowledged: it stays in hand, and comes back."""

    def dequeue(self) -> Any:
        try:
            return super().dequeue()
        except Exception:
            self.storage.set_aside()
            raise

    def execute(self, task: Any, timestamp: Any = None) -> Any:
        try:
            return super().execute(task, timestamp)
        finally:
            self.storage.ack()


class Keeper:
    """The heartbeat and the recovery of other workers' tasks, in a thread of a worker."""

    def __init__(self, storage: ReliableRedisStorage, every_s: float | None = None) -> None:
        self.storage = storage
        self.every_s = every_s or max(1.0, storage.alive_ttl_s / 4)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="queue-keeper", daemon=True)

    def start(self) -> Keeper:
        self.storage.heartbeat()
        self.storage.recover()
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.storage.heartbeat()
                self.storage.recover()
            except Exception as exc:  # Redis restarting: the next beat tries again
                log.warning("queue heartbeat failed: %s", exc)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        try:
            self.storage.leave()
        except Exception as exc:
            log.warning("could not hand back tasks in hand: %s", exc)
