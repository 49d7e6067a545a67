"""Word reports (python-docx) laid out like an official document (公文): the issuing office
as a red masthead, the number, a red rule, the title, the sections, the office and date.

East Asian text needs its own font slot (w:eastAsia of w:rFonts): body text in SimSun,
headings in SimHei, as Word on Windows has them; the font table names Noto Serif CJK SC and
Noto Sans CJK SC as their alternatives (w:altName), which LibreOffice on Debian uses.
"""

from __future__ import annotations

import io

from docx import Document as Docx
from docx.enum.table import WD_TABLE_ALIGNMENT
from docx.enum.text import WD_ALIGN_PARAGRAPH
from docx.oxml.ns import qn
from docx.shared import Cm, Pt, RGBColor

from tingfeng.reports.common import Document
from tingfeng.reports.render.charts import render_chart

BODY_FONT = ("SimSun", "Noto Serif CJK SC")
HEADING_FONT = ("SimHei", "Noto Sans CJK SC")
RED = RGBColor(0xC0, 0x00, 0x00)


def _set_fonts(run_or_style: object, fonts: tuple[str, str]) -> None:
    """Latin text in Times New Roman; East Asian text (w:eastAsia) in the Chinese font."""
    chinese, _fallback = fonts
    element = run_or_style.element  # type: ignore[attr-defined]
    rpr = element.get_or_add_rPr()
    rfonts = rpr.find(qn("w:rFonts"))
    if rfonts is None:
        rfonts = rpr.makeelement(qn("w:rFonts"), {})
        rpr.insert(0, rfonts)
    rfonts.set(qn("w:ascii"), "Times New Roman")
    rfonts.set(qn("w:hAnsi"), "Times New Roman")
    rfonts.set(qn("w:eastAsia"), chinese)
    rfonts.set(qn("w:hint"), "eastAsia")


def _run(paragraph: object, text: str, *, size: float, fonts: tuple[str, str] = BODY_FONT,
         bold: bool = False, color: RGBColor | None = None) -> None:  # fmt: skip
    run = paragraph.add_run(text)  # type: ignore[attr-defined]
    run.font.size = Pt(size)
    run.font.bold = bold
    if color is not None:
        run.font.color.rgb = color
    _set_fonts(run, fonts)


def render_docx(doc: Document) -> bytes:
    d = Docx()
    for section in d.sections:
        section.page_height, section.page_width = Cm(29.7), Cm(21.0)
        section.top_margin, section.bottom_margin = Cm(3.7), Cm(3.5)
        section.left_margin, section.right_margin = Cm(2.8), Cm(2.6)
    normal = d.styles["Normal"]
    normal.font.size = Pt(14)
    _set_fonts(normal, BODY_FONT)
    for level in (1, 2):
        _set_fonts(d.styles[f"Heading {level}"], HEADING_FONT)
        d.styles[f"Heading {level}"].font.color.rgb = RGBColor(0, 0, 0)

    masthead = d.add_paragraph()
    masthead.alignment = WD_ALIGN_PARAGRAPH.CENTER
    _run(masthead, doc.office, size=26, fonts=HEADING_FONT, bold=True, color=RED)
    number = d.add_paragraph()
    number.alignment = WD_ALIGN_PARAGRAPH.CENTER
    _run(number, doc.number, size=14)
    _red_rule(d)
    title = d.add_heading(level=1)
    title.alignment = WD_ALIGN_PARAGRAPH.CENTER
    _run(title, doc.title, size=20, fonts=HEADING_FONT, bold=True, color=RGBColor(0, 0, 0))
    if doc.subtitle:
        sub = d.add_paragraph()
        sub.alignment = WD_ALIGN_PARAGRAPH.CENTER
        _run(sub, doc.subtitle, size=14)
    if doc.kind != "quarterly":
        for note in doc.notes:
            _run(d.add_paragraph(), note, size=14, bold=True)

    for section in doc.sections:
        heading = d.add_heading(level=2)
        _run(heading, section.heading, size=16, fonts=HEADING_FONT, color=RGBColor(0, 0, 0))
        for text in section.paragraphs:
            if text:
                para = d.add_paragraph()
                para.paragraph_format.first_line_indent = Pt(28)
                _run(para, text, size=14)
        for text, url in section.links:
            para = d.add_paragraph(style="List Bullet")
            _run(para, text + (f"（{url}）" if url else ""), size=12)
        for chart in section.charts:
            d.add_picture(io.BytesIO(render_chart(chart)), width=Cm(15))
            d.paragraphs[-1].alignment = WD_ALIGN_PARAGRAPH.CENTER
        for table in section.tables:
            if table.rows:
                _table(d, table.headers, table.rows)
    if doc.kind == "quarterly" and doc.notes:
        heading = d.add_heading(level=2)
        _run(heading, "附：指标说明", size=16, fonts=HEADING_FONT, color=RGBColor(0, 0, 0))
        for note in doc.notes:
            _run(d.add_paragraph(), note, size=12)

    for line in (doc.office, doc.issued):
        para = d.add_paragraph()
        para.alignment = WD_ALIGN_PARAGRAPH.RIGHT
        _run(para, line, size=14)
    snap = doc.data.get("snapshot") or {}
    foot = d.add_paragraph()
    _run(foot, f"数据快照：{snap.get('at', '')}，信息截至 #{snap.get('max_post_id')}，"
               f"口径 {snap.get('queries', '')}", size=8)  # fmt: skip
    _alt_names(d)
    buf = io.BytesIO()
    d.save(buf)
    return buf.getvalue()


def _alt_names(d: object) -> None:
    """Name the Noto CJK fonts as the alternatives of SimSun and SimHei in the font table."""
    from lxml import etree

    for part in d.part.package.iter_parts():  # type: ignore[attr-defined]
        if str(part.partname) != "/word/fontTable.xml":
            continue
        root = etree.fromstring(part.blob)
        for name, alt in (BODY_FONT, HEADING_FONT):
            font = etree.SubElement(root, qn("w:font"), {qn("w:name"): name})
            etree.SubElement(font, qn("w:altName"), {qn("w:val"): alt})
            etree.SubElement(font, qn("w:charset"), {qn("w:val"): "86"})  # GB2312
        part._blob = etree.tostring(root, xml_declaration=True, encoding="UTF-8", standalone=True)


def _red_rule(d: object) -> None:
    """A red line under the masthead: a paragraph's bottom border."""
    para = d.add_paragraph()  # type: ignore[attr-defined]
    ppr = para._p.get_or_add_pPr()
    borders = ppr.makeelement(qn("w:pBdr"), {})
    bottom = borders.makeelement(
        qn("w:bottom"), {qn("w:val"): "single", qn("w:sz"): "18", qn("w:space"): "1",
                         qn("w:color"): "C00000"}
    )  # fmt: skip
    borders.append(bottom)
    ppr.append(borders)


def _table(d: object, headers: list[str], rows: list[list[object]]) -> None:
    table = d.add_table(rows=1, cols=len(headers))  # type: ignore[attr-defined]
    table.style = "Table Grid"
    table.alignment = WD_TABLE_ALIGNMENT.CENTER
    for cell, text in zip(table.rows[0].cells, headers, strict=True):
        cell.text = ""
        _run(cell.paragraphs[0], str(text), size=10.5, fonts=HEADING_FONT, bold=True)
    for row in rows:
        cells = table.add_row().cells
        for cell, value in zip(cells, row, strict=True):
            cell.text = ""
            _run(cell.paragraphs[0], "" if value is None else str(value), size=10.5)
