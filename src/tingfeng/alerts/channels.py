"""Sending one alert message through one channel: e-mail, a signed webhook, or an apprise URL.

The dispatcher calls `send` for each due delivery. Every failure is a `ChannelError`: temporary
ones (a server down, a timeout, 5xx, 429) are retried by the outbox with backoff, permanent ones
(a wrong address, a refused recipient, 4xx) are not, because repeating them cannot help.
Setup and the receiver's side are in docs/alerts-channels.md.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import logging
import re
import smtplib
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formataddr, formatdate, getaddresses
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

import apprise
import httpx
from apprise.plugins.dingtalk import NotifyDingTalk
from apprise.plugins.feishu import NotifyFeishu
from apprise.plugins.lark import NotifyLark
from apprise.plugins.slack import NotifySlack
from apprise.plugins.telegram import NotifyTelegram
from apprise.plugins.wecombot import NotifyWeComBot

from tingfeng.alerts.connect_guard import guarded_connections
from tingfeng.alerts.messages import Message
from tingfeng.alerts.robot_replies import recorded_replies, refusal
from tingfeng.collect.fetcher import _GuardedBackend, _GuardedTransport
from tingfeng.collect.ssrf import BlockedAddressError, FetchError, check_url, parse_networks
from tingfeng.problems import ProblemsError
from tingfeng.settings import Settings

log = logging.getLogger(__name__)

KINDS = ("email", "webhook", "apprise")
CONFIG_KEYS = {
    "email": frozenset(),
    "webhook": frozenset({"secret"}),
    "apprise": frozenset({"endpoint"}),
}
WEBHOOK_VERSION = 1
MIN_SECRET_CHARS = 16
APPRISE_DOCS = "https://appriseit.com/services/"
# apprise's generic HTTP posters: the webhook kind does the same with a signature, a stable
# payload and the address guard, so one way to post JSON is enough.
APPRISE_USE_WEBHOOK = frozenset({"json", "jsons", "xml", "xmls", "form", "forms"})
RETRY_STATUSES = frozenset({408, 425, 429})
MAX_SAME_ORIGIN_REDIRECTS = 3
RESPONSE_EXCERPT_BYTES = 4096


class ChannelError(ProblemsError):
    """A channel could not be saved or a message not sent; `message` says why and what to do."""

    what = "channel"

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__([message])
        self.message = message
        self.permanent = permanent


@dataclass(frozen=True)
class ChannelSpec:
    """What `send` needs of a channel: a plain copy of its row, safe to pass between threads."""

    id: int
    name: str
    kind: str
    target: str
    config: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, row: Any) -> ChannelSpec:
        """From a `channels` row (an ORM object or a Core row with the same columns)."""
        return cls(
            id=row.id,
            name=row.name,
            kind=row.kind,
            target=row.target or "",
            config=dict(row.config or {}),
        )

    @property
    def is_personal(self) -> bool:
        """One message per recipient: an e-mail channel without a fixed group mailbox."""
        return personal(self.kind) and not self.target.strip()


def personal(kind: str) -> bool:
    """True when a channel of this kind reaches a person (e-mail), False for group channels."""
    return kind == "email"


def check_channel(
    kind: str, target: str, config: dict[str, Any] | None, settings: Settings
) -> tuple[str, dict[str, Any]]:
    """Validate (and normalise) a channel before it is saved; `(target, config)` to store."""
    if kind not in KINDS:
        raise ChannelError(
            f"unknown channel kind {kind!r}: use one of {', '.join(KINDS)}.", permanent=True
        )
    config = dict(config or {})
    unknown = sorted(set(config) - CONFIG_KEYS[kind])
    if unknown:
        allowed = ", ".join(sorted(CONFIG_KEYS[kind])) or "none"
        raise ChannelError(
            f"{kind} channels do not know the setting(s) {', '.join(unknown)} "
            f"(allowed: {allowed}); remove them.",
            permanent=True,
        )
    target = (target or "").strip()
    if kind == "email":
        if not settings.smtp_host:
            raise _no_smtp()
        return (", ".join(formataddr(a) for a in _addresses(target)) if target else ""), {}
    if kind == "webhook":
        _webhook_guard(target, settings)
        secret = config.get("secret")
        if secret is None or secret == "":
            return target, {}
        if not isinstance(secret, str) or len(secret) < MIN_SECRET_CHARS:
            raise ChannelError(
                f"the webhook secret must be text of at least {MIN_SECRET_CHARS} characters; "
                'make one with: python -c "import secrets; print(secrets.token_hex(32))"',
                permanent=True,
            )
        return target, {"secret": secret}
    endpoint = config.get("endpoint") or None
    if endpoint is not None and not isinstance(endpoint, str):
        raise ChannelError("the endpoint must be a web address (text).", permanent=True)
    _apprise_plugin(target, endpoint.strip() if endpoint else None, settings)
    return target, ({"endpoint": endpoint.strip()} if endpoint else {})


def send(
    channel: ChannelSpec, message: Message, settings: Settings, *, address: str | None = None
) -> None:
    """Send one message; ChannelError(permanent=...) on failure, never anything else."""
    try:
        if channel.kind == "email":
            _send_email(channel, message, settings, address)
        elif channel.kind == "webhook":
            _send_webhook(channel, message, settings)
        elif channel.kind == "apprise":
            _send_apprise(channel, message, settings)
        else:
            raise ChannelError(
                f"channel {channel.name!r} has the unknown kind {channel.kind!r}; edit it.",
                permanent=True,
            )
    except ChannelError:
        raise
    except Exception as exc:  # the dispatcher must always get a ChannelError
        secrets = _secrets_of(channel)
        log.error(
            "channel %s: unexpected %s: %s",
            channel.name,
            type(exc).__name__,
            _mask(str(exc), secrets),
        )
        raise ChannelError(
            f"sending through {channel.name!r} failed unexpectedly ({type(exc).__name__}: "
            f"{_mask(str(exc), secrets)[:200]}); will try again.",
        ) from None


# --- e-mail -----------------------------------------------------------------------------------

_ADDRESS = re.compile(r"^[^@\s<>,;]+@[^@\s<>,;]+$")
_LINK = re.compile(r"https?://[^\s<>\"'）」】]+")


def _no_smtp() -> ChannelError:
    return ChannelError(
        "e-mail is not set up: set TINGFENG_SMTP_HOST (and SMTP_PORT, SMTP_SECURITY, "
        "SMTP_USERNAME, SMTP_PASSWORD, SMTP_FROM) to your mail server.",
        permanent=True,
    )


def _addresses(text: str) -> list[tuple[str, str]]:
    """`(name, address)` pairs of a comma- or semicolon-separated list; ChannelError if bad."""
    pairs = getaddresses([text.replace(";", ",")])
    found: list[tuple[str, str]] = []
    for name, addr in pairs:
        if not _ADDRESS.match(addr or ""):
            raise ChannelError(
                f"{text!r} is not a list of e-mail addresses such as "
                "'yq@example.gov.cn, 值班室 <duty@example.gov.cn>'; fix it.",
                permanent=True,
            )
        found.append((name, addr))
    if not found:
        raise ChannelError(f"{text!r} names no e-mail address; fix it.", permanent=True)
    return found


def message_id(key: str, sender: str) -> str:
    """A Message-ID that is the same for every attempt of one delivery."""
    domain = sender.rpartition("@")[2].strip("<> ") or "tingfeng"
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]
    return f"<tingfeng.{digest}@{domain}>"


def email_html(text: str) -> str:
    """The plain text as HTML: everything escaped, web addresses as links, lines kept."""
    out: list[str] = []
    for line in text.split("\n"):
        pieces: list[str] = []
        last = 0
        for match in _LINK.finditer(line):
            pieces.append(html.escape(line[last : match.start()]))
            url = html.escape(match.group(0), quote=True)
            pieces.append(f'<a href="{url}">{url}</a>')
            last = match.end()
        pieces.append(html.escape(line[last:]))
        out.append("".join(pieces))
    body = "<br>\n".join(out)
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8"></head>\n'
        f'<body style="font-family: sans-serif; line-height: 1.5">\n{body}\n</body></html>\n'
    )


def build_email(message: Message, sender: str, recipients: list[tuple[str, str]]) -> EmailMessage:
    mail = EmailMessage()
    mail["Subject"] = message.subject
    mail["From"] = sender
    mail["To"] = ", ".join(formataddr(r) for r in recipients)
    mail["Date"] = formatdate(localtime=True)
    mail["Message-ID"] = message_id(message.key, sender)
    mail["X-Tingfeng-Delivery"] = message.key
    # RFC 3834: tells mail servers and people's auto-responders not to answer an alert.
    mail["Auto-Submitted"] = "auto-generated"
    # base64 rather than 8-bit: older mail servers without 8BITMIME pass it through unharmed.
    mail.set_content(message.text, charset="utf-8", cte="base64")
    mail.add_alternative(email_html(message.text), subtype="html", charset="utf-8", cte="base64")
    return mail


def _send_email(
    channel: ChannelSpec, message: Message, settings: Settings, address: str | None
) -> None:
    if not settings.smtp_host:
        raise _no_smtp()
    # A fixed target is a group mailbox: it gets the message whoever the recipient is.
    recipients = _addresses(channel.target) if channel.target.strip() else None
    if recipients is None:
        if not address:
            raise ChannelError(
                f"e-mail channel {channel.name!r} has no address to send to: give the channel "
                "a group mailbox or give the person an e-mail address.",
                permanent=True,
            )
        recipients = _addresses(address)
    mail = build_email(message, settings.smtp_from, recipients)
    server = f"{settings.smtp_host}:{settings.smtp_port}"
    try:
        with _smtp(settings) as smtp:
            refused = smtp.send_message(
                mail, from_addr=settings.smtp_from, to_addrs=[a for _, a in recipients]
            )
    except smtplib.SMTPRecipientsRefused as exc:
        codes = [code for code, _ in exc.recipients.values()]
        detail = "; ".join(
            f"{addr}: {code} {_smtp_text(reply)}" for addr, (code, reply) in exc.recipients.items()
        )
        temporary = all(400 <= code < 500 for code in codes)
        raise ChannelError(
            f"mail server {server} refused the recipient(s) ({detail})"
            + ("; will try again." if temporary else "; check the address."),
            permanent=not temporary,
        ) from None
    except smtplib.SMTPAuthenticationError as exc:
        raise ChannelError(
            f"mail server {server} did not accept the login ({exc.smtp_code} "
            f"{_smtp_text(exc.smtp_error)}): check TINGFENG_SMTP_USERNAME and SMTP_PASSWORD.",
            permanent=exc.smtp_code >= 500,
        ) from None
    except smtplib.SMTPNotSupportedError as exc:
        raise ChannelError(
            f"mail server {server} does not support what was asked ({exc}): check "
            "TINGFENG_SMTP_SECURITY (starttls needs a server that offers it).",
            permanent=True,
        ) from None
    except smtplib.SMTPResponseException as exc:
        temporary = exc.smtp_code < 500
        raise ChannelError(
            f"mail server {server} answered {exc.smtp_code} {_smtp_text(exc.smtp_error)}"
            + ("; will try again." if temporary else "; the message was refused."),
            permanent=not temporary,
        ) from None
    except ssl.SSLCertVerificationError as exc:
        raise ChannelError(
            f"the certificate of mail server {server} is not trusted ({exc.verify_message}): "
            "use the server's proper host name or install its CA.",
            permanent=True,
        ) from None
    except socket.gaierror as exc:
        raise ChannelError(
            f"mail server {settings.smtp_host} could not be found ({exc.strerror}): "
            "check TINGFENG_SMTP_HOST; will try again.",
        ) from None
    except (smtplib.SMTPException, OSError) as exc:
        reason = str(exc) or type(exc).__name__
        raise ChannelError(
            f"could not reach mail server {server} ({reason}); will try again."
        ) from None
    if refused:
        # The others already have it; a retry would send them a second copy.
        log.warning("channel %s: mail server refused %s", channel.name, ", ".join(refused))


def _smtp_text(reply: bytes | str) -> str:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    return " ".join(text.split())[:200]


@contextmanager
def _smtp(settings: Settings) -> Iterator[smtplib.SMTP]:
    timeout = settings.delivery_timeout_s
    context = ssl.create_default_context()
    smtp: smtplib.SMTP
    if settings.smtp_security == "ssl":
        smtp = smtplib.SMTP_SSL(
            settings.smtp_host, settings.smtp_port, timeout=timeout, context=context
        )
    else:
        smtp = smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=timeout)
    try:
        smtp.ehlo()
        if settings.smtp_security == "starttls":
            smtp.starttls(context=context)
            smtp.ehlo()
        if settings.smtp_username:
            smtp.login(settings.smtp_username, settings.smtp_password)
        yield smtp
    finally:
        try:
            smtp.quit()
        except (smtplib.SMTPException, OSError):
            smtp.close()


# --- webhook ----------------------------------------------------------------------------------


def webhook_payload(message: Message) -> dict[str, Any]:
    """The JSON a webhook receives (documented in docs/alerts-channels.md)."""
    return {
        "version": WEBHOOK_VERSION,
        "key": message.key,
        "subject": message.subject,
        "text": message.text,
        "markdown": message.markdown,
        "level": message.level,
        "url": message.url,
        "ack_url": message.ack_url,
        "data": message.data,
    }


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """`sha256=<hex>`: HMAC-SHA256 over `<timestamp>.<body>` with the channel's secret."""
    mac = hmac.new(secret.encode("utf-8"), timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def _webhook_guard(url: str, settings: Settings) -> None:
    try:
        check_url(url, settings.fetch_allowed_networks)
    except FetchError as exc:
        raise ChannelError(_webhook_reason(exc.message), permanent=exc.permanent) from None


def _webhook_reason(text: str) -> str:
    return (
        text.replace("refused to fetch", "refused to send to")
        .replace("can be collected", "can receive webhooks")
        .replace("if this source is meant to reach it", "if this webhook is meant to reach it")
    )


def _send_webhook(channel: ChannelSpec, message: Message, settings: Settings) -> None:
    url = channel.target
    _webhook_guard(url, settings)
    body = json.dumps(webhook_payload(message), ensure_ascii=False).encode("utf-8")
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "User-Agent": settings.fetch_user_agent,
        "Idempotency-Key": message.key,
        "X-Tingfeng-Timestamp": timestamp,
    }
    secret = channel.config.get("secret")
    if secret:
        headers["X-Tingfeng-Signature"] = sign(secret, timestamp, body)
    shown = _mask_url(url)
    # The address is checked again at connect time, so a DNS answer that changes between the
    # check above and the connection (rebinding) still cannot reach an internal address.
    transport = _GuardedTransport(
        _GuardedBackend(parse_networks(settings.fetch_allowed_networks), None),
        httpx.Limits(max_connections=1, max_keepalive_connections=0),
    )
    try:
        with httpx.Client(
            transport=transport,
            timeout=settings.delivery_timeout_s,
            follow_redirects=False,
            trust_env=False,
        ) as client:
            for _ in range(MAX_SAME_ORIGIN_REDIRECTS + 1):
                status, location, excerpt = _post(client, url, body, headers)
                if status in (307, 308) and location and _same_origin(url, location):
                    url = location
                    continue
                break
    except FetchError as exc:
        raise ChannelError(_webhook_reason(exc.message), permanent=exc.permanent) from None
    except httpx.TimeoutException:
        raise ChannelError(
            f"webhook {shown} did not answer within {settings.delivery_timeout_s:g} s; "
            "will try again."
        ) from None
    except httpx.HTTPError as exc:
        raise ChannelError(
            f"could not reach webhook {shown} ({type(exc).__name__}: {exc}); will try again."
        ) from None
    if 200 <= status < 300:
        return
    answer = f"webhook {shown} answered {status}" + (f": {excerpt}" if excerpt else "")
    if 300 <= status < 400:
        raise ChannelError(
            f"{answer}; it redirects to {location or 'nowhere'}: set the channel to the final "
            "address (redirects to another host are not followed).",
            permanent=True,
        )
    if status in RETRY_STATUSES or status >= 500:
        raise ChannelError(f"{answer}; will try again.")
    raise ChannelError(f"{answer}; check the address and the receiver.", permanent=True)


