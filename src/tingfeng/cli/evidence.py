"""`tingfeng evidence …`: capture key pages (取证), list a case's evidence, verify the hashes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import typer

from tingfeng.cli.main import app, engine_of, fail, refusals, settings_of
from tingfeng.cli.main import dump_json as _dump
from tingfeng.cli.main import in_read as _read
from tingfeng.cli.main import in_write as _write
from tingfeng.cli.main import print_table as _table

evidence_app = typer.Typer(
    help="Evidence (取证): pages kept as WARC records and screenshots, with their SHA-256 hashes.",
    no_args_is_help=True,
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]
TimeOpt = typer.Option(help='Local time, e.g. "2026-11-20 14:30" (or ISO with a time zone).')


def _time(ctx: typer.Context, value: str | None, option: str) -> datetime | None:
    """A local time (the default_timezone setting unless one is given) as an aware datetime."""
    from zoneinfo import ZoneInfo

    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        fail(f'{option} {value!r} is not a time: use e.g. "2026-11-20 14:30"')
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=ZoneInfo(settings_of(ctx).default_timezone))
    return parsed


def _local(ctx: typer.Context, value: datetime | None) -> str:
    from zoneinfo import ZoneInfo

    if value is None:
        return ""
    return value.astimezone(ZoneInfo(settings_of(ctx).default_timezone)).strftime("%Y-%m-%d %H:%M")


def _case_id(conn: Any, ref: str) -> int:
    """A case by id or by its number (2026-0001)."""
    from sqlalchemy import select

    from tingfeng.cases.evidence import EvidenceError
    from tingfeng.db.models import Case

    t = Case.__table__
    text = ref.strip()
    where = t.c.id == int(text) if text.isdigit() else t.c.number == text
    found = conn.execute(select(t.c.id).where(where)).scalar()
    if found is None:
        raise EvidenceError(f"there is no case {text!r}: give its id or number (2026-0001).")
    return int(found)


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in row.items()}


@evidence_app.command("capture")
def evidence_capture(
    ctx: typer.Context,
    url: Annotated[
        str | None, typer.Argument(help="The page's address (default: the --post's URL).")
    ] = None,
    case: Annotated[str | None, typer.Option("--case", help="The case, by id or number.")] = None,
    post: Annotated[int | None, typer.Option("--post", help="The post this page shows.")] = None,
    alert: Annotated[int | None, typer.Option("--alert", help="The alert it came from.")] = None,
    category: Annotated[
        str, typer.Option(help="post (原帖), repost, comment, reply (回应), media, other.")
    ] = "post",
    title: Annotated[str | None, typer.Option(help="Title (default: the page's).")] = None,
    published: Annotated[str | None, TimeOpt] = None,
    discovered: Annotated[str | None, TimeOpt] = None,
    reported: Annotated[str | None, TimeOpt] = None,
    result: Annotated[str, typer.Option("--result", help="Handling result (处置结果).")] = "",
    by: Annotated[str | None, typer.Option("--by", help="Who captures it (user name).")] = None,
) -> None:
    """Capture a page: WARC record and full-page screenshot, hashed and numbered.

    Exit 2 when the address or an option is refused (nothing is kept), 1 when the page could
    not be fetched (the failure is recorded under a number).
    """
    from tingfeng.cases.evidence import CaptureFailed, capture_evidence, get_evidence

    fields: dict[str, Any] = {
        "category": category.strip(),
        "post_id": post,
        "alert_id": alert,
        "title": title,
        "published_at": _time(ctx, published, "--published"),
        "discovered_at": _time(ctx, discovered, "--discovered"),
        "reported_at": _time(ctx, reported, "--reported"),
        "handling_result": result,
    }
    if case:
        fields["case_id"] = _read(ctx, lambda c: _case_id(c, case))
    if by:
        from tingfeng.office.people import find_user

        fields["actor"] = _read(ctx, lambda c: find_user(c, by))
    if not url and post is None:
        fail("give the page's address, or --post N to capture a stored post's page")
    engine = engine_of(ctx)
    failed: CaptureFailed | None = None
    with refusals():
        try:
            evidence_id = capture_evidence(engine, settings_of(ctx), url, **fields)
        except CaptureFailed as exc:
            failed = exc
    if failed is not None:
        number = _read(ctx, lambda c: get_evidence(c, failed.evidence_id)["number"])
        typer.echo(f"error: {failed}", err=True)
        typer.echo(f"the failure is recorded as {number} (id {failed.evidence_id})", err=True)
        raise typer.Exit(1)
    row = _read(ctx, lambda c: get_evidence(c, evidence_id))
    from tingfeng.cases.evidence import evidence_root

    root = evidence_root(settings_of(ctx))
    typer.echo(f"evidence {row['id']}: {row['number']}  {row['title']}")
    typer.echo(f"  url:      {row['url']} (HTTP {row['http_status']})")
    typer.echo(f"  captured: {_local(ctx, row['captured_at'])}")
    typer.echo(f"  warc:     {root / row['warc_path']}")
    typer.echo(f"  sha256:   {row['warc_sha256']}")
    if row["png_path"]:
        typer.echo(f"  png:      {root / row['png_path']}")
        typer.echo(f"  sha256:   {row['png_sha256']}")
    else:
        typer.echo(f"warning: no screenshot: {row['error']}", err=True)


@evidence_app.command("list")
def evidence_list(
    ctx: typer.Context,
    case: Annotated[str | None, typer.Option("--case", help="One case, by id or number.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Evidence by case, category and number."""
    from tingfeng.cases.evidence import list_evidence

    rows = _read(ctx, lambda c: list_evidence(c, _case_id(c, case) if case else None))
    if as_json:
        _dump([_jsonable(r) for r in rows])
        return
    if not rows:
        typer.echo("还没有取证记录：tingfeng evidence capture URL --case N")
        return
    _table(
        ["编号", "案件", "证据编号", "状态", "HTTP", "取证时间", "标题", "网址"],
        [
            [
                r["id"],
                r["case_id"] or "",
                r["number"],
                "已取证" if r["status"] == "captured" else "失败",
                r["http_status"] or "",
                _local(ctx, r["captured_at"]),
                (r["title"] or "")[:30],
                r["url"],
            ]
            for r in rows
        ],
    )


