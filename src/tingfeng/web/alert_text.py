"""What the warnings pages (预警) say about alerts, rules, channels and escalation, in the
request's language.

The labels are Chinese message ids marked with `N_()` and translated where they are printed
(`label()` here, or `_()` in a template). Everything built from a rule or an alert goes through
`gettext()` at request time, so the English page says it in English. Nothing here returns
markup: the templates escape it all.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, select

from tingfeng.alerts.service import masked_url
from tingfeng.db.models import Channel, Department, Source, Topic, User
from tingfeng.web.i18n import N_, current_language, gettext
from tingfeng.web.labels import EMOTION_ZH, LEVEL_ZH, POLARITY_ZH, ROLE_ZH

STATUS_ZH = {"open": N_("待确认"), "acknowledged": N_("已确认")}
DELIVERY_ZH = {
    "pending": N_("待发送"),
    "sending": N_("发送中"),
    "sent": N_("已发送"),
    "failed": N_("发送失败"),
    "cancelled": N_("已取消"),
}
LOG_ZH = {
    "raised": N_("触发预警"),
    "escalated": N_("逐级上报"),
    "acknowledged": N_("确认收到"),
    "level_up": N_("等级上升"),
}
VIA_ZH = {
    "web": N_("网页"),
    "api": N_("接口"),
    "link": N_("消息中的确认链接"),
    "cli": N_("命令行"),
}
PURPOSE_ZH = {
    "alert": N_("预警"),
    "escalation": N_("预警升级上报"),
    "level_up": N_("事件等级上升"),
    "digest": N_("预警汇总"),
    "duty": N_("值班提醒"),
    "test": N_("测试消息"),
}
MATCHED_ZH = {
    "topics": N_("命中方案"),
    "query": N_("检索条件"),
    "source": N_("信源"),
    "tier": N_("媒体级别"),
    "polarity": N_("倾向"),
    "emotion": N_("情绪"),
    "categories": N_("类别"),
    "regions": N_("地域"),
    "needs_verification": N_("待核实"),
    "new_event": N_("新事件"),
    "level": N_("事件等级"),
    "previous_level": N_("原等级"),
    "event_posts": N_("事件信息量"),
    "spike": N_("突增对象"),
    "hour": N_("突增时段"),
    "count": N_("该时段条数"),
    "expected": N_("预期条数"),
    "ratio": N_("倍数"),
}
HELD_ZH = {
    "digest": N_("汇总模式：随下一次汇总发送"),
    "rate_limited": N_("超过频率上限：随汇总发送"),
}
TIER_ZH = {
    "central_media": N_("中央媒体"),
    "provincial_media": N_("省级媒体"),
    "local_media": N_("地方媒体"),
    "government": N_("政务账号"),
    "forum": N_("论坛社区"),
    "individual": N_("个人账号"),
    "other": N_("其他"),
}
DUTY_ROLE_ZH = {"A": N_("主班"), "B": N_("副班")}
TRIGGER_ZH = {
    "post": N_("新信息"),
    "level_rises": N_("事件等级上升"),
    "spike": N_("信息量突增"),
}
PER_ZH = {"event": N_("每个事件一条预警"), "post": N_("每条信息一条预警")}
# The kinds a person picks on the channels page; all but email and webhook are apprise URLs.
CHANNEL_KIND_ZH = {
    "email": N_("邮件"),
    "webhook": N_("Webhook（签名 JSON）"),
    "dingtalk": N_("钉钉群机器人"),
    "wecom": N_("企业微信群机器人"),
    "feishu": N_("飞书机器人"),
    "lark": N_("Lark 机器人"),
    "slack": N_("Slack"),
    "telegram": N_("Telegram"),
    "apprise": N_("其他服务（apprise 地址）"),
}
# apprise URL scheme → the kind above, to name a saved channel's service.
SCHEME_KIND = {
    "dingtalk": "dingtalk",
    "wecombot": "wecom",
    "feishu": "feishu",
    "lark": "lark",
    "slack": "slack",
    "tgram": "telegram",
}
VALUE_ZH: Mapping[Any, str] = {**POLARITY_ZH, **EMOTION_ZH, True: N_("是"), False: N_("否")}


def label(table: Mapping[Any, str], key: Any) -> str:
    """The translated label of `key`, or the key itself when the table does not know it."""
    text = table.get(key)
    return gettext(text) if text else ("" if key is None else str(key))


def level_label(level: str | None) -> str:
    return label(LEVEL_ZH, level)


def joined(parts: list[str]) -> str:
    return gettext("、").join(p for p in parts if p)


class Names:
    """Names of the things a rule or a policy refers to by id, read once per page."""

    def __init__(self, conn: Connection) -> None:
        def pairs(*cols: Any) -> dict[int, str]:
            return {int(k): str(v) for k, v in conn.execute(select(*cols)).all()}

        self.topics = pairs(Topic.id, Topic.name)
        self.sources = pairs(Source.id, Source.name)
        self.users = pairs(User.id, User.display_name)
        self.departments = pairs(Department.id, Department.name)
        self.channels = pairs(Channel.id, Channel.name)
        self.categories = category_names(conn)

    @staticmethod
    def of(table: dict[int, str], ids: list[int]) -> str:
        """Names of ids; a removed topic or channel still shows by its id, so the gap is seen."""
        return joined([table.get(int(i), gettext("#%(id)s（已删除）") % {"id": i}) for i in ids])


def category_names(conn: Connection) -> dict[str, str]:
    """Slug → name of the categories in force, in the request's language."""
    from tingfeng.ingest.readings import current_taxonomy

    english = current_language.get() == "en"
    return {c.slug: c.name_en if english else c.name_zh for c in current_taxonomy(conn).categories}


