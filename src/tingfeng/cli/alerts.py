"""`tingfeng alerts …`: alert rules (预警规则), channels, escalation (逐级上报) and the alerts.

Human output is in Chinese with columns aligned by display width; `--json` prints what the
service layer returns (tingfeng.alerts.service), for scripts. Refusals exit with status 2.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from tingfeng.cli.main import app, engine_of, fail, settings_of
from tingfeng.cli.main import dump_json as _dump
from tingfeng.cli.main import in_read as _read
from tingfeng.cli.main import in_write as _write
from tingfeng.cli.main import print_table as _table

alerts_app = typer.Typer(
    help="Alerts (预警): rules, channels, escalation, the alert list, acknowledging, retries.",
    no_args_is_help=True,
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]

LEVEL_HELP = "general/一般, serious/较大, major/重大 or critical/特大"
STATUS_ZH = {"open": "待确认", "acknowledged": "已确认"}
DELIVERY_ZH = {
    "pending": "待发送",
    "sending": "发送中",
    "sent": "已发送",
    "failed": "失败",
    "cancelled": "已取消",
}
POLARITY_ZH = {"positive": "正面", "neutral": "中性", "negative": "负面"}
KIND_ZH = {"email": "邮件", "webhook": "webhook", "apprise": "apprise"}
LOG_ZH = {
    "raised": "触发",
    "folded": "合并",
    "escalated": "逐级上报",
    "acknowledged": "确认",
    "level_up": "等级上升",
}


# --- plumbing ---------------------------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(UTC)


def _local(ctx: typer.Context, value: str | None) -> str:
    """An ISO time from the service as local "YYYY-MM-DD HH:MM"."""
    if not value:
        return ""
    from zoneinfo import ZoneInfo

    tz = ZoneInfo(str(settings_of(ctx).default_timezone))
    return datetime.fromisoformat(value).astimezone(tz).strftime("%Y-%m-%d %H:%M")


def _short(text: str | None, limit: int = 40) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def parse_level(value: str, option: str) -> str:
    """A level from its English or Chinese name (or I–IV), the way event grading reads it."""
    from tingfeng.events.decisions import _level_name
    from tingfeng.events.grading import Level

    try:
        return Level(_level_name(value)).value
    except ValueError:
        fail(f"{option} {value!r} is not a level: use {LEVEL_HELP}.")


def level_zh(level: str | None) -> str:
    from tingfeng.events.grading import Level

    try:
        return Level(level or "general").zh
    except ValueError:
        return level or ""


# --- names for display -------------------------------------------------------------------------


@dataclass
class Names:
    """Names of what rules and policies refer to by id, loaded once per command."""

    topics: dict[int, str] = field(default_factory=dict)
    sources: dict[int, str] = field(default_factory=dict)
    users: dict[int, str] = field(default_factory=dict)
    departments: dict[int, str] = field(default_factory=dict)
    channels: dict[int, str] = field(default_factory=dict)

    @classmethod
    def load(cls, conn: Any) -> Names:
        from sqlalchemy import select

        from tingfeng.db.models import Channel, Department, Source, Topic, User

        def pairs(*cols: Any) -> dict[int, str]:
            return {int(k): str(v) for k, v in conn.execute(select(*cols)).all()}

        return cls(
            pairs(Topic.id, Topic.name),
            pairs(Source.id, Source.name),
            pairs(User.id, User.display_name),
            pairs(Department.id, Department.name),
            pairs(Channel.id, Channel.name),
        )


def joined(table: dict[int, str], ids: list[int]) -> str:
    """Names of ids; a removed topic or channel still shows, by its id, so the gap is visible."""
    return "、".join(table.get(i, f"#{i}（已删除）") for i in ids)


def conditions_text(c: dict[str, Any], names: Names) -> list[str]:
    """One Chinese phrase per condition of a rule; all must hold."""
    from tingfeng.events.heat import TIER_LABELS

    out: list[str] = []
    if c.get("spike"):
        out.append("信息量突增时")
    if c.get("level_rises"):
        out.append("事件等级上升时")
    if c.get("topic_ids"):
        out.append("命中方案 " + joined(names.topics, c["topic_ids"]))
    if c.get("query"):
        out.append(f"条件 {c['query']}")
    if c.get("polarities"):
        out.append("倾向 " + "、".join(POLARITY_ZH.get(p, p) for p in c["polarities"]))
    if c.get("emotions"):
        out.append("情绪 " + "、".join(c["emotions"]))
    if c.get("categories"):
        out.append("领域 " + "、".join(c["categories"]))
    if c.get("regions"):
        out.append("地域 " + "、".join(_region_name(code) for code in c["regions"]))
    if c.get("source_ids"):
        out.append("信源 " + joined(names.sources, c["source_ids"]))
    if c.get("tiers"):
        out.append("媒体层级 " + "、".join(TIER_LABELS.get(t, t) for t in c["tiers"]))
    if c.get("needs_verification") is True:
        out.append("待核实")
    elif c.get("needs_verification") is False:
        out.append("未标记待核实")
    if c.get("new_event"):
        out.append("新事件首条信息")
    if c.get("min_level"):
        out.append(f"事件等级≥{level_zh(c['min_level'])}")
    if c.get("min_posts"):
        out.append(f"事件信息量≥{c['min_posts']}")
    return out or ["任何新信息"]


def _region_name(code: str) -> str:
    from tingfeng.analyze.regions import resolve_region

    division = resolve_region(code)
    return "".join(division.path) if division else code


def recipients_text(r: dict[str, Any], names: Names) -> str:
    from tingfeng.alerts.duty import DUTY_ROLES
    from tingfeng.office.people import ROLES

    parts = [joined(names.users, [u]) for u in r.get("user_ids", [])]
    parts += [ROLES.get(role, role) for role in r.get("roles", [])]
    parts += [f"{joined(names.departments, [d])}（含下级）" for d in r.get("department_ids", [])]
    if r.get("on_duty"):
        roles = r.get("duty_roles") or []
        parts.append(
            "值班人员" + (f"（{'、'.join(DUTY_ROLES.get(x, x) for x in roles)}）" if roles else "")
        )
    return "、".join(parts) or "（无）"


MATCHED_ZH = {
    "topics": "命中方案",
    "query": "条件",
    "source": "信源",
    "tier": "媒体层级",
    "polarity": "倾向",
    "emotion": "情绪",
    "categories": "领域",
    "regions": "地域",
    "needs_verification": "待核实",
    "new_event": "新事件",
    "level": "事件等级",
    "previous_level": "原等级",
    "event_posts": "事件信息量",
    "spike": "突增",
    "hour": "时段",
    "count": "信息量",
    "expected": "通常",
    "ratio": "倍数",
}


def matched_lines(matched: dict[str, Any], names: Names) -> list[str]:
    """What met each condition of the rule, as "条件：值" lines."""
    lines = []
    for key, value in matched.items():
        if key == "topics":
            value = joined(names.topics, value)
        elif key == "source":
            value = joined(names.sources, [value])
        elif key in ("level", "previous_level") and value:
            value = level_zh(value)
        elif key == "polarity":
            value = POLARITY_ZH.get(value, value)
        elif isinstance(value, list):
            value = "、".join(map(str, value))
        lines.append(f"{MATCHED_ZH.get(key, key)}：{value}")
    return lines


def trigger_zh(c: dict[str, Any], per: str) -> str:
    if c.get("spike"):
        return "突增"
    if c.get("level_rises"):
        return "等级上升"
    return "每条信息" if per == "post" else "每个事件"


# --- parsing options ---------------------------------------------------------------------------


def _roles(values: list[str]) -> list[str]:
    from tingfeng.office.people import ROLES

    by_label = {label: role for role, label in ROLES.items()}
    return [by_label.get(v.strip(), v.strip().lower()) for v in values]


def _duty_roles(values: list[str]) -> list[str]:
    from tingfeng.alerts.duty import DUTY_ROLES

    by_label = {label: role for role, label in DUTY_ROLES.items()}
    out = []
    for v in values:
        role = by_label.get(v.strip(), v.strip().upper())
        if role not in DUTY_ROLES:
            fail(f"duty role {v!r} does not exist: use A (主班) or B (副班).")
        out.append(role)
    return out


def recipients_of(
    conn: Any,
    *,
    users: list[str],
    roles: list[str],
    departments: list[str],
    on_duty: bool,
    duty_roles: list[str],
) -> dict[str, Any]:
    """A Recipients spec from names: people by user name or id, departments by name or id."""
    from tingfeng.office.people import find_department, find_user

    out: dict[str, Any] = {}
    if users:
        out["user_ids"] = [find_user(conn, u).id for u in users]
    if roles:
        out["roles"] = _roles(roles)
    if departments:
        out["department_ids"] = [find_department(conn, d) for d in departments]
    if on_duty or duty_roles:
        out["on_duty"] = True
    if duty_roles:
        out["duty_roles"] = _duty_roles(duty_roles)
    return out


def channel_ids_of(conn: Any, refs: list[str]) -> list[int]:
    from tingfeng.alerts.service import find_channel

    return [int(find_channel(conn, ref).id) for ref in refs]


def _categories(conn: Any, values: list[str]) -> list[str]:
    """Category slugs from slugs or Chinese names, checked against the taxonomy in force."""
    from tingfeng.ingest.readings import current_taxonomy

    taxonomy = current_taxonomy(conn)
    by_name = {c.name_zh: c.slug for c in taxonomy.categories}
    out = []
    for v in values:
        slug = by_name.get(v.strip(), v.strip())
        if slug not in taxonomy.slugs:
            fail(f"no category {v!r}: see `tingfeng category list` for the slugs.")
        out.append(slug)
    return out


def _tiers(values: list[str]) -> list[str]:
    from tingfeng.events.heat import TIER_LABELS, MediaTier

    by_label = {label: tier.value for tier, label in TIER_LABELS.items()}
    out = []
    for v in values:
        tier = by_label.get(v.strip(), v.strip())
        if tier not in MediaTier.__members__:
            allowed = ", ".join(f"{t.value} ({label})" for t, label in TIER_LABELS.items())
            fail(f"unknown tier {v!r}: use one of {allowed}.")
        out.append(tier)
    return out


def _check_query(query: str) -> None:
    from tingfeng.cli.topics import query_error
    from tingfeng.topics import QuerySyntaxError
    from tingfeng.topics.syntax import parse_query

    try:
        parse_query(query)
    except QuerySyntaxError as exc:
        fail(f"--query: {query_error(query, exc)}")


_DELAY = re.compile(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?")
_STEP_HELP = (
    "write a step as DELAY:WHO[,WHO…], e.g. 15m:role=analyst or 1h30m:user=li,role=approver,on_duty; "
    "DELAY is minutes (m) and/or hours (h); WHO is user=NAME, role=ROLE, department=NAME, "
    "on_duty (or on_duty=A / on_duty=B) or channel=NAME"
)


def parse_delay(text: str) -> float | None:
    """Minutes of "15m", "2h", "1h30m", "1.5h"; None when it is none of those."""
    match = _DELAY.fullmatch(text.strip().lower())
    if not match or not any(match.groups()):
        return None
    hours, minutes = (float(g) if g else 0.0 for g in match.groups())
    return hours * 60 + minutes


def parse_step(conn: Any, text: str) -> dict[str, Any]:
    """One escalation step from `DELAY:WHO[,WHO…]` (full-width ：，＝ accepted too)."""
    plain = text.replace("：", ":").replace("，", ",").replace("＝", "=").strip()
    delay, sep, who = plain.partition(":")
    minutes = parse_delay(delay)
    if not sep or minutes is None:
        fail(f"--step {text!r}: {delay.strip()!r} is not a delay; {_STEP_HELP}.")
    users: list[str] = []
    roles: list[str] = []
    departments: list[str] = []
    duty_roles: list[str] = []
    channels: list[str] = []
    on_duty = False
    for part in (p.strip() for p in who.split(",")):
        if not part:
            continue
        key, has_value, value = (x.strip() for x in part.partition("="))
        key = key.lower().replace("-", "_")
        if key == "on_duty":
            on_duty = True
            if has_value:
                duty_roles.append(value)
            continue
        target = {
            "user": users,
            "role": roles,
            "department": departments,
            "dept": departments,
            "channel": channels,
        }.get(key)
        if target is None or not value:
            fail(f"--step {text!r}: {part!r} is not a recipient; {_STEP_HELP}.")
        target.append(value)
    if not (users or roles or departments or on_duty):
        fail(f"--step {text!r} tells nobody; {_STEP_HELP}.")
    return {
        "after_minutes": minutes,
        "recipients": recipients_of(
            conn,
            users=users,
            roles=roles,
            departments=departments,
            on_duty=on_duty,
            duty_roles=duty_roles,
        ),
        "channel_ids": channel_ids_of(conn, channels),
    }


# --- rules -------------------------------------------------------------------------------------


@alerts_app.command("rule-add")
def rule_add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="A unique name, e.g. 安全生产.")],
    topic: Annotated[
        list[str], typer.Option("--topic", help="Matched this topic (name or id; repeatable).")
    ] = [],  # noqa: B006
    query: Annotated[
        str | None,
        typer.Option(help="A query in the topic language on the post, e.g. '爆炸 | 起火'."),
    ] = None,
    polarity: Annotated[
        list[str], typer.Option(help="negative/负面, neutral/中性, positive/正面 (repeatable).")
    ] = [],  # noqa: B006
    emotion: Annotated[
        list[str], typer.Option(help="angry, sad, fear, happy, surprise, neutral (repeatable).")
    ] = [],  # noqa: B006
    category: Annotated[
        list[str], typer.Option(help="Category slug or Chinese name (repeatable).")
    ] = [],  # noqa: B006
    region: Annotated[
        list[str], typer.Option(help="Division name or code; covers the divisions under it.")
    ] = [],  # noqa: B006
    source: Annotated[list[str], typer.Option(help="Source name or id (repeatable).")] = [],  # noqa: B006
    tier: Annotated[
        list[str], typer.Option(help="Media tier of the source, e.g. central_media or 中央媒体.")
    ] = [],  # noqa: B006
    needs_verification: Annotated[
        bool | None,
        typer.Option(
            "--needs-verification/--verified-only",
            help="Only posts flagged as needing verification (or only those not flagged).",
        ),
    ] = None,
    min_level: Annotated[
        str | None, typer.Option(help=f"The event's level is at least this: {LEVEL_HELP}.")
    ] = None,
    min_posts: Annotated[
        int, typer.Option(min=0, help="The event has at least this many posts.")
    ] = 0,
    new_event: Annotated[
        bool, typer.Option("--new-event", help="Only the post that starts a new event.")
    ] = False,
    level_rises: Annotated[
        bool,
        typer.Option("--level-rises", help="Fire when an event's level rises (to --min-level)."),
    ] = False,
    spike: Annotated[
        bool, typer.Option("--spike", help="Fire on a spike of a topic's or an event's volume.")
    ] = False,
    per: Annotated[
        str | None,
        typer.Option(help="event: one alert per event (default); post: one per post."),
    ] = None,
    to: Annotated[
        list[str], typer.Option("--to", help="A person by user name or id (repeatable).")
    ] = [],  # noqa: B006
    role: Annotated[
        list[str],
        typer.Option(help="Everyone with a role: approver, handler, analyst… or 领导, 经办人…"),
    ] = [],  # noqa: B006
    department: Annotated[
        list[str], typer.Option(help="A department and those under it (name or id).")
    ] = [],  # noqa: B006
    on_duty: Annotated[
        bool, typer.Option("--on-duty", help="Whoever is on duty when it fires.")
    ] = False,
    duty_role: Annotated[
        list[str], typer.Option(help="Only this duty role of those on duty: A/主班, B/副班.")
    ] = [],  # noqa: B006
    channel: Annotated[
        list[str], typer.Option(help="Also send on this channel (name or id; repeatable).")
    ] = [],  # noqa: B006
    level: Annotated[
        str | None,
        typer.Option(help=f"The alert's level at least (the event's if higher): {LEVEL_HELP}."),
    ] = None,
    dedup_minutes: Annotated[
        int | None,
        typer.Option(min=0, help="Matches within this many minutes fold into one alert (1440)."),
    ] = None,
    rate_limit: Annotated[
        int | None,
        typer.Option(min=0, help="Alerts sent per hour at most; more wait for a digest (30)."),
    ] = None,
    digest_minutes: Annotated[
        int | None,
        typer.Option(min=0, help="Send a digest every N minutes instead of each alert (0: off)."),
    ] = None,
    no_escalate: Annotated[
        bool, typer.Option("--no-escalate", help="No escalation (逐级上报) for its alerts.")
    ] = False,
    note: Annotated[str | None, typer.Option(help="A note for colleagues.")] = None,
    disabled: Annotated[bool, typer.Option("--disabled", help="Save it switched off.")] = False,
) -> None:
    """Add an alert rule: all conditions given must hold; several rules are alternatives."""
    from tingfeng.alerts.service import create_rule
    from tingfeng.topics.store import get_topic

    if query:
        _check_query(query)

    def work(conn: Any) -> tuple[dict[str, Any], Names]:
        from tingfeng.collect.sources import find_source
        from tingfeng.topics.syntax import SENTIMENTS

        conditions: dict[str, Any] = {}
        if topic:
            conditions["topic_ids"] = [get_topic(conn, t).id for t in topic]
        if query:
            conditions["query"] = query
        if polarity:
            conditions["polarities"] = [SENTIMENTS.get(p.strip().lower(), p) for p in polarity]
        if emotion:
            conditions["emotions"] = [e.strip().lower() for e in emotion]
        if category:
            conditions["categories"] = _categories(conn, category)
        if region:
            conditions["regions"] = list(region)  # the service turns names into codes
        if source:
            conditions["source_ids"] = [find_source(conn, s).id for s in source]
        if tier:
            conditions["tiers"] = _tiers(tier)
        if needs_verification is not None:
            conditions["needs_verification"] = needs_verification
        if min_level:
            conditions["min_level"] = parse_level(min_level, "--min-level")
        if min_posts:
            conditions["min_posts"] = min_posts
        for flag, on in (("new_event", new_event), ("level_rises", level_rises), ("spike", spike)):
            if on:
                conditions[flag] = True
        values: dict[str, Any] = {
            "name": name,
            "enabled": not disabled,
            "conditions": conditions,
            "recipients": recipients_of(
                conn, users=to, roles=role, departments=department, on_duty=on_duty,
                duty_roles=duty_role,
            ),
            "channel_ids": channel_ids_of(conn, channel),
            "escalate": not no_escalate,
        }  # fmt: skip
        if per is not None:
            values["per"] = per.strip().lower()
        if level:
            values["level"] = parse_level(level, "--level")
        if dedup_minutes is not None:
            values["dedup_window_s"] = dedup_minutes * 60
        if rate_limit is not None:
            values["rate_limit_per_hour"] = rate_limit
        if digest_minutes is not None:
            values["digest_minutes"] = digest_minutes
        if note:
            values["note"] = note
        rule = create_rule(conn, values, _now())
        return rule, Names.load(conn)

    rule, names = _write(ctx, work)
    typer.echo(f"预警规则 {rule['id']} 已添加：{rule['name']}")
    _print_rule(rule, names, brief=True)
    if not rule["recipients"] and not rule["channel_ids"]:
        typer.echo(
            "注意：没有接收人也没有通道，它的预警只出现在预警列表里（--to/--role/--channel）"
        )


def _print_rule(rule: dict[str, Any], names: Names, *, brief: bool = False) -> None:
    c = rule["conditions"]
    typer.echo(f"  触发：{trigger_zh(c, rule['per'])}，" + "，且".join(conditions_text(c, names)))
    typer.echo(f"  接收人：{recipients_text(rule['recipients'], names)}")
    typer.echo(f"  通道：{joined(names.channels, rule['channel_ids']) or '站内消息'}")
    if brief:
        return
    typer.echo(f"  预警等级：不低于{level_zh(rule['level'])}")
    typer.echo(
        f"  合并：{rule['dedup_window_s'] // 60} 分钟内合并为一条；"
        f"每小时最多 {rule['rate_limit_per_hour']} 条"
        + (f"；每 {rule['digest_minutes']} 分钟汇总发送" if rule["digest_minutes"] else "")
    )
    typer.echo(f"  逐级上报：{'是' if rule['escalate'] else '否'}")
    if rule.get("note"):
        typer.echo(f"  备注：{rule['note']}")


@alerts_app.command("rules")
def rules(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Every alert rule, with what it watches and whom it tells."""
    from tingfeng.alerts.service import list_rules

    out, names = _read(ctx, lambda conn: (list_rules(conn), Names.load(conn)))
    if as_json:
        _dump(out)
        return
    if not out:
        typer.echo("还没有预警规则：tingfeng alerts rule-add 名称 --topic 方案 --to 用户名")
        return
    _table(
        ["编号", "状态", "名称", "触发", "条件", "接收人", "通道"],
        [
            [
                r["id"],
                "启用" if r["enabled"] else "停用",
                r["name"],
                trigger_zh(r["conditions"], r["per"]),
                _short("，".join(conditions_text(r["conditions"], names)), 50),
                _short(recipients_text(r["recipients"], names), 30),
                joined(names.channels, r["channel_ids"]) or "站内",
            ]
            for r in out
        ],
    )


