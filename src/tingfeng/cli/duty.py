"""`tingfeng people …` (the office's people and departments) and `tingfeng duty …` (the roster)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import typer

from tingfeng.cli.main import app, fail, settings_of
from tingfeng.cli.main import dump_json as _dump
from tingfeng.cli.main import in_read as _read
from tingfeng.cli.main import in_write as _write
from tingfeng.cli.main import local_time as _local
from tingfeng.cli.main import print_table as _table

user_app = typer.Typer(help="Users who sign in: add them with a role and department.")
department_app = typer.Typer(help="Departments (office → bureaus/towns → units).")
people_app = typer.Typer(
    help="People of the office (人员), their roles and departments (科室).", no_args_is_help=True
)
duty_app = typer.Typer(
    help="The duty roster (值班): shifts, rotations, swaps, shift reports and zero reports.",
    no_args_is_help=True,
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _tz(ctx: typer.Context) -> str:
    return str(settings_of(ctx).default_timezone)


def _at(ctx: typer.Context, value: str | None) -> datetime:
    """`--at` as an aware time (local time zone if none is given), or now."""
    from zoneinfo import ZoneInfo

    if not value:
        return datetime.now(ZoneInfo(_tz(ctx)))
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        fail(f"--at {value!r} is not a time: use e.g. 2026-11-23T08:30 or 2026-11-23T08:30+08:00")
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=ZoneInfo(_tz(ctx)))


def _user_ids(conn: Any, refs: str | None) -> list[int]:
    from tingfeng.office.people import find_user

    return [find_user(conn, r).id for r in (refs or "").split(",") if r.strip()]


# --- people ----------------------------------------------------------------------------------


@people_app.command("add")
def people_add(
    ctx: typer.Context,
    username: Annotated[str, typer.Argument(help="Sign-in name, e.g. zhangsan.")],
    name: Annotated[str | None, typer.Option("--name", help="Display name, e.g. 张三.")] = None,
    role: Annotated[
        str, typer.Option(help="admin, approver, handler, analyst, liaison or viewer.")
    ] = "analyst",
    department: Annotated[str | None, typer.Option(help="Department (科室) by name or id.")] = None,
    email: Annotated[str | None, typer.Option(help="E-mail address for alerts.")] = None,
    phone: Annotated[str | None, typer.Option(help="Mobile phone number.")] = None,
) -> None:
    """Add a person to the office."""
    from tingfeng.office.people import add_user

    person = _write(
        ctx,
        lambda conn: add_user(
            conn, username, name, role=role, department=department, email=email, phone=phone
        ),
    )
    typer.echo(f"user {person.id} added: {person.username} ({person.display_name})")


@people_app.command("list")
def people_list(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Everyone in the office with role and department."""
    from tingfeng.office.people import ROLES, list_departments, list_users

    users, departments = _read(ctx, lambda c: (list_users(c), list_departments(c)))
    if as_json:
        _dump([u.as_dict() for u in users])
        return
    if not users:
        typer.echo("还没有人员：tingfeng people add USERNAME --name 姓名")
        return
    dept = {d["id"]: d["name"] for d in departments}
    _table(
        ["编号", "用户名", "姓名", "角色", "科室", "邮箱", "电话", "状态"],
        [
            [
                u.id,
                u.username,
                u.display_name,
                ROLES.get(u.role, u.role),
                dept.get(u.department_id, ""),
                u.email,
                u.phone,
                "在岗" if u.active else "停用",
            ]
            for u in users
        ],
    )


@people_app.command("departments")
def people_departments(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """The departments, with the one each belongs to."""
    from tingfeng.office.people import list_departments

    departments = _read(ctx, list_departments)
    if as_json:
        _dump(departments)
        return
    names = {d["id"]: d["name"] for d in departments}
    _table(
        ["编号", "名称", "上级"],
        [[d["id"], d["name"], names.get(d["parent_id"], "")] for d in departments],
    )


@people_app.command("department-add")
def people_department_add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Name, e.g. 宣传科.")],
    parent: Annotated[str | None, typer.Option(help="The department above, by name or id.")] = None,
) -> None:
    """Add a department."""
    from tingfeng.office.people import add_department

    did = _write(ctx, lambda conn: add_department(conn, name, parent))
    typer.echo(f"department {did} added: {name}")


# --- shifts ----------------------------------------------------------------------------------


