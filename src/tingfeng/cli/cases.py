"""Commands for cases (`case …`) and the audit log (`audit`).

Whoever runs the command acts as the person named with `--as`: the same role and department
checks apply as on the web, and the audit log records that person.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from tingfeng.cli.main import app, fail, in_read, in_write, print_table, settings_of
from tingfeng.cli.main import dump_json as _dump
from tingfeng.cli.main import local_time as _local

case_app = typer.Typer(help="Cases (舆情处理单): open, move through their states, reply, close.")
audit_app = typer.Typer(help="The audit log: every action, chained by hashes.")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]
AsOpt = Annotated[
    str, typer.Option("--as", help="Who acts: a user name (see `tingfeng people list`).")
]


def _actor(conn: Any, username: str) -> Any:
    from tingfeng.office.people import find_user

    return find_user(conn, username)


def _tz(ctx: typer.Context) -> str:
    return settings_of(ctx).default_timezone


# --- cases -----------------------------------------------------------------------------------


@case_app.command("open")
def case_open(
    ctx: typer.Context,
    actor: AsOpt,
    title: Annotated[
        str, typer.Option(help="What the matter is (taken from the alert/event/post if not given).")
    ] = "",
    origin: Annotated[
        str,
        typer.Option(
            help="online, assigned (督办件), onsite (现场/媒体来电), liaison, board, manual."
        ),
    ] = "manual",
    alert: Annotated[int | None, typer.Option(help="Open from this alert.")] = None,
    event: Annotated[int | None, typer.Option(help="Open from this event.")] = None,
    post: Annotated[int | None, typer.Option(help="Open from this post.")] = None,
    summary: Annotated[str, typer.Option(help="Summary of the matter.")] = "",
    level: Annotated[
        str | None, typer.Option(help="一般/较大/重大/特大 (default: from the alert or event).")
    ] = None,
    template: Annotated[str | None, typer.Option(help="Case template by name or id.")] = None,
    department: Annotated[str | None, typer.Option(help="Department, if already known.")] = None,
    office: Annotated[str | None, typer.Option(help="督办件: the superior office.")] = None,
    instructions: Annotated[str | None, typer.Option(help="督办件: the instructions.")] = None,
    deadline: Annotated[
        str | None, typer.Option(help="督办件: the superior's deadline, YYYY-MM-DD HH:MM.")
    ] = None,
    caller: Annotated[str | None, typer.Option(help="现场/来电: who called.")] = None,
    outlet: Annotated[str | None, typer.Option(help="现场/来电: which outlet.")] = None,
    question: Annotated[str | None, typer.Option(help="现场/来电: what they asked.")] = None,
    liaison: Annotated[str | None, typer.Option(help="联络员报送: who reported it.")] = None,
    message: Annotated[
        int | None, typer.Option(help="留言板: the board message this case answers.")
    ] = None,
) -> None:
    """Open a case (舆情处理单)."""
    from tingfeng.cases.service import get_case, open_case

    detail = {"office": office, "instructions": instructions, "deadline": deadline,
              "caller": caller, "outlet": outlet, "question": question, "liaison": liaison}  # fmt: skip
    settings = settings_of(ctx)

    def work(conn: Any) -> Any:
        cid = open_case(
            conn, _actor(conn, actor), settings, title=title, origin=origin, summary=summary,
            origin_detail=detail, alert_id=alert, event_id=event, post_id=post,
            template=template, level=level, department=department, board_message_id=message,
        )  # fmt: skip
        return get_case(conn, cid)

    case = in_write(ctx, work)
    typer.echo(f"case {case.number} opened (id {case.id}): {case.title}")
    if case.suggested_department_id:
        suggestion = (case.routing or {}).get("suggestions", [{}])[0]
        typer.echo(
            f"  suggested department: {suggestion.get('department')} "
            f"({'；'.join(suggestion.get('reasons', []))})"
        )


@case_app.command("list")
def case_list(
    ctx: typer.Context,
    actor: Annotated[
        str | None, typer.Option("--as", help="Only the cases this user may see.")
    ] = None,
    state: Annotated[str | None, typer.Option(help="Only cases in this state.")] = None,
    open_only: Annotated[bool, typer.Option("--open", help="Only cases still in hand.")] = False,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 100,
    as_json: JsonOpt = False,
) -> None:
    """Cases, newest first."""
    from tingfeng.cases.detail import list_cases

    rows = in_read(
        ctx,
        lambda c: list_cases(
            c, _actor(c, actor) if actor else None, state=state, open_only=open_only, limit=limit
        ),
    )
    if as_json:
        _dump(rows)
        return
    if not rows:
        typer.echo("没有处理单：tingfeng case open --as USER --title …")
        return
    print_table(
        ["编号", "标题", "等级", "来源", "状态", "责任单位"],
        [[r["number"], r["title"][:30], r["level_label"], r["origin_label"], r["state_label"],
          r["department"] or ""] for r in rows],
    )  # fmt: skip


@case_app.command("show")
def case_show(
    ctx: typer.Context,
    case: Annotated[str, typer.Argument(help="Case id or number (2026-0001).")],
    actor: Annotated[str | None, typer.Option("--as", help="Show what this user may do.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """A case with its history, tasks, deadlines, replies and evidence."""
    from tingfeng.cases.detail import case_detail

    d = in_read(ctx, lambda c: case_detail(c, _actor(c, actor) if actor else None, case))
    if as_json:
        _dump(d)
        return
    typer.echo(f"{d['number']}  {d['title']}")
    typer.echo(f"  状态 {d['state_label']}  等级 {d['level_label']}  来源 {d['origin_label']}  "
               f"责任单位 {d['department'] or '未交办'}")  # fmt: skip
    if d["suggested_department"]:
        typer.echo(f"  建议单位 {d['suggested_department']}")
    if d["handling"]:
        typer.echo(f"  处置建议 {d['handling']}")
    for dl in d["deadlines"]:
        flag = (
            "超期"
            if dl["overdue"]
            else {"met": "已完成", "open": "进行中", "cancelled": "取消"}[dl["status"]]
        )
        typer.echo(f"  时限 {dl['label']} {_local(ctx, dl['due_at'])} {flag}")
    for t in d["tasks"]:
        typer.echo(f"  任务 {t['id']} {t['title']} {t['status']} {_local(ctx, t['due_at'])}")
    for r in d["replies"]:
        typer.echo(f"  回复 {r['id']} {r['stage_label']} v{r['version']} {r['state_label']} "
                   f"({r['approvals']}/{r['approvals_needed']})")  # fmt: skip
    for e in d["evidence"]:
        typer.echo(f"  证据 {e.get('number')} {e.get('url')}")
    for h in d["history"]:
        typer.echo(f"  {_local(ctx, h['at'])} {h['by']} {h['action']} {h['from']}→{h['to']} "
                   f"{h['reason']}".rstrip())  # fmt: skip
    if d["actions"]:
        typer.echo("  可执行：" + "、".join(f"{a['label']}({a['name']})" for a in d["actions"]))


@case_app.command("act")
def case_act(
    ctx: typer.Context,
    case: Annotated[str, typer.Argument(help="Case id or number.")],
    action: Annotated[str, typer.Argument(help="assess, approve_handling, assign, accept, close…")],
    actor: AsOpt,
    reason: Annotated[
        str, typer.Option(help="Why (needed to return, reject, dismiss, reopen).")
    ] = "",
    level: Annotated[str | None, typer.Option(help="assess: the level confirmed.")] = None,
    handling: Annotated[str, typer.Option(help="assess: the handling proposed.")] = "",
    department: Annotated[
        str | None, typer.Option(help="assign: the department (default: the suggested one).")
    ] = None,
    result: Annotated[str, typer.Option(help="close: the result (处置结果).")] = "",
) -> None:
    """Take an action on a case (see docs/cases.md for the states and who may do what)."""
    from tingfeng.cases.service import act
    from tingfeng.cases.states import STATES

    settings = settings_of(ctx)
    row = in_write(
        ctx,
        lambda c: act(c, _actor(c, actor), settings, case, action.replace("-", "_"),
                      reason=reason, level=level, handling=handling, department=department,
                      result=result),
    )  # fmt: skip
    typer.echo(f"case {row.number}: {STATES[row.state]} ({row.state})")


@case_app.command("progress")
def case_progress(
    ctx: typer.Context,
    case: Annotated[str, typer.Argument(help="Case id or number.")],
    text: Annotated[str, typer.Argument(help="The progress note.")],
    actor: AsOpt,
) -> None:
    """Add a progress note (shown in the ledger)."""
    from tingfeng.cases.tasks import add_progress

    in_write(ctx, lambda c: add_progress(c, _actor(c, actor), case, text))
    typer.echo("progress noted")


@case_app.command("task")
def case_task(
    ctx: typer.Context,
    case: Annotated[str, typer.Argument(help="Case id or number.")],
    title: Annotated[str, typer.Argument(help="The task, e.g. 现场核实.")],
    actor: AsOpt,
    kind: Annotated[str, typer.Option(help="verify, contact, materials or other.")] = "other",
    assignee: Annotated[str | None, typer.Option(help="Who does it (user name).")] = None,
    due: Annotated[str | None, typer.Option(help="Due in: 2h, 4wh, 1wd, 3d.")] = None,
) -> None:
    """Add a task to a case."""
    from tingfeng.cases.tasks import add_task

    settings = settings_of(ctx)
    tid = in_write(
        ctx, lambda c: add_task(c, _actor(c, actor), settings, case, title, kind=kind,
                                assignee=assignee, due=due)
    )  # fmt: skip
    typer.echo(f"task {tid} added")


@case_app.command("task-done")
def case_task_done(
    ctx: typer.Context,
    task: Annotated[int, typer.Argument(help="Task id.")],
    actor: AsOpt,
    note: Annotated[str, typer.Option(help="What was found or done.")] = "",
) -> None:
    """Mark a task done."""
    from tingfeng.cases.tasks import complete_task

    in_write(ctx, lambda c: complete_task(c, _actor(c, actor), task, note=note))
    typer.echo(f"task {task} done")


@case_app.command("capture")
def case_capture(
    ctx: typer.Context,
    case: Annotated[str, typer.Argument(help="Case id or number.")],
    actor: AsOpt,
    limit: Annotated[int, typer.Option(min=1, max=50, help="Key posts to capture at most.")] = 5,
) -> None:
    """取证: keep the pages of the case's key posts (WARC + full-page screenshot, SHA-256)."""
    from tingfeng.cases.evidence import capture_case_evidence
    from tingfeng.cli.main import engine_of, refusals
    from tingfeng.office.people import find_user

    settings = settings_of(ctx)
    engine = engine_of(ctx)
    with refusals():
        with engine.connect() as conn:
            who = find_user(conn, actor)
        done = capture_case_evidence(engine, settings, who, case, limit=limit)
    if not done:
        typer.echo("nothing to capture: no key post with a web address, or all captured already")
    for d in done:
        status = f"evidence {d['evidence_id']}" if not d["error"] else f"failed: {d['error']}"
        typer.echo(f"post {d['post_id']}: {status}")
    if any(d["error"] for d in done):
        raise typer.Exit(1)


