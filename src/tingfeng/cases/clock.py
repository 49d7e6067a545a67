"""The case clock: reminders before deadlines, escalation when overdue, the relapse watch.

Runs inside the alert clock's tick (tingfeng.alerts.clock), so it is in exactly one place per
installation. Reminders and overdue notices are alerts (kind "case"), so they reach people the
way every warning does and an overdue one climbs the escalation chain of the case's level until
someone acknowledges it. The overdue time stays on the deadline row for the statistics.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.exc import IntegrityError

from tingfeng.alerts.engine import AlertContext, notify
from tingfeng.alerts.escalation import first_due, load_policies
from tingfeng.alerts.recipients import Recipients
from tingfeng.cases.effect import negative_posts
from tingfeng.cases.service import STEP_LABELS, act, level_zh
from tingfeng.db.models import Alert, AlertLog, Case, CaseDeadline

log = logging.getLogger(__name__)


def _recipients(case: Any) -> Recipients:
    """The case's department (and those under it) and whoever opened it; analysts otherwise."""
    users = [case.created_by] if case.created_by else []
    if case.department_id:
        return Recipients(user_ids=users, department_ids=[case.department_id])
    return Recipients(user_ids=users, roles=["analyst"])


def _raise(
    conn: Connection,
    ctx: AlertContext,
    case: Any,
    key: str,
    title: str,
    excerpt: str,
    reason: dict[str, Any],
    now: datetime,
    *,
    escalate: bool,
) -> int:
    """One alert about a case, once per key; returns the deliveries written (0 if it existed)."""
    if conn.execute(select(Alert.id).where(Alert.dedup_key == key)).first():
        return 0
    policy = load_policies(conn).get(case.level) if escalate else None
    try:
        with conn.begin_nested():
            alert_id = conn.execute(
                insert(Alert).values(
                    rule_id=None, kind="case", dedup_key=key, seq=1, subject=f"case:{case.id}",
                    event_id=case.event_id, post_id=case.post_id, hits=1, level=case.level,
                    title=title, excerpt=excerpt, reason=reason, status="open", delivery="sent",
                    escalation_level=case.level, escalation_step=0,
                    next_escalation_at=first_due(policy, now) if policy else None,
                    window_until=now + timedelta(days=7), created_at=now, updated_at=now,
                )
            ).inserted_primary_key[0]  # fmt: skip
    except IntegrityError:
        return 0
    conn.execute(insert(AlertLog).values(alert_id=alert_id, at=now, what="raised", detail=reason))
    alert = conn.execute(select(Alert.__table__).where(Alert.id == alert_id)).one()
    return notify(
        conn, ctx, alert, purpose="case", step="0", recipients=_recipients(case), channel_ids=[],
        now=now,
    )  # fmt: skip


def deadlines_due(conn: Connection, ctx: AlertContext, now: datetime) -> dict[str, int]:
    """Remind before each open deadline; when one passes, mark it and raise an overdue alert."""
    out = {"reminders": 0, "overdue": 0, "deliveries": 0}
    remind_before = timedelta(minutes=ctx.settings.case_reminder_minutes)
    rows = conn.execute(
        select(CaseDeadline.__table__, Case.number, Case.title)
        .join(Case, Case.id == CaseDeadline.case_id)
        .where(
            CaseDeadline.status == "open",
            CaseDeadline.due_at <= now + remind_before,
            (CaseDeadline.reminded_at.is_(None)) | (CaseDeadline.overdue_at.is_(None)),
        )
        .order_by(CaseDeadline.due_at)
        .limit(500)
    ).all()
    for d in rows:
        case = conn.execute(select(Case.__table__).where(Case.id == d.case_id)).one()
        label = STEP_LABELS.get(d.step, d.step)
        local = d.due_at.astimezone(_tz(ctx.tz))
        if d.due_at <= now and d.overdue_at is None:
            conn.execute(
                update(CaseDeadline)
                .where(CaseDeadline.id == d.id)
                .values(overdue_at=now, reminded_at=d.reminded_at or now)
            )
            out["overdue"] += 1
            out["deliveries"] += _raise(
                conn, ctx, case, f"case:{case.id}:{d.id}:overdue",
                f"【超期】{case.number} {label}已超过时限：{case.title}"[:300],
                f"{label}时限 {local:%m-%d %H:%M}，{level_zh(case.level)}舆情",
                {"rule": "处理单时限", "case": case.number, "step": d.step,
                 "due_at": d.due_at.isoformat()},
                now, escalate=True,
            )  # fmt: skip
        elif (
            d.due_at > now
            and d.reminded_at is None
            # A short deadline (特大: 1 hour) is reminded half-way, not the moment it is set.
            and d.due_at - min(remind_before, (d.due_at - d.created_at) / 2) <= now
        ):
            conn.execute(
                update(CaseDeadline).where(CaseDeadline.id == d.id).values(reminded_at=now)
            )
            out["reminders"] += 1
            out["deliveries"] += _raise(
                conn, ctx, case, f"case:{case.id}:{d.id}:remind",
                f"【临期】{case.number} {label}将于 {local:%m-%d %H:%M} 到期：{case.title}"[:300],
                f"{label}时限 {local:%m-%d %H:%M}",
                {"rule": "处理单时限提醒", "case": case.number, "step": d.step,
                 "due_at": d.due_at.isoformat()},
                now, escalate=False,
            )  # fmt: skip
    return out


