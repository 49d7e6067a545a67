"""Pushed batches analysed by a helper process (tingfeng.ingest.helper), on a real server."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time

from tests.conftest import ced_repost_texts, push_source


def _helpers() -> list[multiprocessing.process.BaseProcess]:
    # The server runs in this process (a thread), so its helpers are our children.
    return [p for p in multiprocessing.active_children() if p.is_alive()]


def _texts(n: int) -> list[str]:
    """`n` distinct real Weibo reposts with words of their own."""
    texts = dict.fromkeys(t.strip() for t in ced_repost_texts(40 * n) if len(t.strip()) >= 10)
    assert len(texts) >= n
    return list(texts)[:n]


def _push(client, sid: int, token: str, posts: list[dict]) -> dict:  # type: ignore[no-untyped-def]
    r = client.post(
        f"/api/v1/sources/{sid}/posts",
        json={"posts": posts},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert r.status_code == 200, r.text
    return r.json()


def _summaries(client, source_id: int) -> dict[str, dict]:  # type: ignore[no-untyped-def]
    posts = client.get("/api/v1/posts", params={"source_id": source_id, "limit": 500}).json()
    return {p["text"]: p["reading"] for p in posts["posts"]}


def test_a_large_push_is_read_by_the_helper_exactly_as_the_web_process_reads_it(web) -> None:  # type: ignore[no-untyped-def]
    client, settings = web
    texts = _texts(40)
    helper_sid, helper_token = push_source(settings, "大批推送")
    small_sid, small_token = push_source(settings, "小批推送")
    assert _helpers() == []

    big = _push(client, helper_sid, helper_token, [{"text": t} for t in texts])
    assert big["stored"] == len(texts) and big["errors"] == 0
    assert len(_helpers()) == settings.prepare_processes  # the batch went to the helper

    for i in range(0, len(texts), 10):  # under push_helper_min_posts: read in the web process
        part = _push(client, small_sid, small_token, [{"text": t} for t in texts[i : i + 10]])
        assert part["stored"] == len(texts[i : i + 10])

    by_helper, in_process = _summaries(client, helper_sid), _summaries(client, small_sid)
    assert len(by_helper) == len(texts) and by_helper == in_process
    assert all(reading is not None for reading in by_helper.values())
    # The helper computed the search terms too: its posts are found like the others.
    word = texts[0][:2]
    hits = client.get("/api/v1/search", params={"q": word, "limit": 100}).json()["hits"]
    sources = {h["source_id"] for h in hits}
    assert {helper_sid, small_sid} <= sources


def test_a_killed_helper_loses_no_post_and_is_replaced(web) -> None:  # type: ignore[no-untyped-def]
    client, settings = web
    sid, token = push_source(settings)
    texts = _texts(90)
    first = _push(
        client, sid, token, [{"id": f"a{i}", "text": t} for i, t in enumerate(texts[:30])]
    )
    assert first["stored"] == 30
    (helper,) = _helpers()
    os.kill(helper.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while helper.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)

    # The batch that meets the dead helper is read in the web process instead.
    second = _push(
        client, sid, token, [{"id": f"b{i}", "text": t} for i, t in enumerate(texts[30:60])]
    )
    assert second["stored"] == 30 and second["errors"] == 0
    third = _push(
        client, sid, token, [{"id": f"c{i}", "text": t} for i, t in enumerate(texts[60:])]
    )
    assert third["stored"] == 30
    (replacement,) = _helpers()
    assert replacement.pid != helper.pid

    posts = client.get("/api/v1/posts", params={"source_id": sid, "limit": 500}).json()["posts"]
    assert len(posts) == 90 and all(p["reading"] is not None for p in posts)
    again = _push(
        client, sid, token, [{"id": f"b{i}", "text": t} for i, t in enumerate(texts[30:60])]
    )
    assert again["stored"] == 0 and again["duplicates"] == 30


def test_the_helper_stops_with_the_application(settings) -> None:  # type: ignore[no-untyped-def]
    import httpx

    from tests.conftest import running_app
    from tingfeng.db.engine import make_engine
    from tingfeng.db.migrate import upgrade

    engine = make_engine(settings.database_url)
    upgrade(engine)
    engine.dispose()
    sid, token = push_source(settings)
    with running_app(settings) as port, httpx.Client(base_url=f"http://127.0.0.1:{port}") as c:
        _push(
            c,
            sid,
            token,
            [{"id": f"p{i}", "text": f"推送第{i}条，道路积水严重"} for i in range(25)],
        )
        (helper,) = _helpers()
    helper.join(timeout=10)
    assert not helper.is_alive() and _helpers() == []
