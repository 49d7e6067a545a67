"""`tingfeng report daily` on a database filled by `tingfeng demo seed`: the report of a seeded
day holds that day's real figures, each equal to an independent query."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select, text
from typer.testing import CliRunner

from tests.conftest import CED
from tingfeng.cli.main import app
from tingfeng.db.engine import make_engine
from tingfeng.db.models import Case

TZ = ZoneInfo("Asia/Shanghai")


def test_daily_report_of_a_seeded_day_holds_its_figures(tmp_path: Path) -> None:
    if not CED.exists():
        pytest.fail(f"The CED data set is missing ({CED}).", pytrace=False)
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    env = {"TINGFENG_CONFIG": "/nonexistent.toml", "TINGFENG_DATA_DIR": str(tmp_path / "var")}
    seeded = CliRunner().invoke(
        app, ["--db", url, "demo", "seed", "--posts", "600", "--ced", str(CED), "--no-evidence",
              "--json"], env=env,
    )  # fmt: skip
    assert seeded.exit_code == 0, seeded.output
    engine = make_engine(url)
    with engine.connect() as conn:
        newest = conn.execute(select(func.max(Case.created_at))).scalar()
    day: date = newest.astimezone(TZ).date()
    start = datetime(day.year, day.month, day.day, tzinfo=TZ).astimezone(UTC).replace(tzinfo=None)
    b = {"s": str(start), "e": str(start + timedelta(days=1))}

    def count(query: str) -> int:
        with engine.connect() as conn:
            return int(conn.execute(text(query), b).scalar() or 0)

    posts = count(
        "SELECT count(*) FROM posts WHERE (published_at >= :s AND published_at < :e) "
        "OR (published_at IS NULL AND fetched_at >= :s AND fetched_at < :e)"
    )
    opened = count("SELECT count(*) FROM cases WHERE created_at >= :s AND created_at < :e")
    closed = count("SELECT count(*) FROM cases WHERE closed_at >= :s AND closed_at < :e")
    alerts = count("SELECT count(*) FROM alerts WHERE created_at >= :s AND created_at < :e")
    acked = count("SELECT count(*) FROM alerts WHERE acked_at >= :s AND acked_at < :e")
    assert opened > 0
    out = tmp_path / "daily.html"
    result = CliRunner().invoke(
        app, ["--db", url, "report", "daily", "--date", day.isoformat(), "--format", "html",
              "--out", str(out)], env=env,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    html = out.read_text(encoding="utf-8")
    assert f"当日共监测到相关网络信息{posts}条" in html
    assert f"新建舆情处理单{opened}件，办结{closed}件" in html
    assert f"发出预警{alerts}条" in html and f"确认{acked}条" in html
    engine.dispose()
