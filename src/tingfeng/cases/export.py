"""Everything about one case in one zip, for the file, a handover or a review.

- `case.json`: the case with its history (state changes), tasks, deadlines, replies (every
  version, every approval decision, the published record and its effect), evidence records,
  the linked event and alerts (with what happened to them) and the board message;
- `posts.jsonl`: the case's posts (its own, those its evidence and replies refer to, and the
  event's), each with its reading (研判), one JSON object a line;
- `audit.json`: the audit-log entries of the case, its replies and its evidence (left out, and
  said so, for a person whose role may not read the audit log);
- `evidence/NUMBER.warc.gz`, `evidence/NUMBER.png`: the evidence files, each checked against
  the hash recorded when it was captured;
- `case.html`: the same for a person to read (every collected text escaped: posts are
  untrusted);
- `manifest.json` and `SHA256SUMS`: the SHA-256 of every other member (`sha256sum -c` works).

The export is made as the person who asks for it: the same department scope as the case page.
Each export is recorded in the audit log with the SHA-256 of the zip handed out.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import Connection, Engine, or_, select

from tingfeng import __version__, audit
from tingfeng.cases.detail import case_detail
from tingfeng.cases.service import get_case
from tingfeng.db.engine import write_transaction
from tingfeng.db.models import (
    Alert,
    AlertLog,
    AlertRule,
    AuditEntry,
    BoardMessage,
    Event,
    EventPost,
    Post,
    PostReading,
    Source,
)
from tingfeng.settings import Settings
from tingfeng.web.i18n import N_

FORMAT = "tingfeng-case-export"
# Posts shown in case.html besides the key ones (posts.jsonl has them all).
HTML_EVENT_POSTS = 50
_BATCH = 500
_TEMPLATES = Path(__file__).resolve().parents[1] / "web" / "templates"
# Labels for case.html besides those of the case page (tingfeng.web.case_pages).
_LABELS: dict[str, dict[str, str]] = {
    "decision": {"approved": N_("通过"), "returned": N_("退回")},
    "evidence": {"captured": N_("已取证"), "failed": N_("取证失败")},
    "alert": {"open": N_("待确认"), "acknowledged": N_("已确认")},
}


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def _dumps(value: Any) -> bytes:
    return json.dumps(_jsonable(value), ensure_ascii=False, indent=1).encode("utf-8")


# --- gathering ---------------------------------------------------------------------------------


def _event(conn: Connection, event_id: int | None) -> dict[str, Any] | None:
    if event_id is None:
        return None
    row = conn.execute(select(Event.__table__).where(Event.id == event_id)).first()
    if row is None:
        return {"id": event_id, "missing": True}
    keys = ("id", "title", "summary", "status", "merged_into", "level", "level_score", "heat",
            "posts", "first_seen_at", "last_seen_at", "grade", "profile")  # fmt: skip
    return {k: getattr(row, k) for k in keys}


def _alerts(conn: Connection, alert_id: int | None, event_id: int | None) -> list[dict[str, Any]]:
    t = Alert.__table__
    clauses = []
    if alert_id is not None:
        clauses.append(t.c.id == alert_id)
    if event_id is not None:
        clauses.append(t.c.event_id == event_id)
    if not clauses:
        return []
    rules = dict(conn.execute(select(AlertRule.id, AlertRule.name)).all())
    out = []
    for row in conn.execute(select(t).where(or_(*clauses)).order_by(t.c.id)).all():
        log = conn.execute(
            select(AlertLog.at, AlertLog.what, AlertLog.by, AlertLog.detail)
            .where(AlertLog.alert_id == row.id)
            .order_by(AlertLog.id)
        ).all()
        out.append(
            {
                "id": row.id, "rule": rules.get(row.rule_id), "kind": row.kind,
                "subject": row.subject, "level": row.level, "title": row.title,
                "excerpt": row.excerpt, "url": row.url, "reason": row.reason,
                "hits": row.hits, "status": row.status, "acked_by": row.acked_by,
                "acked_at": row.acked_at, "created_at": row.created_at,
                "log": [dict(r._mapping) for r in log],
            }
        )  # fmt: skip
    return out


def _board_message(conn: Connection, message_id: int | None) -> dict[str, Any] | None:
    if message_id is None:
        return None
    row = conn.execute(select(BoardMessage.__table__).where(BoardMessage.id == message_id)).first()
    if row is None:
        return None
    # The asker's contact is never shown, here neither.
    keys = ("id", "kind", "title", "body", "name", "status", "public", "answer", "answered_at",
            "answered_by", "created_at")  # fmt: skip
    return {k: getattr(row, k) for k in keys}


def _post_ids(conn: Connection, case: Any, detail: dict[str, Any]) -> tuple[list[int], list[int]]:
    """(key posts, all posts): the case's own and those its evidence and replies name first,
    then the event's in order of publication."""
    key = [case.post_id] if case.post_id else []
    key += [e["post_id"] for e in detail["evidence"] if e.get("post_id")]
    key += [r["in_reply_to_post_id"] for r in detail["replies"] if r.get("in_reply_to_post_id")]
    ids = list(dict.fromkeys(key))
    if case.event_id:
        ids += conn.execute(
            select(Post.id)
            .join(EventPost, EventPost.post_id == Post.id)
            .where(EventPost.event_id == case.event_id)
            .order_by(Post.published_at, Post.id)
        ).scalars()
    ids = list(dict.fromkeys(ids))
    present = set()
    for i in range(0, len(ids), _BATCH):
        present.update(
            conn.execute(select(Post.id).where(Post.id.in_(ids[i : i + _BATCH]))).scalars()
        )
    return [i for i in dict.fromkeys(key) if i in present], [i for i in ids if i in present]


