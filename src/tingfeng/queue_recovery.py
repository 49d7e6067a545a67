"""Tasks held by a worker that dies come back: a reliable queue on Redis.

Huey's Redis storage takes a task off the queue with BRPOP, so a worker killed (SIGKILL, a
power cut, an out-of-memory kill) while it holds a batch loses the batch. Here a worker moves
each task into its own list of tasks in hand (BLMOVE, atomic) and removes it from there only
when the task has run (or has been handed to Huey's retry schedule). Every worker refreshes a
short-lived "alive" key; any worker that finds another's key expired puts that worker's tasks
in hand back at the head of the queue. Tasks are idempotent (a batch stored twice is stored
once), so a task that ran just before its worker died does no harm when it runs again.

Redis itself may go away while a task runs (a restart, a kill -9). The acknowledgement, or the
handing back of a task whose run Huey could not record, then waits in the worker thread and is
delivered before that thread takes its next task. Tasks due from the retry schedule move to the
queue inside Redis (one script), never through a worker's memory, where a restart would lose
them.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from typing import Any

from huey import Huey
from huey import signals as huey_signals
from huey.storage import RedisStorage
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

ALIVE_TTL_S = 20

# Take the task out of this consumer's hands and put it at the head of the queue, only if it is
# still in hand: delivered twice (a reply lost as Redis went away), it is queued once.
GIVE_BACK_LUA = """\
if redis.call('lrem', KEYS[1], 1, ARGV[1]) == 1 then
    redis.call('rpush', KEYS[2], ARGV[1])
    return 1
end
return 0"""

# Move the tasks due from the retry schedule to the queue, in one step inside Redis.
SCHEDULE_MOVE_LUA = """\
local due = redis.call('zrangebyscore', KEYS[1], '-inf', ARGV[1])
for _, data in ipairs(due) do
    redis.call('lpush', KEYS[2], data)
    redis.call('zrem', KEYS[1], data)
end
return #due"""


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
        # What this thread could not settle while Redis was away goes first; until it is
        # delivered nothing new is taken (the error reaches the consumer, which waits).
        self.settle()
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
        self._finish(requeue=False)

    def give_back(self) -> None:
        """The task this thread took last did not run to the end (Huey could not record its
        outcome, or it was interrupted): back to the head of the queue, to run again."""
        self._finish(requeue=True)

    def _finish(self, requeue: bool) -> None:
        data = getattr(self._local, "data", None)
        if data is None:
            return
        self._local.data = None
        self._local.unsettled = (data, requeue)
        try:
            self.settle()
        except RedisError as exc:
            log.warning(
                "Redis is unavailable: the task's %s waits until it answers (%s)",
                "return to the queue" if requeue else "acknowledgement",
                exc,
            )

    def settle(self) -> None:
        """Deliver this thread's pending acknowledgement or hand-back (raises while Redis is
        away; the task stays in hand meanwhile, so nothing is lost)."""
        unsettled = getattr(self._local, "unsettled", None)
        if unsettled is None:
            return
        data, requeue = unsettled
        if requeue:
            self.conn.eval(GIVE_BACK_LUA, 2, self.in_hand_key, self.queue_key, data)
        else:
            self.conn.lrem(self.in_hand_key, 1, data)
        self._local.unsettled = None

    def set_aside(self) -> None:
        """The task this thread took cannot even be read: keep it apart, out of the queue."""
        data = getattr(self._local, "data", None)
        if data is not None:
            with self.conn.pipeline() as pipe:
                pipe.lpush(self.dead_key, data)
                pipe.lrem(self.in_hand_key, 1, data)
                pipe.execute()
            self._local.data = None

    def set_aside_count(self) -> int:
        return int(self.conn.llen(self.dead_key))

    def read_schedule(self, ts: Any) -> list[bytes]:
        """Huey's version pops the due tasks and the consumer then queues them one by one: a
        Redis restart (or a kill of the worker) in between lost them. Here they move to the
        queue inside Redis, and the consumer has nothing left to queue."""
        self.conn.eval(SCHEDULE_MOVE_LUA, 2, self.schedule_key, self.queue_key, self.convert_ts(ts))
        return []

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

    A task interrupted by shutdown, or whose outcome Huey could not record (Redis away), is not
    acknowledged but put back at the head of the queue."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._running = threading.local()
        self.signal(huey_signals.SIGNAL_INTERRUPTED)(self._interrupted)

    def _interrupted(self, signal: str, task: Any, *args: Any) -> None:
        self._running.interrupted = True

    def dequeue(self) -> Any:
        # A connection error is not the task's fault: it propagates, and the consumer waits.
        data = self.storage.dequeue()
        if data is None:
            return None
        try:
            return self.deserialize_task(data)
        except Exception:
            self.storage.set_aside()
            raise

    def execute(self, task: Any, timestamp: Any = None) -> Any:
        self._running.interrupted = False
        try:
            result = super().execute(task, timestamp)
        except BaseException:
            self.storage.give_back()
            raise
        if self._running.interrupted:
            self.storage.give_back()
        else:
            self.storage.ack()
        return result


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
