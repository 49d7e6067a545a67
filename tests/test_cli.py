"""The command line, run as a real subprocess: the contracts later checks rely on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.loopback import Reply
from tests.test_runner import RSS

CED = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "rumor" / "ced" / "cascades.jsonl.gz"
)
TINGFENG = [sys.executable, "-m", "tingfeng.cli"]


def run(
    *args: str, env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    full_env = os.environ | {"TINGFENG_CONFIG": "/nonexistent.toml"} | (env or {})
    proc = subprocess.run(
        [*TINGFENG, *args], capture_output=True, text=True, env=full_env, timeout=300
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"exit {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
        )
    return proc


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'cli.db'}"


def test_ingest_prints_one_json_line_and_is_idempotent(db: str) -> None:
    first = json.loads(
        run("--db", db, "ingest", str(CED), "--format", "ced", "--limit", "3000").stdout
    )
    assert set(first) == {"read", "stored", "duplicates", "errors", "seconds"}
    assert first["read"] == 3000 and first["errors"] == 0
    assert first["stored"] + first["duplicates"] == 3000 and first["stored"] > 2900
    again = json.loads(
        run("--db", db, "ingest", str(CED), "--format", "ced", "--limit", "3000").stdout
    )
    assert again["stored"] == 0 and again["duplicates"] == 3000


def test_search_count_and_results(db: str) -> None:
    run("--db", db, "ingest", str(CED), "--limit", "2000")
    n = int(run("--db", db, "search", "转发", "--count").stdout.strip())
    assert n > 0
    lines = run("--db", db, "search", "转发", "--limit", "5", "--json").stdout.splitlines()
    assert len(lines) == min(5, n)
    assert all("<mark>转发</mark>" in json.loads(line)["snippet_html"] for line in lines)


def test_bad_inputs_exit_non_zero_with_a_message_and_lose_nothing(db: str, tmp_path: Path) -> None:
    run("--db", db, "ingest", str(CED), "--limit", "500")
    before = int(run("--db", db, "search", "转发", "--count").stdout)
    png = tmp_path / "photo.csv"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 20)
    bad_file = run("--db", db, "ingest", str(png), check=False)
    assert bad_file.returncode != 0 and "error:" in bad_file.stderr
    missing = run("--db", db, "ingest", str(tmp_path / "nope.jsonl"), check=False)
    assert missing.returncode != 0 and "does not exist" in missing.stderr
    bad_query = run("--db", db, "search", '"unclosed', check=False)
    assert bad_query.returncode == 2 and "quotation mark" in bad_query.stderr
    bad_db = run("--db", "nosuchdb://x", "search", "a", check=False)
    assert bad_db.returncode != 0 and "error:" in bad_db.stderr
    assert int(run("--db", db, "search", "转发", "--count").stdout) == before


def test_source_commands_against_a_loopback_feed(db: str, loopback) -> None:  # type: ignore[no-untyped-def]
    loopback.route(
        "/feed.xml",
        Reply(200, RSS.format(base=loopback.url("")).encode(), content_type="application/rss+xml"),
    )
    env = {
        "TINGFENG_FETCH_ALLOWED_NETWORKS": '["127.0.0.0/8"]',
        "TINGFENG_FETCH_PER_HOST_INTERVAL_S": "0",
    }
    out = run(
        "--db",
        db,
        "source",
        "add",
        "县融媒",
        "feed",
        "--url",
        loopback.url("/feed.xml"),
        "--set",
        "fetch_article=never",
        "--interval",
        "10m",
        env=env,
    ).stdout
    assert "added source 1" in out
    tested = run("--db", db, "source", "test", "县融媒", env=env)
    rows = [json.loads(line) for line in tested.stdout.splitlines()]
    assert {r["title"] for r in rows} == {
        "县医院门诊楼改造完成",
        "镇政府回应群众关于垃圾清运的投诉",
    }
    # `test` stores nothing.
    assert run("--db", db, "search", "医院", "--count").stdout.strip() == "0"
    listed = json.loads(run("--db", db, "source", "list", "--json").stdout)
    assert listed[0]["name"] == "县融媒" and listed[0]["interval_s"] == 600
    health = json.loads(run("--db", db, "source", "health", "--json").stdout)
    assert health[0]["status"] == "never"
    shown = json.loads(run("--db", db, "source", "show", "1").stdout)
    assert shown["config"]["url"] == loopback.url("/feed.xml")
    blocked = run(
        "--db", db, "source", "test", "县融媒", check=False
    )  # loopback not allowed by default
    assert blocked.returncode != 0 and "127.0.0.1" in blocked.stderr
    dup = run("--db", db, "source", "add", "县融媒", "feed", "--url", "https://x.cn/f", check=False)
    assert dup.returncode == 2 and "already exists" in dup.stderr
    bad = run("--db", db, "source", "add", "坏的", "feed", check=False)
    assert bad.returncode == 2 and "url" in bad.stderr
    assert "removed" in run("--db", db, "source", "remove", "县融媒").stdout
    assert json.loads(run("--db", db, "source", "list", "--json").stdout) == []


def test_bench_ingest_contract(db: str) -> None:
    out = json.loads(
        run("--db", db, "bench", "ingest", "--input", str(CED), "--limit", "2000", "--json").stdout
    )
    assert {"posts", "seconds", "posts_per_s", "peak_rss_mb"} <= set(out)
    assert out["posts"] == 2000 and out["posts_per_s"] > 0 and out["peak_rss_mb"] > 10


def test_user_dictionary_words_change_segmentation(db: str, tmp_path: Path) -> None:
    env = {"TINGFENG_DATA_DIR": str(tmp_path / "var")}
    out = run("--db", db, "dict", "add", "东风镇卫生院", "--tag", "ns", env=env).stdout
    assert "added 1 words" in out
    assert "东风镇卫生院 ns" in run("--db", db, "dict", "list", env=env).stdout
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text(
        json.dumps({"id": "1", "text": "东风镇卫生院门诊大厅漏雨"}, ensure_ascii=False) + "\n",
        encoding="utf-8",
    )
    run("--db", db, "ingest", str(jsonl), "--mapping", '{"id": "id", "text": "text"}', env=env)
    import sqlite3

    tokens = (
        sqlite3.connect(db.removeprefix("sqlite:///"))
        .execute("SELECT tokens FROM posts")
        .fetchone()[0]
    )
    assert "东风镇卫生院" in tokens.split()
    bad = run("--db", db, "dict", "add", "两 个词", env=env, check=False)
    assert bad.returncode == 2 and "single word" in bad.stderr


def test_large_import_on_postgresql_matches_sqlite(fresh_postgres_db: str, db: str) -> None:
    """The helper-process import path writes the same posts and index on both databases."""
    args = ["ingest", str(CED), "--limit", "8000"]
    pg = json.loads(run("--db", fresh_postgres_db, *args).stdout)
    lite = json.loads(run("--db", db, *args).stdout)
    assert pg == {**lite, "seconds": pg["seconds"]}
    for term in ("转发", "谣言 微博", "中国 -转发"):
        assert (
            run("--db", fresh_postgres_db, "search", term, "--count").stdout
            == run("--db", db, "search", term, "--count").stdout
        )


def test_a_file_that_breaks_midway_keeps_what_was_stored(db: str, tmp_path: Path) -> None:
    broken = tmp_path / "cut.jsonl.gz"
    broken.write_bytes(CED.read_bytes()[: 3 * 1024 * 1024])  # a download cut short
    proc = run("--db", db, "ingest", str(broken), "--format", "ced", check=False)
    assert proc.returncode != 0
    assert "stay stored" in proc.stderr
    summary = json.loads(proc.stdout.splitlines()[0])
    assert summary["stored"] > 0
    assert int(run("--db", db, "search", "转发", "--count").stdout) > 0
    again = run("--db", db, "ingest", str(broken), "--format", "ced", check=False)
    assert json.loads(again.stdout.splitlines()[0])["stored"] == 0  # nothing twice