def region_name(code: str) -> str:
    from tingfeng.analyze.regions import default_table

    division = default_table().get(str(code))
    return "".join(division.path) if division else str(code)


# --- alerts -----------------------------------------------------------------------------------


def readable_reason(conn: Connection, reason: dict[str, Any]) -> list[tuple[str, str]]:
    """Why an alert fired, as (label, value) lines (for the detail page)."""
    lines: list[tuple[str, str]] = []
    if reason.get("rule"):
        rule_id = reason.get("rule_id")
        text = str(reason["rule"])
        if rule_id:
            text = gettext("%(name)s（编号 %(id)s）") % {"name": text, "id": rule_id}
        lines.append((gettext("规则"), text))
    matched = reason.get("matched") or {}
    topics: dict[int, str] = {}
    if matched.get("topics"):
        ids = [int(t) for t in matched["topics"]]
        topics = dict(conn.execute(select(Topic.id, Topic.name).where(Topic.id.in_(ids))).all())
    for key, value in matched.items():
        lines.append((label(MATCHED_ZH, key), _matched_value(key, value, topics)))
    if reason.get("held"):
        lines.append((gettext("发送方式"), label(HELD_ZH, reason["held"])))
    for key, value in reason.items():  # anything else (a duty alert's shift and date)
        if key not in ("rule", "rule_id", "matched", "held"):
            lines.append((key, str(value)))
    return lines


def _matched_value(key: str, value: Any, topics: dict[int, str]) -> str:
    if key == "topics":
        return joined(
            [
                gettext("%(name)s（%(id)s）")
                % {"name": topics.get(int(t), gettext("已删除的方案")), "id": t}
                for t in value
            ]
        )
    if key == "regions":
        return joined([region_name(code) for code in value])
    if key in ("level", "previous_level") and value in LEVEL_ZH:
        return level_label(value)
    if key == "new_event":
        return gettext("事件 %(id)s") % {"id": value}
    if key == "tier":
        return label(TIER_ZH, value)
    if isinstance(value, list):
        return joined([label(VALUE_ZH, v) for v in value])
    if isinstance(value, bool | str):
        return label(VALUE_ZH, value)
    return str(value)


