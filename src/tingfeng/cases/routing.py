"""Routing (属地管理, 谁主管谁负责): which department a matter belongs to.

A routing rule names a department and conditions on the matter's facts: the regions and
categories its posts were read as, the topics they matched, their sources and words in them.
Every condition a rule gives must hold (within one condition any value will do). The rules are
tried by priority (lower first), then the more specific region first, so "萧山区 → 萧山区政府"
wins over "杭州市 → 市网信办". The result is a suggestion with its reasons; a person confirms
or overrides it when assigning.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import Connection, delete, insert, select

from tingfeng.db.models import (
    Case,
    Department,
    EventPost,
    Post,
    PostLabel,
    RoutingRule,
    TopicMatch,
)
from tingfeng.problems import ProblemsError

# Posts of an event looked at for its facts: the first ones say where and what it is about.
FACT_POSTS = 200


class RoutingError(ProblemsError):
    """A routing rule that cannot be saved; the message says what to fix."""


class Conditions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    regions: list[str] = Field(default_factory=list)  # division codes: 330000, 330100, 330109
    categories: list[str] = Field(default_factory=list)  # category slugs
    topic_ids: list[int] = Field(default_factory=list)
    source_ids: list[int] = Field(default_factory=list)
    keywords: list[str] = Field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (
            self.regions or self.categories or self.topic_ids or self.source_ids or self.keywords
        )


@dataclass
class Facts:
    """What is known of a matter that routing can look at."""

    regions: set[str] = field(default_factory=set)
    categories: set[str] = field(default_factory=set)
    topic_ids: set[int] = field(default_factory=set)
    source_ids: set[int] = field(default_factory=set)
    text: str = ""


@dataclass(frozen=True)
class Suggestion:
    department_id: int
    department: str
    rule_id: int
    rule: str
    reasons: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {
            "department_id": self.department_id,
            "department": self.department,
            "rule_id": self.rule_id,
            "rule": self.rule,
            "reasons": self.reasons,
        }


def _region_prefix(code: str) -> str:
    """330100 covers 3301xx: the code without its trailing zero pairs."""
    code = code.strip()
    while code.endswith("00") and len(code) > 2:
        code = code[:-2]
    return code


def _specificity(c: Conditions) -> int:
    return max((len(_region_prefix(r)) for r in c.regions), default=0)


def parse_conditions(conn: Connection, value: dict[str, Any] | None) -> Conditions:
    try:
        c = Conditions.model_validate(value or {})
    except ValidationError as exc:
        first = exc.errors()[0]
        raise RoutingError(
            f"Routing condition {'.'.join(map(str, first['loc']))}: {first['msg']}"
        ) from exc
    if c.empty:
        raise RoutingError(
            "A routing rule needs at least one condition: regions, categories, topic_ids, "
            "source_ids or keywords."
        )
    if c.regions:
        from tingfeng.analyze.regions import region_codes

        try:
            c.regions = region_codes(c.regions)
        except ValueError as exc:
            raise RoutingError(str(exc)) from exc
    c.keywords = [k.strip().lower() for k in c.keywords if k.strip()]
    return c


def add_rule(
    conn: Connection,
    name: str,
    department: int | str,
    conditions: dict[str, Any],
    *,
    priority: int = 100,
) -> int:
    from tingfeng.office.people import find_department

    name = name.strip()
    if not name:
        raise RoutingError("A routing rule needs a name.")
    if conn.execute(select(RoutingRule.id).where(RoutingRule.name == name)).first():
        raise RoutingError(f"There is already a routing rule named {name!r}.")
    parsed = parse_conditions(conn, conditions)
    return int(
        conn.execute(
            insert(RoutingRule).values(
                name=name,
                priority=priority,
                conditions=parsed.model_dump(exclude_defaults=True),
                department_id=find_department(conn, department),
                enabled=True,
            )
        ).inserted_primary_key[0]
    )


def remove_rule(conn: Connection, rule_id: int) -> None:
    if conn.execute(delete(RoutingRule).where(RoutingRule.id == rule_id)).rowcount == 0:
        raise RoutingError(f"No routing rule {rule_id}: see `tingfeng case routes`.")


def list_rules(conn: Connection) -> list[dict[str, Any]]:
    names = dict(conn.execute(select(Department.id, Department.name)).all())
    rows = conn.execute(
        select(RoutingRule.__table__).order_by(RoutingRule.priority, RoutingRule.id)
    ).all()
    return [
        {
            "id": r.id,
            "name": r.name,
            "priority": r.priority,
            "conditions": r.conditions,
            "department_id": r.department_id,
            "department": names.get(r.department_id, "?"),
            "enabled": r.enabled,
        }
        for r in rows
    ]


def facts_of_posts(conn: Connection, post_ids: list[int]) -> Facts:
    facts = Facts()
    if not post_ids:
        return facts
    for kind, value in conn.execute(
        select(PostLabel.kind, PostLabel.value).where(PostLabel.post_id.in_(post_ids))
    ).all():
        (facts.regions if kind == "region" else facts.categories).add(value)
    facts.topic_ids.update(
        conn.execute(
            select(TopicMatch.topic_id).where(TopicMatch.post_id.in_(post_ids)).distinct()
        ).scalars()
    )
    texts = []
    for source_id, title, text in conn.execute(
        select(Post.source_id, Post.title, Post.text_clean).where(Post.id.in_(post_ids))
    ).all():
        facts.source_ids.add(source_id)
        texts.append(f"{title or ''} {text or ''}")
    facts.text = "\n".join(texts).lower()
    return facts


def facts_of_case(conn: Connection, case: Any) -> Facts:
    post_ids: list[int] = []
    if case.event_id:
        post_ids = list(
            conn.execute(
                select(EventPost.post_id)
                .where(EventPost.event_id == case.event_id)
                .order_by(EventPost.post_id)
                .limit(FACT_POSTS)
            ).scalars()
        )
    if case.post_id and case.post_id not in post_ids:
        post_ids.append(case.post_id)
    facts = facts_of_posts(conn, post_ids)
    if case.region:
        facts.regions.add(case.region)
    if case.category:
        facts.categories.add(case.category)
    facts.text += f"\n{case.title}\n{case.summary}".lower()
    return facts


def _reasons(c: Conditions, facts: Facts) -> list[str] | None:
    """Why the rule matches (one line per condition), or None when it does not."""
    reasons = []
    if c.regions:
        hit = sorted(f for f in facts.regions for r in c.regions if f.startswith(_region_prefix(r)))
        if not hit:
            return None
        reasons.append(f"地域 {hit[0]}")
    if c.categories:
        hit = sorted(facts.categories & set(c.categories))
        if not hit:
            return None
        reasons.append(f"领域 {'、'.join(hit)}")
    if c.topic_ids:
        hit = sorted(facts.topic_ids & set(c.topic_ids))
        if not hit:
            return None
        reasons.append(f"方案 {'、'.join(map(str, hit))}")
    if c.source_ids:
        hit = sorted(facts.source_ids & set(c.source_ids))
        if not hit:
            return None
        reasons.append(f"信源 {'、'.join(map(str, hit))}")
    if c.keywords:
        hit = [k for k in c.keywords if k in facts.text]
        if not hit:
            return None
        reasons.append(f"关键词 {'、'.join(hit)}")
    return reasons


def suggest(conn: Connection, facts: Facts) -> list[Suggestion]:
    """Every matching rule's department, best first (a department once)."""
    names = dict(conn.execute(select(Department.id, Department.name)).all())
    rules = [
        (r, Conditions.model_validate(r.conditions))
        for r in conn.execute(
            select(RoutingRule.__table__).where(RoutingRule.enabled.is_(True))
        ).all()
    ]
    rules.sort(key=lambda rc: (rc[0].priority, -_specificity(rc[1]), rc[0].id))
    out: list[Suggestion] = []
    seen: set[int] = set()
    for rule, conditions in rules:
        reasons = _reasons(conditions, facts)
        if reasons is None or rule.department_id in seen:
            continue
        seen.add(rule.department_id)
        out.append(
            Suggestion(
                rule.department_id, names.get(rule.department_id, "?"), rule.id, rule.name, reasons
            )
        )
    return out


def suggest_for_case(conn: Connection, case_id: int) -> list[Suggestion]:
    case = conn.execute(select(Case.__table__).where(Case.id == case_id)).one()
    return suggest(conn, facts_of_case(conn, case))