# --- replies ---------------------------------------------------------------------------------


@case_app.command("reply")
def case_reply(
    ctx: typer.Context,
    case: Annotated[str, typer.Argument(help="Case id or number.")],
    text: Annotated[str, typer.Argument(help="The reply's text.")],
    actor: AsOpt,
    stage: Annotated[str, typer.Option(help="facts, progress, result or point.")] = "facts",
    post: Annotated[int | None, typer.Option(help="point: the post it answers.")] = None,
    submit: Annotated[bool, typer.Option(help="Submit it for approval at once.")] = False,
) -> None:
    """Draft a reply (回复)."""
    from tingfeng.cases.replies import draft_reply, submit_reply

    settings = settings_of(ctx)

    def work(conn: Any) -> int:
        who = _actor(conn, actor)
        rid = draft_reply(conn, who, case, text, stage=stage, in_reply_to_post_id=post)
        if submit:
            submit_reply(conn, who, settings, rid)
        return rid

    rid = in_write(ctx, work)
    typer.echo(f"reply {rid} drafted" + (" and submitted" if submit else ""))


@case_app.command("reply-revise")
def case_reply_revise(
    ctx: typer.Context,
    reply: Annotated[int, typer.Argument(help="Reply id.")],
    text: Annotated[str, typer.Argument(help="The new text.")],
    actor: AsOpt,
    note: Annotated[str, typer.Option(help="What changed.")] = "",
) -> None:
    """A new version of a draft or returned reply."""
    from tingfeng.cases.replies import revise_reply

    version = in_write(ctx, lambda c: revise_reply(c, _actor(c, actor), reply, text, note=note))
    typer.echo(f"reply {reply}: version {version}")