@alerts_app.command("rule-show")
def rule_show(ctx: typer.Context, ref: str, as_json: JsonOpt = False) -> None:
    """One rule (by name or id) in full."""
    from tingfeng.alerts.service import find_rule

    rule, names = _read(ctx, lambda conn: (find_rule(conn, ref), Names.load(conn)))
    if as_json:
        _dump(rule)
        return
    state = "启用" if rule["enabled"] else "停用"
    typer.echo(f"预警规则 {rule['id']}：{rule['name']}（{state}）")
    _print_rule(rule, names)


def _set_enabled(ctx: typer.Context, ref: str, enabled: bool) -> None:
    from tingfeng.alerts.service import find_rule, update_rule

    def work(conn: Any) -> dict[str, Any]:
        rule = find_rule(conn, ref)
        return update_rule(conn, rule["id"], {"enabled": enabled}, _now())

    rule = _write(ctx, work)
    typer.echo(f"预警规则 {rule['id']}（{rule['name']}）已{'启用' if enabled else '停用'}")


@alerts_app.command("rule-enable")
def rule_enable(ctx: typer.Context, ref: str) -> None:
    """Switch a rule on."""
    _set_enabled(ctx, ref, True)


@alerts_app.command("rule-disable")
def rule_disable(ctx: typer.Context, ref: str) -> None:
    """Switch a rule off (its alerts stay)."""
    _set_enabled(ctx, ref, False)


