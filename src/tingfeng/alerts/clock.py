"""What happens with time: escalation of unacknowledged alerts, digests of held alerts,
alerts for shift reports that were not filed, case deadlines, and the daily retention and
pseudonymisation pass (tingfeng.privacy).

`tick(now)` does all three in one write transaction, so running it from two processes at once,
or again after a crash, sends nothing twice (deliveries and duty alerts have unique keys).
Run it in exactly one place per installation: the `all` or the `scheduler` role.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

from sqlalchemy import Connection, Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from tingfeng.alerts import outbox
from tingfeng.alerts.engine import (
    STORM_DIGEST_MINUTES,
    AlertContext,
    RuleSpec,
    notify,
)
from tingfeng.alerts.escalation import load_policies
from tingfeng.alerts.messages import first_lines, level_label
from tingfeng.alerts.recipients import Recipients
from tingfeng.db.engine import write_transaction
from tingfeng.db.models import Alert, AlertLog, AlertRule, DutyShift

log = logging.getLogger(__name__)


@dataclass
class TickResult:
    escalated: int = 0
    digests: int = 0
    duty_alerts: int = 0
    deliveries: int = 0
    case_alerts: int = 0  # case reminders, overdue notices, relapses (tingfeng.cases.clock)


def escalate_due(conn: Connection, ctx: AlertContext, now: datetime) -> TickResult:
    """Tell the next step of each unacknowledged alert whose escalation is due."""
    result = TickResult()
    policies = load_policies(conn)
    due = conn.execute(
        select(Alert.__table__)
        .where(Alert.status == "open", Alert.next_escalation_at <= now)
        .order_by(Alert.next_escalation_at)
        .limit(200)
    ).all()
    for alert in due:
        policy = policies.get(alert.escalation_level or alert.level)
        index = alert.escalation_step
        step = policy.step(index) if policy else None
        if step is None:
            conn.execute(update(Alert).where(Alert.id == alert.id).values(next_escalation_at=None))
            continue
        waited = int((now - alert.created_at).total_seconds() // 60)
        line = (
            f"已 {waited} 分钟无人确认，逐级上报（第 {index + 1} 次）"
            if ctx.lang == "zh"
            else f"Not acknowledged for {waited} minutes: escalation {index + 1}"
        )
        result.deliveries += notify(
            conn, ctx, alert, purpose="escalation", step=f"{alert.escalation_level}.{index}",
            recipients=step.recipients, channel_ids=step.channel_ids, now=now, lines=[line],
        )  # fmt: skip
        delay = policy.delay(index + 1) if policy else None
        conn.execute(
            update(Alert)
            .where(Alert.id == alert.id)
            .values(
                escalation_step=index + 1,
                # Counted from when this step was due, so a late tick does not shift the chain.
                next_escalation_at=alert.next_escalation_at + delay if delay else None,
                updated_at=now,
            )
        )
        conn.execute(
            insert(AlertLog).values(
                alert_id=alert.id,
                at=now,
                what="escalated",
                by=None,
                detail={"step": index + 1, "level": alert.escalation_level},
            )
        )
        result.escalated += 1
    return result


def send_digests(conn: Connection, ctx: AlertContext, now: datetime) -> TickResult:
    """One message per rule listing its held alerts, once the oldest has waited its period."""
    result = TickResult()
    held = conn.execute(
        select(Alert.__table__).where(Alert.delivery == "held").order_by(Alert.rule_id, Alert.id)
    ).all()
    by_rule: dict[int | None, list[Any]] = defaultdict(list)
    for alert in held:
        by_rule[alert.rule_id].append(alert)
    for rule_id, alerts in by_rule.items():
        row = (
            conn.execute(select(AlertRule.__table__).where(AlertRule.id == rule_id)).first()
            if rule_id
            else None
        )
        if row is None:
            continue
        rule = RuleSpec.of(row)
        period = rule.digest_minutes or STORM_DIGEST_MINUTES
        if now - alerts[0].created_at < timedelta(minutes=period):
            continue
        result.deliveries += _digest(conn, ctx, rule, alerts, now)
        conn.execute(
            update(Alert)
            .where(Alert.id.in_([a.id for a in alerts]))
            .values(delivery="sent", updated_at=now)
        )
        result.digests += 1
    return result


def _digest(
    conn: Connection, ctx: AlertContext, rule: RuleSpec, alerts: list[Any], now: datetime
) -> int:
    zh = ctx.lang == "zh"
    top = max(alerts, key=lambda a: (level_rank(a.level), -a.id))
    lines = [
        (f"共 {len(alerts)} 条预警（规则：{rule.name}）" if zh
         else f"{len(alerts)} alerts (rule: {rule.name})")
    ]  # fmt: skip
    for a in alerts[:20]:
        lines.append(
            f"[{level_label(a.level, ctx.lang)}] {first_lines(a.title, 60)} {ctx.alert_url(a.id)}"
        )
    if len(alerts) > 20:
        lines.append(f"……另有 {len(alerts) - 20} 条" if zh else f"… and {len(alerts) - 20} more")

    # What `notify` reads of an alert: the digest speaks for the most serious one it lists.
    digest = SimpleNamespace(
        id=top.id,
        rule_id=rule.id,
        event_id=None,
        post_id=None,
        url=None,
        hits=len(alerts),
        level=top.level,
        title=f"{rule.name}：{len(alerts)} 条预警汇总"
        if zh
        else f"{rule.name}: {len(alerts)} alerts",
        excerpt="",
        reason={"rule": rule.name, "digest": [a.id for a in alerts]},
        created_at=now,
    )

    return notify(
        conn, ctx, digest, purpose="digest", step=f"{alerts[0].id}-{alerts[-1].id}",
        recipients=rule.recipients, channel_ids=rule.channel_ids, now=now, lines=lines,
    )  # fmt: skip


def level_rank(level: str | None) -> int:
    from tingfeng.alerts.engine import rank

    return rank(level)


def duty_reports_missing(conn: Connection, ctx: AlertContext, now: datetime) -> TickResult:
    """Alert each shift whose report (or zero report) was not filed in time, once."""
    from tingfeng.alerts.duty import missing_reports

    result = TickResult()
    missing = missing_reports(conn, now, ctx.tz, ctx.settings.duty_report_grace_minutes)
    if not missing:
        return result
    shifts = {
        r.id: r
        for r in conn.execute(
            select(DutyShift.__table__).where(DutyShift.id.in_({m.shift_id for m in missing}))
        ).all()
    }
    zh = ctx.lang == "zh"
    for occ in missing:
        key = f"duty:{occ.shift_id}:{occ.on_date.isoformat()}"
        if conn.execute(select(Alert.id).where(Alert.dedup_key == key)).first():
            continue
        shift = shifts.get(occ.shift_id)
        report_to = Recipients.model_validate(
            (shift.report_to if shift else None) or {"roles": ["approver"]}
        )
        members = [u for u in occ.members.values() if u is not None]
        report_to = report_to.model_copy(
            update={"user_ids": sorted({*report_to.user_ids, *members})}
        )
        title = (
            f"{occ.on_date:%m月%d日}{occ.shift_name}未提交值班报告（或零报告）"
            if zh
            else f"No shift report (or zero report) for {occ.shift_name} on {occ.on_date}"
        )
        try:
            with conn.begin_nested():
                alert_id = conn.execute(
                    insert(Alert).values(
                        rule_id=None,
                        kind="duty",
                        dedup_key=key,
                        seq=1,
                        subject=f"shift:{occ.shift_id}:{occ.on_date.isoformat()}",
                        hits=1,
                        level="general",
                        title=title,
                        excerpt=(
                            f"班次结束于 {occ.end.astimezone(_tz(ctx.tz)):%m-%d %H:%M}"
                            if zh
                            else f"The shift ended at {occ.end.astimezone(_tz(ctx.tz)):%m-%d %H:%M}"
                        ),
                        reason={
                            "rule": "值班报告" if zh else "Shift report",
                            "shift_id": occ.shift_id,
                            "on_date": occ.on_date.isoformat(),
                            "members": occ.members,
                        },
                        status="open",
                        delivery="sent",
                        window_until=now + timedelta(days=7),
                        created_at=now,
                        updated_at=now,
                    )
                ).inserted_primary_key[0]
        except IntegrityError:
            continue
        conn.execute(
            insert(AlertLog).values(alert_id=alert_id, at=now, what="raised", detail={"duty": key})
        )
        alert = conn.execute(select(Alert.__table__).where(Alert.id == alert_id)).one()
        result.deliveries += notify(
            conn, ctx, alert, purpose="duty", step="0", recipients=report_to, channel_ids=[],
            now=now,
        )  # fmt: skip
        result.duty_alerts += 1
    return result


def case_deadlines(conn: Connection, ctx: AlertContext, now: datetime) -> TickResult:
    """Case reminders, overdue escalation and the relapse watch (tingfeng.cases.clock)."""
    from tingfeng.cases.clock import tick as case_tick

    r = case_tick(conn, ctx, now)
    return TickResult(
        deliveries=r["deliveries"], case_alerts=r["reminders"] + r["overdue"] + r["reopened"]
    )


def privacy_pass(conn: Connection, ctx: AlertContext, now: datetime) -> TickResult:
    """A batch of the daily retention and pseudonymisation pass, when due (tingfeng.privacy)."""
    from tingfeng.privacy import tick as privacy_tick

    privacy_tick(conn, ctx.settings, now)
    return TickResult()


def scheduled_reports(engine: Engine, ctx: AlertContext, now: datetime) -> None:
    """Reports due by `report_schedule`, made and sent (tingfeng.reports.schedule). Outside the
    steps' transaction: making a report reads and writes in transactions of its own."""
    from tingfeng.reports.schedule import run_schedule

    try:
        run_schedule(engine, ctx.settings, now)
    except Exception:  # one failing part must not stop the others
        log.exception("alert clock: scheduled reports failed")


