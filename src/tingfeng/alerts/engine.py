"""Where rules are evaluated and alerts raised: on posts as they are stored, on level rises and
on spikes, in the same transaction as what caused them.

An alert is one per rule and subject (an event, or a post for `per="post"` rules) within the
rule's de-duplication window: later matches fold into it (`hits`, `last_post_id`) instead of
sending again. Beyond the rule's rate limit, or in digest mode, alerts are stored and held for
the next digest (tingfeng.alerts.clock), so a storm neither floods anyone nor loses anything.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

from sqlalchemy import Connection, Engine, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from tingfeng.alerts import outbox
from tingfeng.alerts.ack import ack_token
from tingfeng.alerts.escalation import Policy, first_due, load_policies
from tingfeng.alerts.messages import Message, first_lines, render
from tingfeng.alerts.recipients import Recipients, resolve
from tingfeng.alerts.rules import (
    Conditions,
    LevelSignal,
    PostSignal,
    SpikeSignal,
    level_reasons,
    parse_conditions,
    post_reasons,
    spike_reasons,
)
from tingfeng.db.models import Alert, AlertLog, AlertRule, Channel, Event, Source
from tingfeng.events.grading import Level, level_rank
from tingfeng.office.people import Person
from tingfeng.secret import secret_key
from tingfeng.settings import Settings

log = logging.getLogger(__name__)

# Seconds the people and channels of a rule are remembered between alerts.
CACHE_S = 5.0
# Rate-limited alerts of a rule that has no digest period go out in a digest this often.
STORM_DIGEST_MINUTES = 15


def max_level(*levels: str | None) -> str:
    ranks = [Level(x) for x in levels if x and x in Level.__members__]
    return str(max(ranks, key=lambda lv: lv.rank)) if ranks else str(Level.general)


rank = level_rank  # the alert code's short name for it


@dataclass(frozen=True)
class RuleSpec:
    id: int
    name: str
    conditions: Conditions
    per: str
    recipients: Recipients
    channel_ids: tuple[int, ...]
    level: str
    dedup_window_s: int
    rate_limit_per_hour: int
    digest_minutes: int
    escalate: bool

    @classmethod
    def of(cls, row: Any) -> RuleSpec:
        return cls(
            row.id,
            row.name,
            parse_conditions(row.conditions),
            row.per,
            Recipients.model_validate(row.recipients or {}),
            tuple(row.channel_ids or ()),
            row.level,
            row.dedup_window_s,
            row.rate_limit_per_hour,
            row.digest_minutes,
            row.escalate,
        )


@dataclass(frozen=True)
class ChannelRow:
    id: int
    name: str
    kind: str
    target: str = ""

    @property
    def personal(self) -> bool:
        # E-mail goes to each person's address, unless the channel is a group mailbox.
        return self.kind == "email" and not self.target.strip()


@dataclass
class Subject:
    """What an alert is about, and how it reads."""

    key: str  # event:17, post:5, spike:topic:3
    title: str
    excerpt: str
    level: str
    url: str | None = None  # of the post
    event_id: int | None = None
    post_id: int | None = None


class AlertContext:
    """Settings, the secret and the current rules, channels and policies of one process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.secret = secret_key(settings)
        self.base_url = (
            settings.public_url or f"http://{settings.web_host}:{settings.web_port}"
        ).rstrip("/")
        self.tz = settings.default_timezone
        self.lang = settings.alert_language
        self.rules: list[RuleSpec] = []
        self._policies: dict[str, Policy] | None = None
        self._cache: dict[tuple[str, Any], tuple[float, Any]] = {}
        self._policies_at = 0.0
        self._stamp: tuple[Any, ...] | None = None

    def refresh(self, conn: Connection) -> list[RuleSpec]:
        """Reload the rules when one was added, changed or removed (one small query a batch)."""
        stamp = tuple(
            conn.execute(
                select(
                    func.count(AlertRule.id), func.max(AlertRule.updated_at), func.max(AlertRule.id)
                )
            ).one()
        )
        if stamp != self._stamp:
            rules = []
            for row in conn.execute(
                select(AlertRule.__table__)
                .where(AlertRule.enabled.is_(True))
                .order_by(AlertRule.id)
            ).all():
                try:
                    rules.append(RuleSpec.of(row))
                except Exception as exc:  # a rule saved before a stricter check: skip it, say so
                    log.warning("alert rule %s (%s) cannot be used: %s", row.id, row.name, exc)
            self.rules, self._stamp = rules, stamp
        return self.rules

    def channels(self, conn: Connection, ids: tuple[int, ...] | list[int]) -> list[ChannelRow]:
        if not ids:
            return []
        key = tuple(ids)
        hit = self._cache.get(("channels", key))
        if hit is not None and time.monotonic() - hit[0] < CACHE_S:
            return hit[1]
        found = self._channels(conn, ids)
        self._cache[("channels", key)] = (time.monotonic(), found)
        return found

    def people(self, conn: Connection, recipients: Recipients, at: datetime) -> list[Person]:
        """The people a recipients spec names now (kept a few seconds: a storm of alerts for
        one rule resolves them once; a shift change shows within CACHE_S)."""
        key = ("people", recipients.model_dump_json())
        hit = self._cache.get(key)
        if hit is not None and time.monotonic() - hit[0] < CACHE_S:
            return hit[1]
        found = resolve(conn, recipients, at, self.tz)
        self._cache[key] = (time.monotonic(), found)
        return found

    def _channels(self, conn: Connection, ids: tuple[int, ...] | list[int]) -> list[ChannelRow]:
        rows = conn.execute(
            select(Channel.id, Channel.name, Channel.kind, Channel.target).where(
                Channel.id.in_(list(ids)), Channel.enabled.is_(True)
            )
        ).all()
        return [ChannelRow(r.id, r.name, r.kind, r.target or "") for r in rows]

    def policy(self, conn: Connection, level: str) -> Policy | None:
        # Policies change by hand, rarely: read them again at most every few seconds.
        now = time.monotonic()
        if self._policies is None or now - self._policies_at > CACHE_S:
            self._policies, self._policies_at = load_policies(conn), now
        return self._policies.get(level)

    def alert_url(self, alert_id: int) -> str:
        return f"{self.base_url}/alerts/{alert_id}"

    def ack_url(self, alert_id: int, user_id: int | None) -> str:
        return f"{self.base_url}/alerts/ack/{ack_token(self.secret, alert_id, user_id)}"


