"""`tingfeng launch`: every role of a scale-out deployment on one machine, supervised.

Starts N web processes on consecutive ports (for a reverse proxy in front), one scheduler and
M worker processes, each an ordinary `tingfeng serve --role …` child. A child that dies is
started again (with a growing pause if it keeps dying); SIGTERM or SIGINT stops them all,
workers last so that they finish their tasks and outbox messages. On several machines use the
systemd units in deploy/systemd instead; the processes are the same.

The database is migrated once before any child starts, so the children never race for it.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

from tingfeng.settings import Settings

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 30.0


@dataclass
class Child:
    name: str
    args: list[str]
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restarts: int = 0
    backoff_s: float = 1.0
    due_at: float = 0.0  # when a dead child may start again
    history: list[int] = field(default_factory=list)  # pids, oldest first


def plan(
    settings: Settings, *, web: int, workers: int, threads: int, host: str, port: int
) -> list[Child]:
    base = [sys.executable, "-m", "tingfeng.cli", "--db", settings.database_url]
    # Flags given to `launch` reach the children too (the environment and file do anyway).
    base += ["--log-level", settings.log_level, "--log-format", settings.log_format]
    if settings.queue_url:
        base += ["--queue", settings.queue_url]
    children = [
        Child(
            f"web-{port + i}",
            [*base, "serve", "--role", "web", "--host", host, "--port", str(port + i)],
        )
        for i in range(web)
    ]
    children.append(Child("scheduler", [*base, "serve", "--role", "scheduler"]))
    children += [
        Child(f"worker-{i + 1}", [*base, "serve", "--role", "worker", "--workers", str(threads)])
        for i in range(workers)
    ]
    return children


class Launcher:
    def __init__(self, children: list[Child]) -> None:
        self.children = children
        self._stopping = False

    def _start(self, child: Child) -> None:
        child.proc = subprocess.Popen(child.args, env=os.environ.copy())
        child.started_at = time.monotonic()
        child.history.append(child.proc.pid)
        log.info("started %s (pid %s)", child.name, child.proc.pid)

    def request_stop(self, *_: object) -> None:
        self._stopping = True

    def run(self, *, poll_s: float = 0.5) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self.request_stop)
        for child in self.children:
            self._start(child)
        while not self._stopping:
            now = time.monotonic()
            for child in self.children:
                if child.proc is None:
                    if now >= child.due_at:
                        self._start(child)
                    continue
                code = child.proc.poll()
                if code is None:
                    if now - child.started_at > 60:
                        child.backoff_s = 1.0  # it has run a while: a later death starts afresh
                    continue
                child.restarts += 1
                child.proc = None
                child.due_at = now + child.backoff_s
                log.warning(
                    "%s exited with %s; starting it again in %.0f s",
                    child.name, code, child.backoff_s,
                )  # fmt: skip
                child.backoff_s = min(child.backoff_s * 2, MAX_BACKOFF_S)
            time.sleep(poll_s)
        self.stop()
        return 0

    def stop(self, timeout_s: float = 30.0) -> None:
        # Web and scheduler first (no new work), then the workers, which finish what they hold.
        order = [c for c in self.children if not c.name.startswith("worker")]
        order += [c for c in self.children if c.name.startswith("worker")]
        for group in (order[: len(order) - self._workers()], order[len(order) - self._workers() :]):
            for child in group:
                if child.proc is not None and child.proc.poll() is None:
                    child.proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + timeout_s
            for child in group:
                if child.proc is None:
                    continue
                try:
                    child.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    log.warning("%s did not stop in %.0f s; killing it", child.name, timeout_s)
                    child.proc.kill()
                    child.proc.wait()

    def _workers(self) -> int:
        return sum(1 for c in self.children if c.name.startswith("worker"))
