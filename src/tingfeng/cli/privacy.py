"""`tingfeng privacy …`: the retention and pseudonymisation policy, a dry run, a pass now."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from tingfeng.cli.main import app, engine_of, fail, in_read, in_write, settings_of

privacy_app = typer.Typer(
    help="Retention (expiring old posts) and pseudonymising authors' bylines.",
    no_args_is_help=True,
)
app.add_typer(privacy_app, name="privacy")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _days(value: str | None, what: str) -> int | None:
    """A number of days, or none/never/off for "no limit"."""
    if value is None or value.strip().lower() in ("", "none", "never", "off"):
        return None
    try:
        return int(value)
    except ValueError:
        fail(f"{what}: {value!r} is not a number of days (or 'none')")


def _describe(policy: Any) -> list[str]:
    lines = [
        "retention: "
        + (f"{policy.retention_days} days" if policy.retention_days else "keep for ever"),
    ]
    for source_id, days in sorted(policy.source_retention_days.items()):
        lines.append(f"  source {source_id}: " + (f"{days} days" if days else "keep for ever"))
    after = policy.pseudonymize_after_days
    lines.append(
        "pseudonymise bylines: "
        + ("never" if after is None else "all posts" if after == 0 else f"after {after} days")
    )
    lines.append(f"daily pass by the clock: {'on' if policy.daily else 'off'}")
    return lines


@privacy_app.command("show")
def privacy_show(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """The policy in force and the latest pass."""
    from tingfeng.privacy import last_run, load_policy

    policy, run = in_read(ctx, lambda c: (load_policy(c), last_run(c)))
    if as_json:
        typer.echo(json.dumps({"policy": policy.as_dict(), "last_run": run}, ensure_ascii=False))
        return
    for line in _describe(policy):
        typer.echo(line)
    if run:
        typer.echo(
            f"last pass ({run.get('trigger')}, {run.get('state')}): started {run.get('started_at')}"
            f", deleted {run.get('deleted', 0)}, pseudonymised {run.get('pseudonymized', 0)}"
        )
    else:
        typer.echo("no pass yet")


@privacy_app.command("set")
def privacy_set(
    ctx: typer.Context,
    retention_days: Annotated[
        str | None, typer.Option(help="Delete posts older than this many days; 'none': keep.")
    ] = None,
    source: Annotated[
        list[str] | None,
        typer.Option(
            help="SOURCE_ID=DAYS for one source (0: keep for ever; DAYS empty: "
            "use the general rule); repeat."
        ),
    ] = None,
    pseudonymize_after: Annotated[
        str | None,
        typer.Option(
            help="Pseudonymise bylines of posts older than this many days (0: all); 'none': never."
        ),
    ] = None,
    daily: Annotated[
        bool | None, typer.Option("--daily/--no-daily", help="Let the clock run a pass daily.")
    ] = None,
) -> None:
    """Change the policy (options not given stay as they are)."""
    from tingfeng.privacy import Policy, load_policy, save_policy

    def work(conn: Any) -> Policy:
        data = load_policy(conn).as_dict()
        if retention_days is not None:
            data["retention_days"] = _days(retention_days, "--retention-days")
        if pseudonymize_after is not None:
            data["pseudonymize_after_days"] = _days(pseudonymize_after, "--pseudonymize-after")
        if daily is not None:
            data["daily"] = daily
        overrides = dict(data.get("source_retention_days") or {})
        for spec in source or []:
            sid, sep, days = spec.partition("=")
            if not sep or not sid.strip().isdigit():
                fail(f"--source {spec!r}: write SOURCE_ID=DAYS, e.g. 3=30")
            if days.strip():
                overrides[sid.strip()] = _days(days, f"--source {spec}") or 0
            else:
                overrides.pop(sid.strip(), None)
        data["source_retention_days"] = overrides
        return save_policy(conn, None, data)

    policy = in_write(ctx, work)
    for line in _describe(policy):
        typer.echo(line)


@privacy_app.command("apply")
def privacy_apply(
    ctx: typer.Context,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only count what would be done.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Run a pass now: delete expired posts, pseudonymise old bylines (logged in the audit)."""
    from tingfeng.privacy import apply, load_policy, preview

    if dry_run:
        found = in_read(ctx, lambda c: preview(c, load_policy(c), datetime.now(UTC)))
        if as_json:
            typer.echo(json.dumps(found.as_dict()))
        else:
            typer.echo(
                f"would delete {found.delete} posts, pseudonymise {found.pseudonymize}; "
                f"{found.kept_for_cases} expired posts are kept for cases"
            )
        return
    result = apply(engine_of(ctx), settings_of(ctx), trigger="cli")
    if as_json:
        typer.echo(json.dumps(result.as_dict()))
    else:
        typer.echo(f"deleted {result.deleted} posts, pseudonymised {result.pseudonymized}")