# --- raising ----------------------------------------------------------------------------------


def _log(conn: Connection, alert_id: int, what: str, now: datetime, **detail: Any) -> None:
    # Values as parameters, not in .values(): the statement stays cached (much faster).
    conn.execute(
        insert(AlertLog.__table__),
        {"alert_id": alert_id, "at": now, "what": what, "by": None, "detail": detail or None},
    )


def _reason_lines(reason: dict[str, Any], lang: str) -> list[str]:
    zh = lang == "zh"
    names = {
        "topics": "命中方案" if zh else "Topics",
        "query": "条件" if zh else "Query",
        "polarity": "倾向" if zh else "Polarity",
        "emotion": "情绪" if zh else "Emotion",
        "categories": "类别" if zh else "Categories",
        "regions": "地域" if zh else "Regions",
        "level": "等级" if zh else "Level",
        "event_posts": "事件信息量" if zh else "Event posts",
        "spike": "突增" if zh else "Spike",
        "ratio": "倍数" if zh else "Ratio",
        "needs_verification": "待核实" if zh else "Needs verification",
        "new_event": "新事件" if zh else "New event",
    }
    parts = []
    for key, label in names.items():
        if key in reason.get("matched", {}):
            value = reason["matched"][key]
            if isinstance(value, list):
                value = "、".join(map(str, value)) if zh else ", ".join(map(str, value))
            parts.append(f"{label}: {value}")
    return ["；".join(parts) if zh else "; ".join(parts)] if parts else []