def log_detail(entry: dict[str, Any]) -> str:
    """The explanation of one line of an alert's log."""
    detail = entry.get("detail") or {}
    parts = []
    if entry["what"] == "acknowledged" and detail.get("via"):
        parts.append(gettext("方式：%(via)s") % {"via": label(VIA_ZH, detail["via"])})
        if detail.get("escalations_cancelled"):
            parts.append(
                gettext("取消待发的上报消息 %(n)s 条") % {"n": detail["escalations_cancelled"]}
            )
    elif entry["what"] == "escalated":
        parts.append(gettext("第 %(n)s 步") % {"n": detail.get("step")})
    elif entry["what"] == "level_up":
        before, after = detail.get("previous"), detail.get("level")
        if before in LEVEL_ZH and after in LEVEL_ZH:
            parts.append(
                gettext("由%(before)s升为%(after)s")
                % {"before": level_label(before), "after": level_label(after)}
            )
        if detail.get("reopened"):
            parts.append(gettext("已确认的预警重新打开"))
    elif entry["what"] == "raised" and detail.get("held"):
        parts.append(label(HELD_ZH, detail["held"]))
    return gettext("；").join(parts)


# --- rules ------------------------------------------------------------------------------------


def trigger_of(conditions: dict[str, Any]) -> str:
    if conditions.get("spike"):
        return "spike"
    if conditions.get("level_rises"):
        return "level_rises"
    return "post"


def conditions_text(c: dict[str, Any], names: Names) -> list[str]:
    """One phrase per condition of a rule; all of them must hold."""
    out: list[str] = []
    if c.get("topic_ids"):
        out.append(gettext("命中方案：%(v)s") % {"v": names.of(names.topics, c["topic_ids"])})
    if c.get("query"):
        out.append(gettext("检索条件：%(v)s") % {"v": c["query"]})
    if c.get("polarities"):
        out.append(gettext("倾向：%(v)s") % {"v": _labels(POLARITY_ZH, c["polarities"])})
    if c.get("emotions"):
        out.append(gettext("情绪：%(v)s") % {"v": _labels(EMOTION_ZH, c["emotions"])})
    if c.get("categories"):
        shown = [names.categories.get(slug, slug) for slug in c["categories"]]
        out.append(gettext("类别：%(v)s") % {"v": joined(shown)})
    if c.get("regions"):
        out.append(gettext("地域：%(v)s") % {"v": joined([region_name(r) for r in c["regions"]])})
    if c.get("source_ids"):
        out.append(gettext("信源：%(v)s") % {"v": names.of(names.sources, c["source_ids"])})
    if c.get("tiers"):
        out.append(gettext("媒体级别：%(v)s") % {"v": _labels(TIER_ZH, c["tiers"])})
    if c.get("needs_verification") is True:
        out.append(gettext("标记为待核实"))
    elif c.get("needs_verification") is False:
        out.append(gettext("未标记待核实"))
    if c.get("new_event"):
        out.append(gettext("新事件的首条信息"))
    if c.get("min_level"):
        out.append(gettext("事件等级不低于%(v)s") % {"v": level_label(c["min_level"])})
    if c.get("min_posts"):
        out.append(gettext("事件信息量不少于 %(n)s 条") % {"n": c["min_posts"]})
    return out or [gettext("任何新信息")]


def _labels(table: Mapping[Any, str], values: list[Any]) -> str:
    return joined([label(table, v) for v in values])


def recipients_text(r: dict[str, Any], names: Names) -> str:
    """Who is told, in one line."""
    parts = [names.of(names.users, [u]) for u in r.get("user_ids", [])]
    parts += [label(ROLE_ZH, role) for role in r.get("roles", [])]
    parts += [
        gettext("%(name)s（含下级）") % {"name": names.of(names.departments, [d])}
        for d in r.get("department_ids", [])
    ]
    if r.get("on_duty"):
        roles = r.get("duty_roles") or []
        parts.append(
            gettext("值班人员（%(roles)s）") % {"roles": _labels(DUTY_ROLE_ZH, roles)}
            if roles
            else gettext("值班人员")
        )
    return joined(parts) or gettext("（无人）")


