"""The warnings settings forms (预警规则, 通知渠道, 逐级上报) read into what the services take.

Each reader returns the values and the problems it found, by form field, so the page can show
each problem next to its field and keep what the person typed. The services check the rest
(a query's syntax, a region's name, an apprise URL) and their message is placed by
`rule_error_field`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import parse_qs, quote, urlsplit

from tingfeng.web.i18n import gettext

MAX_STEPS = 6  # rows of the escalation form; nobody needs more than a handful of steps
_SPLIT = re.compile(r"[,，、;；\s]+")


class Form(Protocol):
    """What the readers need of a submitted form (starlette's FormData has it)."""

    def get(self, key: str, default: Any = None) -> Any: ...

    def getlist(self, key: str) -> list[Any]: ...


@dataclass
class Parsed:
    values: dict[str, Any]
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors


def _text(form: Form, name: str) -> str:
    return str(form.get(name) or "").strip()


def _texts(form: Form, name: str) -> list[str]:
    return [str(v).strip() for v in form.getlist(name) if str(v).strip()]


def _ids(form: Form, name: str, errors: dict[str, str]) -> list[int]:
    values = _texts(form, name)
    if not all(v.isdigit() for v in values):
        errors[name] = gettext("请从列表中选择。")
        return []
    return [int(v) for v in values]


def _checked(form: Form, name: str) -> bool:
    return _text(form, name) in ("1", "on", "true", "yes")


def _whole(form: Form, name: str, default: int, errors: dict[str, str]) -> Any:
    """A whole number of 0 or more; the text as typed (for the form) when it is not one."""
    text = _text(form, name)
    if not text:
        return default
    if not text.isdigit():
        errors[name] = gettext("请填写 0 或更大的整数。")
        return text
    return int(text)


# --- rules ------------------------------------------------------------------------------------


def rule_from_form(form: Form) -> Parsed:
    """A rule's values (every field of AlertRule) from the rule form."""
    errors: dict[str, str] = {}
    conditions: dict[str, Any] = {}
    trigger = _text(form, "trigger") or "post"
    if trigger == "spike":
        conditions["spike"] = True
    elif trigger == "level_rises":
        conditions["level_rises"] = True
    elif trigger != "post":
        errors["trigger"] = gettext("请选择触发方式。")
    for name in ("topic_ids", "source_ids"):
        if ids := _ids(form, name, errors):
            conditions[name] = ids
    if query := _text(form, "query"):
        conditions["query"] = query
    for name in ("polarities", "emotions", "categories", "tiers"):
        if values := _texts(form, name):
            conditions[name] = values
    if regions := [r for r in _SPLIT.split(_text(form, "regions")) if r]:
        conditions["regions"] = regions
    verification = _text(form, "needs_verification")
    if verification in ("yes", "no"):
        conditions["needs_verification"] = verification == "yes"
    if min_level := _text(form, "min_level"):
        conditions["min_level"] = min_level
    min_posts = _whole(form, "min_posts", 0, errors)
    if min_posts:
        conditions["min_posts"] = min_posts
    if _checked(form, "new_event"):
        conditions["new_event"] = True

    recipients: dict[str, Any] = {}
    if user_ids := _ids(form, "user_ids", errors):
        recipients["user_ids"] = user_ids
    if roles := _texts(form, "roles"):
        recipients["roles"] = roles
    if department_ids := _ids(form, "department_ids", errors):
        recipients["department_ids"] = department_ids
    if _checked(form, "on_duty"):
        recipients["on_duty"] = True
        if duty_roles := _texts(form, "duty_roles"):
            recipients["duty_roles"] = duty_roles

    dedup = _whole(form, "dedup_minutes", 1440, errors)
    values: dict[str, Any] = {
        "name": _text(form, "name"),
        "enabled": _checked(form, "enabled"),
        "conditions": conditions,
        "per": _text(form, "per") or "event",
        "recipients": recipients,
        "channel_ids": _ids(form, "channel_ids", errors),
        "level": _text(form, "level") or "general",
        "dedup_window_s": dedup * 60 if isinstance(dedup, int) else dedup,
        "rate_limit_per_hour": _whole(form, "rate_limit_per_hour", 30, errors),
        "digest_minutes": _whole(form, "digest_minutes", 0, errors),
        "escalate": _checked(form, "escalate"),
        "note": _text(form, "note") or None,
    }
    if not values["name"]:
        errors["name"] = gettext("请填写规则名称。")
    if "dedup_minutes" in errors:
        errors["dedup_window_s"] = errors.pop("dedup_minutes")
    return Parsed(values, errors)


# Where a message of the rule services belongs on the form (their messages name the part).
_RULE_FIELDS = [
    (re.compile(r"^Condition (\w+)"), None),
    (re.compile(r"needs a name|already a rule named"), "name"),
    (re.compile(r"No topic with id"), "topic_ids"),
    (re.compile(r"No channel with id"), "channel_ids"),
    (re.compile(r"^Recipients|Unknown role|No user with id"), "recipients"),
    (re.compile(r"apply to single posts|spikes or on level rises"), "trigger"),
    (re.compile(r'^"per"'), "per"),
    (re.compile(r"^level is"), "level"),
    (re.compile(r"^(dedup_window_s|rate_limit_per_hour|digest_minutes)"), None),
]


def rule_error_field(message: str) -> str:
    """The form field a rule service's message is about ("form" when it is about no one)."""
    for pattern, name in _RULE_FIELDS:
        match = pattern.search(message)
        if match:
            return name or match.group(1)
    return "form"


# --- channels ---------------------------------------------------------------------------------

# The page's kinds that are apprise services: the URL scheme, and what the token field holds.
APPRISE_KINDS = {"dingtalk": "dingtalk", "wecom": "wecombot", "feishu": "feishu",
                 "lark": "lark", "slack": "slack", "telegram": "tgram"}  # fmt: skip
FORM_KINDS = ("email", "webhook", *APPRISE_KINDS, "apprise")
_SAFE = "-_.~"


def _token_of(kind: str, value: str) -> str:
    """The token of a robot from what people copy: the robot's whole web address, or the token."""
    if "://" not in value:
        return value
    parts = urlsplit(value)
    query = parse_qs(parts.query)
    if kind == "dingtalk" and query.get("access_token"):
        return query["access_token"][0]
    if kind == "wecom" and query.get("key"):
        return query["key"][0]
    if kind in ("feishu", "lark") and "/hook/" in parts.path:
        return parts.path.rpartition("/hook/")[2].strip("/")
    if kind == "slack" and parts.netloc == "hooks.slack.com":
        return parts.path.removeprefix("/services/").strip("/")
    return value


def channel_from_form(form: Form) -> Parsed:
    """`name`, `kind`, `target`, `config` for `create_channel` from the add-channel form."""
    errors: dict[str, str] = {}
    name = _text(form, "name")
    kind = _text(form, "kind")
    if not name:
        errors["name"] = gettext("请填写渠道名称。")
    values: dict[str, Any] = {"name": name, "kind": kind, "target": "", "config": {}}
    if kind == "email":
        values["target"] = _text(form, "mailbox")
    elif kind == "webhook":
        values["target"] = _text(form, "url")
        if not values["target"]:
            errors["url"] = gettext("请填写接收方的网址。")
        if secret := _text(form, "secret"):
            values["config"] = {"secret": secret}
    elif kind in APPRISE_KINDS:
        values["kind"] = "apprise"
        target = _apprise_target(form, kind, errors)
        values["target"] = target
        if endpoint := _text(form, "endpoint"):
            values["config"] = {"endpoint": endpoint}
    elif kind == "apprise":
        values["target"] = _text(form, "apprise_url")
        if not values["target"]:
            errors["apprise_url"] = gettext("请填写 apprise 地址。")
        if endpoint := _text(form, "endpoint"):
            values["config"] = {"endpoint": endpoint}
    else:
        errors["kind"] = gettext("请选择渠道类型。")
    return Parsed(values, errors)


def _apprise_target(form: Form, kind: str, errors: dict[str, str]) -> str:
    token = _token_of(kind, _text(form, "token"))
    if not token:
        errors["token"] = gettext("请填写机器人的令牌或完整的 Webhook 地址。")
        return ""
    scheme = APPRISE_KINDS[kind]
    if kind == "slack":  # T…/B…/XXXX: the slashes are part of it
        return f"slack://{quote(token, safe=_SAFE + '/#')}"
    if kind == "telegram":
        chat = _text(form, "chat_id")
        if not chat:
            errors["chat_id"] = gettext("请填写 Telegram 群或用户的 chat id。")
        return f"tgram://{quote(token, safe=_SAFE + ':')}/{quote(chat, safe=_SAFE)}"
    target = quote(token, safe=_SAFE)
    if kind == "dingtalk" and (sign := _text(form, "sign_secret")):
        target = f"{quote(sign, safe=_SAFE)}@{target}"
    return f"{scheme}://{target}"


# --- escalation -------------------------------------------------------------------------------


def policy_from_form(form: Form) -> Parsed:
    """`steps`, `repeat_minutes`, `max_repeats` for `set_policy`, from the form of one level.

    Rows left blank are skipped; a row with people but no delay (or the reverse) is a problem.
    """
    errors: dict[str, str] = {}
    steps: list[dict[str, Any]] = []
    for n in range(MAX_STEPS):
        prefix = f"step-{n}-"
        after = _text(form, prefix + "after")
        recipients: dict[str, Any] = {}
        if user_ids := _ids(form, prefix + "user_ids", errors):
            recipients["user_ids"] = user_ids
        if roles := _texts(form, prefix + "roles"):
            recipients["roles"] = roles
        if department_ids := _ids(form, prefix + "department_ids", errors):
            recipients["department_ids"] = department_ids
        if _checked(form, prefix + "on_duty"):
            recipients["on_duty"] = True
            if duty_roles := _texts(form, prefix + "duty_roles"):
                recipients["duty_roles"] = duty_roles
        channel_ids = _ids(form, prefix + "channel_ids", errors)
        if not after and not recipients and not channel_ids:
            continue
        try:
            minutes = float(after)
        except ValueError:
            minutes = 0.0
        if minutes <= 0:
            errors[prefix + "after"] = gettext("请填写大于 0 的分钟数。")
        elif not recipients:
            errors[prefix + "after"] = gettext(
                "这一步没有通知任何人：请选择人员、角色、单位或值班人员。"
            )
        steps.append({"after_minutes": minutes, "recipients": recipients,
                      "channel_ids": channel_ids})  # fmt: skip
    repeat = _whole(form, "repeat_minutes", 0, errors)
    repeats = _whole(form, "max_repeats", 0, errors)
    if isinstance(repeat, int) and isinstance(repeats, int) and bool(repeat) != bool(repeats):
        errors["repeat_minutes"] = gettext("重复间隔和重复次数要同时填写（都大于 0），或都不填。")
    return Parsed({"steps": steps, "repeat_minutes": repeat, "max_repeats": repeats}, errors)