def _post(
    client: httpx.Client, url: str, body: bytes, headers: dict[str, str]
) -> tuple[int, str | None, str]:
    """Status, absolute Location, and a short excerpt of the answer (read no further)."""
    with client.stream("POST", url, content=body, headers=headers) as response:
        data = b""
        for chunk in response.iter_bytes():
            data += chunk
            if len(data) >= RESPONSE_EXCERPT_BYTES:
                break
        location = response.headers.get("location")
        excerpt = " ".join(data[:RESPONSE_EXCERPT_BYTES].decode("utf-8", "replace").split())
        return (
            response.status_code,
            urljoin(url, location) if location else None,
            excerpt[:200],
        )


def _same_origin(a: str, b: str) -> bool:
    pa, pb = urlsplit(a), urlsplit(b)
    return (pa.scheme, pa.hostname, pa.port) == (pb.scheme, pb.hostname, pb.port)


def _mask_url(url: str) -> str:
    """The address without what may be a token: long path parts shortened, no query."""
    parts = urlsplit(url)
    path = "/".join(p if len(p) <= 12 else p[:4] + "…" for p in parts.path.split("/"))
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{path}" + (
        "?…" if parts.query else ""
    )


# --- apprise ----------------------------------------------------------------------------------

EndpointSetter = Callable[[Any, Any], None]


