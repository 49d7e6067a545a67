"""专报: one event for the leadership — summary, timeline, spread (the repost tree), opinion
groups with representative posts, polarity over time, the level and its explanation, the
handling so far with the replies' measured effect, and where it is heading."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from tingfeng.cases.effect import reply_effect
from tingfeng.cases.service import level_zh
from tingfeng.cases.states import STATES
from tingfeng.db.models import Case, Department, Reply
from tingfeng.events.service import event_detail, event_posts
from tingfeng.reports.common import KINDS, Chart, Document, Section, Table
from tingfeng.reports.figures import one_line
from tingfeng.settings import Settings

# Fewer posts than this and the report says it cannot tell where the event is heading.
MIN_POSTS_FOR_OUTLOOK = 5


def handling(conn: Connection, event_id: int, now: datetime) -> list[dict[str, Any]]:
    """The event's cases and their published replies, with each reply's effect measured as the
    case pages measure it (tingfeng.cases.effect)."""
    names = dict(conn.execute(select(Department.id, Department.name)).all())
    out = []
    for c in conn.execute(select(Case).where(Case.event_id == event_id).order_by(Case.id)).all():
        replies = []
        for r in conn.execute(
            select(Reply).where(Reply.case_id == c.id, Reply.state == "published")
            .order_by(Reply.published_at)
        ).all():  # fmt: skip
            effect = r.effect or (
                reply_effect(conn, event_id, r.published_at, now) if r.published_at else None
            )
            replies.append(
                {
                    "id": r.id,
                    "stage": r.stage,
                    "published_at": r.published_at.isoformat() if r.published_at else None,
                    "text": one_line(r.published_text or "", 120),
                    "url": r.url or "",
                    "before": (effect or {}).get("before", {}),
                    "after": (effect or {}).get("after", {}),
                }
            )
        out.append(
            {
                "number": c.number,
                "title": c.title,
                "state_zh": STATES.get(c.state, c.state),
                "level_zh": level_zh(c.level),
                "department": names.get(c.department_id, "未交办") if c.department_id else "未交办",
                "last_progress": c.last_progress,
                "replies": replies,
            }
        )
    return out


def outlook(profile: dict[str, Any]) -> str:
    """Where it is heading, from the measured trend only (no guessing on too little data)."""
    posts = int(profile.get("posts") or 0)
    timeline = [int(n) for _, n in profile.get("timeline") or []]
    if posts < MIN_POSTS_FOR_OUTLOOK or not timeline:
        return f"信息量较少或尚未完成事件画像（{posts}条），暂不足以研判走势。"
    last, prev = int(profile.get("posts_last_hour") or 0), int(profile.get("posts_prev_hour") or 0)
    peak = max(timeline) if timeline else 0
    share = profile.get("negative_share")
    tone = f"负面信息占比{share * 100:.1f}%。" if share is not None else ""
    if last > prev and last >= max(3, peak // 2):
        trend = f"最近一小时信息{last}条，高于前一小时的{prev}条，热度仍在上升，需持续关注。"
    elif last == 0 and prev == 0:
        trend = f"最近两小时无新增信息，峰值为每小时{peak}条，事件趋于平息。"
    else:
        trend = f"最近一小时信息{last}条（前一小时{prev}条，峰值每小时{peak}条），热度趋于回落。"
    return trend + tone


def model_drafts(settings: Settings | None, posts: list[dict[str, Any]]) -> dict[str, Any]:
    """The summary and outlook drafted by the language model, when one is configured: only
    sentences citing the posts survive (tingfeng.reports.llm)."""
    from tingfeng.reports import llm

    if settings is None or not llm.enabled(settings):
        return {}
    out: dict[str, Any] = {}
    for task in ("summary", "outlook"):
        got = llm.draft(settings, task, posts)
        if isinstance(got, str):
            out[f"{task}_llm"] = got
        elif got is not None:
            out[f"{task}_llm"] = got.text()
            out[f"{task}_llm_cites"] = sorted({i for _, ids in got.sentences for i in ids})
            out[f"{task}_llm_dropped"] = got.dropped
    return out


def build(
    conn: Connection, event_id: int, now: datetime, settings: Settings | None = None
) -> dict[str, Any]:
    detail = event_detail(conn, event_id)
    profile = detail.get("profile") or {}
    grade = detail.get("grade") or {}
    posts = event_posts(conn, event_id, limit=200)
    by_id = {p["id"]: p for p in posts}
    groups = []
    for g in profile.get("opinion_groups") or []:
        example = by_id.get(g.get("example_post_id"), {})
        groups.append(
            {
                "posts": g.get("posts", 0),
                "share": g.get("share"),
                "terms": list(g.get("terms") or [])[:6],
                "example": one_line(g.get("example") or "", 120),
                "example_url": example.get("url") or "",
                "example_post_id": g.get("example_post_id"),
            }
        )
    return {
        "kind": "special",
        "period": f"event:{event_id}",
        "event_id": event_id,
        "title": detail["title"] or f"事件 {event_id}",
        "summary": detail.get("summary") or "",
        "level": detail.get("level") or "general",
        "level_zh": detail.get("level_zh") or level_zh(detail.get("level")),
        "heat": detail.get("heat"),
        "posts": detail.get("posts") or 0,
        "first_seen_at": str(detail.get("first_seen_at") or ""),
        "last_seen_at": str(detail.get("last_seen_at") or ""),
        "explanation": grade.get("explanation_zh") or "",
        "timeline": [(str(h), int(n)) for h, n in profile.get("timeline") or []],
        "sentiment": [(str(h), dict(m)) for h, m in profile.get("sentiment_mix") or []],
        "spread": profile.get("spread") or {},
        "opinion_groups": groups,
        "topics": detail.get("topics") or [],
        "first_posts": [
            {
                "id": p["id"],
                "title": p["title"] or one_line(p["text"], 60),
                "url": p["url"] or "",
                "published_at": p["published_at"] or "",
            }
            for p in sorted(posts, key=lambda p: p["id"])[:5]
        ],
        "handling": handling(conn, event_id, now),
        "outlook": outlook({**profile, "posts": detail.get("posts") or 0}),
        **model_drafts(settings, posts[:30]),
    }


def document(data: dict[str, Any], now: datetime) -> Document:
    doc = Document(kind="special", title=KINDS["special"], period=data["period"],
                   subtitle=f"关于“{data['title']}”的舆情专报", data=data)  # fmt: skip
    heat = f"，热度{data['heat']:.1f}" if data["heat"] is not None else ""
    doc.sections.append(
        Section("一、事件概况",
                [f"该事件首次发现于{data['first_seen_at'][:16]}，最近更新于"
                 f"{data['last_seen_at'][:16]}，共有相关信息{data['posts']}条{heat}。",
                 data["summary"] or "（暂无摘要）"]
                + ([f"模型摘要（每句注明所依据的信息）：{data['summary_llm']}"]
                   if data.get("summary_llm") else []))
    )  # fmt: skip
    timeline = Section("二、发展时间线", [] if data["timeline"] else ["暂无时间线数据。"])
    if data["timeline"]:
        timeline.tables.append(
            Table(["时间", "信息量"], [list(t) for t in data["timeline"]], "时间线")
        )
        timeline.charts.append(
            Chart("line", "信息量走势", [h[5:16] for h, _ in data["timeline"]],
                  {"信息量": [n for _, n in data["timeline"]]})
        )  # fmt: skip
    timeline.links = [(f"首发：{p['title']}", p["url"]) for p in data["first_posts"][:3]]
    doc.sections.append(timeline)
    s = data["spread"]
    doc.sections.append(
        Section("三、传播情况",
                [f"转发树共{s.get('size', 0)}个节点，最大深度{s.get('depth', 0)}层，最大宽度"
                 f"{s.get('breadth', 0)}，结构病毒性{s.get('structural_virality') or 0:.2f}。"]
                if s else ["暂无转发关系数据。"])
    )  # fmt: skip
    groups = Section("四、主要观点", [] if data["opinion_groups"] else ["暂无观点聚类。"])
    if data["opinion_groups"]:
        groups.tables.append(
            Table(["观点", "信息量", "代表性信息"],
                  [["、".join(g["terms"]), g["posts"], g["example"]]
                   for g in data["opinion_groups"]], "观点")
        )  # fmt: skip
        groups.links = [(g["example"], g["example_url"]) for g in data["opinion_groups"]]
    doc.sections.append(groups)
    tone = Section("五、情感倾向变化", [])
    if data["sentiment"]:
        keys = sorted({k for _, m in data["sentiment"] for k in m})
        tone.charts.append(
            Chart("line", "情感倾向走势", [h[5:16] for h, _ in data["sentiment"]],
                  {k: [m.get(k, 0) for _, m in data["sentiment"]] for k in keys})
        )  # fmt: skip
    else:
        tone.paragraphs.append("暂无情感研判数据。")
    doc.sections.append(tone)
    doc.sections.append(
        Section("六、事件等级", [f"当前等级：{data['level_zh']}。", data["explanation"] or ""])
    )
    handled = Section("七、处置情况", [] if data["handling"] else ["尚未建立舆情处理单。"])
    for c in data["handling"]:
        handled.paragraphs.append(
            f"处理单{c['number']}（{c['title']}）：{c['state_zh']}，责任单位{c['department']}。"
            + (f"最新进展：{c['last_progress']}" if c["last_progress"] else "")
        )
        for r in c["replies"]:
            b, a = r["before"], r["after"]
            handled.paragraphs.append(
                f"回应（{r['published_at'][:16]}）：{r['text']} 回应前信息{b.get('posts', 0)}条"
                f"（负面{b.get('negative', 0)}），回应后{a.get('posts', 0)}条（负面{a.get('negative', 0)}）。"
            )
    doc.sections.append(handled)
    outlook_text = [data["outlook"]]
    if data.get("outlook_llm"):
        outlook_text.append(f"模型研判（每句注明所依据的信息）：{data['outlook_llm']}")
    doc.sections.append(Section("八、走势研判", outlook_text))
    return doc
