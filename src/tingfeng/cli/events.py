"""`tingfeng events …` (list, show, merge, split, grade, refresh, spikes) and `eval events`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from tingfeng.cli.analysis import eval_app
from tingfeng.cli.main import app, engine_of, fail

events_app = typer.Typer(
    help="Events (事件): list, inspect, merge, split, grade by hand.", no_args_is_help=True
)
app.add_typer(events_app, name="events")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]
ByOpt = Annotated[str, typer.Option("--by", help="Who decides (kept in the history).")]


@eval_app.command("events")
def eval_events(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="A labelled event file (JSONL).")],
    as_json: JsonOpt = False,
) -> None:
    """Group a labelled event file with the live grouping; print B-cubed precision/recall/F1."""
    from tingfeng.events.evaluation import EventFileError, evaluate_file

    if not file.exists():
        fail(f"{file} does not exist")
    try:
        result = evaluate_file(file)
    except EventFileError as exc:
        fail(str(exc))
    if as_json:
        typer.echo(json.dumps(result, ensure_ascii=False, indent=2))
        return
    typer.echo(f"items            {result['items']}")
    typer.echo(f"gold events      {result['gold_events']}")
    typer.echo(f"predicted events {result['predicted_events']}")
    typer.echo(f"B-cubed precision {result['precision']:.4f}")
    typer.echo(f"B-cubed recall    {result['recall']:.4f}")
    typer.echo(f"B-cubed F1        {result['f1']:.4f}")


def _when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value else "?"


@events_app.command("list")
def events_list(
    ctx: typer.Context,
    level: Annotated[
        list[str], typer.Option(help="Only these levels (general, serious, major, critical).")
    ] = [],  # noqa: B006
    limit: Annotated[int, typer.Option(help="Events to show.")] = 30,
    sort: Annotated[str, typer.Option(help="recent, heat or posts.")] = "recent",
    as_json: JsonOpt = False,
) -> None:
    """Open events, most recently active first."""
    from tingfeng.events.service import list_events

    if sort not in ("recent", "heat", "posts"):
        fail("--sort must be recent, heat or posts")
    with engine_of(ctx).connect() as conn:
        try:
            events = list_events(conn, levels=level, limit=limit, sort=sort)
        except ValueError as exc:
            fail(str(exc))
    if as_json:
        typer.echo(json.dumps(events, ensure_ascii=False, indent=2, default=str))
        return
    for e in events:
        lvl = e["level_zh"] or "-"
        heat = f"{e['heat']:.0f}" if e["heat"] is not None else "-"
        typer.echo(
            f"{e['id']:>6}  {lvl:<4} heat {heat:>3}  {e['posts']:>7} posts  "
            f"{_when(e['last_seen_at'])}  {e['title'][:60]}"
        )


@events_app.command("show")
def events_show(ctx: typer.Context, event_id: int, as_json: JsonOpt = False) -> None:
    """One event: what, where it started, how it spread, its level and why."""
    from tingfeng.events.decisions import EventError
    from tingfeng.events.service import event_detail

    with engine_of(ctx).connect() as conn:
        try:
            e = event_detail(conn, event_id)
        except EventError as exc:
            fail(str(exc))
    if as_json:
        typer.echo(json.dumps(e, ensure_ascii=False, indent=2, default=str))
        return
    p = e["profile"] or {}
    typer.echo(f"event {e['id']}: {e['title']}  [{e['status']}]")
    if e["status"] == "merged":
        typer.echo(f"merged into event {e['merged_into']}")
    typer.echo(f"posts {e['posts']}, first seen {_when(e['first_seen_at'])}, "
               f"last {_when(e['last_seen_at'])}")  # fmt: skip
    if e["summary"]:
        typer.echo(f"summary: {e['summary']}")
    typer.echo(f"first post (源头): {e['first_post_id']} from source {e['first_source_id']}")
    grade = e["grade"] or {}
    if grade:
        typer.echo(
            f"level: {grade.get('level_zh')} ({grade.get('roman')}), score {grade.get('score')}"
        )
        typer.echo(grade.get("explanation_zh", ""))
        for f in grade.get("factors", []):
            typer.echo(
                f"  {f['label_zh']:<8} {f['score']:.2f} × {f['weight']:.2f} = {f['contribution']:.3f}"
            )
        for line in grade.get("to_next_zh", []):
            typer.echo(f"  ↑ {line}")
    if p.get("heat"):
        typer.echo(f"heat: {p['heat']['value']}")
    if p.get("keywords"):
        typer.echo("keywords: " + " ".join(w for w, _ in p["keywords"]))
    if p.get("places"):
        typer.echo("places: " + ", ".join(f"{x['name']} ({x['posts']})" for x in p["places"]))
    if p.get("tiers"):
        typer.echo("tiers: " + ", ".join(f"{k} {v}" for k, v in p["tiers"].items()))
    spread = p.get("spread")
    if spread:
        typer.echo(
            f"spread: {spread['size']} posts, depth {spread['depth']}, breadth {spread['breadth']}"
        )
        for a in spread["amplifiers"][:5]:
            typer.echo(f"  amplifier {a['key']} ({a['author']}): {a['further_reposts']} further")
    for g in p.get("opinion_groups", []):
        typer.echo(f"opinion {g['share']:.0%}: {' '.join(g['terms'])} — {g['example'][:60]}")
    for h in e["history"]:
        typer.echo(
            f"  {h['graded_at'][:16]} {h['level']} {h['reason'] or ''} {h['decided_by'] or ''}"
        )


@events_app.command("merge")
def events_merge(
    ctx: typer.Context,
    keep: int,
    other: int,
    reason: Annotated[str | None, typer.Option(help="Why (kept in the record).")] = None,
    by: ByOpt = "cli",
) -> None:
    """Merge event OTHER into KEEP; later posts of either join KEEP."""
    from tingfeng.db.engine import write_transaction
    from tingfeng.events.decisions import EventError, merge_events

    try:
        with write_transaction(engine_of(ctx)) as conn:
            merge_events(conn, keep, other, by=by, reason=reason)
    except EventError as exc:
        fail(str(exc))
    typer.echo(f"event {other} merged into {keep}")


@events_app.command("split")
def events_split(
    ctx: typer.Context,
    event_id: int,
    posts: Annotated[list[int], typer.Argument(help="Ids of the posts to move out.")],
    reason: Annotated[str | None, typer.Option(help="Why (kept in the record).")] = None,
    by: ByOpt = "cli",
) -> None:
    """Move posts out of an event into a new one; later posts like them follow."""
    from tingfeng.db.engine import write_transaction
    from tingfeng.events.decisions import EventError, split_event

    try:
        with write_transaction(engine_of(ctx)) as conn:
            new_id = split_event(conn, event_id, posts, by=by, reason=reason)
    except EventError as exc:
        fail(str(exc))
    typer.echo(f"{len(set(posts))} posts moved from event {event_id} to new event {new_id}")


@events_app.command("grade")
def events_grade(
    ctx: typer.Context,
    event_id: int,
    level: Annotated[
        str | None, typer.Argument(help="general/serious/major/critical or 一般/较大/重大/特大.")
    ] = None,
    reason: Annotated[str | None, typer.Option(help="Why (required for an override).")] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Remove the override.")] = False,
    by: ByOpt = "cli",
) -> None:
    """Override an event's level with a reason, or clear the override."""
    from tingfeng.db.engine import write_transaction
    from tingfeng.events.decisions import EventError, clear_grade_override, override_grade

    if not clear and not level:
        fail("give a LEVEL to set, or --clear")
    try:
        with write_transaction(engine_of(ctx)) as conn:
            if clear:
                clear_grade_override(conn, event_id, by=by, reason=reason)
                typer.echo(f"event {event_id}: override cleared")
                return
            override_grade(conn, event_id, level or "", reason=reason or "", by=by)
    except EventError as exc:
        fail(str(exc))
    typer.echo(f"event {event_id}: level set to {level} by {by}")


