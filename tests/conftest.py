"""Shared fixtures: loopback HTTP servers, settings that allow loopback, databases, and real
private PostgreSQL/Redis servers (tests/servers.py) started once per run."""

from __future__ import annotations

import gzip
import json
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn

from tests import servers
from tests.loopback import LoopbackServer
from tingfeng.collect.fetcher import Fetcher
from tingfeng.collect.sources import add_source, issue_push_token
from tingfeng.db.engine import make_engine, write_transaction
from tingfeng.db.migrate import upgrade
from tingfeng.settings import Settings
from tingfeng.web.app import create_app


@pytest.fixture
def loopback() -> Iterator[LoopbackServer]:
    with LoopbackServer() as server:
        yield server


@pytest.fixture
def settings(tmp_path) -> Settings:
    """Settings for tests: a private data dir, loopback allowed, no politeness delays."""
    return Settings(
        database_url=f"sqlite:///{tmp_path / 'tf.db'}",
        data_dir=tmp_path / "var",
        fetch_allowed_networks=["127.0.0.0/8"],
        fetch_per_host_interval_s=0.0,
        fetch_backoff_s=0.01,
        fetch_read_timeout_s=5.0,
        fetch_total_timeout_s=10.0,
    )


# --- real private servers: PostgreSQL and Redis on 127.0.0.1 (see tests/servers.py) ---------

PG_FIXTURES = {"postgres_server", "postgres_url", "fresh_postgres_db"}
REDIS_FIXTURES = {"redis_server", "redis_url", "fresh_redis_url"}


def _start(server_cls):
    """Construct and start a server; a missing binary or failed start fails the tests using it."""
    servers.install_signal_cleanup()
    try:
        server = server_cls()
    except servers.ServerError as e:
        pytest.fail(str(e), pytrace=False)
    try:
        server.start()
    except servers.ServerError as e:
        server.close()
        pytest.fail(str(e), pytrace=False)
    return server


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[servers.PostgresServer]:
    """The run's private PostgreSQL server (start/stop/kill/restart for fault tests)."""
    server = _start(servers.PostgresServer)
    try:
        server.create_database("tingfeng_test")
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def postgres_url(postgres_server: servers.PostgresServer) -> str:
    """URL of database `tingfeng_test`, shared by the whole run (tests must clean up)."""
    return postgres_server.url("tingfeng_test")


@pytest.fixture
def fresh_postgres_db(postgres_server: servers.PostgresServer) -> Iterator[str]:
    """URL of a new, empty PostgreSQL database for this test only; dropped afterwards."""
    if not postgres_server.running:  # a fault test left it down
        postgres_server.start()
    name = postgres_server.create_database()
    try:
        yield postgres_server.url(name)
    finally:
        if not postgres_server.running:
            postgres_server.start()
        postgres_server.drop_database(name)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[servers.RedisServer]:
    """The run's private Redis server (start/stop/kill/restart for fault tests)."""
    server = _start(servers.RedisServer)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def redis_url(redis_server: servers.RedisServer) -> str:
    """redis://127.0.0.1:PORT/0 of the run's Redis server, shared by the whole run."""
    return redis_server.url


def _stray_queue_processes() -> list[int]:
    """`tingfeng … --queue …` children of this process still running (from /proc)."""
    import os

    mine, found = str(os.getpid()), []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = (entry / "stat").read_text().rsplit(")", 1)[1].split()[1]
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except (OSError, IndexError):
            continue
        if ppid == mine and b"tingfeng.cli" in args and b"--queue" in args:
            found.append(int(entry.name))
    return found