@case_app.command("reply-submit")
def case_reply_submit(
    ctx: typer.Context, reply: Annotated[int, typer.Argument(help="Reply id.")], actor: AsOpt
) -> None:
    """Submit a draft for approval."""
    from tingfeng.cases.replies import submit_reply

    settings = settings_of(ctx)
    in_write(ctx, lambda c: submit_reply(c, _actor(c, actor), settings, reply))
    typer.echo(f"reply {reply} submitted")


@case_app.command("reply-approve")
def case_reply_approve(
    ctx: typer.Context,
    reply: Annotated[int, typer.Argument(help="Reply id.")],
    actor: AsOpt,
    note: Annotated[str, typer.Option(help="Remarks.")] = "",
) -> None:
    """Approve a submitted reply at the next level."""
    from tingfeng.cases.replies import approve_reply

    settings = settings_of(ctx)
    final = in_write(ctx, lambda c: approve_reply(c, _actor(c, actor), settings, reply, note=note))
    typer.echo(
        f"reply {reply} approved" + ("" if final else "; the next level is still to approve")
    )


@case_app.command("reply-return")
def case_reply_return(
    ctx: typer.Context,
    reply: Annotated[int, typer.Argument(help="Reply id.")],
    actor: AsOpt,
    reason: Annotated[str, typer.Option(help="Why it is sent back.")],
) -> None:
    """Send a submitted reply back with a reason."""
    from tingfeng.cases.replies import return_reply

    settings = settings_of(ctx)
    in_write(ctx, lambda c: return_reply(c, _actor(c, actor), settings, reply, reason))
    typer.echo(f"reply {reply} returned")


