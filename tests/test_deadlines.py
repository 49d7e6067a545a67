"""Deadlines on the Chinese working-day calendar: Spring Festival and National Day 2026 with their
adjusted working days (checked against chinese-calendar below), office hours, the SLA table, the
`tingfeng deadline` command."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import tingfeng.cli.deadline  # noqa: F401  (registers `deadline` until cli/main.py imports it)
from tingfeng.cases.deadlines import (
    DEFAULT_SLA,
    LEVELS,
    STEP_LABELS,
    DeadlineError,
    Duration,
    OfficeHours,
    add_working_days,
    add_working_hours,
    due_at,
    parse_duration,
    sla_for,
    validate_sla,
)
from tingfeng.cli.main import app
from tingfeng.workdays import holiday_name, is_workday

SH = ZoneInfo("Asia/Shanghai")
OFFICE = OfficeHours.parse("08:30-12:00,14:00-17:30")


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=SH)


# --- the calendar the expectations rest on ---------------------------------------------------


def test_spring_festival_and_national_day_2026_on_the_calendar() -> None:
    """The facts the tests below assume, straight from chinese-calendar."""
    festival = [date(2026, 2, 15) + timedelta(days=i) for i in range(9)]  # Sun 15 .. Mon 23
    assert all(not is_workday(d) and holiday_name(d) == "Spring Festival" for d in festival)
    assert is_workday(date(2026, 2, 14)) and date(2026, 2, 14).weekday() == 5  # 调休 Saturday
    assert is_workday(date(2026, 2, 28)) and date(2026, 2, 28).weekday() == 5  # 调休 Saturday
    assert not is_workday(date(2026, 3, 1))  # an ordinary Sunday
    assert is_workday(date(2026, 2, 13)) and is_workday(date(2026, 2, 24))
    national = [date(2026, 10, 1) + timedelta(days=i) for i in range(7)]
    assert all(not is_workday(d) for d in national)
    assert is_workday(date(2026, 9, 20)) and date(2026, 9, 20).weekday() == 6  # 调休 Sunday
    assert is_workday(date(2026, 10, 10)) and date(2026, 10, 10).weekday() == 5  # 调休 Saturday
    assert not is_workday(date(2026, 9, 25))  # Mid-autumn


# --- working days ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "n", "due"),
    [
        # Friday before the festival: the adjusted Saturday counts, the nine days do not.
        ("2026-02-13 10:00", 0, "2026-02-13 10:00"),
        ("2026-02-13 10:00", 1, "2026-02-14 10:00"),
        ("2026-02-13 10:00", 2, "2026-02-24 10:00"),
        ("2026-02-13 10:00", 5, "2026-02-27 10:00"),
        ("2026-02-12 09:15", 3, "2026-02-24 09:15"),
        # On the adjusted working Saturday itself.
        ("2026-02-14 16:00", 1, "2026-02-24 16:00"),
        # During the holiday: counted from the holiday's date, not from the next working day.
        ("2026-02-18 11:00", 1, "2026-02-24 11:00"),
        ("2026-02-23 23:59", 1, "2026-02-24 23:59"),
        # The week after: Saturday 28th works, Sunday 1st March does not.
        ("2026-02-24 10:00", 4, "2026-02-28 10:00"),
        ("2026-02-24 10:00", 5, "2026-03-02 10:00"),
        ("2026-02-27 17:00", 1, "2026-02-28 17:00"),
        # National Day 2026: Sunday 20 September works, Mid-autumn 25-27, 1-7 October, Sat 10th.
        ("2026-09-18 10:00", 1, "2026-09-20 10:00"),
        ("2026-09-24 10:00", 1, "2026-09-28 10:00"),
        ("2026-09-30 10:00", 1, "2026-10-08 10:00"),
        ("2026-09-30 10:00", 3, "2026-10-10 10:00"),
        ("2026-09-30 10:00", 4, "2026-10-12 10:00"),
        ("2026-10-03 08:00", 1, "2026-10-08 08:00"),
    ],
)
def test_add_working_days(start: str, n: int, due: str) -> None:
    assert add_working_days(at(start), n) == at(due)


def test_working_days_are_local_to_the_zone_given() -> None:
    # 2026-02-13 20:00 UTC is already Saturday 14th 04:00 in Shanghai (the adjusted working day).
    start = datetime(2026, 2, 13, 20, 0, tzinfo=UTC)
    due = add_working_days(start, 1, tz="Asia/Shanghai")
    assert due == at("2026-02-24 04:00")
    assert due.tzinfo == SH


def test_working_days_refuse_negative_and_naive() -> None:
    with pytest.raises(DeadlineError, match="at least 0"):
        add_working_days(at("2026-02-13 10:00"), -1)
    with pytest.raises(DeadlineError, match="time zone"):
        add_working_days(datetime(2026, 2, 13, 10, 0), 1)


def test_a_year_unknown_to_the_calendar_falls_back_to_weekends() -> None:
    # 2030 is far past the package's data: only Saturdays and Sundays rest.
    assert add_working_days(at("2030-02-01 10:00"), 1) == at("2030-02-04 10:00")  # Fri -> Mon
    assert add_working_days(at("2030-02-04 10:00"), 5) == at("2030-02-11 10:00")


# --- working hours ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "hours", "due"),
    [
        ("2026-03-03 09:00", 1, "2026-03-03 10:00"),
        ("2026-03-03 11:00", 2, "2026-03-03 15:00"),  # across lunch
        ("2026-03-03 17:00", 1, "2026-03-04 09:00"),  # across a night
        ("2026-03-03 10:00", 2, "2026-03-03 12:00"),  # lands on a span end: stays at noon
        ("2026-03-03 16:30", 1, "2026-03-03 17:30"),  # stays at the end of the day
        ("2026-03-03 07:00", 1, "2026-03-03 09:30"),  # before office hours
        ("2026-03-03 12:30", 1, "2026-03-03 15:00"),  # during lunch
        ("2026-03-03 12:00", 0.5, "2026-03-03 14:30"),  # at a span end
        ("2026-03-03 18:00", 1, "2026-03-04 09:30"),  # after office hours
        ("2026-03-06 17:00", 1.5, "2026-03-09 09:30"),  # Friday evening to Monday
        ("2026-03-07 10:00", 1, "2026-03-09 09:30"),  # on a Saturday
        ("2026-03-03 08:30", 7, "2026-03-03 17:30"),  # one whole day
        ("2026-03-03 08:30", 7.25, "2026-03-04 08:45"),
        ("2026-03-03 09:00", 0, "2026-03-03 09:00"),
        # Around Spring Festival.
        ("2026-02-13 16:30", 2, "2026-02-14 09:30"),  # into the adjusted Saturday
        ("2026-02-14 17:00", 1, "2026-02-24 09:00"),  # over the nine days
        ("2026-02-18 10:00", 4, "2026-02-24 14:30"),  # from inside the holiday
        ("2026-02-13 08:30", 14, "2026-02-14 17:30"),
    ],
)
def test_add_working_hours(start: str, hours: float, due: str) -> None:
    assert add_working_hours(at(start), hours, OFFICE) == at(due)


def test_fractional_hours_keep_whole_seconds() -> None:
    due = add_working_hours(at("2026-03-03 09:00"), 1 / 3, OFFICE)
    assert due == at("2026-03-03 09:20")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "empty"),
        ("08:30", "HH:MM-HH:MM"),
        ("8:30-25:00", "not a time"),
        ("12:00-08:00", "before the end"),
        ("08:00-12:00,11:00-13:00", "overlaps"),
        ("14:00-17:00,08:00-12:00", "overlaps"),
        ("08:00-08:00", "before the end"),
    ],
)
def test_bad_office_hours(text: str, problem: str) -> None:
    with pytest.raises(DeadlineError, match=problem):
        OfficeHours.parse(text)


def test_office_hours_parse_and_print() -> None:
    office = OfficeHours.parse(" 8:30-12:00 , 14:00-17:30")
    assert office.spans == ((510, 720), (840, 1050))
    assert str(office) == "08:30-12:00,14:00-17:30"
    assert office.hours_per_day == 7
    assert str(OfficeHours.parse("00:00-24:00")) == "00:00-24:00"
    with pytest.raises(DeadlineError) as info:
        OfficeHours.parse("12:00-08:00,x")
    assert len(info.value.problems) == 2


def test_round_the_clock_office_counts_working_days_only() -> None:
    office = OfficeHours.parse("00:00-24:00")
    assert add_working_hours(at("2026-02-13 20:00"), 4, office) == at("2026-02-14 00:00")
    assert add_working_hours(at("2026-02-14 20:00"), 8, office) == at("2026-02-24 04:00")


# --- durations -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "amount", "unit"),
    [("90m", 90, "m"), ("1h", 1, "h"), (" 2H ", 2, "h"), ("4wh", 4, "wh"), ("1.5wh", 1.5, "wh"),
     ("1wd", 1, "wd"), ("3d", 3, "d"), ("2 wd", 2, "wd")],
)  # fmt: skip
def test_parse_duration(text: str, amount: float, unit: str) -> None:
    assert parse_duration(text) == Duration(amount, unit)


@pytest.mark.parametrize(
    ("text", "problem"),
    [("", "not valid"), ("1", "not valid"), ("2w", "not valid"), ("h", "not valid"),
     ("-1h", "not valid"), ("0h", "more than 0"), ("1.5wd", "whole"), ("1.5d", "whole"),
     ("900wd", "too long"), (3, "not text")],
)  # fmt: skip
def test_bad_durations(text: str, problem: str) -> None:
    with pytest.raises(DeadlineError, match=problem):
        parse_duration(text)  # type: ignore[arg-type]


def test_duration_apply_per_unit() -> None:
    start = at("2026-02-13 16:00")  # Friday before Spring Festival
    assert parse_duration("90m").apply(start) == at("2026-02-13 17:30")
    assert parse_duration("10h").apply(start) == at("2026-02-14 02:00")  # natural: at night
    assert parse_duration("3d").apply(start) == at("2026-02-16 16:00")  # calendar: in the holiday
    assert parse_duration("2wd").apply(start) == at("2026-02-24 16:00")
    assert parse_duration("4wh").apply(start, OFFICE) == at("2026-02-14 11:00")
    with pytest.raises(DeadlineError, match="office hours"):
        parse_duration("4wh").apply(start)
    assert str(parse_duration("1.50wh")) == "1.5wh"
    assert parse_duration("4wh").label_zh == "4个工作小时"


# --- the SLA table ---------------------------------------------------------------------------


def test_default_sla_covers_every_step_and_level() -> None:
    assert set(DEFAULT_SLA) == set(STEP_LABELS)
    for step, per_level in DEFAULT_SLA.items():
        assert set(per_level) == set(LEVELS), step
        for spec in per_level.values():
            parse_duration(spec)
    assert STEP_LABELS["acknowledge"] == "签收"
    assert sla_for("reply", "critical") == Duration(5, "h")


@pytest.mark.parametrize(
    ("level", "due"),
    [
        ("critical", "2026-02-13 17:00"),  # 1h, natural time
        ("major", "2026-02-13 18:00"),  # 2h, natural time
        ("serious", "2026-02-14 11:00"),  # 4wh: 1.5 h Friday, 2.5 h on the adjusted Saturday
        ("general", "2026-02-14 16:00"),  # 1wd: the adjusted Saturday
    ],
)
def test_due_at_acknowledge_per_level(level: str, due: str) -> None:
    start = at("2026-02-13 16:00")
    result = due_at("acknowledge", level, start, tz="Asia/Shanghai", office_hours=OFFICE)
    assert result == at(due)
    assert result.tzinfo == UTC


def test_due_at_other_steps_and_chinese_names() -> None:
    start = datetime(2026, 2, 13, 8, 0, tzinfo=UTC)  # 16:00 in Shanghai
    kw = {"tz": "Asia/Shanghai", "office_hours": "08:30-12:00,14:00-17:30"}
    assert due_at("reply", "critical", start, **kw) == at("2026-02-13 21:00")
    assert due_at("feedback", "major", start, **kw) == at("2026-02-14 16:00")
    assert due_at("report", "general", start, **kw) == at("2026-02-24 16:00")
    assert due_at("close", "critical", start, **kw) == at("2026-02-27 16:00")
    assert due_at("部门反馈", "特大", start, **kw) == at("2026-02-13 20:00")
    with pytest.raises(DeadlineError) as info:
        due_at("sign", "huge", start, **kw)
    assert len(info.value.problems) == 2


def test_overrides_of_a_case_template() -> None:
    overrides = {"feedback": {"critical": "2h", "一般": "1wd"}, "close": "30wd"}
    start = at("2026-02-13 16:00")
    assert sla_for("feedback", "critical", overrides) == Duration(2, "h")
    assert sla_for("feedback", "general", overrides) == Duration(1, "wd")
    assert sla_for("feedback", "major", overrides) == Duration(1, "wd")  # the default
    assert sla_for("close", "serious", overrides) == Duration(30, "wd")
    assert sla_for("acknowledge", "critical", overrides) == Duration(1, "h")
    due = due_at(
        "feedback", "general", start, tz="Asia/Shanghai", office_hours=OFFICE, overrides=overrides
    )
    assert due == at("2026-02-14 16:00")
    assert validate_sla(overrides) == {
        "feedback": {"critical": "2h", "general": "1wd"},
        "close": dict.fromkeys(LEVELS, "30wd"),
    }
    assert validate_sla(None) == {} and validate_sla({}) == {}


def test_override_validation_lists_every_problem() -> None:
    bad = {
        "approve": {"critical": "1h"},
        "feedback": {"huge": "1h", "critical": "soon", "major": 2},
        "reply": ["1h"],
        "close": {"critical": "1.5wd"},
    }
    with pytest.raises(DeadlineError) as info:
        validate_sla(bad)
    problems = info.value.problems
    assert len(problems) == 6, problems
    text = str(info.value)
    for fragment in ("'approve'", "'huge'", "feedback/critical", "feedback/major", "reply:",
                     "close/critical"):  # fmt: skip
        assert fragment in text
    with pytest.raises(DeadlineError, match="must be an object"):
        validate_sla(["1h"])
    with pytest.raises(DeadlineError, match="twice"):
        validate_sla({"feedback": "1wd", "部门反馈": "2wd"})


# --- properties ------------------------------------------------------------------------------

moments = st.builds(
    lambda d, minute: datetime.combine(d, time()).replace(tzinfo=SH) + timedelta(minutes=minute),
    st.dates(date(2024, 1, 1), date(2026, 10, 31)),
    st.integers(0, 24 * 60 - 1),
)


@settings(max_examples=150, deadline=None)
@given(moments, st.integers(1, 40))
def test_working_days_land_on_working_days_at_the_same_time(start: datetime, n: int) -> None:
    due = add_working_days(start, n)
    assert is_workday(due.date())
    assert due.timetz() == start.timetz()
    counted = sum(
        is_workday(start.date() + timedelta(days=i)) for i in range(1, (due - start).days + 1)
    )
    assert counted == n
    assert add_working_days(start, n - 1) < due


def _office_time_between(a: datetime, b: datetime) -> timedelta:
    """Independent count: office time in [a, b) on working days, day by day, span by span."""
    total, day = timedelta(0), a.date()
    while day <= b.date():
        if is_workday(day):
            midnight = datetime.combine(day, time()).replace(tzinfo=SH)
            for s, e in OFFICE.spans:
                lo = max(a, midnight + timedelta(minutes=s))
                hi = min(b, midnight + timedelta(minutes=e))
                total += max(hi - lo, timedelta(0))
        day += timedelta(days=1)
    return total


@settings(max_examples=150, deadline=None)
@given(moments, st.integers(1, 30 * 60))
def test_working_hours_consume_exactly_office_time(start: datetime, minutes: int) -> None:
    due = add_working_hours(start, minutes / 60, OFFICE)
    assert _office_time_between(start, due) == timedelta(minutes=minutes)
    end_minute = due.hour * 60 + due.minute
    assert is_workday(due.date())
    assert any(s < end_minute <= e for s, e in OFFICE.spans)  # inside a span or at its end


@settings(max_examples=150, deadline=None)
@given(moments, st.integers(0, 20 * 60), st.integers(0, 20 * 60))
def test_working_hours_compose(start: datetime, a: int, b: int) -> None:
    whole = add_working_hours(start, (a + b) / 60, OFFICE)
    if a and b:
        assert add_working_hours(add_working_hours(start, a / 60, OFFICE), b / 60, OFFICE) == whole
    assert add_working_hours(start, a / 60, OFFICE) <= whole


# --- the command line ------------------------------------------------------------------------


def _cli(*args: str):  # type: ignore[no-untyped-def]
    env = {"TINGFENG_CONFIG": "/nonexistent.toml", "TINGFENG_DEFAULT_TIMEZONE": "Asia/Shanghai"}
    # A database that cannot be opened: the command must not need one.
    return CliRunner().invoke(app, ["--db", "sqlite:////nonexistent/dir/x.db", *args], env=env)


@pytest.mark.parametrize(
    ("args", "printed"),
    [
        (["--start", "2026-02-13 10:00", "--working-days", "2"], "2026-02-24 10:00"),
        (["--start", "2026-02-14 16:00", "--working-days", "1"], "2026-02-24 16:00"),
        (["--start", "2026-09-30 10:00", "--working-days", "3"], "2026-10-10 10:00"),
        (["--start", "2026-02-13 16:30", "--working-hours", "2"], "2026-02-14 09:30"),
        (["--start", "2026-03-03 11:00", "--working-hours", "2.5"], "2026-03-03 15:30"),
        (
            [
                "--start",
                "2026-03-03 11:00",
                "--working-hours",
                "1",
                "--office-hours",
                "09:00-11:30",
            ],
            "2026-03-04 09:30",
        ),
        (["--start", "2026-02-13 10:00", "--working-days", "1", "--tz", "UTC"], "2026-02-14 10:00"),
    ],
)
def test_cli_prints_the_due_time(args: list[str], printed: str) -> None:
    result = _cli("deadline", *args)
    assert result.exit_code == 0, result.output
    assert result.stdout == printed + "\n"


def test_cli_explain_lists_skipped_days() -> None:
    result = _cli("deadline", "--start", "2026-02-13 10:00", "--working-days", "2", "--explain")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "2026-02-24 10:00"
    assert "2026-02-14 工作日·调休" in lines
    assert "2026-02-16 休息日·春节" in lines
    assert sum("休息日·春节" in line for line in lines) == 9
    assert not any(line.startswith("2026-02-24") for line in lines[1:])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--start", "2026-02-13", "--working-days", "1"], "YYYY-MM-DD HH:MM"),
        (["--start", "tomorrow 10:00", "--working-days", "1"], "YYYY-MM-DD HH:MM"),
        (["--start", "2026-02-30 10:00", "--working-days", "1"], "YYYY-MM-DD HH:MM"),
        (["--start", "2026-02-13 10:00"], "exactly one"),
        (["--start", "2026-02-13 10:00", "--working-days", "1", "--working-hours", "1"], "exactly"),
        (["--start", "2026-02-13 10:00", "--working-days", "-1"], "at least 0"),
        (["--start", "2026-02-13 10:00", "--working-hours", "1", "--tz", "Mars/Base"], "time zone"),
        (
            ["--start", "2026-02-13 10:00", "--working-hours", "1", "--office-hours", "9-5"],
            "HH:MM",
        ),
    ],
)
def test_cli_refuses_bad_input_with_exit_2(args: list[str], message: str) -> None:
    result = _cli("deadline", *args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert result.stdout == ""
