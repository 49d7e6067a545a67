"""What the fault tests share: Tingfeng processes started and killed for real, waiting for a
condition (never a fixed sleep), counting posts by (platform, external_id), and the tally file
each test leaves in test-artifacts/faults/ for the reliability report (docs/reliability.md).

Used by tests/test_faults.py and tests/test_faults_pending.py.
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from itertools import islice
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select

from tingfeng.collect.items import RawItem
from tingfeng.db.models import Post

ROOT = Path(__file__).resolve().parents[1]
CED = ROOT.parent / "shared" / "data" / "rumor" / "ced" / "cascades.jsonl.gz"
CLI = [sys.executable, "-m", "tingfeng.cli"]
TALLIES = ROOT / "test-artifacts" / "faults"
TALLY_KEYS = (
    "posts_accepted", "posts_stored", "posts_lost", "posts_duplicated",
    "alerts_sent", "alerts_received", "alerts_duplicated",
)  # fmt: skip


def cli_env(**settings: object) -> dict[str, str]:
    """The environment of a `tingfeng` child process: no configuration file, quiet logs, and
    each keyword as TINGFENG_<NAME> (lists and dicts as JSON)."""
    env = os.environ | {"TINGFENG_CONFIG": "/nonexistent.toml", "TINGFENG_LOG_LEVEL": "WARNING"}
    for name, value in settings.items():
        text = json.dumps(value) if isinstance(value, list | dict | bool) else str(value)
        env[f"TINGFENG_{name.upper()}"] = text
    env["PYTHONUNBUFFERED"] = "1"
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Proc:
    """A `tingfeng …` child process whose output goes to a log file (read on failure)."""

    def __init__(
        self, args: list[str], env: dict[str, str], log: Path, *, max_file_bytes: int = 0
    ) -> None:
        """`max_file_bytes`: no file of the process may grow beyond this (RLIMIT_FSIZE), as
        on a disk that fills up; a write past it fails with EFBIG (Python ignores SIGXFSZ)."""
        self.args, self.log = args, log

        def limit() -> None:
            import resource

            resource.setrlimit(resource.RLIMIT_FSIZE, (max_file_bytes, max_file_bytes))

        with log.open("ab") as out:
            self.popen = subprocess.Popen(
                [*CLI, *args], env=env, cwd=log.parent, stdin=subprocess.DEVNULL,
                stdout=out, stderr=subprocess.STDOUT,
                preexec_fn=limit if max_file_bytes else None,
            )  # fmt: skip

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill9(self) -> None:
        """kill -9: no handler runs, nothing is flushed or finished."""
        if self.alive:
            os.kill(self.popen.pid, signal.SIGKILL)
        self.popen.wait(timeout=30)

    def terminate(self) -> None:
        """SIGTERM (what systemd and `kill` send), and wait for the exit. A graceful stop first
        finishes the batch in hand, and a fresh worker loads its models for it: on a loaded
        2-core machine that took more than 30 s (CI), hence the long wait."""
        if self.alive:
            self.popen.send_signal(signal.SIGTERM)
        self.popen.wait(timeout=120)

    def stop(self) -> None:
        """A graceful stop (SIGINT), SIGKILL if it takes more than 20 s."""
        if self.alive:
            self.popen.send_signal(signal.SIGINT)
            try:
                self.popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill9()

    def wait(self, timeout_s: float = 300) -> int:
        return self.popen.wait(timeout=timeout_s)

    def tail(self, lines: int = 40) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


def wait_for(
    predicate: Callable[[], object],
    timeout_s: float,
    what: str,
    watch: Iterable[Proc] = (),
    interval_s: float = 0.05,
) -> Any:
    """Poll `predicate` until it returns something true, and return that. Fails at once, with
    its log, when a process in `watch` exits meanwhile."""
    started = time.monotonic()
    deadline = started + timeout_s
    while True:
        value = predicate()
        if value:
            # Shown with a failing test's output (and with -s): where the time went.
            print(f"waited {time.monotonic() - started:.1f}s for {what}")
            return value
        for proc in watch:
            if not proc.alive:
                raise AssertionError(
                    f"{' '.join(proc.args[:4])} exited ({proc.popen.returncode}) while waiting "
                    f"for {what}:\n{proc.tail()}"
                )
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {p.args[:4]}\n{p.tail(15)}" for p in watch)
            raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}\n{logs}")
        time.sleep(interval_s)
        interval_s = min(interval_s * 1.3, 0.5)


def write_tally(test: str, notes: str = "", **counts: int) -> dict[str, Any]:
    """test-artifacts/faults/<test>.json: the keys of TALLY_KEYS that apply, and notes."""
    unknown = set(counts) - set(TALLY_KEYS)
    assert not unknown, f"tally keys must be among {TALLY_KEYS}: {unknown}"
    tally: dict[str, Any] = {"test": test, **counts}
    if notes:
        tally["notes"] = notes
    TALLIES.mkdir(parents=True, exist_ok=True)
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in test)
    (TALLIES / f"{safe}.json").write_text(json.dumps(tally, ensure_ascii=False, indent=2) + "\n")
    return tally


def post_keys(engine: Engine) -> tuple[int, set[tuple[str | None, str | None]], int]:
    """(rows in posts, distinct (platform, external_id), rows beyond one per key)."""
    with engine.connect() as conn:
        rows = conn.execute(select(func.count(Post.id))).scalar_one()
        keys = {(p, e) for p, e in conn.execute(select(Post.platform, Post.external_id))}
    return rows, keys, rows - len(keys)


def posts_tally(engine: Engine, accepted: set[tuple[str | None, str | None]]) -> dict[str, int]:
    """posts_accepted/stored/lost/duplicated for the keys a test had accepted."""
    rows, keys, duplicated = post_keys(engine)
    return {
        "posts_accepted": len(accepted),
        "posts_stored": rows,
        "posts_lost": len(accepted - keys),
        "posts_duplicated": duplicated,
    }


def ced_items(n: int) -> list[RawItem]:
    """The first `n` posts of CED (real Weibo posts and reposts), unique by id."""
    from tingfeng.collect.connectors.imports import read_items

    seen: set[tuple[str | None, str | None]] = set()
    out = []
    for item in read_items(CED, format="ced"):
        key = (item.platform, item.external_id)
        if isinstance(item, RawItem) and key not in seen:
            seen.add(key)
            out.append(item)
            if len(out) >= n:
                break
    return out


def ced_texts(n: int) -> list[str]:
    """The first `n` non-empty texts of CED's reposts."""
    texts: list[str] = []
    with gzip.open(CED, "rt", encoding="utf-8") as handle:
        for line in handle:
            texts.extend(r["text"] for r in json.loads(line)["reposts"] if r["text"].strip())
            if len(texts) >= n:
                break
    return texts[:n]