def _tz(name: str) -> Any:
    from zoneinfo import ZoneInfo

    return ZoneInfo(name)


def tick(engine: Engine, ctx: AlertContext, now: datetime) -> TickResult:
    total = TickResult()
    for step in (escalate_due, send_digests, duty_reports_missing, case_deadlines, privacy_pass):
        try:
            with write_transaction(engine) as conn:
                r = step(conn, ctx, now)
        except Exception:  # one failing part must not stop the others
            log.exception("alert clock: %s failed", step.__name__)
            continue
        total.escalated += r.escalated
        total.digests += r.digests
        total.duty_alerts += r.duty_alerts
        total.deliveries += r.deliveries
        total.case_alerts += r.case_alerts
    scheduled_reports(engine, ctx, now)
    if total.deliveries:
        outbox.notify()
    return total


class AlertClock:
    """Runs `tick` every `every_s` seconds in a thread (or its own process)."""

    def __init__(
        self, engine: Engine, ctx: AlertContext, every_s: float, now: Callable[[], datetime]
    ) -> None:
        self.engine, self.ctx, self.every_s, self.now = engine, ctx, every_s, now
        self._stop = threading.Event()

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                tick(self.engine, self.ctx, self.now())
            except Exception:
                log.exception("alert clock tick failed; retrying")
            self._stop.wait(self.every_s)

    def stop(self) -> None:
        self._stop.set()