def _format_safe(url: str) -> str:
    """An endpoint inside a URL the plugin later fills in with str.format."""
    return url.replace("{", "{{").replace("}", "}}")


def _with_query(url: str, query: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}{query}"


def _dingtalk(plugin: Any, endpoint: str | None) -> None:
    base = endpoint or NotifyDingTalk.notify_url.partition("?")[0]
    query = "access_token={token}"
    if plugin.secret:
        # apprise 2.2 quotes the signature and then lets requests quote it again, which
        # DingTalk rejects ("sign not match"); so the instance is signed here, quoted once.
        timestamp, signature = dingtalk_sign(plugin.secret)
        query += f"&timestamp={timestamp}&sign={quote(signature, safe='')}"
        plugin.secret = None
    plugin.notify_url = _with_query(_format_safe(base), query)


def dingtalk_sign(secret: str, now: float | None = None) -> tuple[str, str]:
    """DingTalk's 加签: base64(HMAC-SHA256(secret, "<ms timestamp>\\n<secret>"))."""
    timestamp = str(round((time.time() if now is None else now) * 1000))
    digest = hmac.new(
        secret.encode("utf-8"), f"{timestamp}\n{secret}".encode(), hashlib.sha256
    ).digest()
    return timestamp, base64.b64encode(digest).decode("ascii")


