"""Health signals: /livez, /readyz and /metrics on a real server, JSON logs from a real process.

The metrics are read back as Prometheus parses them and compared with what the database holds
after posts are pushed, an alert is delivered to a webhook and a case runs late. Readiness is
driven into each fault for real (a SQLite file held locked by another connection, a PostgreSQL
database switched to read-only, a disk filled up, a clock record in the future) and must name
the fault, say what to do, and clear once the cause goes away.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import uvicorn
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update

from tests.conftest import _free_port, add_person, push_source, sign_in
from tests.loopback import LoopbackServer, Reply
from tingfeng.alerts.dispatch import Dispatcher
from tingfeng.alerts.service import create_channel, create_rule
from tingfeng.cases.service import open_case
from tingfeng.collect.runner import record_push
from tingfeng.db.engine import make_engine, write_transaction
from tingfeng.db.migrate import upgrade
from tingfeng.db.models import FetchLog
from tingfeng.ingest.ingestor import IngestStats
from tingfeng.logs import JsonFormatter
from tingfeng.settings import Settings
from tingfeng.tasks import build_queue
from tingfeng.web.app import create_app

ROOT = Path(__file__).resolve().parents[1]


def metrics(client: httpx.Client, **headers: str) -> dict[tuple[str, tuple], float]:
    """/metrics as Prometheus reads it: {(sample name, sorted labels): value}."""
    r = client.get("/metrics", headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def value(samples: dict[tuple[str, tuple], float], name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def wait_for(predicate, timeout_s: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


def test_livez_and_readyz_answer_when_all_is_well(web) -> None:  # type: ignore[no-untyped-def]
    client, _ = web
    anonymous = httpx.Client(base_url=client.base_url)
    assert anonymous.get("/livez").json()["status"] == "ok"
    r = anonymous.get("/readyz")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "ok"
    assert set(body["checks"]) == {"database", "migrations", "queue", "disk", "clock"}
    assert all(check["ok"] for check in body["checks"].values())
    assert client.get("/healthz").json()["status"] == "ok"  # the old probe still answers


def test_metrics_match_the_database(web, loopback: LoopbackServer) -> None:  # type: ignore[no-untyped-def]
    client, settings = web
    settings.outbox_poll_s = 0.05
    loopback.route("/hook", Reply(200, b"{}", content_type="application/json"))
    sid, token = push_source(settings, name="对接平台")
    engine = make_engine(settings.database_url)
    now = datetime.now(UTC)
    with write_transaction(engine) as conn:
        channel = create_channel(
            conn, settings, name="hook", kind="webhook", target=loopback.url("/hook"), config={}
        )
        create_rule(
            conn,
            {"name": "停运", "conditions": {"query": "停运"}, "per": "post",
             "rate_limit_per_hour": 0, "channel_ids": [channel["id"]]},
            now,
        )  # fmt: skip
        # A case opened ten days ago: its first deadlines are long past.
        open_case(conn, None, settings, title="供暖投诉", now=now - timedelta(days=10))

    before = metrics(client)
    assert value(before, "tingfeng_posts_stored_total") == 0
    assert value(before, "tingfeng_db_up") == 1
    assert value(before, "tingfeng_cases_overdue") == 1
    assert value(before, "tingfeng_cases_open", state="new") == 1

    posts = [{"id": f"m{n}", "text": f"地铁{n}号线停运，乘客滞留。"} for n in range(3)]
    posts.append({"id": "x", "text": "今天天气不错"})
    r = client.post(
        f"/api/v1/sources/{sid}/posts", json=posts, headers={"Authorization": f"Bearer {token}"}
    )
    assert r.status_code == 200 and r.json()["stored"] == 4, r.text
    # A fetch waiting in the (embedded) queue, which nobody consumes in this test.
    build_queue(settings).enqueue_collect(sid)

    pushed = metrics(client)
    assert value(pushed, "tingfeng_posts_stored_total") == 4
    source = {"source_id": str(sid), "source": "对接平台", "kind": "push"}
    assert value(pushed, "tingfeng_source_posts_stored_total", **source) == 4
    assert value(pushed, "tingfeng_source_up", **source) == 1
    assert value(pushed, "tingfeng_source_health", state="passive") == 1
    assert value(pushed, "tingfeng_posts_ingested_per_second") == pytest.approx(4 / 300)
    assert value(pushed, "tingfeng_queue_depth") == 1
    assert value(pushed, "tingfeng_alerts_open", level="general") == 3
    assert value(pushed, "tingfeng_outbox_messages", status="pending") == 3
    assert value(pushed, "tingfeng_outbox_oldest_pending_seconds") > 0
    assert value(pushed, "tingfeng_alert_delivery_seconds_bucket", le="+Inf") == 0

    dispatcher = Dispatcher(engine, settings).start()
    try:
        wait_for(lambda: loopback.hits("/hook") == 3)
        wait_for(lambda: value(metrics(client), "tingfeng_outbox_messages", status="pending") == 0)
    finally:
        dispatcher.stop()
    sent = metrics(client)
    assert value(sent, "tingfeng_alert_delivery_seconds_bucket", le="+Inf") == 3
    assert value(sent, "tingfeng_alert_delivery_seconds_gcount") == 3
    assert value(sent, "tingfeng_alert_delivery_seconds_bucket", le="60.0") == 3
    assert value(sent, "tingfeng_outbox_oldest_pending_seconds") == 0
    assert value(sent, "tingfeng_outbox_messages", status="failed") == 0
    assert value(sent, "tingfeng_ready_check", check="database") == 1
    engine.dispose()


def test_metrics_need_a_token_an_allowed_network_or_an_administrator(web) -> None:  # type: ignore[no-untyped-def]
    client, settings = web
    anonymous = httpx.Client(base_url=client.base_url)
    # Loopback is allowed by default, but not through a proxy (which makes everyone loopback).
    assert anonymous.get("/metrics").status_code == 200
    forwarded = anonymous.get("/metrics", headers={"X-Forwarded-For": "203.0.113.9"})
    assert forwarded.status_code == 401 and "metrics_token" in forwarded.json()["error"]

    settings.metrics_networks = ["10.0.0.0/8"]
    settings.metrics_token = "prom-secret-1"
    assert anonymous.get("/metrics").status_code == 401
    wrong = anonymous.get("/metrics", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    metrics(anonymous, Authorization="Bearer prom-secret-1")
    metrics(client)  # the signed-in administrator
    add_person(settings, "kan", "viewer")
    viewer = httpx.Client(base_url=client.base_url)
    sign_in(viewer, "kan")
    assert viewer.get("/metrics").status_code == 401


def test_readyz_reports_a_locked_sqlite_database_and_recovers(web) -> None:  # type: ignore[no-untyped-def]
    client, settings = web
    settings.readiness_timeout_s = 0.3
    db_file = settings.database_url.removeprefix("sqlite:///")
    holder = sqlite3.connect(db_file, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        r = client.get("/readyz")
        assert r.status_code == 503, r.text
        body = r.json()
        assert body["failing"] == ["database"]
        assert "database locked" in body["message"] and db_file in body["message"]
        assert value(metrics(client), "tingfeng_ready_check", check="database") == 0
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert client.get("/readyz").status_code == 200


def test_readyz_reports_a_disk_under_the_threshold_and_recovers(web) -> None:  # type: ignore[no-untyped-def]
    client, settings = web
    settings.disk_free_min_mb = 1 << 40  # a million terabytes: no disk has that much free
    r = client.get("/readyz")
    assert r.status_code == 503 and r.json()["failing"] == ["disk"]
    assert "disk full" in r.json()["message"] and str(settings.data_dir) in r.json()["message"]
    settings.disk_free_min_mb = 1
    assert client.get("/readyz").status_code == 200


@contextlib.contextmanager
def tiny_tmpfs(where: Path, size: str) -> Iterator[Path]:
    where.mkdir(parents=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root; the threshold test covers the check")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()})")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_readyz_reports_a_really_full_disk_and_recovers(web, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    client, settings = web
    with tiny_tmpfs(tmp_path / "small", "2m") as small:
        settings.data_dir = small
        settings.disk_free_min_mb = 1
        assert client.get("/readyz").status_code == 200
        filler = small / "filler"
        with contextlib.suppress(OSError), filler.open("wb") as out:
            while True:  # until the disk is full (ENOSPC)
                out.write(b"\0" * 65536)
                out.flush()
        r = client.get("/readyz")
        assert r.status_code == 503 and r.json()["failing"] == ["disk"]
        assert f"0 MB free under {small}" in r.json()["message"]
        free = value(metrics(client), "tingfeng_disk_free_bytes", path=str(small))
        assert free < 1024 * 1024
        filler.unlink()
        assert client.get("/readyz").status_code == 200


def test_a_clock_that_went_back_is_a_warning_that_clears(web) -> None:  # type: ignore[no-untyped-def]
    client, settings = web
    sid, _ = push_source(settings)
    engine = make_engine(settings.database_url)
    future = datetime.now(UTC) + timedelta(hours=1)
    # A run recorded by this machine's clock before it was set back by an hour.
    record_push(engine, sid, IngestStats(), future, future)
    r = client.get("/readyz")
    assert r.status_code == 200, r.text  # a warning: the only clock there is cannot be compared
    body = r.json()
    assert body["warnings"] == ["clock"] and not body["checks"]["clock"]["ok"]
    assert "clock went back" in body["checks"]["clock"]["message"]
    assert value(metrics(client), "tingfeng_clock_skew_seconds") == pytest.approx(3600, abs=60)
    with write_transaction(engine) as conn:  # as if the clock had caught up with that record
        past = datetime.now(UTC) - timedelta(seconds=1)
        conn.execute(update(FetchLog).values(started_at=past, finished_at=past))
    engine.dispose()
    assert "warnings" not in client.get("/readyz").json()


@contextlib.contextmanager
def serving(settings: Settings) -> Iterator[httpx.Client]:
    """The application on its own uvicorn (as the `web` fixture), for a database of our own."""
    engine = make_engine(settings.database_url)
    upgrade(engine)
    engine.dispose()
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, 10)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_readyz_on_postgresql_read_only_clock_and_down(
    postgres_server, fresh_postgres_db: str, settings: Settings
) -> None:  # type: ignore[no-untyped-def]
    settings = settings.model_copy(update={"database_url": fresh_postgres_db})
    name = fresh_postgres_db.rsplit("/", 1)[1]

    def cut_connections() -> None:
        # As a failover does: every session to the database ends; new ones get the new default.
        postgres_server.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = '{name}' AND pid <> pg_backend_pid()"
        )

    with serving(settings) as client:
        ok = client.get("/readyz")
        assert ok.status_code == 200, ok.text
        assert abs(ok.json()["checks"]["clock"]["skew_s"]) < 5
        postgres_server.execute(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
        cut_connections()
        r = client.get("/readyz")
        assert r.status_code == 503, r.text
        assert r.json()["failing"] == ["database"]
        assert "database read-only" in r.json()["message"]
        postgres_server.execute(f'ALTER DATABASE "{name}" RESET default_transaction_read_only')
        # Connections opened while it was read-only are renewed by the check; writes work again.
        assert client.get("/readyz").status_code == 200
        add_person(settings, "tester", "admin")
        sign_in(client, "tester")
        sid, token = push_source(settings)
        pushed = client.post(
            f"/api/v1/sources/{sid}/posts",
            json=[{"id": "a", "text": "恢复写入"}],
            headers={"Authorization": f"Bearer {token}"},
        )
        assert pushed.status_code == 200 and pushed.json()["stored"] == 1, pushed.text

        settings.clock_skew_max_s = 1e-12  # no two clocks agree this closely
        r = client.get("/readyz")
        assert r.status_code == 503 and r.json()["failing"] == ["clock"]
        assert "Synchronise the clocks" in r.json()["message"]
        settings.clock_skew_max_s = 30.0
        assert client.get("/readyz").status_code == 200
        assert value(metrics(client), "tingfeng_build_info", version=_version(),
                     database="postgresql", queue="embedded") == 1  # fmt: skip

        postgres_server.stop()
        try:
            r = client.get("/readyz")
            assert r.status_code == 503 and "database" in r.json()["failing"]
            assert "database unreachable" in r.json()["message"]
            assert value(metrics(client), "tingfeng_db_up") == 0
        finally:
            postgres_server.start()
        assert client.get("/readyz").status_code == 200


def _version() -> str:
    from tingfeng import __version__

    return __version__


def test_json_logs_one_object_per_line_from_a_real_process(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'tf.db'}", data_dir=tmp_path / "var")
    engine = make_engine(settings.database_url)
    upgrade(engine)
    engine.dispose()
    add_person(settings, "admin", "admin")  # else `serve` prints a hint for a person first
    env = os.environ | {"TINGFENG_DATA_DIR": str(settings.data_dir)}
    env.pop("TINGFENG_LOG_FORMAT", None)
    command = [sys.executable, "-m", "tingfeng.cli", "--log-format", "json",
               "--db", settings.database_url, "serve", "--role", "scheduler"]  # fmt: skip
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if "scheduler running" in line:
                break
    finally:
        proc.send_signal(signal.SIGTERM)
        lines += proc.communicate(timeout=30)[1].splitlines()
    records = [json.loads(line) for line in lines]  # every line, or this fails
    running = next(r for r in records if r["message"].startswith("scheduler running"))
    assert running["level"] == "INFO" and running["logger"] == "tingfeng.service"
    assert running["role"] == "scheduler" and running["pid"] == proc.pid
    assert datetime.fromisoformat(running["time"]).utcoffset() == timedelta(0)


def test_json_log_records_carry_extra_fields_and_exceptions() -> None:
    import logging

    logger = logging.getLogger("tingfeng.test")
    try:
        raise ValueError("bad input")
    except ValueError:
        record = logger.makeRecord(
            "tingfeng.test", logging.ERROR, __file__, 1, "source %s failed", (7,),
            sys.exc_info(), extra={"source_id": 7, "at": datetime(2026, 1, 1, tzinfo=UTC)},
        )  # fmt: skip
    line = JsonFormatter().format(record)
    assert "\n" not in line
    out = json.loads(line)
    assert out["message"] == "source 7 failed" and out["source_id"] == 7
    assert out["at"] == "2026-01-01 00:00:00+00:00"
    assert out["exception"].startswith("Traceback") and "ValueError: bad input" in out["exception"]


def test_ready_command_checks_a_machine_without_a_web_server(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from tingfeng.cli.main import app

    db = f"sqlite:///{tmp_path / 'tf.db'}"
    env = {"TINGFENG_CONFIG": "/nonexistent.toml", "TINGFENG_DATA_DIR": str(tmp_path / "var")}
    runner = CliRunner()
    fresh = runner.invoke(app, ["--db", db, "ready", "--json"], env=env)
    assert fresh.exit_code == 1, fresh.output
    body = json.loads(fresh.stdout)
    assert body["failing"] == ["database", "migrations"]
    assert "no Tingfeng schema" in body["checks"]["database"]["message"]
    assert "run `tingfeng init`" in body["checks"]["migrations"]["message"]
    engine = make_engine(db)
    upgrade(engine)
    engine.dispose()
    ready = runner.invoke(app, ["--db", db, "ready"], env=env)
    assert ready.exit_code == 0, ready.output
    assert "ok    database" in ready.stdout
    # A Redis that is not there (nothing listens on the port just freed).
    down = runner.invoke(
        app, ["--db", db, "--queue", f"redis://127.0.0.1:{_free_port()}/0", "ready"], env=env
    )
    assert down.exit_code == 1 and "FAIL  queue" in down.stdout
    assert "Start Redis or check queue_url" in down.stdout


def test_metrics_count_tasks_in_hand_and_set_aside_on_redis(
    tmp_path: Path, fresh_redis_url: str
) -> None:
    from prometheus_client.exposition import generate_latest
    from prometheus_client.registry import CollectorRegistry

    from tingfeng.metrics import TingfengCollector
    from tingfeng.readiness import Readiness

    db = f"sqlite:///{tmp_path / 'tf.db'}"
    engine = make_engine(db)
    upgrade(engine)
    settings = Settings(database_url=db, queue_url=fresh_redis_url, data_dir=tmp_path / "var")
    registry = CollectorRegistry()
    registry.register(TingfengCollector(engine, settings, Readiness(settings, engine)))

    def scrape() -> dict[tuple[str, tuple], float]:
        text = generate_latest(registry).decode()
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    worker = build_queue(settings).huey.storage
    worker.heartbeat()
    for n in range(3):
        worker.enqueue(f"task-{n}".encode())
    worker.dequeue()  # one taken, not finished
    worker.dequeue()
    worker.set_aside()  # one that could not be read
    seen = scrape()
    assert value(seen, "tingfeng_queue_up") == 1
    assert value(seen, "tingfeng_queue_depth") == 1
    assert value(seen, "tingfeng_queue_in_hand") == 1
    assert value(seen, "tingfeng_queue_set_aside") == 1
    engine.dispose()