@alerts_app.command("rule-remove")
def rule_remove(ctx: typer.Context, ref: str) -> None:
    """Remove a rule; the alerts it raised stay, with its name in their reason."""
    from tingfeng.alerts.service import delete_rule, find_rule

    def work(conn: Any) -> dict[str, Any]:
        rule = find_rule(conn, ref)
        delete_rule(conn, rule["id"])
        return rule

    rule = _write(ctx, work)
    typer.echo(f"预警规则 {rule['id']}（{rule['name']}）已删除，已有的预警保留")


# --- channels ----------------------------------------------------------------------------------


@alerts_app.command("channel-add")
def channel_add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="A unique name, e.g. 值班群.")],
    kind: Annotated[str, typer.Option("--kind", help="email, webhook or apprise.")],
    target: Annotated[
        str,
        typer.Option(
            help="email: empty (each person's address) or a group mailbox; webhook: https://…; "
            "apprise: dingtalk://…, wecombot://…, feishu://…"
        ),
    ] = "",
    secret: Annotated[
        str | None, typer.Option(help="webhook: signing secret, at least 16 characters.")
    ] = None,
    endpoint: Annotated[
        str | None, typer.Option(help="apprise: the service's address through a relay.")
    ] = None,
) -> None:
    """Add a channel (checked first: address, apprise URL, allowed networks)."""
    from tingfeng.alerts.service import create_channel

    config: dict[str, Any] = {}
    if secret is not None:
        config["secret"] = secret
    if endpoint is not None:
        config["endpoint"] = endpoint
    settings = settings_of(ctx)
    made = _write(
        ctx,
        lambda conn: create_channel(
            conn, settings, name=name, kind=kind.strip().lower(), target=target, config=config
        ),
    )
    where = f" → {made['target']}" if made["target"] else "（发到每位接收人的邮箱）"
    typer.echo(
        f"通道 {made['id']} 已添加：{made['name']}（{KIND_ZH.get(made['kind'], made['kind'])}）{where}"
    )
    typer.echo(f"试发一条：tingfeng alerts channel-test {made['name']}")