_POST_FIELDS = ("id", "kind", "platform", "url", "title", "text_original", "text_clean", "author",
                "lang", "published_at", "fetched_at", "reposts", "comments", "likes", "views",
                "dup_kind", "dup_group", "reposts_of_id", "reply_to_id")  # fmt: skip
_READING_FIELDS = ("version", "polarity", "polarity_score", "emotion", "emotion_score",
                   "needs_verification", "credibility_score", "keywords", "entities", "regions",
                   "categories")  # fmt: skip


def _posts(conn: Connection, ids: list[int]) -> Iterator[dict[str, Any]]:
    sources = dict(conn.execute(select(Source.id, Source.name)).all())
    p, r = Post.__table__, PostReading.__table__
    for i in range(0, len(ids), _BATCH):
        part = ids[i : i + _BATCH]
        rows = {
            row.id: row
            for row in conn.execute(
                select(p, *(r.c[f].label(f"reading_{f}") for f in _READING_FIELDS))
                .outerjoin(r, r.c.post_id == p.c.id)
                .where(p.c.id.in_(part))
            ).all()
        }
        for pid in part:
            row = rows[pid]
            post = {f: getattr(row, f) for f in _POST_FIELDS}
            post["source"] = sources.get(row.source_id)
            post["reading"] = (
                {f: getattr(row, f"reading_{f}") for f in _READING_FIELDS}
                if row.reading_version is not None
                else None
            )
            yield post


def _audit(conn: Connection, case_id: int, detail: dict[str, Any]) -> list[dict[str, Any]]:
    subjects = [f"case:{case_id}", *(f"reply:{r['id']}" for r in detail["replies"]),
                *(f"evidence:{e['id']}" for e in detail["evidence"])]  # fmt: skip
    t = AuditEntry.__table__
    rows = conn.execute(select(t).where(t.c.subject.in_(subjects)).order_by(t.c.id)).all()
    return [dict(r._mapping) for r in rows]


# --- writing -----------------------------------------------------------------------------------