def notify(
    conn: Connection,
    ctx: AlertContext,
    alert: Any,
    *,
    purpose: str,
    step: str,
    recipients: Recipients,
    channel_ids: tuple[int, ...] | list[int],
    now: datetime,
    lines: list[str] | None = None,
) -> int:
    """Write the messages of one alert to its recipients (in-app) and channels (outbox)."""
    people = ctx.people(conn, recipients, now)
    channels = ctx.channels(conn, channel_ids)
    names = "、".join(p.display_name for p in people)
    extra = list(lines or [])
    rule_name = (alert.reason or {}).get("rule")
    if rule_name:
        extra.insert(0, f"{'规则' if ctx.lang == 'zh' else 'Rule'}: {rule_name}")
    extra.extend(_reason_lines(alert.reason or {}, ctx.lang))
    if alert.url:
        extra.append(f"{'原文' if ctx.lang == 'zh' else 'Source'}: {alert.url}")
    data = {
        "alert_id": alert.id,
        "rule_id": alert.rule_id,
        "event_id": alert.event_id,
        "post_id": alert.post_id,
        "post_url": alert.url,
        "hits": alert.hits,
        "reason": alert.reason,
        "created_at": alert.created_at.isoformat() if alert.created_at else None,
    }

    def message(key: str, person: Person | None, group_names: str = "") -> Message:
        more = extra + (
            [f"{'接收人' if ctx.lang == 'zh' else 'To'}: {group_names}"] if group_names else []
        )
        return render(
            key=key,
            purpose=purpose,
            level=alert.level,
            title=alert.title,
            excerpt=alert.excerpt,
            url=ctx.alert_url(alert.id),
            ack_url=ctx.ack_url(alert.id, person.id if person else None),
            lines=more,
            data=data | {"recipients": [p.display_name for p in people]},
            lang=ctx.lang,
        )

    items: list[outbox.Outgoing] = []
    base = f"{purpose}:{alert.id}:{step}"
    for person in people:
        key = f"{base}:app:{person.id}"
        items.append(outbox.Outgoing(key, purpose, message(key, person), alert.id, None, person.id))
    for channel in channels:
        if channel.personal:
            for person in people:
                if not person.email:
                    continue
                key = f"{base}:{channel.id}:{person.id}"
                items.append(
                    outbox.Outgoing(
                        key,
                        purpose,
                        message(key, person),
                        alert.id,
                        channel.id,
                        person.id,
                        person.email,
                    )
                )
            continue
        key = f"{base}:{channel.id}:-"
        items.append(outbox.Outgoing(key, purpose, message(key, None, names), alert.id, channel.id))
    return outbox.write(conn, items, now)


@dataclass
class Raised:
    alert_id: int
    new: bool
    deliveries: int = 0
    held: bool = False


@dataclass
class StageStats:
    raised: int = 0
    folded: int = 0
    held: int = 0
    deliveries: int = 0
    alert_ids: list[int] = field(default_factory=list)

    def add(self, r: Raised | None) -> None:
        if r is None:
            return
        if r.new:
            self.raised += 1
            self.alert_ids.append(r.alert_id)
        else:
            self.folded += 1
        self.held += int(r.held)
        self.deliveries += r.deliveries


def raise_alert(
    conn: Connection,
    ctx: AlertContext,
    rule: RuleSpec,
    subject: Subject,
    matched: dict[str, Any],
    now: datetime,
) -> Raised:
    """Raise a new alert for (rule, subject), or fold this match into the open one."""
    dedup_key = f"{rule.id}:{subject.key}"
    level = max_level(rule.level, subject.level)
    for _attempt in range(2):
        latest = conn.execute(
            select(Alert.id, Alert.seq, Alert.window_until, Alert.level)
            .where(Alert.dedup_key == dedup_key)
            .order_by(Alert.seq.desc())
            .limit(1)
        ).first()
        if latest is not None and latest.window_until > now:
            return _fold(conn, ctx, latest, subject, level, now)
        seq = latest.seq + 1 if latest is not None else 1
        try:
            with conn.begin_nested():  # another process may raise the same one: fold into it
                return _create(conn, ctx, rule, subject, matched, level, dedup_key, seq, now)
        except IntegrityError:
            continue
    raise RuntimeError(f"could not raise or fold alert {dedup_key}")