@alerts_app.command("channels")
def channels(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Every channel (secrets masked)."""
    from tingfeng.alerts.service import list_channels

    out = _read(ctx, list_channels)
    if as_json:
        _dump(out)
        return
    if not out:
        typer.echo("还没有通道：tingfeng alerts channel-add 名称 --kind webhook --target https://…")
        return
    _table(
        ["编号", "状态", "名称", "类型", "目标", "设置"],
        [
            [
                c["id"],
                "启用" if c["enabled"] else "停用",
                c["name"],
                KIND_ZH.get(c["kind"], c["kind"]),
                c["target"] or "（每位接收人的邮箱）",
                " ".join(f"{k}={v}" for k, v in c["config"].items()),
            ]
            for c in out
        ],
    )


@alerts_app.command("channel-test")
def channel_test(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="The channel's name or id.")],
    address: Annotated[
        str | None,
        typer.Option(help="e-mail channels without a group mailbox: the address to try."),
    ] = None,
) -> None:
    """Send a test message on a channel now; prints ok, or why it failed (exit status 1)."""
    from uuid import uuid4

    from tingfeng.alerts.channels import ChannelError, ChannelSpec, send
    from tingfeng.alerts.messages import render
    from tingfeng.alerts.service import find_channel

    settings = settings_of(ctx)
    row = _read(ctx, lambda conn: find_channel(conn, ref))
    spec = ChannelSpec.of(row)
    zh = settings.alert_language == "zh"
    message = render(
        key=f"test:{spec.id}:{uuid4().hex[:12]}",
        purpose="test",
        level="general",
        title="听风预警通道测试" if zh else "Tingfeng channel test",
        excerpt=(
            f"这是通道「{spec.name}」的测试消息，收到即表示通道可用。"
            if zh
            else f"A test message on the channel {spec.name!r}: it works."
        ),
        url=None,
        ack_url=None,
        lang=settings.alert_language,
    )
    try:
        send(spec, message, settings, address=address)
    except ChannelError as exc:
        hint = "（请修改通道）" if exc.permanent else "（临时故障，可稍后再试）"
        fail(f"channel {spec.name!r}: {exc.message} {hint}", 1)
    typer.echo(f"ok：测试消息已通过通道「{spec.name}」发出")
    if not row.enabled:
        typer.echo("注意：这个通道已停用，预警不会从这里发出")


@alerts_app.command("channel-remove")
def channel_remove(ctx: typer.Context, ref: str) -> None:
    """Remove a channel; rules that used it keep their other channels."""
    from tingfeng.alerts.service import find_channel, list_rules, remove_channel

    def work(conn: Any) -> tuple[Any, int]:
        row = find_channel(conn, ref)
        users = sum(1 for r in list_rules(conn) if row.id in (r["channel_ids"] or []))
        remove_channel(conn, row.id)
        return row, users

    row, used = _write(ctx, work)
    typer.echo(
        f"通道 {row.id}（{row.name}）已删除" + (f"，已从 {used} 条规则中移除" if used else "")
    )


# --- escalation --------------------------------------------------------------------------------


@alerts_app.command("escalation-set")
def escalation_set(
    ctx: typer.Context,
    level: Annotated[str, typer.Argument(help=f"The alert level: {LEVEL_HELP}.")],
    step: Annotated[
        list[str],
        typer.Option(
            "--step",
            help="DELAY:WHO[,WHO…] in order, e.g. 15m:role=head, then 30m:user=li,on_duty; each "
            "delay counts from the step before. None: no escalation for this level.",
        ),
    ] = [],  # noqa: B006
    channel: Annotated[
        list[str], typer.Option(help="Also send every step on this channel (name or id).")
    ] = [],  # noqa: B006
    repeat_minutes: Annotated[
        int, typer.Option(min=0, help="After the last step, tell its people again this often.")
    ] = 0,
    max_repeats: Annotated[int, typer.Option(min=0, help="…at most this many times.")] = 0,
) -> None:
    """Set who is told, and when, while an alert of LEVEL is not acknowledged (逐级上报)."""
    from tingfeng.alerts.escalation import set_policy

    value = parse_level(level, "level")
    if bool(repeat_minutes) != bool(max_repeats):
        fail("give --repeat-minutes and --max-repeats together (both more than 0).")
    if (repeat_minutes or channel) and not step:
        fail("--repeat-minutes and --channel apply to steps: give at least one --step.")

    def work(conn: Any) -> tuple[Any, Names]:
        extra = channel_ids_of(conn, channel)
        steps = []
        for text in step:
            parsed = parse_step(conn, text)
            parsed["channel_ids"] = list(dict.fromkeys([*parsed["channel_ids"], *extra]))
            steps.append(parsed)
        policy = set_policy(
            conn, value, steps, repeat_minutes=repeat_minutes, max_repeats=max_repeats, now=_now()
        )
        return policy, Names.load(conn)

    policy, names = _write(ctx, work)
    if not policy.steps:
        typer.echo(f"{level_zh(value)}预警不再逐级上报")
        return
    typer.echo(f"{level_zh(value)}预警的逐级上报已设置：")
    _print_policy(policy.to_dict(), names)


def _minutes_zh(minutes: float) -> str:
    whole = int(minutes) if float(minutes).is_integer() else minutes
    return f"{whole} 分钟"


def _print_policy(policy: dict[str, Any], names: Names) -> None:
    total = 0.0
    for n, s in enumerate(policy["steps"], 1):
        total += s["after_minutes"]
        on = joined(names.channels, s["channel_ids"])
        # Each delay counts from the step before; the total says when it happens.
        when = f"预警后 {_minutes_zh(total)}" + (
            "" if n == 1 else f"（上一步后再过 {_minutes_zh(s['after_minutes'])}）"
        )
        typer.echo(
            f"  第 {n} 步：{when}仍未确认 → {recipients_text(s['recipients'], names)}"
            + (f"；另发通道 {on}" if on else "")
        )
    if policy["repeat_minutes"] and policy["max_repeats"]:
        typer.echo(
            f"  之后每 {_minutes_zh(policy['repeat_minutes'])}再通知最后一步的人，"
            f"最多 {policy['max_repeats']} 次"
        )


@alerts_app.command("escalation")
def escalation(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """The escalation policy of each level."""
    from tingfeng.alerts.escalation import load_policies
    from tingfeng.events.grading import Level

    policies, names = _read(ctx, lambda conn: (load_policies(conn), Names.load(conn)))
    ordered = [policies[lv.value].to_dict() for lv in Level if lv.value in policies]
    if as_json:
        _dump(ordered)
        return
    for lv in Level:
        policy = policies.get(lv.value)
        if policy is None or not policy.steps:
            typer.echo(f"{lv.label_zh}：不逐级上报")
            continue
        typer.echo(f"{lv.label_zh}：")
        _print_policy(policy.to_dict(), names)


# --- alerts ------------------------------------------------------------------------------------


@alerts_app.command("list")
def list_(
    ctx: typer.Context,
    status: Annotated[str | None, typer.Option(help="open or acknowledged.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="Newest this many.")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """The newest alerts."""
    from tingfeng.alerts.service import list_alerts

    if status is not None and status not in STATUS_ZH:
        fail(f"--status {status!r}: use open or acknowledged.")
    out = _read(ctx, lambda conn: list_alerts(conn, status=status, limit=limit))
    if as_json:
        _dump(out)
        return
    if not out:
        typer.echo("没有预警")
        return
    _table(
        ["编号", "时间", "等级", "状态", "命中", "规则", "标题"],
        [
            [
                a["id"],
                _local(ctx, a["created_at"]),
                a["level_zh"],
                STATUS_ZH.get(a["status"], a["status"])
                + ("·待汇总" if a["delivery"] == "held" else ""),
                a["hits"],
                _short((a["reason"] or {}).get("rule"), 16),
                _short(a["title"], 40),
            ]
            for a in out
        ],
    )


@alerts_app.command("show")
def show(ctx: typer.Context, alert_id: int, as_json: JsonOpt = False) -> None:
    """One alert: why it fired, what happened to it, and its messages."""
    from tingfeng.alerts.messages import PURPOSE_ZH
    from tingfeng.alerts.service import alert_detail

    out, names = _read(ctx, lambda conn: (alert_detail(conn, alert_id), Names.load(conn)))
    if out is None:
        fail(f"no alert {alert_id}: see `tingfeng alerts list`.")
    if as_json:
        _dump(out)
        return
    reason = out["reason"] or {}
    typer.echo(f"预警 {out['id']}【{out['level_zh']}】{out['title']}")
    state = STATUS_ZH.get(out["status"], out["status"])
    if out["status"] == "acknowledged":
        state += f"（{out['acked_by']}，{_local(ctx, out['acked_at'])}，{out['acked_via']}）"
    typer.echo(f"状态：{state}    时间：{_local(ctx, out['created_at'])}    命中：{out['hits']} 次")
    if reason.get("rule"):
        typer.echo(f"规则：{reason['rule']}")
    for line in matched_lines(reason.get("matched") or {}, names):
        typer.echo(f"  {line}")
    if out["excerpt"]:
        typer.echo(f"摘要：{out['excerpt']}")
    if out["url"]:
        typer.echo(f"原文：{out['url']}")
    if out["event_id"]:
        typer.echo(f"事件：{out['event_id']}（tingfeng events show {out['event_id']}）")
    if out["next_escalation_at"]:
        typer.echo(
            f"逐级上报：已进行 {out['escalation_step']} 步，"
            f"下一步 {_local(ctx, out['next_escalation_at'])}"
        )
    if out["log"]:
        typer.echo("记录：")
        _table(
            ["时间", "事项", "由", "详情"],
            [
                [
                    _local(ctx, e["at"]),
                    LOG_ZH.get(e["what"], e["what"]),
                    e["by"] or "",
                    json.dumps(e["detail"], ensure_ascii=False) if e["detail"] else "",
                ]
                for e in out["log"]
            ],
        )
    if out["deliveries"]:
        typer.echo("消息：")
        _table(
            ["编号", "用途", "通道", "接收人", "状态", "次数", "错误"],
            [
                [
                    d["id"],
                    PURPOSE_ZH.get(d["purpose"], d["purpose"]),
                    d["channel"],
                    d["user"] or "",
                    DELIVERY_ZH.get(d["status"], d["status"]),
                    d["attempts"],
                    _short(d["last_error"], 60),
                ]
                for d in out["deliveries"]
            ],
        )


@alerts_app.command("ack")
def ack(
    ctx: typer.Context,
    alert_id: int,
    by: Annotated[str, typer.Option("--by", help="Who acknowledges: a user name or a name.")],
) -> None:
    """Acknowledge an alert (确认收到): its escalation stops."""
    from tingfeng.alerts.ack import acknowledge
    from tingfeng.office.people import OfficeError, find_user

    def work(conn: Any) -> Any:
        user_id, who = None, by.strip()
        if who and not who.isdigit():
            # A user name records the person; any other name is kept as written.
            try:
                person = find_user(conn, who)
                user_id, who = person.id, person.display_name
            except OfficeError:
                pass
        return acknowledge(conn, alert_id, by=who, via="cli", now=_now(), user_id=user_id)

    done = _write(ctx, work)
    when = _local(ctx, done.at.isoformat())
    if done.already:
        typer.echo(f"预警 {alert_id} 已于 {when} 由 {done.by} 确认过（{done.via}）")
    else:
        typer.echo(f"预警 {alert_id} 已确认：{done.by}，{when}")


@alerts_app.command("failed")
def failed(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Messages given up after their last attempt (retry them with `alerts retry`)."""
    from tingfeng.alerts.service import failed_deliveries

    out = _read(ctx, failed_deliveries)
    if as_json:
        _dump(out)
        return
    if not out:
        typer.echo("没有发送失败的消息")
        return
    _table(
        ["编号", "预警", "通道", "地址", "次数", "原因", "标题"],
        [
            [
                d["id"],
                d["alert_id"] or "",
                d["channel"] or "",
                d["address"] or "",
                d["attempts"],
                _short(d["last_error"], 60),
                _short(d["subject"], 30),
            ]
            for d in out
        ],
    )


@alerts_app.command("retry")
def retry(
    ctx: typer.Context,
    delivery_ids: Annotated[
        list[int] | None, typer.Argument(help="Failed messages by id; none: every failed one.")
    ] = None,
) -> None:
    """Queue failed messages again; the running service sends them within seconds."""
    from sqlalchemy import select

    from tingfeng.alerts import outbox
    from tingfeng.db.models import Delivery

    ids = list(dict.fromkeys(delivery_ids or []))

    def work(conn: Any) -> int:
        if ids:
            found = set(
                conn.execute(
                    select(Delivery.id).where(Delivery.id.in_(ids), Delivery.status == "failed")
                ).scalars()
            )
            missing = [i for i in ids if i not in found]
            if missing:
                fail(f"no failed message {missing[0]}: see `tingfeng alerts failed`.")
        return outbox.retry(conn, ids or None, _now())

    n = _write(ctx, work)
    typer.echo(f"{n} 条消息已重新排队发送")


@alerts_app.command("tick")
def tick(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Run the alert clock once now: escalations, digests, missing shift reports."""
    from tingfeng.alerts.clock import tick as run_tick
    from tingfeng.alerts.engine import AlertContext

    engine = engine_of(ctx)
    result = run_tick(engine, AlertContext(settings_of(ctx)), _now())
    if as_json:
        _dump(vars(result))
        return
    typer.echo(
        f"逐级上报 {result.escalated} 条，汇总 {result.digests} 份，"
        f"缺报值班报告 {result.duty_alerts} 条，写入消息 {result.deliveries} 条"
    )


app.add_typer(alerts_app, name="alerts")
