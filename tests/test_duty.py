"""The duty roster on the real Chinese calendar around the 2026 National Day holiday.

chinese-calendar 2026: Oct 1–7 are rest days (国庆节), Sat Oct 10 is a working day (调休),
Sun Oct 11 an ordinary rest day. The calendar test and the report test run on SQLite and on
PostgreSQL.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, func, select
from typer.testing import CliRunner, Result

from tests.conftest import signed_in_page
from tingfeng import workdays
from tingfeng.alerts import duty
from tingfeng.alerts.duty import DutyError
from tingfeng.cli import duty as _duty_cli  # noqa: F401  (registers `people` and `duty`)
from tingfeng.cli.main import app
from tingfeng.db.engine import make_engine, write_transaction
from tingfeng.db.migrate import upgrade
from tingfeng.db.models import DutySwap
from tingfeng.office.people import add_user

TZ = "Asia/Shanghai"
SH = ZoneInfo(TZ)
CREATED = datetime(2026, 9, 1, tzinfo=UTC)  # the shifts exist before the dates tested


def local(*args: int) -> datetime:
    return datetime(*args, tzinfo=SH)  # type: ignore[misc]


def d(text: str) -> date:
    return date.fromisoformat(text)


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url)
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'duty.db'}")
    upgrade(engine)
    yield engine
    engine.dispose()


def people(engine: Engine, *names: str) -> dict[str, int]:
    with write_transaction(engine) as conn:
        return {n: add_user(conn, n, n.upper()).id for n in names}


def test_day_kinds_rotation_and_roster_around_national_day(engine: Engine) -> None:
    u = people(engine, "zhao", "qian", "sun", "li")
    with write_transaction(engine) as conn:
        day = duty.add_shift(
            conn, "白班", "08:00", 12, days="workdays", starts_on="2026-09-28",
            rotation={"A": [u["zhao"], u["qian"]], "B": [u["sun"]]}, now=CREATED,
        )  # fmt: skip
        holiday = duty.add_shift(
            conn, "节假日值班", "09:00", 9, days="restdays", starts_on="2026-09-28",
            rotation={"A": [u["li"], u["sun"], u["zhao"]]}, now=CREATED,
        )  # fmt: skip
        out = duty.roster(conn, d("2026-09-28"), 14, TZ)

    def dates(shift_id: int) -> list[str]:
        return [r["date"] for r in out for s in r["shifts"] if s["shift_id"] == shift_id]

    def a_of(shift_id: int) -> list[str]:
        return [
            s["members"]["A"]["name"] for r in out for s in r["shifts"] if s["shift_id"] == shift_id
        ]

    # Workdays: the holiday week is skipped, the 调休 Saturday Oct 10 is worked.
    assert dates(day) == ["2026-09-28", "2026-09-29", "2026-09-30", "2026-10-08",
                          "2026-10-09", "2026-10-10"]  # fmt: skip
    # The rotation counts occurrences, not calendar days: it resumes after the holiday.
    assert a_of(day) == ["ZHAO", "QIAN", "ZHAO", "QIAN", "ZHAO", "QIAN"]
    assert all(s["members"]["B"]["name"] == "SUN" for r in out for s in r["shifts"]
               if s["shift_id"] == day)  # fmt: skip
    # Rest days: the seven holidays and the ordinary Sunday Oct 11, not the worked Saturday.
    assert dates(holiday) == [f"2026-10-0{i}" for i in range(1, 8)] + ["2026-10-11"]
    assert a_of(holiday) == ["LI", "SUN", "ZHAO", "LI", "SUN", "ZHAO", "LI", "SUN"]
    by_date = {r["date"]: r for r in out}
    assert by_date["2026-10-03"]["holiday"] == "国庆节" and not by_date["2026-10-03"]["workday"]
    assert by_date["2026-10-10"]["workday"] and by_date["2026-10-10"]["weekday"] == "周六"
    assert by_date["2026-10-11"]["holiday"] is None and not by_date["2026-10-11"]["workday"]
    # Local 08:00 in Shanghai is 00:00 UTC; a 12-hour shift ends at 20:00 local.
    first = by_date["2026-09-28"]["shifts"][0]
    assert (first["start"], first["end"]) == (
        "2026-09-28T08:00:00+08:00",
        "2026-09-28T20:00:00+08:00",
    )
    with engine.connect() as conn:
        occ = duty.occurrences(conn, local(2026, 10, 10), local(2026, 10, 11), TZ)
    assert [(o.shift_name, o.on_date, o.start) for o in occ] == [
        ("白班", d("2026-10-10"), datetime(2026, 10, 10, 0, tzinfo=UTC))
    ]


def test_night_shift_crossing_midnight_belongs_to_the_previous_date(
    sqlite_engine: Engine,
) -> None:
    u = people(sqlite_engine, "a1", "a2", "a3", "b1")
    with write_transaction(sqlite_engine) as conn:
        night = duty.add_shift(
            conn, "夜班", "20:00", 12, starts_on="2026-09-28", now=CREATED,
            rotation={"A": [u["a1"], u["a2"], u["a3"]], "B": [u["b1"]]},
        )  # fmt: skip
    with sqlite_engine.connect() as conn:
        at_three = duty.on_duty(conn, local(2026, 10, 2, 3, 0), TZ)
        at_end = duty.on_duty(conn, local(2026, 10, 2, 8, 0), TZ)
        before_end = duty.on_duty(conn, local(2026, 10, 2, 7, 59), TZ)
        at_start = duty.on_duty(conn, local(2026, 10, 2, 20, 0), TZ)
        before_first = duty.on_duty(conn, local(2026, 9, 28, 19, 0), TZ)
    # Oct 1 is the fourth occurrence (Sep 28, 29, 30, Oct 1): a1 again.
    assert [(x.role, x.user_id, x.occurrence.on_date) for x in at_three] == [
        ("A", u["a1"], d("2026-10-01")),
        ("B", u["b1"], d("2026-10-01")),
    ]
    assert at_three[0].occurrence.shift_id == night
    assert at_three[0].occurrence.end == local(2026, 10, 2, 8, 0)
    assert [x.user_id for x in before_end] == [u["a1"], u["b1"]]
    assert at_end == []  # [start, end): the occurrence is over at 08:00
    assert (at_start[0].user_id, at_start[0].occurrence.on_date) == (u["a2"], d("2026-10-02"))
    assert before_first == []


def test_swaps_override_one_occurrence_and_replace_each_other(sqlite_engine: Engine) -> None:
    u = people(sqlite_engine, "zhao", "qian", "sun", "zhou", "wu")
    with write_transaction(sqlite_engine) as conn:
        sid = duty.add_shift(
            conn, "白班", "08:00", 12, days="workdays", starts_on="2026-09-28", now=CREATED,
            rotation={"A": [u["zhao"], u["qian"]], "B": [u["sun"]]},
        )  # fmt: skip
        # Oct 9 is zhao's (5th occurrence).
        duty.swap(conn, sid, d("2026-10-09"), "A", u["zhou"], reason="请假", by="主任")
        duty.swap(conn, sid, d("2026-10-09"), "A", u["wu"], reason="改派", by="主任")
    with sqlite_engine.connect() as conn:
        rows = conn.execute(select(DutySwap)).all()
        oct9 = duty.on_duty(conn, local(2026, 10, 9, 12), TZ)
        oct10 = duty.on_duty(conn, local(2026, 10, 10, 12), TZ)
        roster = duty.roster(conn, d("2026-10-09"), 1, TZ)[0]["shifts"][0]["members"]
    assert [(r.user_id, r.replaces_user_id, r.reason) for r in rows] == [
        (u["wu"], u["zhao"], "改派")
    ]
    assert [(x.role, x.user_id) for x in oct9] == [("A", u["wu"]), ("B", u["sun"])]
    assert [(x.role, x.user_id) for x in oct10] == [("A", u["qian"]), ("B", u["sun"])]
    assert roster["A"] == {"user_id": u["wu"], "name": "WU", "swapped": True}
    assert roster["B"]["swapped"] is False

    with write_transaction(sqlite_engine) as conn:
        # Swapping back to the rotation's own person removes the swap.
        duty.swap(conn, sid, d("2026-10-09"), "A", u["zhao"])
        assert conn.execute(select(func.count()).select_from(DutySwap)).scalar() == 0
        with pytest.raises(DutyError, match="rest day"):
            duty.swap(conn, sid, d("2026-10-03"), "A", u["zhou"])
        with pytest.raises(DutyError, match="already holds role B"):
            duty.swap(conn, sid, d("2026-10-09"), "A", u["sun"])
        with pytest.raises(DutyError, match="No user with id 999"):
            duty.swap(conn, sid, d("2026-10-09"), "A", 999)
        with pytest.raises(DutyError, match="starts on 2026-09-28"):
            duty.swap(conn, sid, d("2026-09-25"), "A", u["zhou"])
        duty.update_shift(conn, sid, rotation={"A": [u["zhao"]]})
        with pytest.raises(DutyError, match="no role B"):
            duty.swap(conn, sid, d("2026-10-09"), "B", u["zhou"])


def test_reports_missing_reports_and_handover(engine: Engine) -> None:
    u = people(engine, "zhao", "qian", "li")
    with write_transaction(engine) as conn:
        day = duty.add_shift(
            conn, "白班", "08:00", 12, days="workdays", starts_on="2026-09-28", now=CREATED,
            rotation={"A": [u["zhao"], u["qian"]]},
        )  # fmt: skip
        night = duty.add_shift(
            conn, "夜班", "20:00", 12, starts_on="2026-10-08", now=CREATED,
            rotation={"A": [u["li"]]},
        )  # fmt: skip
    tz = TZ

    def file(on: str, at: datetime, **kw) -> int:  # type: ignore[no-untyped-def]
        with write_transaction(engine) as conn:
            return duty.file_report(conn, kw.pop("shift", day), d(on), now=at, tz=tz, **kw)

    with pytest.raises(DutyError, match="has not started"):
        file("2026-10-09", local(2026, 10, 9, 7), kind="zero")
    with pytest.raises(DutyError, match=r"still running.*from 2026-10-09 19:00"):
        file("2026-10-09", local(2026, 10, 9, 18, 59), kind="zero")
    with pytest.raises(DutyError, match="zero report"):
        file("2026-10-09", local(2026, 10, 9, 19), kind="zero", items=["有一条"])
    with pytest.raises(DutyError, match="at least one item"):
        file("2026-10-09", local(2026, 10, 9, 19), kind="notable")
    with pytest.raises(DutyError, match="No event with id 424242"):
        file("2026-10-09", local(2026, 10, 9, 19), kind="notable",
             items=[{"text": "x", "event_id": 424242}])  # fmt: skip
    with pytest.raises(DutyError, match="does not occur"):
        file("2026-10-04", local(2026, 10, 5, 19), kind="zero")

    # Filed an hour before the end (allowed), by qian for zhao.
    first = file(
        "2026-10-09", local(2026, 10, 9, 19, 5), kind="notable", user_id=u["qian"],
        items=["县医院投诉帖转发量上升", {"text": "  学校食堂帖  "}], handover="继续关注县医院回应",
    )  # fmt: skip
    with pytest.raises(DutyError, match=r"already filed at 2026-10-09 19:05.*replace"):
        file("2026-10-09", local(2026, 10, 9, 20), kind="zero")
    with engine.connect() as conn:
        assert duty.get_report(conn, day, "2026-10-09")["items"] == [
            {"text": "县医院投诉帖转发量上升"},
            {"text": "学校食堂帖"},
        ]
        # At 19:30 the day shift is still running: nothing to hand over yet.
        assert duty.handover_for(conn, local(2026, 10, 9, 19, 30), tz) == []
        notes = duty.handover_for(conn, local(2026, 10, 9, 20, 0), tz)
    assert [(n["shift_name"], n["on_date"], n["handover"], n["user_name"]) for n in notes] == [
        ("白班", "2026-10-09", "继续关注县医院回应", "QIAN")
    ]

    again = file("2026-10-09", local(2026, 10, 9, 20, 10), kind="zero", replace=True,
                 handover="已回应，解除关注")  # fmt: skip
    assert again == first
    with engine.connect() as conn:
        report = duty.get_report(conn, day, "2026-10-09")
        assert (report["kind"], report["items"], report["user_id"]) == ("zero", [], None)

        # Grace: the Oct 9 night shift ends Oct 10 08:00; with 30 minutes it is missing from 08:30.
        def missing(at: datetime, grace: int = 30) -> list[tuple[str, str]]:
            return [(o.shift_name, o.on_date.isoformat())
                    for o in duty.missing_reports(conn, at, tz, grace)]  # fmt: skip

        at_829 = missing(local(2026, 10, 10, 8, 29))
        at_830 = missing(local(2026, 10, 10, 8, 30))
        assert ("夜班", "2026-10-09") not in at_829
        assert ("夜班", "2026-10-09") in at_830
        assert missing(local(2026, 10, 10, 8, 30)) == at_830  # a pure query: same answer again
        # Within the last 7 days: Sep 28–30 ended too long ago; Oct 9's day shift was filed.
        assert at_830 == [("白班", "2026-10-08"), ("夜班", "2026-10-08"), ("夜班", "2026-10-09")]
        # Each day shift ends at 20:00: at 21:00 on Oct 5 and Oct 6 the window moves a day on.
        assert missing(local(2026, 10, 5, 21)) == [("白班", "2026-09-29"), ("白班", "2026-09-30")]
        assert missing(local(2026, 10, 6, 21)) == [("白班", "2026-09-30")]
    file("2026-10-09", local(2026, 10, 10, 9), kind="notable", shift=night, items=["夜间平稳"],
         handover="无")  # fmt: skip
    with engine.connect() as conn:
        assert ("夜班", "2026-10-09") not in missing(local(2026, 10, 10, 9))
        notes = duty.handover_for(conn, local(2026, 10, 10, 9), tz)
    # The latest report of each shift, newest first.
    assert [(n["shift_name"], n["on_date"]) for n in notes] == [
        ("夜班", "2026-10-09"),
        ("白班", "2026-10-09"),
    ]


def test_missing_reports_start_after_the_shift_was_created(sqlite_engine: Engine) -> None:
    u = people(sqlite_engine, "zhao")
    with write_transaction(sqlite_engine) as conn:
        duty.add_shift(
            conn, "白班", "08:00", 12, starts_on="2026-10-01", rotation={"A": [u["zhao"]]},
            now=local(2026, 10, 5, 10, 0),  # in the middle of the Oct 5 occurrence
        )  # fmt: skip
    with sqlite_engine.connect() as conn:
        found = duty.missing_reports(conn, local(2026, 10, 7, 21), TZ, 30)
    assert [o.on_date.isoformat() for o in found] == ["2026-10-06", "2026-10-07"]


def test_validation_errors_say_what_is_wrong(sqlite_engine: Engine) -> None:
    u = people(sqlite_engine, "zhao")
    ok = {"rotation": {"A": [u["zhao"]]}, "starts_on": "2026-10-01"}
    cases = [
        ({"starts_at": "25:00"}, "Start time '25:00' is not valid"),
        ({"hours": 0}, "more than 0 and at most 48"),
        ({"hours": 49}, "more than 0 and at most 48"),
        ({"days": "weekends"}, "Unknown day kind 'weekends'"),
        ({"rotation": {"A": [u["zhao"], 777, 778]}}, "No user with id 777, 778"),
        ({"rotation": {"A": []}}, "role A"),
        ({"rotation": {}}, "A rotation is needed"),
        ({"rotation": {"C": [u["zhao"]]}}, "Unknown duty role 'C'"),
        ({"starts_on": "2026-13-01"}, "not a date"),
        ({"report_to": {"roles": ["boss"]}}, "report_to.roles"),
        ({"report_to": {"who": 1}}, "Unknown report_to key 'who'"),
    ]
    with write_transaction(sqlite_engine) as conn:
        for extra, message in cases:
            args = {"starts_at": "08:00", "hours": 12, **ok, **extra}
            with pytest.raises(DutyError, match=message):
                duty.add_shift(conn, "白班", args.pop("starts_at"), args.pop("hours"), **args)
        sid = duty.add_shift(conn, "白班", "8:00", 12, **ok)
        with pytest.raises(DutyError, match="already a shift named"):
            duty.add_shift(conn, "白班", "09:00", 12, **ok)
        assert duty.find_shift(conn, "白班") == duty.find_shift(conn, str(sid)) == sid
        assert duty.list_shifts(conn)[0]["starts_at"] == "08:00"
        assert duty.list_shifts(conn)[0]["report_to"] == {"roles": ["approver"]}
        with pytest.raises(DutyError, match="Unknown time zone"):
            duty.on_duty(conn, local(2026, 10, 1), "Mars/Olympus")
        with pytest.raises(DutyError, match="time zone"):
            duty.on_duty(conn, datetime(2026, 10, 1), TZ)
        with pytest.raises(DutyError, match="Cannot change colour"):
            duty.update_shift(conn, sid, colour="red")
        duty.update_shift(conn, sid, active=False)
        assert duty.on_duty(conn, local(2026, 10, 2, 9), TZ) == []
        duty.remove_shift(conn, sid)
        with pytest.raises(DutyError, match="No shift '白班'"):
            duty.find_shift(conn, "白班")


def test_a_year_without_calendar_data_falls_back_to_weekends(
    sqlite_engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    u = people(sqlite_engine, "zhao", "qian")
    workdays._warn_once.cache_clear()  # another test may have warned about 2027 already
    with write_transaction(sqlite_engine) as conn:
        duty.add_shift(
            conn, "白班", "08:00", 12, days="workdays", starts_on="2026-12-30", now=CREATED,
            rotation={"A": [u["zhao"], u["qian"]]},
        )  # fmt: skip
    with (
        caplog.at_level(logging.WARNING, logger="tingfeng.workdays"),
        sqlite_engine.connect() as conn,
    ):
        out = duty.roster(conn, d("2027-01-01"), 7, TZ)
    dates = [r["date"] for r in out if r["shifts"]]
    # Without 2027 data New Year's Day (a Friday) is an ordinary working day; Sat/Sun are not.
    assert dates == ["2027-01-01", "2027-01-04", "2027-01-05", "2027-01-06", "2027-01-07"]
    # Dec 30, Dec 31 2026 (known workdays), then Jan 1 2027 is the third occurrence: zhao.
    assert out[0]["shifts"][0]["members"]["A"]["name"] == "ZHAO"
    assert any("no holiday data for 2027" in r.getMessage() for r in caplog.records)


def test_counting_occurrences_over_years_matches_walking_every_day() -> None:
    start = date(2015, 3, 7)
    for kind in ("workdays", "restdays", "all"):
        for until in (date(2015, 3, 7), date(2015, 11, 1), date(2019, 2, 5), date(2026, 10, 10)):
            walked = sum(
                duty.day_matches(kind, start + timedelta(days=i))
                for i in range((until - start).days)
            )
            assert duty.count_matching(kind, start, until) == walked, (kind, until)


# --- the command line ------------------------------------------------------------------------


@pytest.fixture
def cli(tmp_path: Path):  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    runner = CliRunner()
    env = {"TINGFENG_CONFIG": "/nonexistent.toml", "TINGFENG_DATA_DIR": str(tmp_path / "var")}

    def run(*args: str, check: bool = True) -> Result:
        result = runner.invoke(app, ["--db", url, *args], env=env)
        if check and result.exit_code != 0:
            raise AssertionError(
                f"exit {result.exit_code}\nstdout: {result.stdout}\nstderr: {result.stderr}"
                f"\nexception: {result.exception!r}"
            )
        return result

    run.url = url  # type: ignore[attr-defined]
    return run


def test_cli_people_shifts_roster_swap_report_now(cli) -> None:  # type: ignore[no-untyped-def]
    cli("people", "department-add", "宣传部")
    cli("people", "department-add", "舆情科", "--parent", "宣传部")
    cli(
        "people",
        "add",
        "zhangsan",
        "--name",
        "张三",
        "--department",
        "舆情科",
        "--phone",
        "13800000001",
    )
    cli("people", "add", "lisi", "--name", "李四", "--role", "analyst")
    cli(
        "people", "add", "wangwu", "--name", "王五", "--role", "director", "--email", "w@example.cn"
    )
    bad = cli("people", "add", "zhaoliu", "--role", "boss", check=False)
    assert bad.exit_code == 2 and "Unknown role 'boss'" in bad.stderr
    listed = json.loads(cli("people", "list", "--json").stdout)
    assert [p["display_name"] for p in listed] == ["张三", "李四", "王五"]
    assert "舆情科  宣传部" in cli("people", "departments").stdout

    cli("duty", "shift-add", "白班", "--start", "08:00", "--hours", "12", "--days", "workdays",
        "--a", "zhangsan,lisi", "--b", "wangwu", "--from", "2026-09-28",
        "--report-to", "role:director,on-duty")  # fmt: skip
    cli("duty", "shift-add", "夜班", "--start", "20:00", "--hours", "12", "--a", "lisi",
        "--from", "2026-09-28")  # fmt: skip
    bad = cli("duty", "shift-add", "坏班", "--start", "25:00", "--hours", "8", "--a", "lisi",
              "--from", "2026-09-28", check=False)  # fmt: skip
    assert bad.exit_code == 2 and "Start time '25:00' is not valid" in bad.stderr
    shifts = json.loads(cli("duty", "shifts", "--json").stdout)
    assert shifts[0]["report_to"] == {"roles": ["approver"], "on_duty": True}

    roster = cli("duty", "roster", "--from", "2026-10-07", "--days", "5").stdout
    lines = roster.splitlines()
    assert "休息日·国庆节" in lines[1] and "夜班" in lines[1]
    sat = next(line for line in lines if line.startswith("2026-10-10"))
    assert "工作日·调休" in sat and "白班" in sat and "李四" in sat

    cli("duty", "swap", "白班", "2026-10-10", "zhangsan", "--reason", "调休")
    days = json.loads(cli("duty", "roster", "--from", "2026-10-10", "--days", "1", "--json").stdout)
    assert days[0]["shifts"][0]["members"]["A"]["name"] == "张三"
    bad = cli("duty", "swap", "白班", "2026-10-11", "zhangsan", check=False)
    assert bad.exit_code == 2 and "does not occur" in bad.stderr

    both = cli("duty", "report", "白班", "2026-10-10", "--zero", "--item", "x", check=False)
    assert both.exit_code == 2
    cli("duty", "report", "白班", "2026-10-10", "--item", "县医院投诉帖", "--item", "食堂帖",
        "--handover", "关注县医院", "--user", "zhangsan")  # fmt: skip
    again = cli("duty", "report", "白班", "2026-10-10", "--zero", check=False)
    assert again.exit_code == 2 and "already filed" in again.stderr
    cli("duty", "report", "白班", "2026-10-10", "--zero", "--handover", "无", "--replace")

    now = cli("duty", "now", "--at", "2026-10-10T21:00").stdout
    assert "夜班  主班  李四" in now and "[白班 2026-10-10] 零报告 · 未署名" in now
    assert "交接：无" in now
    data = json.loads(cli("duty", "now", "--at", "2026-10-10T12:00", "--json").stdout)
    assert [(e["shift_name"], e["role"], e["name"]) for e in data["on_duty"]] == [
        ("白班", "A", "张三"),
        ("白班", "B", "王五"),
    ]


def test_cli_missing_lists_overdue_reports(cli) -> None:  # type: ignore[no-untyped-def]
    cli("people", "add", "zhangsan", "--name", "张三")
    engine = make_engine(cli.url)
    with write_transaction(engine) as conn:
        duty.add_shift(conn, "夜班", "20:00", 12, starts_on="2026-10-08", now=CREATED,
                       rotation={"A": [1]})  # fmt: skip
    engine.dispose()
    out = json.loads(cli("duty", "missing", "--at", "2026-10-10T08:40", "--json").stdout)
    assert [o["on_date"] for o in out] == ["2026-10-08", "2026-10-09"]
    assert "夜班  2026-10-09" in cli("duty", "missing", "--at", "2026-10-10T08:40").stdout
    assert "没有缺报" in cli("duty", "missing", "--at", "2026-10-08T09:00").stdout


# --- the API and the page --------------------------------------------------------------------


def test_api_and_page(web) -> None:  # type: ignore[no-untyped-def]
    client, _settings = web
    r = client.post("/api/v1/departments", json={"name": "舆情科"})
    assert r.status_code == 201 and r.json()["name"] == "舆情科"
    r = client.post("/api/v1/people", json={"username": "zhangsan", "display_name": "张三",
                                            "department": "舆情科"})  # fmt: skip
    assert r.status_code == 201
    zhang = r.json()["id"]
    lisi = client.post(
        "/api/v1/people", json={"username": "lisi", "display_name": "<b>李四</b>"}
    ).json()["id"]
    r = client.post("/api/v1/people", json={"username": "lisi"})
    assert r.status_code == 422 and r.json() == {"error": "There is already a user named 'lisi'."}
    assert [p["username"] for p in client.get("/api/v1/people").json()["people"]] == [
        "tester",  # the administrator the test is signed in as
        "zhangsan",
        "lisi",
    ]
    assert client.get("/api/v1/departments").json()["departments"][0]["name"] == "舆情科"

    bad = client.post("/api/v1/duty/shifts", json={"name": "白班", "starts_at": "08:00",
                      "hours": 60, "rotation": {"A": [zhang]}, "starts_on": "2026-09-28"})  # fmt: skip
    assert bad.status_code == 422 and "at most 48" in bad.json()["error"]
    today = datetime.now(SH).date()
    r = client.post(
        "/api/v1/duty/shifts",
        json={"name": "全天", "starts_at": "00:00", "hours": 24, "days": "all",
              "rotation": {"A": ["zhangsan", lisi]}, "starts_on": "2026-09-28"},
    )  # fmt: skip
    assert r.status_code == 201 and r.json()["rotation"] == {"A": [zhang, lisi]}
    roster = client.get("/api/v1/duty/roster", params={"from": "2026-10-01", "days": 2}).json()
    assert [(x["date"], x["holiday"], x["shifts"][0]["members"]["A"]["user_id"])
            for x in roster["days"]] == [("2026-10-01", "国庆节", lisi),
                                          ("2026-10-02", "国庆节", zhang)]  # fmt: skip
    r = client.post("/api/v1/duty/swaps", json={"shift": "全天", "on_date": "2026-10-02",
                                                "user": lisi, "reason": "换班", "by": "主任"})  # fmt: skip
    assert r.status_code == 201
    now = client.get("/api/v1/duty/now", params={"at": "2026-10-02T10:00"}).json()
    assert [(e["user_id"], e["on_date"]) for e in now["on_duty"]] == [(lisi, "2026-10-02")]

    r = client.post("/api/v1/duty/reports", json={"shift": "全天", "on_date": "2026-10-02",
                    "kind": "zero", "items": [{"text": "x"}]})  # fmt: skip
    assert r.status_code == 422 and "zero report" in r.json()["error"]
    r = client.post("/api/v1/duty/reports", json={"shift": "全天", "on_date": "2026-10-02",
                    "kind": "notable", "items": [{"text": "<script>alert(1)</script>"}],
                    "handover": "关注<i>县医院</i>", "user_id": lisi})  # fmt: skip
    assert r.status_code == 201
    r = client.post("/api/v1/duty/reports", json={"shift": "全天", "on_date": "2026-10-02",
                                                  "kind": "zero"})  # fmt: skip
    assert r.status_code == 422 and "already filed" in r.json()["error"]
    future = (today + timedelta(days=3)).isoformat()
    r = client.post("/api/v1/duty/reports", json={"shift": "全天", "on_date": future,
                                                  "kind": "zero"})  # fmt: skip
    assert r.status_code == 422 and "has not started" in r.json()["error"]
    missing = client.get("/api/v1/duty/missing", params={"at": "2026-10-04T01:00"}).json()
    # The shift was created just now: earlier occurrences are not expected to have reports.
    assert missing["missing"] == [] and missing["grace_minutes"] == 30

    page = client.get("/duty")
    assert page.status_code == 200
    html = page.text
    assert "当前值班" in html and "值班表（未来 7 天）" in html and 'id="report-form"' in html
    assert html.count('data-date="') >= 7
    # Today's occurrence of the 24-hour shift is on duty now, named and escaped.
    on_now = {e["name"] for e in client.get("/api/v1/duty/now").json()["on_duty"]}
    assert on_now & {"张三", "<b>李四</b>"}
    assert "&lt;b&gt;李四&lt;/b&gt;" in html and "<b>李四</b>" not in html
    assert "/api/v1/duty/reports" in html
    week = client.get("/duty", params={"from": "2026-10-05"}).text
    assert week.count('<span class="tag holiday">国庆节</span>') == 3  # Oct 5, 6, 7
    assert week.count('<span class="tag adjusted">调休上班</span>') == 1  # Sat Oct 10
    assert '<tr class="restday" data-date="2026-10-11">' in week
    assert client.get("/duty", params={"from": "10/05"}).status_code == 422


def test_page_files_a_report_and_shows_the_error_in_place(web, browser) -> None:  # type: ignore[no-untyped-def]
    """In a real Chromium: the form's error comes from the API's JSON, content stays inert."""
    client, _settings = web
    zhang = client.post("/api/v1/people", json={"username": "zhangsan", "display_name": "张三"})
    r = client.post(
        "/api/v1/duty/shifts",
        json={"name": "全天", "starts_at": "00:00", "hours": 24, "rotation": {"A": ["zhangsan"]},
              "starts_on": "2026-09-28"},
    )  # fmt: skip
    assert r.status_code == 201
    yesterday = (datetime.now(SH).date() - timedelta(days=1)).isoformat()
    page = signed_in_page(browser, client)
    page.goto(str(client.base_url) + "/duty")
    assert "张三" in page.inner_text("#on-duty")
    page.fill("input[name=on_date]", yesterday)
    page.click("#report-form button[type=submit]")
    page.wait_for_selector("#report-error")
    assert "at least one item" in page.inner_text("#report-error")
    page.fill("textarea[name=items]", '县医院投诉帖<img src=x onerror="window.__xss=1">\n食堂帖')
    page.fill("textarea[name=handover]", "继续关注县医院")
    page.select_option("select[name=user_id]", str(zhang.json()["id"]))
    page.click("#report-form button[type=submit]")
    page.wait_for_selector("#report-ok")
    page.wait_for_selector("#handover .post")  # the page reloads with the new report
    handover = page.inner_text("#handover")
    assert "县医院投诉帖<img" in handover and "继续关注县医院" in handover and "张三" in handover
    assert page.evaluate("window.__xss") is None
    page.context.close()
    engine = make_engine(_settings.database_url)
    with engine.connect() as conn:
        report = duty.get_report(conn, 1, yesterday)
    engine.dispose()
    assert report is not None and [i["text"] for i in report["items"]][1] == "食堂帖"