def _wecombot(plugin: Any, endpoint: str) -> None:
    plugin.api_url = _with_query(endpoint, "key=" + quote(plugin.key, safe=""))


def _feishu(plugin: Any, endpoint: str) -> None:
    plugin.notify_url = _format_safe(endpoint.rstrip("/")) + "/{token}/"


def _lark(plugin: Any, endpoint: str) -> None:
    plugin.webhook_url = f"{endpoint.rstrip('/')}/{plugin.token}"


def _slack(plugin: Any, endpoint: str) -> None:
    # Webhook URLs replace https://hooks.slack.com/services, bot tokens https://slack.com/api.
    plugin.webhook_url = plugin.webhook_gov_url = endpoint.rstrip("/")
    plugin.api_url = _format_safe(endpoint.rstrip("/")) + "/{}"


def _telegram(plugin: Any, endpoint: str) -> None:
    plugin.notify_url = endpoint.rstrip("/") + "/bot"


# Per instance, never on the class: other channels in the same process use the public APIs.
ENDPOINTS: dict[type, tuple[str, EndpointSetter]] = {
    NotifyDingTalk: ("dingtalk", _dingtalk),
    NotifyWeComBot: ("wecombot", _wecombot),
    NotifyFeishu: ("feishu", _feishu),
    NotifyLark: ("lark", _lark),
    NotifySlack: ("slack", _slack),
    NotifyTelegram: ("tgram", _telegram),
}