def _report_to(conn: Any, specs: list[str]) -> dict[str, Any] | None:
    """`role:approver`, `user:zhangsan`, `department:宣传科`, `on-duty` (repeatable, or a,b)."""
    from tingfeng.alerts.duty import DutyError
    from tingfeng.office.people import find_department, find_user

    if not specs:
        return None
    out: dict[str, Any] = {}
    for spec in (s.strip() for item in specs for s in item.split(",") if s.strip()):
        kind, _, value = spec.partition(":")
        if kind == "on-duty" and not value:
            out["on_duty"] = True
        elif kind == "role" and value:
            out.setdefault("roles", []).append(value)
        elif kind == "user" and value:
            out.setdefault("user_ids", []).append(find_user(conn, value).id)
        elif kind == "department" and value:
            out.setdefault("department_ids", []).append(find_department(conn, value))
        else:
            raise DutyError(
                f"--report-to {spec!r}: use role:ROLE, user:USER, department:DEPT or on-duty."
            )
    return out


@duty_app.command("shift-add")
def duty_shift_add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="A name, e.g. 白班, 夜班, 节假日值班.")],
    start: Annotated[str, typer.Option("--start", help="Local start time, HH:MM.")],
    hours: Annotated[float, typer.Option("--hours", help="Length in hours (at most 48).")],
    a: Annotated[
        str, typer.Option("--a", help="Role A (主班) in rotation order: user names or ids, a,b,c.")
    ],
    first: Annotated[str, typer.Option("--from", help="First date, YYYY-MM-DD.")],
    days: Annotated[
        str, typer.Option("--days", help="all, workdays or restdays (Chinese calendar).")
    ] = "all",
    b: Annotated[str | None, typer.Option("--b", help="Role B (副班), optional.")] = None,
    report_to: Annotated[
        list[str],
        typer.Option(
            "--report-to",
            help="Who is told when a report is missing: role:approver (default), user:NAME, "
            "department:NAME, on-duty (repeatable).",
        ),
    ] = [],  # noqa: B006
) -> None:
    """Add a recurring shift with its rotation."""
    from tingfeng.alerts.duty import add_shift

    def work(conn: Any) -> int:
        rotation = {"A": _user_ids(conn, a), "B": _user_ids(conn, b)}
        return add_shift(
            conn,
            name,
            start,
            hours,
            days=days,
            rotation=rotation,
            starts_on=first,
            report_to=_report_to(conn, report_to),
        )

    shift_id = _write(ctx, work)
    typer.echo(f"shift {shift_id} added: {name}")


@duty_app.command("shift-edit")
def duty_shift_edit(
    ctx: typer.Context,
    shift: Annotated[str, typer.Argument(help="The shift, by name or id.")],
    name: Annotated[str | None, typer.Option("--name", help="A new name.")] = None,
    start: Annotated[str | None, typer.Option("--start", help="Local start time, HH:MM.")] = None,
    hours: Annotated[float | None, typer.Option("--hours", help="Length in hours.")] = None,
    days: Annotated[str | None, typer.Option("--days", help="all, workdays, restdays.")] = None,
    a: Annotated[str | None, typer.Option("--a", help="New role A rotation.")] = None,
    b: Annotated[str | None, typer.Option("--b", help="New role B rotation ('' for none).")] = None,
    first: Annotated[str | None, typer.Option("--from", help="New first date.")] = None,
    active: Annotated[
        bool | None, typer.Option("--active/--inactive", help="Keep the shift or pause it.")
    ] = None,
) -> None:
    """Change a shift. A new rotation re-deals every date, past ones too (swaps stay)."""
    from tingfeng.alerts.duty import find_shift, get_shift, update_shift

    def work(conn: Any) -> int:
        shift_id = find_shift(conn, shift)
        values: dict[str, Any] = {
            k: v
            for k, v in {
                "name": name,
                "starts_at": start,
                "hours": hours,
                "days": days,
                "starts_on": first,
                "active": active,
            }.items()
            if v is not None
        }
        if a is not None or b is not None:
            rotation = dict(get_shift(conn, shift_id)["rotation"])
            if a is not None:
                rotation["A"] = _user_ids(conn, a)
            if b is not None:
                rotation["B"] = _user_ids(conn, b)
            values["rotation"] = rotation
        update_shift(conn, shift_id, **values)
        return shift_id

    typer.echo(f"shift {_write(ctx, work)} changed")


@duty_app.command("shift-remove")
def duty_shift_remove(
    ctx: typer.Context, shift: Annotated[str, typer.Argument(help="By name or id.")]
) -> None:
    """Remove a shift with its swaps and reports (`shift-edit --inactive` keeps them)."""
    from tingfeng.alerts.duty import find_shift, remove_shift

    def work(conn: Any) -> int:
        shift_id = find_shift(conn, shift)
        remove_shift(conn, shift_id)
        return shift_id

    typer.echo(f"shift {_write(ctx, work)} removed")


