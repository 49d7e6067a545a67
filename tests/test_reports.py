"""Reports (tingfeng.reports) from a fixed data set: every figure equals an independent SQL
query; the DOCX re-opens with its sections and Chinese fonts; the XLSX holds the tables; charts
are real PNGs; a quiet day yields a zero report; the CLI writes every format, the PDF with the
Chinese headings and figures (pdftotext)."""

from __future__ import annotations

import io
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, insert, text
from typer.testing import CliRunner

from tingfeng.cli.main import app
from tingfeng.db.engine import make_engine, write_transaction
from tingfeng.db.migrate import upgrade
from tingfeng.db.models import (
    Alert,
    Case,
    CaseDeadline,
    Department,
    DutyShift,
    Event,
    EventGrade,
    Post,
    PostLabel,
    PostReading,
    ShiftReport,
    Source,
)
from tingfeng.reports import daily, quarterly, special, zero
from tingfeng.reports.common import Chart, period_of
from tingfeng.reports.render.charts import render_chart
from tingfeng.reports.service import generate, make_document, render
from tingfeng.settings import Settings

TZ = "Asia/Shanghai"
DAY = date(2024, 3, 5)  # a busy day
QUIET = date(2024, 3, 7)  # only a few ordinary posts
NOW = datetime(2024, 3, 8, 1, 0, tzinfo=UTC)
PNG = b"\x89PNG\r\n\x1a\n"


def local(day: int, hour: int, minute: int = 0) -> datetime:
    """A Shanghai wall-clock time in March 2024, as UTC."""
    return datetime(2024, 3, day, hour, minute, tzinfo=UTC) - timedelta(hours=8)


@dataclass
class Data:
    url: str
    engine: Engine
    settings: Settings
    ids: dict[str, Any]


class Filler:
    def __init__(self, conn: Any) -> None:
        self.conn, self.n = conn, 0

    def add(self, model: Any, **values: Any) -> int:
        return self.conn.execute(insert(model).values(**values)).inserted_primary_key[0]

    def post(self, source: int, at: datetime | None, polarity: str | None = None, *,
             emotion: str = "neutral", regions: tuple[str, ...] = (), fetched: datetime | None = None,
             url: str | None = None) -> int:  # fmt: skip
        self.n += 1
        pid = self.add(Post, uid=f"u{self.n}", source_id=source, content_hash=f"h{self.n}",
                       text_clean=f"信息 {self.n}", published_at=at, fetched_at=fetched or at,
                       url=url)  # fmt: skip
        if polarity:
            self.add(PostReading, post_id=pid, version="t", polarity=polarity, emotion=emotion)
        for code in regions:
            self.add(PostLabel, kind="region", value=code, post_id=pid)
        return pid

    def alert(self, level: str, created: datetime, acked: datetime | None = None) -> int:
        self.n += 1
        return self.add(Alert, dedup_key=f"k{self.n}", subject=f"post:{self.n}", level=level,
                        title=f"预警 {self.n}", status="acknowledged" if acked else "open",
                        acked_at=acked, created_at=created,
                        window_until=created + timedelta(hours=1))  # fmt: skip


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Data]:
    tmp = tmp_path_factory.mktemp("reports")
    url = f"sqlite:///{tmp / 'r.db'}"
    engine = make_engine(url)
    upgrade(engine)
    settings = Settings(database_url=url, data_dir=tmp / "var", report_office="某市网信办")
    ids: dict[str, Any] = {}
    with write_transaction(engine) as conn:
        f = Filler(conn)
        a = f.add(Source, name="甲平台", kind="push", config={})
        b = f.add(Source, name="乙平台", kind="push", config={})
        xihu = ("330000", "330100", "330106")
        # The day before DAY: 3 posts; DAY: 7 (one without published_at, one at 23:59).
        for h in (1, 9, 20):
            f.post(a, local(4, h), "neutral")
        first = f.post(a, local(5, 0, 10), "negative", emotion="angry", regions=xihu,
                       url="https://example.org/a")  # fmt: skip
        f.post(a, local(5, 8), "negative", emotion="sad", regions=xihu)
        f.post(b, local(5, 9), "positive", emotion="happy")
        f.post(b, None, fetched=local(5, 10))
        f.post(b, local(5, 12), "neutral", regions=("110000", "110101"))
        f.post(a, local(5, 18), "negative", emotion="angry")
        f.post(a, local(5, 23, 59), "neutral")
        # QUIET: two ordinary posts.
        f.post(a, local(7, 9), "neutral")
        f.post(b, local(7, 15), "positive")
        ids["event"] = f.add(Event, title="东风镇卫生院排队事件", summary="患者反映排队时间长。后续",
                             level="serious", heat=42.5, posts=6, first_post_id=first,
                             first_seen_at=local(5, 0, 10), last_seen_at=local(5, 18))  # fmt: skip
        f.add(Event, title="小区停水", summary="", level="general", heat=5.0, posts=2,
              first_seen_at=local(1, 9), last_seen_at=local(5, 9))  # fmt: skip
        f.add(EventGrade, event_id=ids["event"], level="general", score=0.1,
              graded_at=local(5, 1))  # fmt: skip
        f.add(EventGrade, event_id=ids["event"], level="serious", score=0.5,
              graded_at=local(5, 12))  # fmt: skip
        f.alert("serious", local(5, 9), acked=local(5, 10))
        f.alert("general", local(5, 19))  # still open
        f.alert("general", local(4, 9), acked=local(5, 8))  # acknowledged on DAY
        health = f.add(Department, name="卫健局")
        city = f.add(Department, name="城管局")
        c1 = f.add(Case, number="2024-0001", title="排队", origin="manual", state="closed",
                   level="serious", department_id=health, created_at=local(5, 9),
                   closed_at=local(5, 20), event_id=ids["event"])  # fmt: skip
        c2 = f.add(Case, number="2024-0002", title="停水", origin="manual", state="assigned",
                   level="general", department_id=city, created_at=local(5, 11), reopened=1)  # fmt: skip
        c3 = f.add(Case, number="2024-0003", title="噪音", origin="manual", state="closed",
                   level="general", department_id=health, created_at=local(4, 11))  # fmt: skip
        f.add(CaseDeadline, case_id=c1, step="acknowledge", due_at=local(5, 13), status="met",
              met_at=local(5, 10))  # fmt: skip
        f.add(CaseDeadline, case_id=c1, step="reply", due_at=local(5, 21), status="met",
              met_at=local(5, 22), overdue_at=local(5, 21))  # fmt: skip
        f.add(CaseDeadline, case_id=c2, step="acknowledge", due_at=local(5, 15), status="open",
              overdue_at=local(5, 15))  # fmt: skip
        f.add(CaseDeadline, case_id=c3, step="acknowledge", due_at=local(4, 15), status="met",
              met_at=local(4, 14))  # fmt: skip
        shift = f.add(DutyShift, name="白班", starts_at="08:00", hours=10.0, starts_on="2024-03-01")
        f.add(ShiftReport, shift_id=shift, on_date="2024-03-05", kind="notable",
              items=[{"text": "x"}], handover="交接")  # fmt: skip
        f.add(ShiftReport, shift_id=shift, on_date="2024-03-07", kind="zero", items=[])
    yield Data(url, engine, settings, ids)
    engine.dispose()