_NOTIFY_TYPES = {
    "general": apprise.NotifyType.INFO,
    "serious": apprise.NotifyType.WARNING,
    "major": apprise.NotifyType.FAILURE,
    "critical": apprise.NotifyType.FAILURE,
}


class _ThreadLog(logging.Handler):
    """apprise's warnings from this thread only: other threads send at the same time."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.thread = threading.get_ident()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread:
            self.lines.append(record.getMessage())


@contextmanager
def _apprise_log() -> Iterator[_ThreadLog]:
    handler = _ThreadLog()
    logger = logging.getLogger("apprise")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def _asset() -> apprise.AppriseAsset:
    # In memory: apprise's persistent store would otherwise write files next to the service.
    return apprise.AppriseAsset(app_id="Tingfeng", app_desc="Tingfeng 听风", storage_mode="memory")


def _scheme(target: str) -> str:
    return target.partition("://")[0].lower() if "://" in target else ""


def _apprise_plugin(target: str, endpoint: str | None, settings: Settings) -> Any:
    """A fresh, checked plugin instance for `target` (apprise throttles per instance)."""
    secrets = _url_secrets(target)
    scheme = _scheme(target)
    if not scheme:
        raise ChannelError(
            f"{_mask(target, secrets)!r} is not an apprise URL (SERVICE://…), e.g. "
            f"dingtalk://TOKEN or wecombot://KEY; see {APPRISE_DOCS}",
            permanent=True,
        )
    if scheme in APPRISE_USE_WEBHOOK:
        raise ChannelError(
            f"{scheme}:// posts to an address of your own: use a channel of kind webhook "
            "instead (signed, with a stable payload).",
            permanent=True,
        )
    with _apprise_log() as captured:
        plugin = apprise.Apprise.instantiate(target, asset=_asset())
    if plugin is None:
        reason = "; ".join(captured.lines) or "apprise does not know this URL"
        raise ChannelError(
            f"{_mask(target, secrets)!r} cannot be used: {_mask(reason, secrets)}. See "
            f"{APPRISE_DOCS} for the URL of each service.",
            permanent=True,
        )
    if endpoint:
        entry = next((value for cls, value in ENDPOINTS.items() if isinstance(plugin, cls)), None)
        if entry is None:
            services = ", ".join(name for name, _ in ENDPOINTS.values())
            raise ChannelError(
                f"the endpoint setting is not supported for {scheme}:// (only for "
                f"{services}); remove it.",
                permanent=True,
            )
        _guard(endpoint, settings, "endpoint")
        entry[1](plugin, endpoint)
        plugin.redirects = False  # a relay must answer itself, not send us elsewhere
    elif isinstance(plugin, NotifyDingTalk):
        _dingtalk(plugin, None)
    plugin.socket_connect_timeout = settings.delivery_timeout_s
    plugin.socket_read_timeout = settings.delivery_timeout_s
    return plugin


def _guard(url: str, settings: Settings, what: str) -> None:
    try:
        check_url(url, settings.fetch_allowed_networks)
    except FetchError as exc:
        text = exc.message.replace("refused to fetch", f"refused {what}").replace(
            "if this source is meant to reach it", "if this channel is meant to reach it"
        )
        raise ChannelError(text, permanent=exc.permanent) from None


def _without_heading(body: str, subject: str) -> str:
    """The body without its first line when that line is the subject (passed as title)."""
    head, _, rest = body.partition("\n")
    plain = re.sub(r"\\(.)", r"\1", head.strip().strip("*"))
    return rest.lstrip("\n") if plain == subject else body


def _escape_md(text: str) -> str:
    for ch in "\\`*_[]()<>#!|@":
        text = text.replace(ch, "\\" + ch)
    return text


def _send_apprise(channel: ChannelSpec, message: Message, settings: Settings) -> None:
    secrets = _url_secrets(channel.target)
    plugin = _apprise_plugin(channel.target, channel.config.get("endpoint"), settings)
    # Markdown where the service renders it or HTML (apprise converts it, links included).
    rendered = plugin.resolve_format(apprise.NotifyFormat.MARKDOWN)
    markdown = rendered in (apprise.NotifyFormat.MARKDOWN, apprise.NotifyFormat.HTML)
    body = message.markdown if markdown else message.text
    # The subject holds collected text too: escaped where it lands inside Markdown.
    escape = rendered == apprise.NotifyFormat.MARKDOWN
    title = _escape_md(message.subject) if escape else message.subject
    if plugin.title_maxlen > 0:
        body = _without_heading(body, message.subject)
    else:
        title = ""  # the service has no title: the body already starts with the subject
    allowed = parse_networks(settings.fetch_allowed_networks)
    with _apprise_log() as captured, recorded_replies() as replies:
        try:
            # The host of a URL such as ntfy://HOST is checked again as apprise connects.
            with guarded_connections(allowed):
                ok = plugin.notify(
                    body=body,
                    title=title,
                    notify_type=_NOTIFY_TYPES.get(message.level, apprise.NotifyType.INFO),
                    body_format=apprise.NotifyFormat.MARKDOWN
                    if markdown
                    else apprise.NotifyFormat.TEXT,
                )
        except BlockedAddressError as exc:
            text = exc.message.replace("refused to fetch", "refused to send to").replace(
                "if this source is meant to reach it", "if this channel is meant to reach it"
            )
            raise ChannelError(text, permanent=True) from None
        except Exception as exc:  # plugins raise on bad content; the dispatcher wants one type
            captured.lines.append(f"{type(exc).__name__}: {exc}")
            ok = False
    robot = next((name for cls, (name, _) in ENDPOINTS.items() if isinstance(plugin, cls)), "")
    refused = refusal(robot, replies)
    if ok and refused is None:
        return
    service = getattr(plugin, "service_name", None) or _scheme(channel.target)
    # A robot that answers 200 with an error code in its body did not post the message;
    # Feishu's "too many requests" comes with a 400 that alone would read as permanent.
    if refused is not None and (ok or refused.temporary):
        said = _mask(f"{refused.code} {refused.message}".strip(), secrets)[:300]
        if refused.temporary:
            raise ChannelError(f"{service} did not take the message now ({said}); will try again.")
        raise ChannelError(
            f"{service} refused the message ({said}); check the robot's token and its security "
            "settings (keyword, signature, IP allow-list).",
            permanent=True,
        )
    reason = _mask("; ".join(captured.lines) or "no reason given", secrets)
    status = _status_in(reason)
    permanent = status is not None and 400 <= status < 500 and status not in RETRY_STATUSES
    if status is not None and 300 <= status < 400:
        # Redirects are not followed (plugin.redirects is off for endpoints): repeating the
        # same request gets the same answer.
        raise ChannelError(
            f"{service} answered with a redirect ({status}), which is not followed; set the "
            "channel's endpoint to the final address.",
            permanent=True,
        )
    raise ChannelError(
        f"{service} did not take the message ({reason[:300]})"
        + ("; check the channel's URL and token." if permanent else "; will try again."),
        permanent=permanent,
    )


def _status_in(text: str) -> int | None:
    """The HTTP status apprise reports in its warning ("error=404", "failed: 404 - ...")."""
    match = re.search(r"error=(\d{3})\b", text) or re.search(r"failed: (\d{3})\b", text)
    return int(match.group(1)) if match else None


# --- secrets ----------------------------------------------------------------------------------


def _url_secrets(url: str) -> set[str]:
    """The parts of a URL that may be tokens or passwords, to keep them out of messages."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return set()
    userinfo, _, hostport = parts.netloc.rpartition("@")
    found = set(userinfo.split(":"))
    if _scheme(url) not in ("http", "https"):
        # Token-style URLs (dingtalk://TOKEN, tgram://BOT:TOKEN/…) keep the token in the host.
        found.add(hostport)
        found.update(hostport.split(":"))
    found.update(parts.path.split("/"))
    found.update(value for _, _, value in (q.partition("=") for q in parts.query.split("&")))
    return {s for s in found if len(s) >= 6}


def _secrets_of(channel: ChannelSpec) -> set[str]:
    found = _url_secrets(channel.target)
    secret = channel.config.get("secret")
    if isinstance(secret, str) and secret:
        found.add(secret)
    return found


def _mask(text: str, secrets: set[str]) -> str:
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, secret[:3] + "***")
    return text