@duty_app.command("shifts")
def duty_shifts(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Every shift with its times, days and rotation."""
    from tingfeng.alerts.duty import DAY_KINDS, list_shifts
    from tingfeng.office.people import list_users

    shifts, users = _read(ctx, lambda c: (list_shifts(c), list_users(c)))
    if as_json:
        _dump(shifts)
        return
    if not shifts:
        typer.echo(
            "还没有班次：tingfeng duty shift-add NAME --start 08:00 --hours 12 --a USER --from DATE"
        )
        return
    names = {u.id: u.username for u in users}

    def people(ids: list[int] | None) -> str:
        return ",".join(names.get(i, str(i)) for i in ids or [])

    _table(
        ["编号", "班次", "开始", "时长", "日期", "主班轮换", "副班轮换", "起始日", "状态"],
        [
            [
                s["id"],
                s["name"],
                s["starts_at"],
                f"{s['hours']:g}小时",
                DAY_KINDS.get(s["days"], s["days"]),
                people(s["rotation"].get("A")),
                people(s["rotation"].get("B")),
                s["starts_on"],
                "启用" if s["active"] else "停用",
            ]
            for s in shifts
        ],
    )


# --- the roster ------------------------------------------------------------------------------


def _day_label(day: dict[str, Any]) -> str:
    kind = "工作日" if day["workday"] else "休息日"
    if day["holiday"]:
        kind += f"·{day['holiday']}"
    elif day["workday"] and day["weekday"] in ("周六", "周日"):
        kind += "·调休"
    return kind


@duty_app.command("roster")
def duty_roster(
    ctx: typer.Context,
    first: Annotated[str | None, typer.Option("--from", help="First date (default today).")] = None,
    days: Annotated[int, typer.Option("--days", help="How many days.")] = 7,
    as_json: JsonOpt = False,
) -> None:
    """Who is on duty, date by date, with holidays and working weekends marked."""
    from tingfeng.alerts.duty import parse_date, roster

    tz = _tz(ctx)

    def work(conn: Any) -> list[dict[str, Any]]:
        start = parse_date(first, "--from date") if first else _at(ctx, None).date()
        return roster(conn, start, days, tz)

    out = _read(ctx, work)
    if as_json:
        _dump(out)
        return
    rows: list[list[Any]] = []
    for day in out:
        label = [day["date"], day["weekday"], _day_label(day)]
        if not day["shifts"]:
            rows.append([*label, "-", "", "", "", ""])
        for s in day["shifts"]:
            m = s["members"]

            def who(role: str, m: dict[str, Any] = m) -> str:
                if role not in m:
                    return ""
                return m[role]["name"] + ("（换班）" if m[role]["swapped"] else "")

            report = {"zero": "零报告", "notable": "已报"}.get(s["report"] or "", "")
            rows.append(
                [*label, s["name"], f"{s['start'][11:16]}-{s['end'][11:16]}", who("A"), who("B"),
                 report]
            )  # fmt: skip
            label = ["", "", ""]
    _table(["日期", "星期", "类型", "班次", "时间", "主班", "副班", "报告"], rows)


@duty_app.command("now")
def duty_now(
    ctx: typer.Context,
    at: Annotated[str | None, typer.Option("--at", help="Another time than now (ISO).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Who is on duty now, and the handover notes (交接班记录) to read."""
    from tingfeng.alerts.duty import DUTY_ROLES, handover_for, on_duty
    from tingfeng.office.people import list_users

    moment, tz = _at(ctx, at), _tz(ctx)
    duty, notes, users = _read(
        ctx, lambda c: (on_duty(c, moment, tz), handover_for(c, moment, tz), list_users(c))
    )
    people = {u.id: u for u in users}
    entries = [
        {
            "user_id": d.user_id,
            "username": people[d.user_id].username if d.user_id in people else None,
            "name": people[d.user_id].display_name if d.user_id in people else None,
            "phone": people[d.user_id].phone if d.user_id in people else None,
            "role": d.role,
            **d.occurrence.as_dict(),
        }
        for d in duty
    ]
    if as_json:
        _dump({"at": moment.isoformat(), "on_duty": entries, "handover": notes})
        return
    typer.echo(f"值班人员（{_local(ctx, moment)}）：")
    if not entries:
        typer.echo("  当前无人值班。")
    else:
        _table(
            ["班次", "岗位", "姓名", "电话", "至"],
            [
                [
                    e["shift_name"],
                    DUTY_ROLES[e["role"]],
                    e["name"],
                    e["phone"],
                    _local(ctx, e["end"]),
                ]
                for e in entries
            ],
        )
    typer.echo("交接班记录：")
    if not notes:
        typer.echo("  没有交接班记录。")
    for n in notes:
        kind = "零报告" if n["kind"] == "zero" else f"值班报告（{len(n['items'])} 项）"
        typer.echo(f"  [{n['shift_name']} {n['on_date']}] {kind} · {n['user_name'] or '未署名'}")
        for item in n["items"]:
            typer.echo(f"    - {item['text']}")
        typer.echo(f"    交接：{n['handover'] or '无交接事项'}")


@duty_app.command("swap")
def duty_swap(
    ctx: typer.Context,
    shift: Annotated[str, typer.Argument(help="The shift, by name or id.")],
    on_date: Annotated[str, typer.Argument(help="The date the occurrence starts, YYYY-MM-DD.")],
    user: Annotated[str, typer.Argument(help="Who takes it, by user name or id.")],
    role: Annotated[str, typer.Option("--role", help="A (主班) or B (副班).")] = "A",
    reason: Annotated[str | None, typer.Option("--reason", help="Why (请假, 调休…).")] = None,
    by: Annotated[str | None, typer.Option("--by", help="Who arranges the swap.")] = None,
) -> None:
    """换班: someone else takes one occurrence of a shift (again: replaces the earlier swap)."""
    from tingfeng.alerts.duty import find_shift, parse_date, swap
    from tingfeng.office.people import find_user

    def work(conn: Any) -> str:
        person = find_user(conn, user)
        swap(
            conn,
            find_shift(conn, shift),
            parse_date(on_date),
            role,
            person.id,
            reason=reason,
            by=by or "cli",
        )
        return person.display_name

    typer.echo(f"{shift} {on_date} role {role}: {_write(ctx, work)}")


@duty_app.command("report")
def duty_report(
    ctx: typer.Context,
    shift: Annotated[str, typer.Argument(help="The shift, by name or id.")],
    on_date: Annotated[str, typer.Argument(help="The date the occurrence started, YYYY-MM-DD.")],
    zero: Annotated[bool, typer.Option("--zero", help="零报告: nothing notable.")] = False,
    item: Annotated[list[str], typer.Option("--item", help="A notable item (repeatable).")] = [],  # noqa: B006
    handover: Annotated[
        str, typer.Option("--handover", help="Handover note for the next shift (交接班记录).")
    ] = "",
    user: Annotated[str | None, typer.Option("--user", help="Who files it (name or id).")] = None,
    replace: Annotated[
        bool, typer.Option("--replace", help="Replace the report filed already.")
    ] = False,
) -> None:
    """File a shift's report: --item … for notable items, or --zero (零报告)."""
    from tingfeng.alerts.duty import file_report, find_shift, parse_date
    from tingfeng.office.people import find_user

    if zero == bool(item):
        fail("give --zero (nothing notable) or at least one --item, not both and not neither")
    now, tz = _at(ctx, None), _tz(ctx)

    def work(conn: Any) -> int:
        return file_report(
            conn,
            find_shift(conn, shift),
            parse_date(on_date),
            kind="zero" if zero else "notable",
            items=item,
            handover=handover,
            user_id=find_user(conn, user).id if user else None,
            now=now,
            tz=tz,
            replace=replace,
        )

    report_id = _write(ctx, work)
    typer.echo(f"report {report_id} filed: {shift} {on_date} ({'零报告' if zero else '值班报告'})")


@duty_app.command("missing")
def duty_missing(
    ctx: typer.Context,
    at: Annotated[str | None, typer.Option("--at", help="Another time than now (ISO).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Shifts of the last 7 days that ended without their report (after the grace minutes)."""
    from tingfeng.alerts.duty import missing_reports
    from tingfeng.office.people import list_users

    moment, tz = _at(ctx, at), _tz(ctx)
    grace = settings_of(ctx).duty_report_grace_minutes
    missing, users = _read(ctx, lambda c: (missing_reports(c, moment, tz, grace), list_users(c)))
    names = {u.id: u.display_name for u in users}
    if as_json:
        _dump([o.as_dict() for o in missing])
        return
    if not missing:
        typer.echo("没有缺报的值班报告。")
        return
    _table(
        ["班次", "日期", "结束", "主班"],
        [
            [o.shift_name, o.on_date, _local(ctx, o.end), names.get(o.members.get("A") or 0)]
            for o in missing
        ],
    )


# --- users and departments (the contract: user add, department add) ---------------------------


@user_app.command("add")
def user_add(
    ctx: typer.Context,
    username: Annotated[str, typer.Option(help="Sign-in name, e.g. zhangsan.")],
    password: Annotated[
        str, typer.Option(help="At least 8 characters; only its argon2 hash is kept.")
    ],
    role: Annotated[
        str,
        typer.Option(
            help="admin, approver (领导), handler (经办人), analyst (监测员), liaison, viewer."
        ),
    ],
    department: Annotated[str | None, typer.Option(help="Department by name or id.")] = None,
    name: Annotated[str | None, typer.Option("--name", help="Display name, e.g. 张三.")] = None,
    email: Annotated[str | None, typer.Option(help="E-mail address for alerts.")] = None,
    phone: Annotated[str | None, typer.Option(help="Mobile phone number.")] = None,
) -> None:
    """Add a user who can sign in."""
    from tingfeng import audit
    from tingfeng.office.people import MIN_PASSWORD, OfficeError, add_user, set_password

    if len(password) < MIN_PASSWORD:
        fail(f"A password needs at least {MIN_PASSWORD} characters.")

    def work(conn: Any) -> Any:
        person = add_user(
            conn, username, name, role=role, department=department, email=email, phone=phone
        )
        try:
            set_password(conn, person.id, password)
        except OfficeError:
            raise
        audit.record(conn, None, "settings.user_add", f"user:{person.id}",
                     {"username": person.username, "role": person.role,
                      "department_id": person.department_id})  # fmt: skip
        return person

    person = _write(ctx, work)
    typer.echo(f"user {person.id} added: {person.username} ({person.role})")


@user_app.command("passwd")
def user_passwd(
    ctx: typer.Context,
    username: Annotated[str, typer.Argument(help="User name.")],
    password: Annotated[str, typer.Option(help="The new password (at least 8 characters).")],
) -> None:
    """Set a user's password."""
    from tingfeng import audit
    from tingfeng.office.people import find_user, set_password

    def work(conn: Any) -> None:
        person = find_user(conn, username)
        set_password(conn, person.id, password)
        audit.record(conn, None, "settings.user_password", f"user:{person.id}", {})

    _write(ctx, work)
    typer.echo(f"password of {username} changed")


@department_app.command("add")
def department_add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Department name, e.g. 城管局.")],
    parent: Annotated[str | None, typer.Option(help="The department it belongs to.")] = None,
) -> None:
    """Add a department, under another one if given."""
    from tingfeng import audit
    from tingfeng.office.people import add_department

    def work(conn: Any) -> int:
        did = add_department(conn, name, parent)
        audit.record(conn, None, "settings.department_add", f"department:{did}",
                     {"name": name, "parent": parent})  # fmt: skip
        return did

    did = _write(ctx, work)
    typer.echo(f"department {did} added: {name}")


@user_app.command("token-add")
def user_token_add(
    ctx: typer.Context,
    username: Annotated[str, typer.Argument(help="Whose token: it acts with their role.")],
    name: Annotated[str, typer.Option(help="What uses it, e.g. 日报脚本.")],
    days: Annotated[int | None, typer.Option(help="Expires after this many days.")] = None,
) -> None:
    """Issue a personal API token (send it as `Authorization: Bearer tf_…`); shown once."""
    from datetime import UTC, datetime

    from tingfeng.office.people import find_user
    from tingfeng.office.signin import issue_api_token

    token = _write(
        ctx, lambda c: issue_api_token(c, find_user(c, username), name, datetime.now(UTC),
                                       days=days)
    )  # fmt: skip
    typer.echo(token)
    typer.echo("keep it now: it is not shown again", err=True)


@user_app.command("unlock")
def user_unlock(
    ctx: typer.Context, username: Annotated[str, typer.Argument(help="User name.")]
) -> None:
    """Lift a lock-out after too many wrong passwords."""
    from sqlalchemy import update

    from tingfeng import audit
    from tingfeng.db.models import User
    from tingfeng.office.people import find_user

    def work(conn: Any) -> None:
        person = find_user(conn, username)
        conn.execute(
            update(User).where(User.id == person.id).values(failed_logins=0, locked_until=None)
        )
        audit.record(conn, None, "user.unlock", f"user:{person.id}", {})

    _write(ctx, work)
    typer.echo(f"{username} unlocked")


# The same listings as `people list` and `people departments`.
user_app.command("list")(people_list)
department_app.command("list")(people_departments)

app.add_typer(people_app, name="people")
app.add_typer(duty_app, name="duty")
app.add_typer(user_app, name="user")
app.add_typer(department_app, name="department")