class _Zip:
    """The zip being written, remembering each member's SHA-256 for the manifest."""

    def __init__(self, out: IO[bytes]) -> None:
        self.zf = zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True)
        self.members: list[dict[str, Any]] = []

    def add(self, name: str, data: bytes) -> str:
        self.zf.writestr(name, data)
        digest = hashlib.sha256(data).hexdigest()
        self.members.append({"name": name, "bytes": len(data), "sha256": digest})
        return digest

    def add_lines(self, name: str, lines: Iterator[bytes]) -> int:
        digest, size, count = hashlib.sha256(), 0, 0
        info = zipfile.ZipInfo(name, date_time=datetime.now().timetuple()[:6])
        info.compress_type = zipfile.ZIP_DEFLATED
        with self.zf.open(info, "w", force_zip64=True) as handle:
            for line in lines:
                digest.update(line)
                handle.write(line)
                size += len(line)
                count += 1
        self.members.append({"name": name, "bytes": size, "sha256": digest.hexdigest()})
        return count

    def add_file(self, name: str, path: Path) -> str:
        digest, size = hashlib.sha256(), 0
        info = zipfile.ZipInfo(name, date_time=datetime.now().timetuple()[:6])
        info.compress_type = zipfile.ZIP_STORED  # WARC and PNG are compressed already
        with path.open("rb") as source, self.zf.open(info, "w", force_zip64=True) as handle:
            for block in iter(lambda: source.read(1 << 20), b""):
                digest.update(block)
                handle.write(block)
                size += len(block)
        self.members.append({"name": name, "bytes": size, "sha256": digest.hexdigest()})
        return digest.hexdigest()


def _evidence_files(
    zipped: _Zip, settings: Settings, detail: dict[str, Any]
) -> list[dict[str, Any]]:
    from tingfeng.cases.evidence import evidence_root

    root = Path(evidence_root(settings)).resolve()
    out = []
    for e in detail["evidence"]:
        for kind, suffix in (("warc", ".warc.gz"), ("png", ".png")):
            rel, recorded = e.get(f"{kind}_path"), e.get(f"{kind}_sha256")
            if not rel:
                continue
            name = f"evidence/{e['number']}{suffix}"
            path = (root / rel).resolve()
            entry = {"evidence_id": e["id"], "number": e["number"], "kind": kind, "file": name,
                     "recorded_sha256": recorded}  # fmt: skip
            if not path.is_relative_to(root) or not path.is_file():
                out.append(entry | {"file": None, "state": "missing"})
                continue
            actual = zipped.add_file(name, path)
            out.append(
                entry | {"sha256": actual, "state": "intact" if actual == recorded else "changed"}
            )
    return out


def _local(tz: str) -> Any:
    zone = ZoneInfo(tz)

    def local(value: Any) -> str:
        if not value:
            return ""
        moment = datetime.fromisoformat(value) if isinstance(value, str) else value
        return str(moment.astimezone(zone).strftime("%Y-%m-%d %H:%M"))

    return local


def _html(
    data: dict[str, Any],
    posts: list[dict[str, Any]],
    entries: list[dict[str, Any]],
    settings: Settings,
) -> bytes:
    from tingfeng.cases.states import STATES
    from tingfeng.web.case_pages import HISTORY_LABELS, ORIGIN_DETAIL, PROGRESS_LABELS, TASK_STATUS
    from tingfeng.web.i18n import gettext, install
    from tingfeng.web.labels import EMOTION_ZH, LEVEL_ZH, POLARITY_ZH

    labels = {
        "state": STATES, "history": HISTORY_LABELS, "origin_detail": ORIGIN_DETAIL,
        "deadline": PROGRESS_LABELS, "task": TASK_STATUS, "level": LEVEL_ZH,
        "polarity": POLARITY_ZH, "emotion": EMOTION_ZH, **_LABELS,
    }  # fmt: skip
    env = Environment(
        loader=FileSystemLoader(_TEMPLATES), autoescape=select_autoescape(default=True)
    )
    env.filters["local"] = _local(settings.default_timezone)
    install(env)  # `_()` in the language of the request (Chinese on the command line)

    def label(value: Any, kind: str) -> str:
        known = labels[kind]
        return gettext(known[value]) if value in known else str(value or "")

    env.filters["label"] = label
    template = env.get_template("case_export.html")
    return template.render(d=data, posts=posts, audit=entries).encode("utf-8")