def relapses(conn: Connection, ctx: AlertContext, now: datetime) -> dict[str, int]:
    """Reopen watched closed cases whose event's negative posts in the last day rose to
    `relapse_factor` times the day before closing (and at least `relapse_min_posts`)."""
    settings = ctx.settings
    out = {"reopened": 0, "deliveries": 0, "watch_ended": 0}
    watched = conn.execute(
        select(Case.__table__).where(Case.state == "closed", Case.watch_until.is_not(None))
    ).all()
    for case in watched:
        if case.watch_until <= now:
            conn.execute(update(Case).where(Case.id == case.id).values(watch_until=None))
            out["watch_ended"] += 1
            continue
        if case.event_id is None:
            continue
        baseline = int((case.watch_baseline or {}).get("negative_per_day") or 0)
        since = max(now - timedelta(days=1), case.closed_at or now)
        recent = negative_posts(conn, case.event_id, since, now)
        threshold = max(settings.relapse_min_posts, settings.relapse_factor * baseline)
        if recent < threshold:
            continue
        reason = f"舆情反弹：结案后 24 小时内负面信息 {recent} 条，结案前一日 {baseline} 条"
        act(conn, None, settings, case.id, "reopen", reason=reason,
            detail={"negative_recent": recent, "negative_baseline": baseline}, now=now)  # fmt: skip
        reopened = conn.execute(select(Case.__table__).where(Case.id == case.id)).one()
        out["reopened"] += 1
        out["deliveries"] += _raise(
            conn, ctx, reopened, f"case:{case.id}:relapse:{reopened.reopened}",
            f"【反弹】{case.number} 已重新打开：{case.title}"[:300], reason,
            {"rule": "舆情反弹", "case": case.number, "negative_recent": recent,
             "negative_baseline": baseline},
            now, escalate=True,
        )  # fmt: skip
    return out


def tick(conn: Connection, ctx: AlertContext, now: datetime) -> dict[str, int]:
    """Deadlines, relapses and reply effects, each in a savepoint: one part failing (logged)
    must not undo or stop the others."""
    from tingfeng.cases.replies import refresh_effects

    out = {"reminders": 0, "overdue": 0, "deliveries": 0, "reopened": 0, "effects": 0}
    parts = (
        ("deadlines", lambda: deadlines_due(conn, ctx, now)),
        ("relapses", lambda: relapses(conn, ctx, now)),
        ("effects", lambda: {"effects": refresh_effects(conn, now)}),
    )
    for name, part in parts:
        try:
            with conn.begin_nested():
                result = part()
        except Exception:
            log.exception("case clock: %s failed", name)
            continue
        for k, v in result.items():
            out[k] = out.get(k, 0) + v
    return out


def _tz(name: str) -> Any:
    from zoneinfo import ZoneInfo

    return ZoneInfo(name)