def _create(
    conn: Connection,
    ctx: AlertContext,
    rule: RuleSpec,
    subject: Subject,
    matched: dict[str, Any],
    level: str,
    dedup_key: str,
    seq: int,
    now: datetime,
) -> Raised:
    held = None
    if rule.digest_minutes > 0:
        held = "digest"
    elif rule.rate_limit_per_hour > 0:
        recent = conn.execute(
            select(func.count(Alert.id)).where(
                Alert.rule_id == rule.id, Alert.created_at > now - timedelta(hours=1)
            )
        ).scalar_one()
        if recent >= rule.rate_limit_per_hour:
            held = "rate_limited"
    policy = ctx.policy(conn, level) if rule.escalate else None
    reason = {"rule": rule.name, "rule_id": rule.id, "matched": matched}
    if held:
        reason["held"] = held
    values = dict(
        rule_id=rule.id,
        kind="rule",
        dedup_key=dedup_key,
        seq=seq,
        subject=subject.key,
        event_id=subject.event_id,
        post_id=subject.post_id,
        last_post_id=subject.post_id,
        hits=1,
        level=level,
        title=first_lines(subject.title, 200),
        excerpt=first_lines(subject.excerpt, 500),
        url=subject.url,
        reason=reason,
        status="open",
        delivery="held" if held else "sent",
        escalation_step=0,
        escalation_level=level if policy else None,
        next_escalation_at=first_due(policy, now),
        window_until=now + timedelta(seconds=max(1, rule.dedup_window_s)),
        created_at=now,
        updated_at=now,
        acked_by_user_id=None,
        acked_by=None,
        acked_at=None,
        acked_via=None,
    )
    alert_id = conn.execute(
        insert(Alert.__table__).returning(Alert.__table__.c.id), values
    ).scalar_one()
    _log(conn, alert_id, "raised", now, held=held)
    written = 0
    if not held:
        alert = SimpleNamespace(id=alert_id, **values)  # what notify() reads, without a query
        written = notify(
            conn, ctx, alert, purpose="alert", step="0",
            recipients=rule.recipients, channel_ids=rule.channel_ids, now=now,
        )  # fmt: skip
    return Raised(alert_id, True, written, bool(held))


def _fold(
    conn: Connection, ctx: AlertContext, alert: Any, subject: Subject, level: str, now: datetime
) -> Raised:
    values: dict[str, Any] = {"hits": Alert.hits + 1, "updated_at": now}
    if subject.post_id is not None:
        values["last_post_id"] = subject.post_id
    conn.execute(update(Alert).where(Alert.id == alert.id).values(**values))
    written = 0
    if rank(level) > rank(alert.level):
        written = level_up(conn, ctx, alert.id, level, now)
    return Raised(alert.id, False, written)


