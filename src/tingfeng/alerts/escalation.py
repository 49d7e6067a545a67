"""逐级上报: who is told next when an alert is not acknowledged in time, per level.

A policy for a level is a list of steps; each step waits `after_minutes` counted from the step
before (the first from the alert), then notifies its recipients. After the last step, its
recipients are told again every `repeat_minutes`, at most `max_repeats` times. Acknowledging
stops it; an event rising to a higher level starts the higher level's policy from its first step.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import Connection, delete, insert, select

from tingfeng.alerts.recipients import Recipients, parse_recipients
from tingfeng.db.models import EscalationPolicy
from tingfeng.events.grading import Level
from tingfeng.problems import ProblemsError


class EscalationError(ProblemsError):
    """An escalation policy is not valid; the message says which step and why."""


class Step(BaseModel):
    model_config = ConfigDict(extra="forbid")

    after_minutes: float = Field(gt=0, le=7 * 24 * 60)
    recipients: Recipients
    channel_ids: list[int] = Field(default_factory=list)


@dataclass(frozen=True)
class Policy:
    level: str
    steps: tuple[Step, ...]
    repeat_minutes: int = 0
    max_repeats: int = 0

    def step(self, index: int) -> Step | None:
        """The step at `index`; past the last, the last again while repeats are left."""
        if not self.steps:
            return None
        if index < len(self.steps):
            return self.steps[index]
        if self.repeat_minutes and index - len(self.steps) < self.max_repeats:
            return self.steps[-1]
        return None

    def delay(self, index: int) -> timedelta | None:
        """Wait before step `index` (from the previous step), or None when there is none."""
        step = self.step(index)
        if step is None:
            return None
        minutes = step.after_minutes if index < len(self.steps) else self.repeat_minutes
        return timedelta(minutes=minutes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "steps": [s.model_dump() for s in self.steps],
            "repeat_minutes": self.repeat_minutes,
            "max_repeats": self.max_repeats,
        }


def load_policies(conn: Connection) -> dict[str, Policy]:
    out = {}
    for row in conn.execute(select(EscalationPolicy.__table__)).all():
        steps = tuple(Step.model_validate(s) for s in row.steps or [])
        out[row.level] = Policy(row.level, steps, row.repeat_minutes, row.max_repeats)
    return out


def set_policy(
    conn: Connection,
    level: str,
    steps: list[dict[str, Any]],
    *,
    repeat_minutes: int = 0,
    max_repeats: int = 0,
    now: datetime,
) -> Policy:
    try:
        lv = Level(level)
    except ValueError as exc:
        raise EscalationError(
            f"Unknown level {level!r}: use general, serious, major or critical."
        ) from exc
    parsed = []
    for n, raw in enumerate(steps, 1):
        try:
            step = Step.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(map(str, first["loc"]))
            raise EscalationError(f"Step {n}, {where}: {first['msg']}") from exc
        try:
            parse_recipients(conn, step.recipients.model_dump())
        except ProblemsError as exc:
            raise EscalationError(f"Step {n}: {exc}") from exc
        if step.recipients.empty:
            raise EscalationError(
                f"Step {n} tells nobody: give users, roles, departments or on_duty."
            )
        parsed.append(step)
    if repeat_minutes < 0 or max_repeats < 0:
        raise EscalationError("repeat_minutes and max_repeats cannot be negative.")
    conn.execute(delete(EscalationPolicy).where(EscalationPolicy.level == lv.value))
    conn.execute(
        insert(EscalationPolicy).values(
            level=lv.value,
            steps=[s.model_dump() for s in parsed],
            repeat_minutes=repeat_minutes,
            max_repeats=max_repeats,
            updated_at=now,
        )
    )
    from tingfeng import audit

    audit.record(
        conn, None, "settings.escalation", f"escalation:{lv.value}",
        {"steps": [s.model_dump() for s in parsed], "repeat_minutes": repeat_minutes,
         "max_repeats": max_repeats},
        at=now,
    )  # fmt: skip
    return Policy(lv.value, tuple(parsed), repeat_minutes, max_repeats)


def first_due(policy: Policy | None, start: datetime) -> datetime | None:
    if policy is None:
        return None
    delay = policy.delay(0)
    return start + delay if delay is not None else None