def export_case(
    conn: Connection,
    settings: Settings,
    actor: Any,
    case_ref: int | str,
    out: IO[bytes],
    *,
    with_audit: bool = True,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Write the zip of case `case_ref` to `out` as `actor` sees it (None: the operator, who
    sees everything). PermissionDenied for a case outside the person's scope."""
    now = now or datetime.now(UTC)
    detail = case_detail(conn, actor, case_ref, now=now)
    detail.pop("actions", None)
    case = get_case(conn, detail["id"])
    key_ids, post_ids = _post_ids(conn, case, detail)
    data: dict[str, Any] = {
        "format": FORMAT,
        "format_version": 1,
        "tingfeng": __version__,
        "exported_at": now,
        "exported_by": getattr(actor, "username", None) or "operator (command line)",
        "case": detail,
        "event": _event(conn, case.event_id),
        "alerts": _alerts(conn, case.alert_id, case.event_id),
        "board_message": _board_message(conn, case.board_message_id),
        "posts": {"file": "posts.jsonl", "count": len(post_ids), "key_post_ids": key_ids},
    }
    zipped = _Zip(out)
    with zipped.zf:
        data["evidence_files"] = _evidence_files(zipped, settings, detail)
        entries: list[dict[str, Any]] = []
        if with_audit:
            entries = _audit(conn, case.id, detail)
            data["audit"] = {"file": "audit.json", "entries": len(entries)}
            zipped.add("audit.json", _dumps(entries))
        else:
            data["audit"] = {"file": None, "note": "your role may not read the audit log"}
        zipped.add_lines(
            "posts.jsonl",
            (json.dumps(_jsonable(p), ensure_ascii=False).encode("utf-8") + b"\n"
             for p in _posts(conn, post_ids)),
        )  # fmt: skip
        shown = key_ids + [i for i in post_ids if i not in set(key_ids)][:HTML_EVENT_POSTS]
        data["posts"]["in_case_html"] = len(shown)
        zipped.add("case.json", _dumps(data))
        zipped.add(
            "case.html",
            _html(_jsonable(data), _jsonable(list(_posts(conn, shown))), entries, settings),
        )
        manifest = {
            "format": FORMAT,
            "case": detail["number"],
            "exported_at": now,
            "files": list(zipped.members),
        }
        zipped.add("manifest.json", _dumps(manifest))
        sums = "".join(f"{m['sha256']}  {m['name']}\n" for m in manifest["files"])
        zipped.zf.writestr("SHA256SUMS", sums.encode("utf-8"))
    return {
        "case_id": detail["id"],
        "case": detail["number"],
        "files": len(manifest["files"]),
        "posts": len(post_ids),
        "evidence_files": len([f for f in data["evidence_files"] if f.get("file")]),
        "audit_entries": data["audit"].get("entries"),
    }


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def export_to_file(
    engine: Engine,
    settings: Settings,
    actor: Any,
    case_ref: int | str,
    path: Path,
    *,
    with_audit: bool = True,
) -> dict[str, Any]:
    """Write the export to `path` (whole or not at all) and record it in the audit log."""
    path = Path(path)
    partial = path.with_name(f".{path.name}.partial")
    try:
        with engine.connect() as conn, partial.open("wb") as handle:
            summary = export_case(conn, settings, actor, case_ref, handle, with_audit=with_audit)
        digest = _sha256_file(partial)
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    summary |= {"path": str(path), "bytes": path.stat().st_size, "sha256": digest}
    with write_transaction(engine) as conn:
        audit.record(
            conn,
            actor,
            "case.export",
            f"case:{summary['case_id']}",
            {"number": summary["case"], "sha256": digest, "bytes": summary["bytes"],
             "with_audit": with_audit},
        )  # fmt: skip
    return summary
