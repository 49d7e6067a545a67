"""What an alert message says: level, title, first lines, the link and the acknowledge link.

A message is rendered once, when its delivery is written to the outbox, and stored with it, so
a retry after a restart sends exactly the same text.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from tingfeng.events.grading import Level

PURPOSE_ZH = {
    "alert": "预警",
    "escalation": "预警升级上报",
    "level_up": "事件等级上升",
    "digest": "预警汇总",
    "duty": "值班提醒",
    "test": "测试消息",
}
PURPOSE_EN = {
    "alert": "Alert",
    "escalation": "Escalated alert",
    "level_up": "Event level raised",
    "digest": "Alert digest",
    "duty": "Duty reminder",
    "test": "Test message",
}


@dataclass(frozen=True)
class Message:
    """One message, ready for any channel."""

    key: str  # the delivery's unique key: receivers may de-duplicate on it (Idempotency-Key)
    subject: str  # one line
    text: str  # plain text
    markdown: str  # the same in Markdown (DingTalk, WeCom, Feishu, Slack)
    level: str = "general"
    url: str | None = None  # the alert in Tingfeng
    ack_url: str | None = None  # acknowledge link, personal where the message is
    data: dict[str, Any] = field(default_factory=dict)  # the JSON a webhook receives

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, value: dict[str, Any]) -> Message:
        return cls(**value)


def level_label(level: str | None, lang: str = "zh") -> str:
    try:
        lv = Level(level or "general")
    except ValueError:
        return level or ""
    return lv.zh if lang == "zh" else f"{lv.en} ({lv.roman})"


def first_lines(text: str, limit: int = 120) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def render(
    *,
    key: str,
    purpose: str,
    level: str,
    title: str,
    excerpt: str,
    url: str | None,
    ack_url: str | None,
    lines: list[str] | None = None,
    data: dict[str, Any] | None = None,
    lang: str = "zh",
) -> Message:
    """A message in Chinese (default) or English. `lines` adds context (why, who, how many)."""
    label = level_label(level, lang)
    kind = (PURPOSE_ZH if lang == "zh" else PURPOSE_EN).get(purpose, purpose)
    title = first_lines(title, 80) or ("（无标题）" if lang == "zh" else "(untitled)")
    subject = f"【{kind}·{label}】{title}" if lang == "zh" else f"[{kind} · {label}] {title}"
    body = first_lines(excerpt, 160)
    extra = [line for line in (lines or []) if line]
    link_label, ack_label = ("查看", "确认收到") if lang == "zh" else ("Open", "Acknowledge")
    text_parts = [subject]
    if body:
        text_parts.append(body)
    text_parts.extend(extra)
    if url:
        text_parts.append(f"{link_label}: {url}")
    if ack_url:
        text_parts.append(f"{ack_label}: {ack_url}")
    md_parts = [f"**{_md(subject)}**"]
    if body:
        md_parts.append(_md(body))
    md_parts.extend(f"- {_md(line)}" for line in extra)
    links = []
    if url:
        links.append(f"[{link_label}]({url})")
    if ack_url:
        links.append(f"[{ack_label}]({ack_url})")
    if links:
        md_parts.append(" | ".join(links))
    payload = {
        "purpose": purpose,
        "level": level,
        "level_label": label,
        "title": title,
        "excerpt": body,
        "url": url,
        "ack_url": ack_url,
    } | (data or {})
    return Message(
        key=key,
        subject=subject,
        text="\n".join(text_parts),
        markdown="\n\n".join(md_parts),
        level=level,
        url=url,
        ack_url=ack_url,
        data=payload,
    )


def _md(text: str) -> str:
    """Collected text is untrusted: keep it from forming links, images or mentions in Markdown."""
    for ch in "\\`*_[]()<>#!|@":
        text = text.replace(ch, "\\" + ch)
    return text
