"""`tingfeng report KIND`: make a report (日报告表, 周报, 月报, 季通报, 专报, 零报告) as a file.

The report is also recorded (the `reports` table, with its data snapshot), so it shows on the
/reports page with the ones made there and by the clock.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated

import typer

from tingfeng.cli.main import app, engine_of, fail, settings_of


@app.command("report")
def report(
    ctx: typer.Context,
    kind: Annotated[
        str, typer.Argument(help="daily, weekly, monthly, quarterly, special or zero.")
    ],
    out: Annotated[Path, typer.Option("--out", help="The file to write.")],
    fmt: Annotated[str, typer.Option("--format", help="docx, pdf, html or xlsx.")] = "docx",
    day: Annotated[
        str | None,
        typer.Option(
            "--date",
            help="A day of the period, YYYY-MM-DD (default: yesterday; the last whole week, "
            "month or quarter).",
        ),
    ] = None,
    event: Annotated[
        int | None, typer.Option("--event", help="The event of a special report.")
    ] = None,
    by: Annotated[str, typer.Option("--by", help="Who made it (recorded).")] = "cli",
) -> None:
    """Make a report from the data and write it to --out."""
    from tingfeng.reports.common import FORMATS, KINDS
    from tingfeng.reports.service import ReportError, generate

    if kind not in KINDS:
        fail(f"unknown report kind {kind!r}: use one of {', '.join(KINDS)}")
    if fmt not in FORMATS:
        fail(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
    on: date | None = None
    if day:
        try:
            on = date.fromisoformat(day)
        except ValueError:
            fail(f"--date expects YYYY-MM-DD, got {day!r}")
    if kind == "special" and event is None:
        fail("a special report (专报) is about one event: give --event ID")
    try:
        made = generate(
            settings_of(ctx), engine_of(ctx), kind, fmt, day=on, event_id=event, out=out,
            created_by=by,
        )  # fmt: skip
    except ReportError as exc:
        fail(str(exc))
    except OSError as exc:  # a full disk, a folder that may not be written
        fail(
            f"cannot write the report to {out}: {exc.strerror or exc}. {out} was not changed "
            "(no half file); free space or choose another --out, then run the same command again"
        )
    doc = made.document
    typer.echo(f"{doc.title}{doc.subtitle} {doc.number}: {out} ({made.record['bytes']} bytes)")
    if kind == "daily" and doc.data.get("quiet"):
        typer.echo(
            f"nothing notable on {doc.period}: a zero report (零报告) applies — "
            f"tingfeng report zero --date {doc.period} --out FILE"
        )
    if kind == "zero" and not doc.data.get("quiet"):
        typer.echo(
            "not a quiet day: " + "; ".join(doc.data.get("notable", [])) + " — file the daily "
            "report instead",
            err=True,
        )
