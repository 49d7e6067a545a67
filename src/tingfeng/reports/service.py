"""Make a report: compute its data, lay it out, render it, store the file and its record.

`make_document` is pure reading (one connection); `generate` renders and records the report in
the `reports` table with the data snapshot it was computed from; the CLI, the web page and the
clock all go through it.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, func, insert, select

from tingfeng.db.engine import write_transaction
from tingfeng.db.models import Report
from tingfeng.problems import ProblemsError
from tingfeng.reports import daily, periodic, quarterly, special, zero
from tingfeng.reports.common import (
    FORMATS,
    KINDS,
    Document,
    chinese_date,
    default_day,
    report_number,
    snapshot,
)
from tingfeng.settings import Settings

MEDIA_TYPES = {
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "pdf": "application/pdf",
    "html": "text/html; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}


class ReportError(ProblemsError):
    """A report could not be made as asked; the message says why."""

    what = "report"


@dataclass
class Made:
    document: Document
    content: bytes
    record: dict[str, Any]


def make_document(
    conn: Connection,
    kind: str,
    *,
    day: date | None,
    event_id: int | None,
    tz: str,
    now: datetime,
    office: str = "",
    settings: Settings | None = None,
) -> Document:
    """The report's data and layout, as of `now` (a date defaults to the last whole period)."""
    if kind not in KINDS:
        raise ReportError(f"unknown report kind {kind!r}: use one of {', '.join(KINDS)}")
    if kind == "special":
        if event_id is None:
            raise ReportError("a special report (专报) is about one event: give its id (--event)")
        from tingfeng.events.decisions import EventError

        try:
            doc = special.document(special.build(conn, event_id, now, settings), now)
        except EventError as exc:
            raise ReportError(str(exc)) from None
    else:
        day = day or default_day(kind, now, tz)
        if kind == "daily":
            doc = daily.document(daily.build(conn, day, tz), now)
        elif kind == "zero":
            doc = zero.document(zero.build(conn, day, tz), now)
        elif kind == "quarterly":
            doc = quarterly.document(quarterly.build(conn, day, tz), now)
        else:
            doc = periodic.document(periodic.build(conn, kind, day, tz), now)
    from zoneinfo import ZoneInfo

    doc.office = office
    doc.issued = chinese_date(now.astimezone(ZoneInfo(tz)).date())
    doc.number = report_number(conn, kind, doc.period, now.astimezone(ZoneInfo(tz)).year)
    doc.data["snapshot"] = snapshot(conn, now)
    return doc


def render(doc: Document, fmt: str, settings: Settings) -> bytes:
    if fmt not in FORMATS:
        raise ReportError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
    if fmt == "html":
        from tingfeng.reports.render.html import render_html

        return render_html(doc, settings).encode("utf-8")
    if fmt == "pdf":
        from tingfeng.reports.render.pdf import render_pdf

        return render_pdf(doc, settings)
    if fmt == "docx":
        from tingfeng.reports.render.docx import render_docx

        return render_docx(doc)
    from tingfeng.reports.render.xlsx import render_xlsx

    return render_xlsx(doc)


def write_whole(path: Path, content: bytes) -> None:
    """Write the file so that a crash (kill -9, a full disk) leaves the whole file or none at
    `path`, never half of it: written and synced beside it under a temporary name, then renamed
    over it (a rename within a directory is atomic)."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        with partial.open("wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def reports_dir(settings: Settings) -> Path:
    return settings.reports_dir or settings.data_dir / "reports"


def generate(
    settings: Settings,
    engine: Engine,
    kind: str,
    fmt: str,
    *,
    day: date | None = None,
    event_id: int | None = None,
    out: Path | None = None,
    created_by: str = "system",
    now: datetime | None = None,
) -> Made:
    """Make, render, write (to `out`, or the reports directory) and record one report."""
    now = now or datetime.now(UTC)
    if fmt not in FORMATS:
        raise ReportError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
    with engine.connect() as conn:
        doc = make_document(
            conn, kind, day=day, event_id=event_id, tz=settings.default_timezone, now=now,
            office=settings.report_office, settings=settings,
        )  # fmt: skip
    content = render(doc, fmt, settings)
    if out is None:
        folder = reports_dir(settings)
        folder.mkdir(parents=True, exist_ok=True)
        stamp = now.strftime("%Y%m%dT%H%M%S")
        out = folder / f"{kind}-{doc.period.replace(':', '-')}-{stamp}.{fmt}"
    out.parent.mkdir(parents=True, exist_ok=True)
    write_whole(out, content)
    values = {
        "kind": kind,
        "period": doc.period,
        "number": doc.number,
        "format": fmt,
        "title": f"{doc.title}{doc.subtitle}",
        "path": str(out.resolve()),
        "bytes": len(content),
        "sha256": hashlib.sha256(content).hexdigest(),
        "snapshot": doc.data["snapshot"],
        "zero": bool(doc.zero and doc.data.get("quiet")),
        "created_by": created_by,
        "created_at": now,
    }
    with write_transaction(engine) as conn:
        rid = conn.execute(insert(Report).values(**values)).inserted_primary_key[0]
    return Made(doc, content, {"id": rid, **values, "created_at": now.isoformat()})


def report_dict(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "kind": row.kind,
        "kind_zh": KINDS.get(row.kind, row.kind),
        "period": row.period,
        "number": row.number,
        "format": row.format,
        "title": row.title,
        "bytes": row.bytes,
        "sha256": row.sha256,
        "zero": row.zero,
        "snapshot": row.snapshot,
        "created_by": row.created_by,
        "created_at": row.created_at.isoformat(),
    }


def list_reports(
    conn: Connection, *, kind: str | None = None, limit: int = 50, offset: int = 0
) -> tuple[list[dict[str, Any]], int]:
    q = select(Report)
    count = select(func.count()).select_from(Report)
    if kind:
        q, count = q.where(Report.kind == kind), count.where(Report.kind == kind)
    rows = conn.execute(
        q.order_by(Report.id.desc()).limit(max(1, min(limit, 500))).offset(max(0, offset))
    ).all()
    return [report_dict(r) for r in rows], int(conn.execute(count).scalar() or 0)


def get_report(conn: Connection, report_id: int) -> Any:
    row = conn.execute(select(Report).where(Report.id == report_id)).first()
    if row is None:
        raise ReportError(f"no report {report_id}")
    return row