@case_app.command("publish")
def case_publish(
    ctx: typer.Context,
    reply: Annotated[int, typer.Argument(help="Reply id.")],
    actor: AsOpt,
    platform: Annotated[str, typer.Option(help="Where: 微博, 政府网站, 抖音…")],
    account: Annotated[str, typer.Option(help="Under which of the office's accounts.")],
    url: Annotated[str, typer.Option(help="The published reply's address.")] = "",
    at: Annotated[str | None, typer.Option(help="When it was published (default now).")] = None,
) -> None:
    """Record that an approved reply was published, where and when."""
    from tingfeng.cases.replies import publish_reply
    from tingfeng.cases.service import _parse_time

    settings = settings_of(ctx)
    when = _parse_time(at, "--at", settings.default_timezone) if at else None
    in_write(
        ctx,
        lambda c: publish_reply(c, _actor(c, actor), settings, reply, platform=platform,
                                account=account, url=url, published_at=when),
    )  # fmt: skip
    typer.echo(f"reply {reply} published")


# --- routing, templates, ledger ----------------------------------------------------------------


@case_app.command("route-add")
def case_route_add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Rule name.")],
    department: Annotated[str, typer.Option(help="The responsible department.")],
    region: Annotated[
        list[str] | None, typer.Option(help="Region name or code (repeatable).")
    ] = None,
    category: Annotated[list[str] | None, typer.Option(help="Category slug (repeatable).")] = None,
    topic: Annotated[list[int] | None, typer.Option(help="Topic id (repeatable).")] = None,
    source: Annotated[list[int] | None, typer.Option(help="Source id (repeatable).")] = None,
    keyword: Annotated[list[str] | None, typer.Option(help="Keyword (repeatable).")] = None,
    priority: Annotated[int, typer.Option(help="Lower is tried first.")] = 100,
) -> None:
    """Add a routing rule: matters like these belong to that department."""
    from tingfeng import audit
    from tingfeng.cases.routing import add_rule

    conditions = {"regions": region or [], "categories": category or [], "topic_ids": topic or [],
                  "source_ids": source or [], "keywords": keyword or []}  # fmt: skip

    def work(conn: Any) -> int:
        rid = add_rule(conn, name, department, conditions, priority=priority)
        audit.record(conn, None, "settings.routing_rule", f"routing:{rid}",
                     {"name": name, "department": department, "conditions": conditions})  # fmt: skip
        return rid

    rid = in_write(ctx, work)
    typer.echo(f"routing rule {rid} added: {name} → {department}")