def sql(engine: Engine, query: str, **params: Any) -> Any:
    with engine.connect() as conn:
        return conn.execute(text(query), params).scalar()


def bounds(day: date) -> dict[str, str]:
    """The local day as naive UTC text, as SQLite stores times."""
    start = datetime(day.year, day.month, day.day) - timedelta(hours=8)
    return {"s": str(start), "e": str(start + timedelta(days=1))}


POSTS_OF_DAY = (
    "SELECT count(*) FROM posts WHERE (published_at >= :s AND published_at < :e) "
    "OR (published_at IS NULL AND fetched_at >= :s AND fetched_at < :e)"
)


def test_daily_figures_equal_independent_queries(data: Data) -> None:
    with data.engine.connect() as conn:
        d = daily.build(conn, DAY, TZ)
    e, b = data.engine, bounds(DAY)
    assert d["volume"]["total"] == sql(e, POSTS_OF_DAY, **b) == 7
    assert d["volume"]["previous"] == sql(e, POSTS_OF_DAY, **bounds(date(2024, 3, 4))) == 3
    assert d["volume"]["change"] == 4
    negative = sql(e, "SELECT count(*) FROM posts p JOIN readings r ON r.post_id = p.id "
                      "WHERE r.polarity = 'negative' AND published_at >= :s AND published_at < :e",
                   **b)  # fmt: skip
    assert {r["label"]: r["count"] for r in d["polarity"]}["negative"] == negative == 3
    assert sum(d["hourly"]["total"]) == 7
    assert sum(d["hourly"]["negative"]) == 3
    assert {s["name"]: s["count"] for s in d["sources"]} == {"甲平台": 4, "乙平台": 3}
    assert d["regions"][0]["code"] in ("330000", "330100", "330106")
    assert d["regions"][0]["count"] == 2
    assert [e["title"] for e in d["key_items"]] == ["东风镇卫生院排队事件", "小区停水"]
    assert d["key_items"][0]["summary"] == "患者反映排队时间长。"
    assert d["key_items"][0]["url"] == "https://example.org/a"
    assert [x["title"] for x in d["new_events"]] == ["东风镇卫生院排队事件"]
    assert d["escalated_events"][0]["to"] == "较大"
    raised = sql(e, "SELECT count(*) FROM alerts WHERE created_at >= :s AND created_at < :e", **b)
    acked = sql(e, "SELECT count(*) FROM alerts WHERE acked_at >= :s AND acked_at < :e", **b)
    assert (d["alerts"]["issued"], d["alerts"]["acknowledged"]) == (raised, acked) == (2, 2)
    assert d["alerts"]["open"] == 1 and d["alerts"]["serious"] == 1
    opened = sql(e, "SELECT count(*) FROM cases WHERE created_at >= :s AND created_at < :e", **b)
    closed = sql(e, "SELECT count(*) FROM cases WHERE closed_at >= :s AND closed_at < :e", **b)
    assert (d["cases"]["opened"], d["cases"]["closed"]) == (opened, closed) == (2, 1)
    due = sql(e, "SELECT count(*) FROM case_deadlines WHERE due_at >= :s AND due_at < :e", **b)
    assert d["cases"]["deadlines_due"] == due == 3
    assert (d["cases"]["on_time"], d["cases"]["late"], d["cases"]["overdue"]) == (1, 1, 1)
    assert [s["kind"] for s in d["shift_reports"]] == ["notable"]
    assert d["quiet"] is False


