"""Optional language-model drafts for reports (off unless `report_llm_url` is set).

The model gets the stored posts, numbered by their ids, and is asked to write sentences that
each end with the ids they rest on, e.g. "……[P123][P130]". Every sentence of the answer without
a citation of a post it was given is dropped, so nothing the posts do not say reaches a report;
the kept sentences carry their citations (〔信息#123〕). With fewer than MIN_POSTS posts the
model is not asked and the report says there is too little data. Any failure (unreachable,
malformed, nothing cited) leaves the extractive text in place.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

import httpx

from tingfeng.settings import Settings

log = logging.getLogger(__name__)
MIN_POSTS = 3
MAX_POSTS = 30
TOO_LITTLE = "相关信息不足，暂不生成模型摘要。"
_CITE = re.compile(r"\[P(\d+)\]")
_SENTENCE = re.compile(r"[^。！？!?\n]+[。！？!?]?(?:\s*\[P\d+\])*")

PROMPTS = {
    "summary": "请根据下列网络信息，用2至4句话概括事件经过和主要诉求。",
    "outlook": "请根据下列网络信息，用1至3句话研判事件的走势（热度、情绪和可能的发展）。",
}
SYSTEM = (
    "你是政府网络舆情分析助手。只依据给出的信息写作，不得编造。每一句话末尾必须用 [P编号] "
    "标注所依据的信息编号，例如“患者反映排队时间长。[P12]”。没有依据的话不要写。"
)


@dataclass
class Draft:
    sentences: list[tuple[str, list[int]]]  # the kept sentences and the post ids each cites
    dropped: int  # sentences without a (valid) citation

    def text(self) -> str:
        return "".join(s + "".join(f"〔信息#{i}〕" for i in ids) for s, ids in self.sentences)


def enabled(settings: Settings) -> bool:
    return bool(settings.report_llm_url.strip())


def cited_sentences(answer: str, known: set[int]) -> Draft:
    """Split the answer into sentences; keep those citing at least one given post."""
    kept, dropped = [], 0
    for m in _SENTENCE.finditer(answer or ""):
        chunk = m.group(0).strip()
        if not chunk:
            continue
        ids = [int(i) for i in _CITE.findall(chunk)]
        valid = [i for i in dict.fromkeys(ids) if i in known]
        sentence = _CITE.sub("", chunk).strip()
        if not sentence:
            continue
        if valid:
            kept.append((sentence, valid))
        else:
            dropped += 1
    return Draft(kept, dropped)


def draft(settings: Settings, task: str, posts: list[dict[str, Any]]) -> Draft | str | None:
    """A cited draft; TOO_LITTLE when there are too few posts; None when off or failed."""
    if not enabled(settings):
        return None
    usable = [p for p in posts if (p.get("text") or p.get("title"))][:MAX_POSTS]
    if len(usable) < MIN_POSTS:
        return TOO_LITTLE
    listing = "\n".join(
        f"[P{p['id']}] {(p.get('title') or '')} {(p.get('text') or '')[:300]}".strip()
        for p in usable
    )
    body = {
        "model": settings.report_llm_model or "default",
        "temperature": 0,
        "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": f"{PROMPTS[task]}\n\n{listing}"},
        ],
    }
    headers = (
        {"Authorization": f"Bearer {settings.report_llm_api_key}"}
        if settings.report_llm_api_key
        else {}
    )
    url = settings.report_llm_url.rstrip("/") + "/chat/completions"
    try:
        r = httpx.post(url, json=body, headers=headers, timeout=settings.report_llm_timeout_s)
        r.raise_for_status()
        answer = r.json()["choices"][0]["message"]["content"]
    except (httpx.HTTPError, ValueError, KeyError, IndexError, TypeError) as exc:
        log.warning("report summary from %s failed: %s", url, exc)
        return None
    result = cited_sentences(str(answer), {int(p["id"]) for p in usable})
    return result if result.sentences else None
