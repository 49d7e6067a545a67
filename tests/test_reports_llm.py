"""Optional language-model summaries against a small OpenAI-compatible server on loopback:
only sentences citing the posts given survive, with their citations; too little data is said
instead of asking; without an endpoint nothing is asked."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import insert

from tests.loopback import LoopbackServer, Reply, Request
from tingfeng.db.engine import make_engine, write_transaction
from tingfeng.db.migrate import upgrade
from tingfeng.db.models import Event, EventPost, Post, Source
from tingfeng.reports.llm import TOO_LITTLE, cited_sentences
from tingfeng.reports.service import make_document
from tingfeng.settings import Settings

NOW = datetime(2024, 3, 8, tzinfo=UTC)


def _event(engine, texts: list[str]) -> tuple[int, list[int]]:  # type: ignore[no-untyped-def]
    with write_transaction(engine) as conn:
        sid = conn.execute(insert(Source).values(name=f"甲{len(texts)}", kind="push", config={}))
        sid = sid.inserted_primary_key[0]
        eid = conn.execute(
            insert(Event).values(title="排队事件", level="general", posts=len(texts))
        )
        eid = eid.inserted_primary_key[0]
        ids = []
        for n, body in enumerate(texts):
            pid = conn.execute(
                insert(Post).values(uid=f"{eid}-{n}", source_id=sid, content_hash=f"{eid}h{n}",
                                    text_clean=body, fetched_at=NOW, published_at=NOW)
            ).inserted_primary_key[0]  # fmt: skip
            conn.execute(insert(EventPost).values(event_id=eid, post_id=pid, joined_by="content"))
            ids.append(pid)
    return eid, ids


def test_model_sentences_without_citations_are_dropped(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'l.db'}"
    engine = make_engine(url)
    upgrade(engine)
    eid, ids = _event(engine, ["东风镇卫生院排队两小时", "患者称挂号系统故障", "院方称正在抢修"])
    few, _ = _event(engine, ["只有一条信息"])
    asked: list[dict] = []

    def chat(request: Request) -> Reply:
        body = json.loads(request.body)
        asked.append(body)
        a, b = ids[0], ids[1]
        answer = (
            f"卫生院出现长时间排队。[P{a}]挂号系统发生故障，院方正在抢修。[P{b}][P{ids[2]}]"
            "预计明天将有大规模聚集。网传院长已被免职。[P99999]"
        )
        return Reply(200, json.dumps({"choices": [{"message": {"role": "assistant",
                     "content": answer}}]}).encode(), content_type="application/json")  # fmt: skip

    with LoopbackServer() as server:
        server.route("/v1/chat/completions", chat)
        settings = Settings(database_url=url, data_dir=tmp_path,
                            report_llm_url=server.url("/v1"), report_llm_model="qwen-local")  # fmt: skip
        with engine.connect() as conn:
            doc = make_document(conn, "special", day=None, event_id=eid, tz="Asia/Shanghai",
                                now=NOW, settings=settings)  # fmt: skip
            thin = make_document(conn, "special", day=None, event_id=few, tz="Asia/Shanghai",
                                 now=NOW, settings=settings)  # fmt: skip
    data = doc.data
    assert f"卫生院出现长时间排队。〔信息#{ids[0]}〕" in data["summary_llm"]
    assert f"〔信息#{ids[1]}〕〔信息#{ids[2]}〕" in data["summary_llm"]
    assert "大规模聚集" not in data["summary_llm"] and "免职" not in data["summary_llm"]
    assert data["summary_llm_dropped"] == 2 and data["summary_llm_cites"] == sorted(ids)
    assert any("模型摘要" in p for p in doc.sections[0].paragraphs)
    assert any("模型研判" in p for p in doc.sections[-1].paragraphs)
    # Two questions (summary, outlook) for the event with data, none for the thin one.
    assert len(asked) == 2 and asked[0]["model"] == "qwen-local"
    assert "东风镇卫生院排队两小时" in asked[0]["messages"][1]["content"]
    assert thin.data["summary_llm"] == TOO_LITTLE
    # Without an endpoint: extractive only.
    with engine.connect() as conn:
        plain = make_document(conn, "special", day=None, event_id=eid, tz="Asia/Shanghai",
                              now=NOW, settings=Settings(database_url=url, data_dir=tmp_path))  # fmt: skip
    assert "summary_llm" not in plain.data
    engine.dispose()


def test_cited_sentences_keeps_only_known_citations() -> None:
    d = cited_sentences("甲说了话。[P1] 乙没有出处。丙引用了不存在的。[P7]", {1, 2})
    assert d.sentences == [("甲说了话。", [1])] and d.dropped == 2