def test_quiet_day_yields_a_zero_report_and_a_busy_day_does_not(data: Data) -> None:
    with data.engine.connect() as conn:
        quiet = zero.build(conn, QUIET, TZ)
        busy = zero.assess(conn, period_of("zero", DAY, TZ))
        doc = make_document(conn, "daily", day=QUIET, event_id=None, tz=TZ, now=NOW)
    assert quiet["quiet"] is True
    assert "无较大及以上级别舆情事件" in quiet["reasons"] and not quiet["notable"]
    assert quiet["volume"]["total"] == 2
    assert [s["kind_zh"] for s in quiet["shift_reports"]] == ["零报告"]
    assert busy.quiet is False
    assert "较大及以上级别舆情事件 1 起" in busy.notable
    assert "新建舆情处理单 2 件" in busy.notable
    # The daily report of the quiet day says a zero report applies.
    assert doc.data["quiet"] and "零报告" in doc.notes[0]


def test_quarterly_assessment_per_department(data: Data) -> None:
    with data.engine.connect() as conn:
        q = quarterly.build(conn, DAY, TZ)
    rows = {r["department"]: r for r in q["departments"]}
    received = sql(data.engine, "SELECT count(*) FROM cases c JOIN departments d ON "
                   "d.id = c.department_id WHERE d.name = '卫健局'")  # fmt: skip
    assert rows["卫健局"]["received"] == received == 2
    assert rows["卫健局"]["ack_on_time"] == 2 and rows["卫健局"]["reply_on_time"] == 0
    assert rows["卫健局"]["median_hours"] == 2.0 and rows["卫健局"]["worst_hours"] == 3.0
    assert rows["卫健局"]["closure_rate"] == 1.0 and rows["卫健局"]["overdue"] == 1
    assert rows["城管局"]["closure_rate"] == 0.0 and rows["城管局"]["reopened"] == 1
    assert [r["rank"] for r in q["departments"]] == [1, 2]
    assert q["departments"][0]["department"] == "卫健局"


def test_special_report_on_an_event(data: Data) -> None:
    with data.engine.connect() as conn:
        s = special.build(conn, data.ids["event"], NOW)
        doc = special.document(s, NOW)
    assert s["title"] == "东风镇卫生院排队事件" and s["level_zh"] == "较大"
    assert [c["number"] for c in s["handling"]] == ["2024-0001"]
    assert "不足以研判" in s["outlook"]  # no profile yet: it says so instead of guessing
    assert [sec.heading for sec in doc.sections][-1] == "八、走势研判"


