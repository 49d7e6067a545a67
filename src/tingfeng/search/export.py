"""Search results as a file: CSV (UTF-8 with a byte-order mark) or Excel, at most N rows.

Every cell of collected text is untrusted. A spreadsheet runs a cell that begins with = + - @
(or a tab or carriage return, which some programs skip first) as a formula, so such cells get a
leading apostrophe (CSV formula injection, OWASP).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, select, text

from tingfeng.db.models import Source, as_utc
from tingfeng.ingest.readings import readings_of
from tingfeng.search.detail import events_of
from tingfeng.search.service import SORTS, QueryError, SearchFilters, _where, compile_query, count

# The most rows one export holds; a larger result is cut there and says so.
MAX_EXPORT_ROWS = 10_000
# Excel refuses longer cells (32,767 characters); the CSV is cut the same way.
MAX_CELL_CHARS = 32_000
COLUMNS = (
    "id", "time", "source", "title", "text", "url", "author", "polarity", "emotion",
    "categories", "regions", "event",
)  # fmt: skip
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_BATCH = 1000


@dataclass
class Export:
    rows: list[dict[str, Any]]
    total: int  # matching posts; more than len(rows) when the export was cut
    notes: list[tuple[str, str]] = field(default_factory=list)  # (label, value) for the file

    @property
    def truncated(self) -> bool:
        return self.total > len(self.rows)


def neutralise(value: Any) -> Any:
    """A cell value that a spreadsheet shows as text, never runs as a formula."""
    if isinstance(value, str):
        value = value[:MAX_CELL_CHARS]
        if value.startswith(_FORMULA_START):
            return "'" + value
    return value


def _order(sort: str, sqlite: bool) -> str:
    # The same orders as search.service.search, so the file lists what the page lists.
    key = "post_fts.rowid" if sqlite else "s.sort_key"
    if sort == "relevance":
        return (
            "post_fts.rank, post_fts.rowid DESC"
            if sqlite
            else "ts_rank(s.vector, CAST(:m AS tsquery)) DESC, s.sort_key DESC"
        )
    return f"{key} DESC" if sort == "newest" else f"{key} ASC"


def export_rows(
    conn: Connection,
    query: str,
    filters: SearchFilters,
    *,
    sort: str = "newest",
    tz: str = "Asia/Shanghai",
    label: Callable[[str, str], str] = lambda _kind, value: value,
    limit: int = MAX_EXPORT_ROWS,
) -> Export:
    """The first `limit` matching posts as rows of COLUMNS (times in `tz`).

    `label(kind, code)` names a polarity, emotion, category or level for people (in the
    page's language); the codes themselves are kept when it returns them unchanged.
    """
    if sort not in SORTS:
        raise QueryError(f"Unknown sort {sort!r}: choose one of {', '.join(SORTS)}.")
    cq = compile_query(query)
    frm, where, params, _ = _where(conn, cq, filters)
    params["limit"] = max(1, int(limit)) + 1  # one more tells whether the file is cut
    sql = (
        "SELECT p.id, p.source_id, p.title, p.text_clean, p.url, p.author, p.published_at, "
        f"p.fetched_at FROM {frm} WHERE {where} "
        f"ORDER BY {_order(sort, conn.dialect.name == 'sqlite')} LIMIT :limit"
    )
    found = conn.execute(text(sql), params).all()
    cut = len(found) > limit
    found = found[:limit]
    total = count(conn, query, filters) if cut else len(found)
    sources = dict(conn.execute(select(Source.id, Source.name)).all())
    zone = ZoneInfo(tz)
    rows: list[dict[str, Any]] = []
    for start in range(0, len(found), _BATCH):
        batch = found[start : start + _BATCH]
        ids = [r.id for r in batch]
        readings = readings_of(conn, ids)
        events = events_of(conn, ids)
        for r in batch:
            rows.append(_row(r, sources, readings.get(r.id), events.get(r.id), zone, label))
    return Export(rows=rows, total=total)


def _row(
    r: Any,
    sources: dict[int, str],
    reading: dict[str, Any] | None,
    event: dict[str, Any] | None,
    zone: ZoneInfo,
    label: Callable[[str, str], str],
) -> dict[str, Any]:
    when = as_utc(r.published_at) or as_utc(r.fetched_at)
    reading = reading or {}
    event_cell = ""
    if event:
        level = f" [{label('level', event['level'])}]" if event["level"] else ""
        event_cell = f"#{event['id']} {event['title']}{level}"
    return {
        "id": r.id,
        "time": when.astimezone(zone).replace(tzinfo=None) if when else None,
        "source": sources.get(r.source_id, str(r.source_id)),
        "title": r.title or "",
        "text": r.text_clean or "",
        "url": r.url or "",
        "author": r.author or "",
        "polarity": label("polarity", reading["polarity"]) if reading else "",
        "emotion": label("emotion", reading["emotion"]) if reading else "",
        "categories": "; ".join(
            label("category", c["slug"]) for c in reading.get("categories") or []
        ),
        "regions": "; ".join("/".join(g["path"]) for g in reading.get("regions") or []),
        "event": event_cell,
    }


def _cell(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return neutralise(value)


def to_csv(export: Export, headers: Sequence[str]) -> bytes:
    """UTF-8 with a byte-order mark, so Excel on Windows opens the Chinese correctly."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(headers)
    for row in export.rows:
        writer.writerow([_cell(row[key]) for key in COLUMNS])
    return ("\ufeff" + buf.getvalue()).encode("utf-8")


def to_xlsx(export: Export, headers: Sequence[str], sheet: str, about: str) -> bytes:
    """One sheet of rows, and a second (`about`) with the query, the filters and the counts."""
    from openpyxl import Workbook
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
    from openpyxl.styles import Font

    def value_of(value: Any) -> Any:
        # Control characters a collected text may hold are not allowed in the file format.
        value = neutralise(value)
        return ILLEGAL_CHARACTERS_RE.sub("", value) if isinstance(value, str) else value

    wb = Workbook()
    ws = wb.active
    ws.title = sheet[:31]
    ws.append(list(headers))
    for cell in ws[1]:
        cell.font = Font(bold=True)
    time_column = COLUMNS.index("time") + 1
    for row in export.rows:
        ws.append([value_of(row[key]) for key in COLUMNS])
        ws.cell(ws.max_row, time_column).number_format = "yyyy-mm-dd hh:mm:ss"
    ws.freeze_panes = "A2"
    for letter, width in zip(
        "ABCDEFGHIJKL", (8, 19, 16, 40, 60, 40, 16, 8, 8, 20, 24, 30), strict=True
    ):
        ws.column_dimensions[letter].width = width
    notes = wb.create_sheet(about[:31])
    for name, value in export.notes:
        notes.append([value_of(name), value_of(value)])
    notes.column_dimensions["A"].width = 20
    notes.column_dimensions["B"].width = 80
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()