def sending_text(rule: dict[str, Any]) -> list[str]:
    """How a rule speaks: de-duplication, rate limit, digest, escalation."""
    out = [label(PER_ZH, rule.get("per"))]
    minutes = (rule.get("dedup_window_s") or 0) / 60
    out.append(gettext("%(n)s 分钟内合并") % {"n": f"{minutes:g}"})
    if rule.get("digest_minutes"):
        out.append(gettext("每 %(n)s 分钟汇总发送") % {"n": rule["digest_minutes"]})
    if rule.get("rate_limit_per_hour"):
        out.append(gettext("每小时至多 %(n)s 条") % {"n": rule["rate_limit_per_hour"]})
    if not rule.get("escalate", True):
        out.append(gettext("不逐级上报"))
    return out


def step_text(step: dict[str, Any], names: Names) -> str:
    """One escalation step: after how long, who, and on which channels."""
    text = gettext("%(m)s 分钟后通知 %(who)s") % {
        "m": f"{step.get('after_minutes', 0):g}",
        "who": recipients_text(step.get("recipients") or {}, names),
    }
    if step.get("channel_ids"):
        text += gettext("（渠道：%(v)s）") % {"v": names.of(names.channels, step["channel_ids"])}
    return text


# --- channels ---------------------------------------------------------------------------------


def channel_kind(row: dict[str, Any]) -> str:
    """The kind a person would call it: email, webhook, dingtalk, wecom… or apprise."""
    if row["kind"] != "apprise":
        return str(row["kind"])
    scheme = str(row.get("target") or "").partition("://")[0].lower()
    return SCHEME_KIND.get(scheme, "apprise")


def channel_view(row: dict[str, Any]) -> dict[str, Any]:
    """A channel for the page: never its secret, its token or its key (see docs/alerts-channels.md)."""
    target = str(row.get("target") or "")
    config = row.get("config") or {}
    if row["kind"] == "webhook":
        shown = masked_url(target)
    elif row["kind"] == "apprise":
        scheme = target.partition("://")[0] if "://" in target else ""
        shown = f"{scheme}://***" if scheme else "***"
    else:
        shown = target  # e-mail: the group mailbox, or each person's own address
    endpoint = config.get("endpoint")
    return {
        "id": row["id"],
        "name": row["name"],
        "kind": row["kind"],
        "service": channel_kind(row),
        "target": shown,
        "personal": row["kind"] == "email" and not target.strip(),
        "signed": bool(config.get("secret")),
        "endpoint": masked_url(endpoint) if isinstance(endpoint, str) and endpoint else "",
        "enabled": row.get("enabled", True),
    }


_PLAIN = [
    (re.compile(r"e-mail is not set up"), N_("还没有配置邮件服务器（TINGFENG_SMTP_HOST）。")),
    (re.compile(r"no address to send to"), N_("这个邮件渠道发给每个人自己的邮箱：请填写一个测试收件地址。")),
    (re.compile(r"mail server .*(refused|did not accept|answered|does not support)"), N_("邮件服务器拒绝了：请检查收件地址和登录设置。")),
    (re.compile(r"mail server"), N_("连接不上邮件服务器：请检查邮件服务器的地址和端口。")),
    (re.compile(r"refused to send to|refused endpoint"), N_("地址在内网或本机，按安全设置不允许发送；如确需发送，请管理员把该网段加入 fetch_allowed_networks。")),
    (re.compile(r"did not answer within"), N_("接收方没有及时应答（超时）。")),
    (re.compile(r"could not (reach|resolve)"), N_("连接不上接收方：地址或端口不对，或对方服务没有运行。")),
    (re.compile(r"answered 5\d\d"), N_("接收方出错（5xx）：稍后再试，或联系接收方的管理员。")),
    (re.compile(r"answered [34]\d\d|check the channel's URL and token"), N_("接收方拒绝了消息：请检查地址、令牌或签名密钥。")),
]  # fmt: skip


def plain_error(message: str) -> str:
    """A sentence saying, in the request's language, what a channel error means."""
    for pattern, text in _PLAIN:
        if pattern.search(message):
            return gettext(text)
    return gettext("发送失败。")


def error_hints() -> list[tuple[str, str]]:
    """(regular expression, explanation) pairs for the page's script."""
    return [(pattern.pattern, gettext(text)) for pattern, text in _PLAIN]
