"""A database fault ends a command with a sentence, not a traceback (tingfeng.db.faults).

The command line's top group catches it, so it covers every command: an import, a report, a
case action. Anything else still gets the full traceback, which is what a bug report needs.
Imported at the bottom of tingfeng.cli.main.
"""

from __future__ import annotations

from typing import Any

import click
import typer
from typer.core import TyperGroup

from tingfeng.cli.main import app
from tingfeng.db.faults import fault_of


class FaultReportingGroup(TyperGroup):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except Exception as exc:
            fault = fault_of(exc)
            if fault is None:
                raise
            typer.echo(
                f"error: {fault.message} What was done before it stays done: run the same "
                "command again (an import skips the posts it already stored).",
                err=True,
            )
            raise typer.Exit(2) from None


app.info.cls = FaultReportingGroup