@case_app.command("routes")
def case_routes(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """The routing rules, in the order they are tried."""
    from tingfeng.cases.routing import list_rules

    rules = in_read(ctx, list_rules)
    if as_json:
        _dump(rules)
        return
    print_table(
        ["编号", "名称", "优先级", "条件", "责任单位"],
        [[r["id"], r["name"], r["priority"], json.dumps(r["conditions"], ensure_ascii=False),
          r["department"]] for r in rules],
    )  # fmt: skip


@case_app.command("template-add")
def case_template_add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Template name, e.g. 媒体来电.")],
    origin: Annotated[str | None, typer.Option(help="The origin it is for.")] = None,
    task: Annotated[
        list[str] | None,
        typer.Option(help="A preset task as TITLE[@DUE], e.g. 现场核实@1wd (repeatable)."),
    ] = None,
    deadlines: Annotated[
        str | None, typer.Option(help='Deadline overrides as JSON, e.g. {"reply": {"特大": "3h"}}.')
    ] = None,
    approval_levels: Annotated[int, typer.Option(help="Approval levels a reply needs.")] = 1,
    department: Annotated[str | None, typer.Option(help="Default department.")] = None,
) -> None:
    """Add a case template (tasks, deadlines and approval chain for a kind of matter)."""
    from tingfeng.cases.templates import add_template

    tasks = []
    for spec in task or []:
        title, _, due = spec.partition("@")
        tasks.append({"title": title.strip(), **({"due": due.strip()} if due else {})})
    try:
        overrides = json.loads(deadlines) if deadlines else None
    except json.JSONDecodeError as exc:
        fail(f"--deadlines is not JSON: {exc}")
    tid = in_write(
        ctx,
        lambda c: add_template(c, name, origin=origin, tasks=tasks, deadlines=overrides,
                               approval_levels=approval_levels, department=department),
    )  # fmt: skip
    typer.echo(f"template {tid} added: {name}")


@case_app.command("stats")
def case_stats(
    ctx: typer.Context,
    days: Annotated[
        int, typer.Option(min=1, max=3660, help="Deadlines due in the last N days.")
    ] = 30,
    as_json: JsonOpt = False,
) -> None:
    """Deadlines met on time, late, or still overdue, per step and department."""
    from datetime import timedelta

    from tingfeng.cases.ledger import deadline_stats

    now = datetime.now(UTC)
    rows = in_read(ctx, lambda c: deadline_stats(c, now - timedelta(days=days), now))
    if as_json:
        _dump(rows)
        return
    print_table(
        ["环节", "责任单位", "到期", "按时", "超时完成", "超期未完成"],
        [[r["step_label"], r["department"], r["due"], r["on_time"], r["late"], r["overdue"]]
         for r in rows],
    )  # fmt: skip


