"""`tingfeng launch`: web, scheduler and workers as separate processes on PostgreSQL + Redis.

Two web processes behind one (imagined) proxy share sessions; posts pushed to one are stored
by the workers and seen through the other; a worker killed with SIGKILL is started again;
SIGTERM stops every process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import psutil
import pytest

from tests.conftest import TEST_PASSWORD, _free_port, add_person, push_source
from tingfeng.db.engine import make_engine
from tingfeng.db.migrate import upgrade
from tingfeng.settings import Settings

CLI = [sys.executable, "-m", "tingfeng.cli"]


def _wait(predicate, timeout_s: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _two_free_ports() -> int:
    """A port whose neighbour is free too (the web processes listen on consecutive ports)."""
    import socket

    for _ in range(50):
        port = _free_port()
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise AssertionError("no two consecutive free ports")


def _children(pid: int, role: str) -> list[psutil.Process]:
    out = []
    for child in psutil.Process(pid).children():
        try:
            cmd = child.cmdline()
        except psutil.NoSuchProcess:
            continue
        if "--role" in cmd and cmd[cmd.index("--role") + 1] == role:
            out.append(child)
    return out


@pytest.mark.slow
def test_launch_runs_roles_as_processes_that_share_work_and_sessions(
    fresh_postgres_db: str, fresh_redis_url: str, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    settings = Settings(database_url=fresh_postgres_db, data_dir=tmp_path / "data")
    engine = make_engine(fresh_postgres_db)
    upgrade(engine)
    engine.dispose()
    add_person(settings, "duty", "admin")
    sid, token = push_source(settings)
    port = _two_free_ports()
    env = os.environ | {"TINGFENG_CONFIG": "/nonexistent.toml", "TINGFENG_LOG_LEVEL": "WARNING"}
    launcher = subprocess.Popen(
        [*CLI, "--db", fresh_postgres_db, "--queue", fresh_redis_url, "launch",
         "--web", "2", "--workers", "2", "--threads", "1", "--port", str(port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    a = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120)
    b = httpx.Client(base_url=f"http://127.0.0.1:{port + 1}", timeout=120)
    try:
        for client in (a, b):
            _wait(lambda c=client: c.get("/healthz").status_code == 200, 240, "web processes")
        assert len(_children(launcher.pid, "web")) == 2
        assert len(_children(launcher.pid, "scheduler")) == 1
        workers = _children(launcher.pid, "worker")
        assert len(workers) == 2

        # Signed in on one web process, the session works on the other (it is in the database),
        # including a change with the CSRF token the first one issued.
        r = a.post("/login", data={"username": "duty", "password": TEST_PASSWORD})
        assert r.status_code == 303
        csrf = a.get("/api/v1/session").json()["csrf_token"]
        b.cookies.update(a.cookies)
        assert b.get("/api/v1/session").json()["user"]["username"] == "duty"
        made = b.post(
            "/api/v1/topics",
            json={"name": "供暖", "query": "供暖"},
            headers={"X-CSRF-Token": csrf},
        )
        assert made.status_code in (200, 201), made.text

        # Pushed to one process, stored (by whichever process), seen through the other.
        posts = [
            {"id": f"p{i}", "text": f"小区供暖不热第{i}天，物业一直没有回复"} for i in range(40)
        ]
        pushed = a.post(
            f"/api/v1/sources/{sid}/posts",
            json={"posts": posts},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert pushed.status_code in (200, 202), pushed.text
        _wait(
            lambda: b.get("/api/v1/search", params={"q": "供暖"}).json()["total"] == 40,
            60,
            "the pushed posts to be searchable through the other web process",
        )

        # A worker killed with SIGKILL is started again.
        victim = workers[0]
        victim.kill()
        _wait(
            lambda: (
                len(_children(launcher.pid, "worker")) == 2
                and victim.pid not in {p.pid for p in _children(launcher.pid, "worker")}
            ),
            30,
            "a new worker",
        )
    finally:
        a.close()
        b.close()
        launcher.send_signal(signal.SIGTERM)
        try:
            launcher.wait(timeout=60)
        except subprocess.TimeoutExpired:
            launcher.kill()
            raise
    assert launcher.returncode == 0, launcher.stderr.read() if launcher.stderr else ""
    # Every child is gone with it.
    leftovers = [
        p
        for p in psutil.process_iter(["cmdline"])
        if fresh_postgres_db in " ".join(p.info["cmdline"] or [])
    ]
    assert leftovers == []
