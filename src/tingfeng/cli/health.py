"""`tingfeng ready`: the readiness checks of /readyz, run from any machine of an installation.

Workers and the scheduler serve no HTTP; this command checks their machine the same way (the
database writable, the queue reachable, the disk not full, the schema migrated, the clock in
step with the database server), for a monitoring agent or a systemd `ExecStartPre=`.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from tingfeng.cli.main import app, settings_of


@app.command()
def ready(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print the checks as JSON.")] = False,
) -> None:
    """Check this machine's readiness; exit 0 when ready, 1 when a check fails."""
    from tingfeng.db.engine import make_engine
    from tingfeng.readiness import Readiness, summary

    settings = settings_of(ctx)
    # No migration here: a database behind the code is a finding to report, not to fix.
    engine = make_engine(settings.database_url)
    try:
        checks = Readiness(settings, engine).run()
    finally:
        engine.dispose()
    result = summary(checks)
    if as_json:
        typer.echo(json.dumps(result, ensure_ascii=False, indent=2))
    else:
        for check in checks:
            mark = "ok  " if check.ok else ("FAIL" if check.failing else "warn")
            typer.echo(f"{mark}  {check.name:<10}  {check.message}")
    if result["status"] != "ok":
        raise typer.Exit(1)