@case_app.command("templates")
def case_templates(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Case templates."""
    from tingfeng.cases.templates import list_templates

    rows = in_read(ctx, list_templates)
    if as_json:
        _dump(rows)
        return
    print_table(
        ["编号", "名称", "来源", "任务", "审批级数"],
        [[r["id"], r["name"], r["origin"] or "", "、".join(t["title"] for t in r["tasks"]),
          r["approval_levels"]] for r in rows],
    )  # fmt: skip


@case_app.command("ledger")
def case_ledger(
    ctx: typer.Context,
    actor: Annotated[
        str | None, typer.Option("--as", help="Only the cases this user may see.")
    ] = None,
    export: Annotated[Path | None, typer.Option(help="Write it to a .csv or .xlsx file.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """The ledger (台账) of key cases still open or watched."""
    from tingfeng.cases.ledger import COLUMNS, ledger, to_csv, to_xlsx

    now = datetime.now(UTC)
    rows = in_read(ctx, lambda c: ledger(c, _actor(c, actor) if actor else None, now, _tz(ctx)))
    if export is not None:
        suffix = export.suffix.lower()
        if suffix not in (".csv", ".xlsx"):
            fail(f"{export}: export to a .csv or .xlsx file.")
        export.write_bytes(to_csv(rows) if suffix == ".csv" else to_xlsx(rows))
        typer.echo(f"{len(rows)} cases written to {export}")
        return
    if as_json:
        _dump([{k: v for k, v in r.items() if k != "next_due_at"} for r in rows])
        return
    keys = ["number", "title", "level_label", "state_label", "department", "next_step",
            "next_due", "overdue", "last_progress"]  # fmt: skip
    labels = dict(COLUMNS)
    print_table([labels[k] for k in keys], [[str(r[k])[:24] for k in keys] for r in rows])


@case_app.command("export")
def case_export(
    ctx: typer.Context,
    case: Annotated[str, typer.Argument(help="Case id or number (2026-0001).")],
    out: Annotated[Path, typer.Option("--out", help="The zip to write (case-2026-0001.zip).")],
    actor: Annotated[
        str | None,
        typer.Option(
            "--as",
            help="Export as this user: their department scope, and the audit log only "
            "if their role may read it (default: everything).",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Everything about a case in one zip: case.json, posts with readings, audit entries,
    evidence files, a readable case.html and SHA-256 checksums (recorded in the audit log)."""
    from tingfeng.cases.export import export_to_file
    from tingfeng.cli.main import engine_of, refusals
    from tingfeng.web.guard import roles_for

    if out.is_dir():
        fail(f"{out} is a directory: give the name of the zip to write.")
    engine = engine_of(ctx)
    with refusals():
        person = in_read(ctx, lambda c: _actor(c, actor)) if actor else None
        audit_ok = person is None or person.role in roles_for("GET", "/api/v1/audit")
        summary = export_to_file(engine, settings_of(ctx), person, case, out, with_audit=audit_ok)
    if as_json:
        _dump(summary)
        return
    typer.echo(
        f"case {summary['case']} exported to {summary['path']}: {summary['posts']} posts, "
        f"{summary['evidence_files']} evidence files, "
        + (f"{summary['audit_entries']} audit entries" if audit_ok else "no audit entries")
        + f"; SHA-256 {summary['sha256']}"
    )


# --- audit -----------------------------------------------------------------------------------


@audit_app.command("verify")
def audit_verify(ctx: typer.Context) -> None:
    """Check the chain: exit 0 with the number of entries, or non-zero naming the first bad one."""
    from tingfeng import audit

    result = in_read(ctx, audit.verify)
    if result.ok:
        typer.echo(f"audit log intact: {result.entries} entries")
        return
    typer.echo(
        f"audit log broken at entry {result.bad_id}: {result.problem} "
        f"({result.entries} entries before it are intact)",
        err=True,
    )
    raise typer.Exit(1)


@audit_app.command("list")
def audit_list(
    ctx: typer.Context,
    subject: Annotated[str | None, typer.Option(help="Only this subject, e.g. case:3.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10000)] = 50,
    as_json: JsonOpt = False,
) -> None:
    """The newest entries of the audit log."""
    from tingfeng import audit

    rows = in_read(ctx, lambda c: audit.entries(c, subject=subject, limit=limit))
    if as_json:
        _dump(rows)
        return
    print_table(
        ["编号", "时间", "操作人", "操作", "对象"],
        [[r["id"], _local(ctx, r["at"]), r["actor"], r["action"], r["subject"]] for r in rows],
    )


app.add_typer(case_app, name="case")
app.add_typer(audit_app, name="audit")