@evidence_app.command("verify")
def evidence_verify(
    ctx: typer.Context,
    evidence_id: Annotated[int, typer.Argument(help="The evidence id (see `evidence list`).")],
) -> None:
    """Re-hash the files of one piece of evidence: exit 0 when all are intact, 1 otherwise."""
    from tingfeng.cases.evidence import verify_evidence

    check = _read(ctx, lambda c: verify_evidence(c, settings_of(ctx), evidence_id))
    if not check.files:
        typer.echo(f"{check.number}: no files to verify (the capture failed)")
        return
    for f in check.files:
        line = f"{check.number} {f.kind}: {f.state}  {f.path}"
        if f.state == "changed":
            line += f"\n  expected {f.expected}\n  actual   {f.actual}"
        if f.note:
            line += f"\n  {f.note}"
        typer.echo(line)
    if not check.ok:
        bad = ", ".join(f"{f.path} ({f.state})" for f in check.files if f.state != "intact")
        typer.echo(f"error: evidence {check.number} is not intact: {bad}", err=True)
        raise typer.Exit(1)


@evidence_app.command("result")
def evidence_result(
    ctx: typer.Context,
    evidence_id: Annotated[int, typer.Argument(help="The evidence id.")],
    text: Annotated[str, typer.Argument(help="The handling result (处置结果).")],
    by: Annotated[str | None, typer.Option("--by", help="Who records it (user name).")] = None,
) -> None:
    """Record the handling result of a piece of evidence (it is known only later)."""
    from tingfeng.cases.evidence import update_handling_result

    def work(conn: Any) -> None:
        from tingfeng.office.people import find_user

        actor = find_user(conn, by) if by else None
        update_handling_result(conn, evidence_id, text, actor)

    _write(ctx, work)
    typer.echo(f"evidence {evidence_id}: handling result recorded")


app.add_typer(evidence_app, name="evidence")
