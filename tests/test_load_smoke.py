"""The load benchmark's users (bench/locustfile.py) against a real server, briefly, so that the
locustfile cannot rot; and the two fixes the load benchmark led to (the overview's shared
post statistics, the parsed taxonomy kept), each checked for what it must keep doing."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from bench.load import ROOT, locust_command, steady_and_whole

from tests.conftest import TEST_PASSWORD, add_person, push_source
from tingfeng.db.engine import make_engine, write_transaction
from tingfeng.settings import Settings


def _office(client: httpx.Client, settings: Settings) -> None:
    """What every task needs, made cheaply: a topic, posts that make an event, a case, and a
    viewer beside the administrator `tester`."""
    r = client.post("/api/v1/topics", json={"name": "化工厂", "query": "化工厂"})
    assert r.status_code in (200, 201), r.text
    sid, token = push_source(settings)
    text = "浙江某县化工厂发生爆炸起火，现场浓烟滚滚，已造成2人受伤，消防正在灭火。"
    start = datetime.now(UTC) - timedelta(hours=2)
    posts = [
        {"id": key, "text": text if parent is None else f"转发：{text} //@{key}",
         "reposts_of": parent, "published_at": (start + timedelta(minutes=m)).isoformat()}
        for key, parent, m in [("o", None, 0), ("a", "o", 10), ("b", "o", 20), ("c", "a", 30)]
    ]  # fmt: skip
    r = client.post(
        f"/api/v1/sources/{sid}/posts", headers={"Authorization": f"Bearer {token}"}, json=posts
    )
    assert r.json()["stored"] == len(posts), r.text
    events = client.get("/api/v1/events").json()["events"]
    assert events, "the posts made no event"
    r = client.post("/api/v1/cases", json={"title": "化工厂爆炸", "event_id": events[0]["id"]})
    assert r.status_code in (200, 201), r.text
    add_person(settings, "viewer1", "viewer")


def test_locust_users_do_every_task_without_an_error(web, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    client, settings = web
    _office(client, settings)
    out = tmp_path / "locust.json"
    env = os.environ | {
        "TINGFENG_LOAD_ACCOUNTS": "tester,viewer1",
        "TINGFENG_LOAD_PASSWORD": TEST_PASSWORD,
        "TINGFENG_LOAD_WAIT": "0.05,0.2",
        "TINGFENG_LOAD_TOUR": "1",
        "TINGFENG_LOAD_OUT": str(out),
    }
    # The run ends when the three users have done every task once (30 s at most).
    cmd = locust_command(str(client.base_url), users=3, spawn_rate=3, seconds=30)
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.exists(), f"locust wrote nothing (exit {r.returncode}): {r.stderr[-3000:]}"
    result = json.loads(out.read_text(encoding="utf-8"))

    failures = [s for s in result["samples"] if not s["ok"]]
    assert failures == [], failures[:5]
    assert len(result["tasks"]) >= 15
    assert set(result["ran"]) == set(result["tasks"]), "tasks that never ran (no data?)"
    kinds = {s["kind"] for s in result["samples"]}
    assert kinds == {"page", "api", "sign-in"}
    assert sum(1 for s in result["samples"] if s["name"] == "/login (POST)") == 3
    # The benchmark's figures come from these samples.
    figures = steady_and_whole(result["samples"], 8)
    assert figures["by_kind"]["page"]["requests"] > 0 and figures["by_kind"]["api"]["errors"] == 0
    assert figures["whole_run"]["sign-in"]["requests"] == 6  # the form and the POST, per user


def test_a_lost_session_is_an_error_not_a_page(web, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A wrong password: the users' requests must fail, not count the sign-in page as a page."""
    client, _settings = web
    out = tmp_path / "locust.json"
    env = os.environ | {
        "TINGFENG_LOAD_ACCOUNTS": "tester",
        "TINGFENG_LOAD_PASSWORD": "not-the-password",
        "TINGFENG_LOAD_OUT": str(out),
    }
    cmd = locust_command(str(client.base_url), users=1, spawn_rate=1, seconds=2)
    subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    samples = json.loads(out.read_text(encoding="utf-8"))["samples"]
    assert [s["name"] for s in samples if not s["ok"]] == ["/login (POST)"]


def _post(conn, source_id: int, n: int, at: datetime) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import insert

    from tingfeng.db.models import Post

    conn.execute(
        insert(Post).values(uid=f"u{n}", source_id=source_id, content_hash=f"h{n}",
                            text_clean=f"post {n}", published_at=at, fetched_at=at)
    )  # fmt: skip