def level_up(conn: Connection, ctx: AlertContext, alert_id: int, level: str, now: datetime) -> int:
    """An alert's event rose to `level`: tell its recipients again, re-open it if acknowledged,
    and start the new level's escalation from its first step."""
    alert = conn.execute(select(Alert.__table__).where(Alert.id == alert_id)).one()
    if rank(level) <= rank(alert.level):
        return 0
    rule = None
    if alert.rule_id is not None:
        row = conn.execute(select(AlertRule.__table__).where(AlertRule.id == alert.rule_id)).first()
        rule = RuleSpec.of(row) if row is not None else None
    policy = ctx.policy(conn, level) if rule is None or rule.escalate else None
    values: dict[str, Any] = {
        "level": level,
        "updated_at": now,
        "escalation_step": 0,
        "escalation_level": level if policy else None,
        "next_escalation_at": first_due(policy, now),
    }
    if alert.status == "acknowledged":
        # A higher level needs a fresh acknowledgement; the earlier one stays in the log.
        values.update(
            status="open", acked_by=None, acked_by_user_id=None, acked_at=None, acked_via=None
        )
    conn.execute(update(Alert).where(Alert.id == alert_id).values(**values))
    _log(conn, alert_id, "level_up", now, previous=alert.level, level=level,
         reopened=alert.status == "acknowledged")  # fmt: skip
    if rule is None or alert.delivery == "held":
        return 0
    updated = conn.execute(select(Alert.__table__).where(Alert.id == alert_id)).one()
    zh = ctx.lang == "zh"
    from tingfeng.alerts.messages import level_label

    line = (
        f"等级由{level_label(alert.level)}升为{level_label(level)}"
        if zh
        else f"Level raised from {level_label(alert.level, 'en')} to {level_label(level, 'en')}"
    )
    return notify(
        conn, ctx, updated, purpose="level_up", step=level,
        recipients=rule.recipients, channel_ids=rule.channel_ids, now=now, lines=[line],
    )  # fmt: skip


# --- the stage in the ingest pipeline ----------------------------------------------------------


