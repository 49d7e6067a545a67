"""Sending a made report: by e-mail with the file attached (`report_email`), and a notice with
its download link on the warning channels (`report_channels`), through tingfeng.alerts.channels.
A failure is logged and does not undo the report (it stays on the /reports page)."""

from __future__ import annotations

import logging
import mimetypes
from email.message import EmailMessage
from pathlib import Path

from sqlalchemy import Engine

from tingfeng.alerts.channels import ChannelError, ChannelSpec, _addresses, _smtp, send
from tingfeng.alerts.messages import Message
from tingfeng.reports.service import Made
from tingfeng.settings import Settings

log = logging.getLogger(__name__)


def _subject(made: Made) -> str:
    doc = made.document
    return f"{doc.title}{doc.subtitle} {doc.number}"


def _body(made: Made, settings: Settings) -> str:
    doc = made.document
    link = f"{_base(settings)}/api/v1/reports/{made.record['id']}/download"
    lines = [f"{doc.office}：{doc.title}{doc.subtitle}（{doc.number}）已生成。"]
    if doc.zero and doc.data.get("quiet"):
        lines.append("经研判当日无需要报告的重要舆情，特此零报告。")
    lines.append(f"下载：{link}")
    return "\n".join(lines)


def _base(settings: Settings) -> str:
    return (settings.public_url or f"http://{settings.web_host}:{settings.web_port}").rstrip("/")


def email_report(settings: Settings, made: Made) -> list[str]:
    """E-mail the file to `report_email`; the addresses it went to."""
    recipients = _addresses(settings.report_email) if settings.report_email.strip() else []
    if not recipients or not settings.smtp_host:
        return []
    mail = EmailMessage()
    mail["Subject"] = _subject(made)
    mail["From"] = settings.smtp_from
    mail["To"] = ", ".join(a for _, a in recipients)
    mail.set_content(_body(made, settings), charset="utf-8", cte="base64")
    name = Path(made.record["path"]).name
    kind, _, sub = (mimetypes.guess_type(name)[0] or "application/octet-stream").partition("/")
    mail.add_attachment(made.content, maintype=kind, subtype=sub, filename=name)
    with _smtp(settings) as smtp:
        smtp.send_message(mail, from_addr=settings.smtp_from, to_addrs=[a for _, a in recipients])
    return [a for _, a in recipients]


def announce(engine: Engine, settings: Settings, made: Made) -> list[str]:
    """A notice on each channel of `report_channels`; the names it went to."""
    from tingfeng.alerts.service import find_channel

    refs = [r.strip() for r in settings.report_channels.split(",") if r.strip()]
    sent = []
    for ref in refs:
        try:
            with engine.connect() as conn:
                spec = ChannelSpec.of(find_channel(conn, ref))
            text = _body(made, settings)
            message = Message(
                key=f"report:{made.record['id']}:channel:{spec.id}", subject=_subject(made),
                text=f"{_subject(made)}\n{text}", markdown=f"### {_subject(made)}\n\n{text}",
                url=f"{_base(settings)}/reports",
                data={"report": {k: made.record[k] for k in ("id", "kind", "period", "number")}},
            )  # fmt: skip
            send(spec, message, settings)
            sent.append(spec.name)
        except (ChannelError, ValueError) as exc:
            log.warning("report %s: channel %s: %s", made.record["id"], ref, exc)
    return sent


def deliver(engine: Engine, settings: Settings, made: Made) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {"email": [], "channels": []}
    try:
        out["email"] = email_report(settings, made)
    except Exception as exc:  # the report is made; the mail can be sent again by hand
        log.warning("report %s: e-mail failed: %s", made.record["id"], exc)
    out["channels"] = announce(engine, settings, made)
    return out