@events_app.command("refresh")
def events_refresh(
    ctx: typer.Context,
    event_id: Annotated[
        int | None, typer.Argument(help="One event; default every open one.")
    ] = None,
) -> None:
    """Recompute profiles, heat and grades now."""
    from sqlalchemy import select

    from tingfeng.cli.main import settings_of
    from tingfeng.db.engine import write_transaction
    from tingfeng.db.models import Event
    from tingfeng.events.profile import grading_model_for, refresh_event

    try:
        model = grading_model_for(settings_of(ctx).grading_model)
    except (OSError, ValueError) as exc:
        fail(f"the grading model {settings_of(ctx).grading_model} cannot be used: {exc}")
    engine = engine_of(ctx)
    with engine.connect() as conn:
        ids = (
            [event_id]
            if event_id is not None
            else list(conn.execute(select(Event.id).where(Event.status == "open")).scalars())
        )
    for eid in ids:
        with write_transaction(engine) as conn:
            values = refresh_event(conn, eid, model=model)
        typer.echo(
            f"event {eid}: {values['level']} ({values['level_score']:.3f}), heat {values['heat']:.1f}"
        )


@events_app.command("spikes")
def events_spikes(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option(help="Spikes to show.")] = 30,
    as_json: JsonOpt = False,
) -> None:
    """Recent spikes (突增) of topics and events."""
    from tingfeng.events.service import recent_spikes

    with engine_of(ctx).connect() as conn:
        spikes = recent_spikes(conn, limit=limit)
    if as_json:
        typer.echo(json.dumps(spikes, ensure_ascii=False, indent=2, default=str))
        return
    for s in spikes:
        typer.echo(
            f"{s['hour'][:16]}  {s['series']:<12} {s['count']:>6} posts, expected "
            f"{s['expected']:.1f}, score {s['score']:.1f}  {s['name']}"
        )