def batches(items: list[Any], size: int) -> list[list[Any]]:
    it = iter(items)
    return [b for b in iter(lambda: list(islice(it, size)), [])]


def redis_waiting(url: str) -> int:
    """How many connections to Redis are blocked waiting for a task (idle queue consumers)."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        return sum(1 for c in client.client_list() if "b" in c.get("flags", ""))
    finally:
        client.close()


def queue_idle(huey: Any, redis_url: str, consumers: int) -> bool:
    """Nothing queued or scheduled for a retry, `consumers` consumers waiting for work (so
    none is in the middle of a task), and, with a reliable queue (tingfeng.queue_recovery),
    no task left in the hands of a worker, dead or alive."""
    held = getattr(huey.storage, "held_anywhere", lambda: 0)
    return (
        huey.pending_count() == 0
        and huey.scheduled_count() == 0
        and redis_waiting(redis_url) >= consumers
        and held() == 0
    )


class Receiver:
    """A webhook receiver on a loopback server (tests/loopback.py) that counts each message by
    its Idempotency-Key; it can refuse while `down` is set, like a channel that is away."""

    def __init__(self, server: Any, path: str = "/hook") -> None:
        import threading

        from tests.loopback import Reply

        self.server, self.path = server, path
        self.lock = threading.Lock()
        self.keys: list[str] = []
        self.bodies: list[dict[str, Any]] = []
        self.down = False

        def handle(request: Any) -> Reply:
            if self.down:
                return Reply(503, b"down", content_type="text/plain")
            with self.lock:
                self.keys.append(request.headers.get("idempotency-key", ""))
                self.bodies.append(json.loads(request.body or b"{}"))
            return Reply(200, b"{}", content_type="application/json")

        server.route(path, handle)

    @property
    def url(self) -> str:
        return str(self.server.url(self.path))

    def received(self, prefix: str = "") -> list[str]:
        """Keys received (with repeats), of messages whose key starts with `prefix`."""
        with self.lock:
            return [k for k in self.keys if k.startswith(prefix)]

    def tally(self, sent: int) -> dict[str, int]:
        """alerts_sent (expected distinct messages), alerts_received, alerts_duplicated."""
        keys = self.received()
        return {
            "alerts_sent": sent,
            "alerts_received": len(set(keys)),
            "alerts_duplicated": len(keys) - len(set(keys)),
        }


class InThreadWeb:
    """The web application on a real uvicorn in a thread of this process (like conftest's
    `web`, without signing in): for tests that break the database, not the process."""

    def __init__(self, settings: Any) -> None:
        import threading

        import uvicorn

        from tingfeng.web.app import create_app

        self.port = free_port()
        self.app = create_app(settings)
        self.server = uvicorn.Server(
            uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="critical")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> InThreadWeb:
        self.thread.start()
        wait_for(lambda: self.server.started, 30, "the web server")
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.app.state.engine.dispose()