def test_docx_reopens_with_sections_fonts_and_charts(data: Data) -> None:
    from docx import Document as Docx

    with data.engine.connect() as conn:
        doc = make_document(conn, "daily", day=DAY, event_id=None, tz=TZ, now=NOW,
                            office="某市网信办")  # fmt: skip
    d = Docx(io.BytesIO(render(doc, "docx", data.settings)))
    texts = [p.text for p in d.paragraphs]
    assert texts[0] == "某市网信办" and texts[1].startswith("〔2024〕第")
    headings = [p.text for p in d.paragraphs if p.style.name.startswith("Heading")]
    assert headings[0] == "网络舆情日报告表"
    assert headings[1:] == ["一、总体态势", "二、重点舆情", "三、新增及升级事件",
                            "四、预警发布及确认", "五、舆情处置", "六、值班及零报告"]  # fmt: skip
    assert any("共监测到相关网络信息7条" in t for t in texts)
    assert any("东风镇卫生院排队事件" in t for t in texts)
    xml = d.element.xml
    assert 'w:eastAsia="SimSun"' in xml and 'w:eastAsia="SimHei"' in xml
    assert len(d.inline_shapes) == 2  # hourly volume and polarity
    assert d.tables and d.tables[0].rows[0].cells[0].text == "信息来源"


def test_xlsx_holds_the_tables_and_charts_are_pngs(data: Data) -> None:
    from openpyxl import load_workbook

    with data.engine.connect() as conn:
        doc = make_document(conn, "weekly", day=DAY, event_id=None, tz=TZ, now=NOW)
    wb = load_workbook(io.BytesIO(render(doc, "xlsx", data.settings)))
    assert wb.sheetnames[0] == "概况" and "趋势" in wb.sheetnames
    trend = [list(r) for r in wb["趋势"].iter_rows(values_only=True)]
    assert trend[0] == ["日期", "信息量"] and len(trend) == 8
    assert sum(r[1] for r in trend[1:]) == 12  # the week 03-04..03-10
    png = render_chart(Chart("bar", "分类分布", ["甲", "乙"], {"n": [3, 1]}))
    assert png.startswith(PNG) and len(png) > 2000
    html = render(doc, "html", data.settings).decode()
    assert html.count("data:image/png;base64,") == 2 and "网络舆情周报" in html


def test_office_templates_replace_the_built_in_ones(data: Data, tmp_path: Path) -> None:
    (tmp_path / "zero.html").write_text(
        '{% extends "base.html" %}{% block masthead %}<p id="own">{{ doc.office }}专用</p>'
        "{% endblock %}",
        encoding="utf-8",
    )
    settings = data.settings.model_copy(update={"report_templates_dir": tmp_path})
    with data.engine.connect() as conn:
        doc = make_document(conn, "zero", day=QUIET, event_id=None, tz=TZ, now=NOW, office="网信办")
    html = render(doc, "html", settings).decode()
    assert '<p id="own">网信办专用</p>' in html and "特此零报告" in html


def test_cli_writes_every_format_and_records_the_snapshot(data: Data, tmp_path: Path) -> None:
    env = {"TINGFENG_CONFIG": "/nonexistent.toml", "TINGFENG_DATA_DIR": str(tmp_path)}
    for kind, fmt in (("daily", "docx"), ("zero", "html"), ("monthly", "xlsx"),
                      ("daily", "pdf")):  # fmt: skip
        out = tmp_path / f"{kind}.{fmt}"
        result = CliRunner().invoke(
            app, ["--db", data.url, "report", kind, "--date", DAY.isoformat(), "--format", fmt,
                  "--out", str(out)], env=env,
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        assert out.stat().st_size > 1000
    result = CliRunner().invoke(app, ["--db", data.url, "report", "special", "--out", "x"], env=env)
    assert result.exit_code == 2 and "--event" in result.output
    pdf = subprocess.run(["pdftotext", "-layout", str(tmp_path / "daily.pdf"), "-"],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    flat = "".join(pdf.split())
    for expected in ("网络舆情日报告表", "一、总体态势", "五、舆情处置", "共监测到相关网络信息7条",
                     "东风镇卫生院排队事件", "发出预警2条"):  # fmt: skip
        assert expected in flat, expected
    with data.engine.connect() as conn:
        rows = conn.execute(text("SELECT kind, format, number, snapshot FROM reports")).all()
    daily_rows = [r for r in rows if r.kind == "daily"]
    assert {r.format for r in daily_rows} == {"docx", "pdf"}
    assert len({r.number for r in daily_rows}) == 1  # the same period keeps its number
    snap = daily_rows[0].snapshot
    snap = snap if isinstance(snap, dict) else __import__("json").loads(snap)
    assert snap["max_post_id"] == sql(data.engine, "SELECT max(id) FROM posts")
    assert snap["rows"]["cases"] == 3 and snap["queries"]


def test_generate_stores_in_the_reports_directory(data: Data) -> None:
    made = generate(data.settings, data.engine, "zero", "docx", day=QUIET, now=NOW)
    path = Path(made.record["path"])
    assert path.parent == data.settings.data_dir / "reports" and path.exists()
    assert made.record["zero"] is True and made.record["bytes"] == path.stat().st_size
