"""The private PostgreSQL and Redis servers of the test run really serve."""

from __future__ import annotations

import psycopg
import pytest
import redis
import sqlalchemy as sa

from tests import servers


def _conninfo(url: str) -> str:
    """A SQLAlchemy postgresql+psycopg URL as a libpq URL for psycopg.connect."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def test_postgres_serves_sql(postgres_url):
    assert postgres_url.startswith("postgresql+psycopg://tingfeng@127.0.0.1:")
    assert postgres_url.endswith("/tingfeng_test")
    with psycopg.connect(_conninfo(postgres_url)) as conn:
        version = conn.execute("select version()").fetchone()[0]
        assert version.startswith("PostgreSQL ")
        assert conn.execute("show server_encoding").fetchone()[0] == "UTF8"
        conn.execute("create temporary table t (id int primary key, name text)")
        conn.execute("insert into t values (1, '听风'), (2, 'wind')")
        rows = conn.execute("select id, name from t order by id").fetchall()
    assert rows == [(1, "听风"), (2, "wind")]


def test_postgres_url_works_with_sqlalchemy(postgres_url):
    engine = sa.create_engine(postgres_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("select current_database()")).scalar() == "tingfeng_test"
    finally:
        engine.dispose()


def test_fresh_databases_are_isolated(postgres_server, request):
    first = request.getfixturevalue("fresh_postgres_db")
    second_name = postgres_server.create_database()
    try:
        second = postgres_server.url(second_name)
        assert first != second
        with psycopg.connect(_conninfo(first)) as conn:
            conn.execute("create table only_here (x int)")
            conn.execute("insert into only_here values (42)")
        with psycopg.connect(_conninfo(second)) as conn:
            exists = conn.execute("select to_regclass('public.only_here')").fetchone()[0]
            assert exists is None
        with psycopg.connect(_conninfo(first)) as conn:
            assert conn.execute("select x from only_here").fetchall() == [(42,)]
    finally:
        postgres_server.drop_database(second_name)


_seen_dbs: list[str] = []


@pytest.mark.parametrize("round_", [1, 2])
def test_fresh_postgres_db_is_new_empty_and_dropped_after(
    postgres_server, fresh_postgres_db, round_
):
    assert fresh_postgres_db not in _seen_dbs
    with psycopg.connect(postgres_server.conninfo()) as conn:
        names = {r[0] for r in conn.execute("select datname from pg_database").fetchall()}
    assert fresh_postgres_db.rsplit("/", 1)[1] in names
    for url in _seen_dbs:  # the earlier rounds' databases are gone
        assert url.rsplit("/", 1)[1] not in names
    _seen_dbs.append(fresh_postgres_db)
    with psycopg.connect(_conninfo(fresh_postgres_db)) as conn:
        tables = conn.execute(
            "select count(*) from information_schema.tables where table_schema = 'public'"
        ).fetchone()[0]
        assert tables == 0
        conn.execute("create table leftover (x int)")  # must not be seen by the next round


def test_db_url_is_a_fresh_empty_database(db_url, request):
    engine = sa.create_engine(db_url)
    try:
        assert sa.inspect(engine).get_table_names() == []
        with engine.begin() as conn:
            conn.execute(sa.text("create table t (x int)"))
            conn.execute(sa.text("insert into t values (7)"))
        with engine.connect() as conn:
            assert conn.execute(sa.text("select x from t")).scalar() == 7
    finally:
        engine.dispose()
    expected = request.node.callspec.id
    assert db_url.startswith(
        {"sqlite": "sqlite:///", "postgresql": "postgresql+psycopg://"}[expected]
    )


def test_postgres_restart_keeps_url_and_data(postgres_server, fresh_postgres_db):
    with psycopg.connect(_conninfo(fresh_postgres_db)) as conn:
        conn.execute("create table kept (x int)")
        conn.execute("insert into kept values (1)")
    port = postgres_server.port
    postgres_server.restart()
    assert postgres_server.port == port
    with psycopg.connect(_conninfo(fresh_postgres_db)) as conn:
        assert conn.execute("select x from kept").fetchall() == [(1,)]


def test_redis_answers(redis_url):
    assert redis_url.startswith("redis://127.0.0.1:") and redis_url.endswith("/0")
    client = redis.Redis.from_url(redis_url)
    try:
        assert client.ping() is True
        client.set("tingfeng:test", "听风")
        assert client.get("tingfeng:test").decode() == "听风"
        client.delete("tingfeng:test")
    finally:
        client.close()


def test_redis_restart(redis_server, fresh_redis_url):
    client = redis.Redis.from_url(fresh_redis_url)
    try:
        client.set("before", "1")
        port, pid = redis_server.port, redis_server.proc.pid
        redis_server.restart()
        assert redis_server.port == port
        assert redis_server.proc.pid != pid
        assert redis_server.running
        # The client reconnects on its own; data is gone (no persistence).
        assert client.ping() is True
        assert client.get("before") is None
    finally:
        client.close()


def test_redis_kill_then_fresh_fixture_brings_it_back(redis_server, request):
    redis_server.kill()
    assert not redis_server.running
    assert not servers.redis_ping(redis_server.port)
    url = request.getfixturevalue("fresh_redis_url")
    client = redis.Redis.from_url(url)
    try:
        assert client.ping() is True
    finally:
        client.close()


def test_missing_binaries_fail_with_make_test_hint(monkeypatch):
    monkeypatch.setattr(servers.glob, "glob", lambda pattern: [])
    monkeypatch.setattr(servers.shutil, "which", lambda name: None)
    monkeypatch.setattr(servers.os.path, "exists", lambda path: False)
    with pytest.raises(servers.ServerError, match=r"make test.*postgresql"):
        servers.find_pg_bindir()
    with pytest.raises(servers.ServerError, match=r"make test.*redis-server"):
        servers.find_redis_server()