@pytest.fixture
def fresh_redis_url(redis_server: servers.RedisServer) -> Iterator[str]:
    """The Redis URL, with the server running and all its data flushed before this test.

    Afterwards, a worker the test left running (a failure between its start and its stop) is
    killed: it would otherwise take the tasks of the next tests from this same Redis, into
    another test's database, and fail them one after another."""
    if not redis_server.running:  # a fault test left it down
        redis_server.start()
    import redis

    client = redis.Redis.from_url(redis_server.url)
    try:
        client.flushall()
    finally:
        client.close()
    yield redis_server.url
    import os
    import signal

    for pid in _stray_queue_processes():
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
    ]
)
def db_url(request, tmp_path) -> str:
    """A fresh, empty database for this test: run once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'db.sqlite'}"
    return request.getfixturevalue("fresh_postgres_db")


def pytest_collection_modifyitems(config, items) -> None:
    """Mark tests using the servers `postgres`/`redis`, so `-m 'not postgres'` deselects them."""
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if names & PG_FIXTURES:
            item.add_marker(pytest.mark.postgres)
        if names & REDIS_FIXTURES:
            item.add_marker(pytest.mark.redis)


@pytest.fixture
def fetcher(settings: Settings) -> Iterator[Fetcher]:
    """The real fetcher, allowed to reach loopback."""
    with Fetcher(settings) as f:
        yield f


# --- the web application served by a real uvicorn on loopback ---------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


TEST_PASSWORD = "test-password-1"


def add_person(settings: Settings, username: str, role: str, department: str | None = None) -> int:
    """A user who can sign in with TEST_PASSWORD (the department is created if missing)."""
    from tingfeng.office.people import add_department, add_user, find_department, set_password
    from tingfeng.problems import ProblemsError

    engine = make_engine(settings.database_url)
    with write_transaction(engine) as conn:
        if department:
            try:
                find_department(conn, department)
            except ProblemsError:
                add_department(conn, department)
        person = add_user(conn, username, username, role=role, department=department)
        set_password(conn, person.id, TEST_PASSWORD)
    engine.dispose()
    return person.id


def sign_in(client: httpx.Client, username: str) -> str:
    """Sign `client` in (the cookie stays in its jar) and send the CSRF token with changes."""
    r = client.post("/login", data={"username": username, "password": TEST_PASSWORD})
    assert r.status_code == 303, r.text
    token = client.get("/api/v1/session").json()["csrf_token"]
    client.headers["X-CSRF-Token"] = token
    return token


def signed_in_page(browser: object, client: httpx.Client) -> object:
    """A browser page in its own context carrying `client`'s session cookie; the browser
    asks for Chinese, as an office's would (Chromium asks for English by default)."""
    context = browser.new_context(locale="zh-CN")  # type: ignore[attr-defined]
    context.add_cookies(
        [{"name": name, "value": value, "url": str(client.base_url)}
         for name, value in client.cookies.items()]
    )  # fmt: skip
    return context.new_page()


@contextmanager
def running_app(settings: Settings) -> Iterator[int]:
    """The web application on a free loopback port (in a thread) until the block ends."""
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def web(settings: Settings) -> Iterator[tuple[httpx.Client, Settings]]:
    """A real server, and a client signed in as the administrator `tester`."""
    engine = make_engine(settings.database_url)
    upgrade(engine)
    engine.dispose()
    add_person(settings, "tester", "admin")
    with (
        running_app(settings) as port,
        httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client,
    ):
        sign_in(client, "tester")
        yield client, settings


# --- the system Chromium, driven by Playwright ---------------------------------------------------

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Screenshots of the pages, for a person to look at after a run (never committed).
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is missing: run `make test`, which installs it")
    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield b
        b.close()


def screenshot(page: object, name: str) -> Path:
    """Saves a full-page screenshot as test-artifacts/screenshots/NAME.png."""
    path = ARTIFACTS / "screenshots" / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=True)  # type: ignore[attr-defined]
    return path


def push_source(settings: Settings, name: str = "对接平台") -> tuple[int, str]:
    engine = make_engine(settings.database_url)
    with write_transaction(engine) as conn:
        source = add_source(conn, name=name, kind="push", config={})
        token = issue_push_token(conn, source.id)
    engine.dispose()
    return source.id, token


# --- the shared CED data set -------------------------------------------------------------------

CED = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "rumor" / "ced" / "cascades.jsonl.gz"
)


def ced_repost_texts(n: int) -> list[str]:
    """The texts of the first `n` real Weibo reposts of CED."""
    texts: list[str] = []
    with gzip.open(CED, "rt", encoding="utf-8") as handle:
        for line in handle:
            texts.extend(repost["text"] for repost in json.loads(line)["reposts"])
            if len(texts) >= n:
                break
    return texts[:n]
