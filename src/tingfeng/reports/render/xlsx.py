"""The report's tables as an Excel workbook: a summary sheet, then one sheet per table."""

from __future__ import annotations

import io
from typing import Any

from tingfeng.reports.common import Document


def _cell(value: Any) -> Any:
    # Collected titles are untrusted: a leading = + - @ (or a tab or CR before one) would
    # run as a formula in Excel.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def render_xlsx(doc: Document) -> bytes:
    from openpyxl import Workbook
    from openpyxl.styles import Font

    wb = Workbook()
    ws = wb.active
    ws.title = "概况"
    for line in (doc.office, doc.number, doc.title + doc.subtitle, doc.issued):
        ws.append([_cell(line)])
    ws["A3"].font = Font(bold=True, size=14)
    for section in doc.sections:
        ws.append([])
        ws.append([section.heading])
        ws.cell(ws.max_row, 1).font = Font(bold=True)
        for text in section.paragraphs:
            if text:
                ws.append([_cell(text)])
    for note in doc.notes:
        ws.append([_cell(note)])
    ws.column_dimensions["A"].width = 100
    used: set[str] = {ws.title}
    for section in doc.sections:
        for table in section.tables:
            if not table.rows:
                continue
            name = _sheet_name(table.name or section.heading, used)
            sheet = wb.create_sheet(name)
            sheet.append(table.headers)
            for cell in sheet[1]:
                cell.font = Font(bold=True)
            for row in table.rows:
                sheet.append([_cell(v) for v in row])
            sheet.freeze_panes = "A2"
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def _sheet_name(name: str, used: set[str]) -> str:
    base = "".join(ch for ch in name if ch not in "[]:*?/\\\\")[:28] or "表"
    out, n = base, 2
    while out in used:
        out, n = f"{base}{n}", n + 1
    used.add(out)
    return out