class AlertStage:
    """Evaluates the enabled rules on what the ingest pipeline stored, in its transaction."""

    def __init__(self, engine: Engine | None, settings: Settings) -> None:
        self.engine = engine
        self.ctx = AlertContext(settings)
        self._tier_cache: dict[int, str | None] = {}
        self._tiers_at = 0.0

    def on_posts(self, conn: Connection, signals: list[PostSignal], now: datetime) -> StageStats:
        stats = StageStats()
        rules = [r for r in self.ctx.refresh(conn) if r.conditions.kind == "post"]
        if not rules or not signals:
            return stats
        for signal in signals:
            for rule in rules:
                matched = post_reasons(rule.conditions, signal)
                if matched is None:
                    continue
                stats.add(
                    raise_alert(conn, self.ctx, rule, post_subject(rule, signal), matched, now)
                )
        return stats

    def on_stored(
        self,
        conn: Connection,
        stored: list[tuple[dict[str, Any], Any]],
        *,
        matched: dict[int, list[Any]],
        grouped: dict[int, int],
        started: set[int],
        doc_for: Any = None,
        now: datetime,
    ) -> StageStats:
        """Rules on the posts one ingest batch stored: (draft row, reading) pairs, the topics
        they matched, their events, and which of them started an event."""
        rules = [r for r in self.ctx.refresh(conn) if r.conditions.kind == "post"]
        if not rules or not stored:
            return StageStats()
        events: dict[int, Any] = {}
        if grouped:
            events = {
                r.id: r
                for r in conn.execute(
                    select(Event.id, Event.level, Event.posts, Event.title).where(
                        Event.id.in_(set(grouped.values()))
                    )
                ).all()
            }
        tiers = self._tiers(conn, {row["source_id"] for row, _ in stored})
        wants_doc = any(r.conditions.parsed is not None for r in rules)
        signals = []
        for row, reading in stored:
            pid = row["id"]
            eid = grouped.get(pid)
            event = events.get(eid) if eid is not None else None
            signal = PostSignal(
                post_id=pid,
                source_id=row["source_id"],
                title=row.get("title") or "",
                text=row.get("text_clean") or row.get("text_norm") or "",
                url=row.get("url") or row.get("canonical_url"),
                published_at=row.get("published_at"),
                tier=tiers.get(row["source_id"]),
                topic_ids=frozenset(h.topic_id for h in matched.get(pid, ())),
                event_id=eid,
                event_level=event.level if event is not None else None,
                event_posts=event.posts if event is not None else 0,
                event_title=event.title if event is not None else None,
                new_event=pid in started,
            )
            if reading is not None:
                label = reading.polarity.label
                signal.polarity = label if label != "unknown" else None
                emotion = reading.emotion.label
                signal.emotion = emotion if emotion != "unknown" else None
                signal.needs_verification = bool(reading.credibility.needs_verification)
                labels = reading.labels()
                signal.categories = frozenset(v for k, v in labels if k == "category")
                signal.regions = frozenset(v for k, v in labels if k == "region")
            if wants_doc and doc_for is not None:
                signal.doc = doc_for(conn, row, reading)
            signals.append(signal)
        return self.on_posts(conn, signals, now)

    def _tiers(self, conn: Connection, ids: set[int]) -> dict[int, str | None]:
        now = time.monotonic()
        if now - self._tiers_at > 30:  # tiers change by hand, rarely
            self._tier_cache, self._tiers_at = {}, now
        missing = [i for i in ids if i not in self._tier_cache]
        if missing:
            for sid, tier in conn.execute(
                select(Source.id, Source.tier).where(Source.id.in_(missing))
            ).all():
                self._tier_cache[sid] = tier
        return self._tier_cache

    def on_level(self, conn: Connection, signal: LevelSignal, now: datetime) -> StageStats:
        """An event's level rose: re-notify its alerts, and raise what level rules ask for."""
        stats = StageStats()
        if rank(signal.new) <= rank(signal.old):
            return stats
        open_ids = (
            conn.execute(
                select(Alert.id).where(Alert.event_id == signal.event_id, Alert.window_until > now)
            )
            .scalars()
            .all()
        )
        for alert_id in open_ids:
            stats.deliveries += level_up(conn, self.ctx, alert_id, signal.new, now)
        for rule in self.ctx.refresh(conn):
            matched = level_reasons(rule.conditions, signal)
            if matched is None:
                continue
            subject = Subject(
                key=f"event:{signal.event_id}",
                title=signal.title,
                excerpt=signal.summary,
                level=signal.new,
                url=signal.url,
                event_id=signal.event_id,
            )
            stats.add(raise_alert(conn, self.ctx, rule, subject, matched, now))
        return stats

    def on_spikes(self, conn: Connection, signals: list[SpikeSignal], now: datetime) -> StageStats:
        stats = StageStats()
        rules = [r for r in self.ctx.refresh(conn) if r.conditions.kind == "spike"]
        for signal in signals:
            for rule in rules:
                matched = spike_reasons(rule.conditions, signal)
                if matched is None:
                    continue
                per_event = rule.per == "event" and signal.event_id is not None
                subject = Subject(
                    key=f"event:{signal.event_id}" if per_event else f"spike:{signal.series}",
                    title=signal.title,
                    excerpt=(
                        f"{signal.hour:%m-%d %H}时 {signal.count} 条，约为平常的 {signal.ratio:.1f} 倍"
                        if self.ctx.lang == "zh"
                        else f"{signal.count} posts in the hour from {signal.hour:%m-%d %H}:00, "
                        f"{signal.ratio:.1f}× the usual"
                    ),
                    level=signal.event_level or "general",
                    event_id=signal.event_id,
                )
                stats.add(raise_alert(conn, self.ctx, rule, subject, matched, now))
        return stats


def post_subject(rule: RuleSpec, s: PostSignal) -> Subject:
    if rule.per == "event" and s.event_id is not None:
        return Subject(
            key=f"event:{s.event_id}",
            title=s.event_title or s.title or s.text,
            excerpt=s.text,
            level=s.event_level or "general",
            url=s.url,
            event_id=s.event_id,
            post_id=s.post_id,
        )
    return Subject(
        key=f"post:{s.post_id}",
        title=s.title or s.text,
        excerpt=s.text,
        level=s.event_level or "general",
        url=s.url,
        event_id=s.event_id,
        post_id=s.post_id,
    )
