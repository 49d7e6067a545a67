"""Replies (回复): drafts with versions, the approval chain, the published record, the effect.

A reply is drafted (each change a new version, earlier ones kept), submitted, approved at as
many levels as the case asks (each level by a different approver), then published exactly as
approved: where (platform, account, URL), when, the text. A case has several staged replies
(快报事实、慎报原因、多报进展: first facts, progress, result) and point-to-point replies to a
poster's public question; each goes the same way. Publishing one moves the case (see
`tingfeng.cases.states`), records the event's volume and sentiment around it, and answers the
message on the public board when the case came from there.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, insert, select, update

from tingfeng import audit
from tingfeng.cases.effect import reply_effect
from tingfeng.cases.permissions import PermissionDenied, require_action, require_work
from tingfeng.cases.service import CaseError, act, get_case
from tingfeng.cases.states import OPEN_STATES, STATES
from tingfeng.db.models import Reply, ReplyApproval, ReplyVersion, User
from tingfeng.office.people import Person
from tingfeng.settings import Settings
from tingfeng.web.i18n import N_

STAGES = {
    "facts": N_("快报事实"),
    "progress": N_("通报进展"),
    "result": N_("公布结果"),
    "point": N_("点对点回复"),
}
REPLY_STATES = {
    "draft": N_("草稿"),
    "submitted": N_("待审批"),
    "approved": N_("已审批"),
    "returned": N_("已退回"),
    "published": N_("已发布"),
}


def get_reply(conn: Connection, reply_id: int) -> Any:
    row = conn.execute(select(Reply.__table__).where(Reply.id == reply_id)).first()
    if row is None:
        raise CaseError(f"No reply {reply_id}: see `tingfeng case show`.")
    return row


def _text_of(conn: Connection, reply_id: int, version: int) -> str:
    return str(
        conn.execute(
            select(ReplyVersion.text).where(
                ReplyVersion.reply_id == reply_id, ReplyVersion.version == version
            )
        ).scalar_one()
    )


def draft_reply(
    conn: Connection,
    actor: Person,
    case_id: int | str,
    text: str,
    *,
    stage: str = "facts",
    in_reply_to_post_id: int | None = None,
    now: datetime | None = None,
) -> int:
    now = now or datetime.now(UTC)
    case = get_case(conn, case_id)
    require_work(conn, actor, case, "draft replies")
    if case.state not in OPEN_STATES:
        raise CaseError(f"Case {case.number} is {STATES[case.state]}: reopen it to reply again.")
    if stage not in STAGES:
        raise CaseError(f"Unknown reply stage {stage!r}: use one of {', '.join(STAGES)}.")
    if stage == "point" and in_reply_to_post_id is None:
        raise CaseError("A point-to-point reply names the post it answers (in_reply_to_post_id).")
    text = text.strip()
    if not text:
        raise CaseError("A reply needs its text.")
    reply_id = int(
        conn.execute(
            insert(Reply).values(
                case_id=case.id, stage=stage, state="draft", version=1,
                approvals_needed=case.approval_levels, approvals=0,
                in_reply_to_post_id=in_reply_to_post_id, created_by=actor.id, created_at=now,
            )
        ).inserted_primary_key[0]
    )  # fmt: skip
    conn.execute(
        insert(ReplyVersion).values(
            reply_id=reply_id, version=1, text=text, user_id=actor.id, created_at=now
        )
    )
    audit.record(
        conn, actor, "reply.draft", f"reply:{reply_id}",
        {"case": case.number, "stage": stage, "version": 1, "text": text}, at=now,
    )  # fmt: skip
    return reply_id


def revise_reply(
    conn: Connection,
    actor: Person,
    reply_id: int,
    text: str,
    *,
    note: str = "",
    now: datetime | None = None,
) -> int:
    """A new version of a draft (or of a returned reply); returns the version number."""
    now = now or datetime.now(UTC)
    reply = get_reply(conn, reply_id)
    case = get_case(conn, reply.case_id)
    require_work(conn, actor, case, "revise replies")
    if reply.state not in ("draft", "returned"):
        raise CaseError(
            f"Reply {reply_id} is {REPLY_STATES[reply.state]}: only a draft or a returned reply "
            "can be revised."
        )
    text = text.strip()
    if not text:
        raise CaseError("A reply needs its text.")
    version = reply.version + 1
    conn.execute(
        insert(ReplyVersion).values(
            reply_id=reply_id, version=version, text=text, user_id=actor.id, note=note,
            created_at=now,
        )
    )  # fmt: skip
    conn.execute(
        update(Reply)
        .where(Reply.id == reply_id)
        .values(version=version, state="draft", approvals=0)
    )
    audit.record(
        conn, actor, "reply.revise", f"reply:{reply_id}",
        {"case": case.number, "version": version, "text": text, "note": note}, at=now,
    )  # fmt: skip
    return version


def submit_reply(
    conn: Connection,
    actor: Person,
    settings: Settings,
    reply_id: int,
    *,
    now: datetime | None = None,
) -> None:
    """Send the current version for approval; the case goes to 回复待审."""
    now = now or datetime.now(UTC)
    reply = get_reply(conn, reply_id)
    if reply.state not in ("draft", "returned"):
        raise CaseError(f"Reply {reply_id} is {REPLY_STATES[reply.state]}, not a draft.")
    act(conn, actor, settings, reply.case_id, "submit_reply", detail={"reply_id": reply_id},
        now=now)  # fmt: skip
    conn.execute(update(Reply).where(Reply.id == reply_id).values(state="submitted", approvals=0))


def approve_reply(
    conn: Connection,
    actor: Person,
    settings: Settings,
    reply_id: int,
    *,
    note: str = "",
    now: datetime | None = None,
) -> bool:
    """One level of approval of the current version; True when that was the last level."""
    now = now or datetime.now(UTC)
    reply = get_reply(conn, reply_id)
    case = get_case(conn, reply.case_id)
    if reply.state != "submitted":
        raise CaseError(
            f"Reply {reply_id} is {REPLY_STATES[reply.state]}, not waiting for approval."
        )
    require_action(conn, actor, case, "approve_reply")
    earlier = set(
        conn.execute(
            select(ReplyApproval.user_id).where(
                ReplyApproval.reply_id == reply_id,
                ReplyApproval.version == reply.version,
                ReplyApproval.decision == "approved",
            )
        ).scalars()
    )
    if actor.id in earlier:
        raise PermissionDenied(
            f"{actor.username} already approved this version: the next level is someone else's."
        )
    level = reply.approvals + 1
    conn.execute(
        insert(ReplyApproval).values(
            reply_id=reply_id, version=reply.version, level=level, user_id=actor.id,
            decision="approved", reason=note, at=now,
        )
    )  # fmt: skip
    final = level >= reply.approvals_needed
    conn.execute(
        update(Reply)
        .where(Reply.id == reply_id)
        .values(approvals=level, state="approved" if final else "submitted")
    )
    audit.record(
        conn, actor, "reply.approve", f"reply:{reply_id}",
        {"case": case.number, "version": reply.version, "level": level, "of": reply.approvals_needed},
        at=now,
    )  # fmt: skip
    if final:
        act(conn, actor, settings, case.id, "approve_reply",
            detail={"reply_id": reply_id, "version": reply.version}, now=now)  # fmt: skip
    return final


def return_reply(
    conn: Connection,
    actor: Person,
    settings: Settings,
    reply_id: int,
    reason: str,
    *,
    now: datetime | None = None,
) -> None:
    """退回: the approver sends the draft back with a reason; a new version starts over."""
    now = now or datetime.now(UTC)
    reply = get_reply(conn, reply_id)
    if reply.state != "submitted":
        raise CaseError(
            f"Reply {reply_id} is {REPLY_STATES[reply.state]}, not waiting for approval."
        )
    act(conn, actor, settings, reply.case_id, "return_reply", reason=reason,
        detail={"reply_id": reply_id, "version": reply.version}, now=now)  # fmt: skip
    conn.execute(
        insert(ReplyApproval).values(
            reply_id=reply_id, version=reply.version, level=reply.approvals + 1,
            user_id=actor.id, decision="returned", reason=reason.strip(), at=now,
        )
    )  # fmt: skip
    conn.execute(update(Reply).where(Reply.id == reply_id).values(state="returned", approvals=0))


def publish_reply(
    conn: Connection,
    actor: Person,
    settings: Settings,
    reply_id: int,
    *,
    platform: str,
    account: str,
    url: str = "",
    published_at: datetime | None = None,
    text: str | None = None,
    now: datetime | None = None,
) -> None:
    """Record the publication: where, under which account, when, and the exact approved text.

    Tingfeng does not post anything itself: the office publishes in its own name on its own
    account, then records it here. A text different from the approved version is refused.
    """
    now = now or datetime.now(UTC)
    reply = get_reply(conn, reply_id)
    if reply.state != "approved":
        raise CaseError(
            f"Reply {reply_id} is {REPLY_STATES[reply.state]}: only an approved reply is published."
        )
    approved = _text_of(conn, reply_id, reply.version)
    if text is not None and text.strip() != approved.strip():
        raise CaseError(
            "The text differs from the approved version: publish exactly what was approved, or "
            "revise the reply and have it approved again."
        )
    problems = []
    if not platform.strip():
        problems.append("Say where it was published (platform), e.g. 微博, 政府网站, 抖音.")
    if not account.strip():
        problems.append("Say under which of the office's accounts it was published (account).")
    if url and not url.startswith(("http://", "https://")):
        problems.append(f"{url!r} is not a web address.")
    if problems:
        raise CaseError(problems)
    when = published_at or now
    case = act(conn, actor, settings, reply.case_id, "publish",
               detail={"reply_id": reply_id, "platform": platform, "url": url}, now=now)  # fmt: skip
    effect = reply_effect(conn, case.event_id, when, now) if case.event_id else None
    conn.execute(
        update(Reply)
        .where(Reply.id == reply_id)
        .values(
            state="published",
            platform=platform.strip(),
            account=account.strip(),
            url=url or None,
            published_text=approved,
            published_at=when,
            published_by=actor.id,
            effect=effect,
        )
    )
    audit.record(
        conn, actor, "reply.publish", f"reply:{reply_id}",
        {"case": case.number, "platform": platform, "account": account, "url": url,
         "published_at": when.isoformat(), "text": approved},
        at=now,
    )  # fmt: skip
    if case.board_message_id is not None:
        from tingfeng.cases import board

        board.publish_answer(
            conn, case.board_message_id, approved, at=when, by=account.strip(), actor=actor
        )


def refresh_effects(conn: Connection, now: datetime) -> int:
    """Bring the effect of recent replies up to date until their hours after have passed."""
    # A reply whose case has no event stores JSON null, which IS NOT NULL does not exclude.
    rows = conn.execute(select(Reply.__table__).where(Reply.state == "published")).all()
    n = 0
    for r in rows:
        if not r.effect or r.effect.get("complete"):
            continue
        case = get_case(conn, r.case_id)
        if case.event_id is None:
            continue
        conn.execute(
            update(Reply)
            .where(Reply.id == r.id)
            .values(effect=reply_effect(conn, case.event_id, r.published_at, now))
        )
        n += 1
    return n


def list_replies(conn: Connection, case_id: int) -> list[dict[str, Any]]:
    names = dict(conn.execute(select(User.id, User.display_name)).all())
    out = []
    for r in conn.execute(
        select(Reply.__table__).where(Reply.case_id == case_id).order_by(Reply.id)
    ).all():
        versions = conn.execute(
            select(ReplyVersion.__table__)
            .where(ReplyVersion.reply_id == r.id)
            .order_by(ReplyVersion.version)
        ).all()
        approvals = conn.execute(
            select(ReplyApproval.__table__)
            .where(ReplyApproval.reply_id == r.id)
            .order_by(ReplyApproval.id)
        ).all()
        out.append(
            {
                "id": r.id,
                "stage": r.stage,
                "stage_label": STAGES.get(r.stage, r.stage),
                "state": r.state,
                "state_label": REPLY_STATES.get(r.state, r.state),
                "version": r.version,
                "text": versions[-1].text if versions else "",
                "approvals": r.approvals,
                "approvals_needed": r.approvals_needed,
                "in_reply_to_post_id": r.in_reply_to_post_id,
                "platform": r.platform,
                "account": r.account,
                "url": r.url,
                "published_text": r.published_text,
                "published_at": r.published_at.isoformat() if r.published_at else None,
                "effect": r.effect,
                "versions": [
                    {"version": v.version, "text": v.text, "by": names.get(v.user_id),
                     "note": v.note, "at": v.created_at.isoformat()}
                    for v in versions
                ],
                "decisions": [
                    {"version": a.version, "level": a.level, "by": names.get(a.user_id),
                     "decision": a.decision, "reason": a.reason, "at": a.at.isoformat()}
                    for a in approvals
                ],
            }
        )  # fmt: skip
    return out