def test_overview_statistics_are_shared_for_their_time_only(settings) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import insert

    from tingfeng.db.migrate import upgrade
    from tingfeng.db.models import Source
    from tingfeng.web.overview import SharedStatistics

    engine = make_engine(settings.database_url)
    upgrade(engine)
    now = datetime.now(UTC)
    with write_transaction(engine) as conn:
        sid = conn.execute(insert(Source).values(name="s", kind="push", config={}))
        sid = sid.inserted_primary_key[0]
        _post(conn, sid, 1, now - timedelta(seconds=2))
    kept = SharedStatistics(engine, "UTC", ttl_s=3600)
    fresh = SharedStatistics(engine, "UTC", ttl_s=0)
    assert kept.get()["volume"]["today"] == 1
    assert fresh.get()["volume"]["today"] == 1
    with write_transaction(engine) as conn:
        _post(conn, sid, 2, now - timedelta(seconds=1))
    assert kept.get()["volume"]["today"] == 1  # within its time: the same numbers
    # Due: the previous numbers at once, the new ones as soon as they are computed.
    assert fresh.get()["volume"]["today"] in (1, 2)
    deadline = datetime.now(UTC) + timedelta(seconds=20)
    while fresh.get()["volume"]["today"] != 2 and datetime.now(UTC) < deadline:
        threading.Event().wait(0.02)
    assert fresh.get()["volume"]["today"] == 2
    engine.dispose()


def test_taxonomy_is_parsed_once_per_content(settings) -> None:  # type: ignore[no-untyped-def]
    from tingfeng.db.migrate import upgrade
    from tingfeng.ingest.readings import current_taxonomy, save_taxonomy

    engine = make_engine(settings.database_url)
    upgrade(engine)
    with engine.connect() as conn:
        first = current_taxonomy(conn)
        assert current_taxonomy(conn) is first
    slug = first.categories[0].slug
    with write_transaction(engine) as conn:
        save_taxonomy(conn, first.remove_category(slug))
    with engine.connect() as conn:
        changed = current_taxonomy(conn)
        assert slug not in {c.slug for c in changed.categories}
        assert current_taxonomy(conn) is changed
    engine.dispose()


def test_sign_ins_at_once_do_not_queue_on_the_write_lock(tmp_path: Path) -> None:
    """Sixteen people signing in at once, on SQLite with a write-lock wait of 0.5 s: the argon2
    checks (a deliberate fraction of a second each) must not run while the lock is held, or
    the later ones wait past it and are answered 503 (so did ingest, behind them)."""
    from concurrent.futures import ThreadPoolExecutor

    from tests.conftest import running_app
    from tingfeng.db.migrate import upgrade

    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'tf.db'}?timeout=0.5", data_dir=tmp_path / "var"
    )
    engine = make_engine(settings.database_url)
    upgrade(engine)
    engine.dispose()
    add_person(settings, "duty", "analyst")
    with running_app(settings) as port:

        def sign_in_once(_: int) -> int:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as c:
                r = c.post("/login", data={"username": "duty", "password": TEST_PASSWORD})
                return r.status_code

        with ThreadPoolExecutor(max_workers=16) as pool:
            answers = list(pool.map(sign_in_once, range(16)))
    assert answers == [303] * 16


def test_the_write_lock_holder_gets_a_connection_while_many_wait(tmp_path: Path) -> None:
    """Twenty requests waiting for SQLite's write lock must not take every pooled connection
    from the one holding it (who reads beside its transaction): that was a stall until the
    busy timeout, then 500s and 503s, under the load benchmark."""
    import threading

    from sqlalchemy import text

    engine = make_engine(f"sqlite:///{tmp_path / 'pool.db'}?timeout=20")
    with write_transaction(engine) as conn:
        conn.execute(text("CREATE TABLE t (x INTEGER)"))
    holding = threading.Event()
    release = threading.Event()
    second: list[int] = []

    def holder() -> None:
        with write_transaction(engine) as conn:
            conn.execute(text("INSERT INTO t VALUES (1)"))
            holding.set()
            release.wait(10)
            with engine.connect() as other:  # the read beside the write transaction
                second.append(other.execute(text("SELECT count(*) FROM t")).scalar() or 0)

    def waiter() -> None:
        with write_transaction(engine) as conn:
            conn.execute(text("INSERT INTO t VALUES (2)"))

    first = threading.Thread(target=holder)
    first.start()
    assert holding.wait(10)
    waiting = [threading.Thread(target=waiter) for _ in range(20)]
    for w in waiting:
        w.start()
    deadline = datetime.now(UTC) + timedelta(seconds=10)
    while engine.pool.checkedout() < 15 and datetime.now(UTC) < deadline:  # they all wait
        threading.Event().wait(0.01)
    release.set()
    first.join(timeout=5)
    alive = first.is_alive()
    for w in waiting:
        w.join(timeout=30)
    engine.dispose()
    assert not alive, "the lock's holder waited for a pooled connection"
    assert second == [0]  # it read the committed table, not its own uncommitted row
