"""`tingfeng topics …`: define what an office watches (监测方案), test a query, preview a change."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from tingfeng.cli.main import _parse_time, app, engine_of, fail

topics_app = typer.Typer(
    help="Topics (监测方案): add, edit, test and preview queries in the topic language.",
    no_args_is_help=True,
)
app.add_typer(topics_app, name="topics")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]
ExcludeOpt = Annotated[
    list[str], typer.Option("--exclude", help="An exclusion phrase (repeatable).")
]
SourceOpt = Annotated[
    list[str], typer.Option("--source", help="Only this source, by name or id (repeatable).")
]


def query_error(query: str, exc: Exception) -> str:
    """The parser's message with the query and a caret under the position it names."""
    position = getattr(exc, "position", None)
    if position is None:
        return str(exc)
    width = sum(2 if ord(c) > 0x2E80 else 1 for c in query[:position])
    return f"{exc}\n  {query}\n  {' ' * width}^"


def _fail_for(query: str, exc: Exception) -> None:
    from tingfeng.topics import QuerySyntaxError
    from tingfeng.topics.store import TopicError

    if isinstance(exc, QuerySyntaxError):
        fail(query_error(query, exc))
    if isinstance(exc, TopicError | ValueError):
        fail(str(exc))
    raise exc


@topics_app.command("test")
def topics_test(
    ctx: typer.Context,
    query: Annotated[str, typer.Argument(help="A query, e.g. '(医院 OR 卫生院) AND 投诉 -广告'.")],
    count_only: Annotated[
        bool, typer.Option("--count", help="Print only the number of matching stored posts.")
    ] = False,
    exclude: ExcludeOpt = [],  # noqa: B006
    source: SourceOpt = [],  # noqa: B006
    since: Annotated[str | None, typer.Option(help="From this date/time (ISO 8601).")] = None,
    until: Annotated[str | None, typer.Option(help="Before this date/time (ISO 8601).")] = None,
    against: Annotated[
        str | None,
        typer.Option(help="A saved topic (name or id): also show posts added and removed."),
    ] = None,
    samples: Annotated[int, typer.Option(help="Sample matches to show.")] = 10,
    as_json: JsonOpt = False,
) -> None:
    """Run a query over the stored posts: the count, per day, samples, and the change."""
    from tingfeng.topics.store import get_topic, resolve_sources
    from tingfeng.topics.stored import match_stored, preview

    start, end = _parse_time(since, "--since"), _parse_time(until, "--until")
    with engine_of(ctx).connect() as conn:
        try:
            source_ids = resolve_sources(conn, source) if source else None
            if count_only:
                result = match_stored(
                    conn, query, exclusions=exclude, source_ids=source_ids, since=start, until=end
                )
                typer.echo(len(result.matches))
                return
            saved = get_topic(conn, against) if against else None
            out = preview(
                conn,
                query,
                exclusions=exclude,
                source_ids=source_ids,
                since=start,
                until=end,
                saved=saved,
                samples=samples,
            )
        except Exception as exc:
            _fail_for(query, exc)
    if as_json:
        typer.echo(json.dumps(out, ensure_ascii=False, indent=2))
        return
    _print_preview(out)


def _plain(snippet: str) -> str:
    import html

    return html.unescape(snippet.replace("<mark>", "[").replace("</mark>", "]"))


def _print_samples(samples: list[dict[str, Any]], mark: str = " ") -> None:
    for s in samples:
        when = (s["published_at"] or "?")[:16].replace("T", " ")
        typer.echo(f"{mark}{s['id']:>8}  {when}  {_plain(s['snippet_html'])[:150]}")


def _print_preview(out: dict[str, Any]) -> None:
    partial = " (partial: too many candidates to read them all)" if out["partial"] else ""
    typer.echo(f"{out['count']} matching posts{partial}")
    if out["per_day"]:
        typer.echo("per day:")
        for day, n in out["per_day"][-31:]:
            typer.echo(f"  {day}  {n:>7}")
    if out["samples"]:
        typer.echo("newest matches:")
        _print_samples(out["samples"])
    diff = out.get("diff")
    if diff:
        typer.echo(
            f"against saved version {diff['saved_version']} ({diff['saved_count']} posts): "
            f"+{diff['added']} added, -{diff['removed']} removed"
        )
        _print_samples(diff["added_samples"], "+")
        _print_samples(diff["removed_samples"], "-")


@topics_app.command("add")
def topics_add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="A name, e.g. 医疗投诉.")],
    query: Annotated[str, typer.Argument(help="The query in the topic language.")],
    exclude: ExcludeOpt = [],  # noqa: B006
    source: SourceOpt = [],  # noqa: B006
    disabled: Annotated[
        bool, typer.Option("--disabled", help="Save but do not match yet.")
    ] = False,
    note: Annotated[str | None, typer.Option(help="A note for colleagues.")] = None,
    rematch: Annotated[
        bool,
        typer.Option("--rematch/--no-rematch", help="Also match the posts stored already."),
    ] = False,
) -> None:
    """Save a new topic; new posts are matched against it within seconds."""
    from tingfeng.db.engine import write_transaction
    from tingfeng.topics.store import create_topic, resolve_sources

    engine = engine_of(ctx)
    try:
        with write_transaction(engine) as conn:
            source_ids = resolve_sources(conn, source) if source else None
            topic = create_topic(
                conn,
                name,
                query,
                exclusions=exclude,
                source_ids=source_ids,
                enabled=not disabled,
                note=note,
                by="cli",
            )
    except Exception as exc:
        _fail_for(query, exc)
    typer.echo(f"topic {topic.id} saved: {topic.name}")
    if rematch:
        _rematch(engine, topic.id)


def _rematch(engine: Any, topic_id: int) -> None:
    from tingfeng.topics.rematch import rematch_topic

    n = rematch_topic(engine, topic_id)
    typer.echo(f"{n} stored posts match")


@topics_app.command("list")
def topics_list(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Every topic with its query and how many posts it has matched."""
    from sqlalchemy import func, select

    from tingfeng.db.models import TopicMatch
    from tingfeng.topics.store import list_topics

    with engine_of(ctx).connect() as conn:
        topics = list_topics(conn)
        counts = dict(
            conn.execute(
                select(TopicMatch.topic_id, func.count()).group_by(TopicMatch.topic_id)
            ).all()
        )
    if as_json:
        typer.echo(
            json.dumps(
                [{**t.to_dict(), "matches": counts.get(t.id, 0)} for t in topics],
                ensure_ascii=False,
                indent=2,
            )
        )
        return
    for t in topics:
        state = "on " if t.enabled else "off"
        typer.echo(f"{t.id:>4}  {state}  {counts.get(t.id, 0):>8}  {t.name}  {t.query}")


@topics_app.command("show")
def topics_show(ctx: typer.Context, ref: str, as_json: JsonOpt = False) -> None:
    """One topic with its exclusions, sources and saved versions."""
    from tingfeng.topics.store import TopicError, get_topic, topic_versions

    with engine_of(ctx).connect() as conn:
        try:
            topic = get_topic(conn, ref)
            versions = topic_versions(conn, ref)
        except TopicError as exc:
            fail(str(exc))
    if as_json:
        typer.echo(
            json.dumps({**topic.to_dict(), "versions": versions}, ensure_ascii=False, indent=2)
        )
        return
    typer.echo(f"topic {topic.id}: {topic.name} ({'enabled' if topic.enabled else 'disabled'})")
    typer.echo(f"query:      {topic.query}")
    typer.echo(f"exclusions: {', '.join(topic.exclusions) or '-'}")
    sources = ", ".join(map(str, topic.source_ids)) if topic.source_ids is not None else "all"
    typer.echo(f"sources:    {sources}")
    for v in versions:
        typer.echo(f"  v{v['version']}  {v['saved_at'][:19]}  {v['query']}")


@topics_app.command("edit")
def topics_edit(
    ctx: typer.Context,
    ref: str,
    query: Annotated[str | None, typer.Option(help="A new query.")] = None,
    name: Annotated[str | None, typer.Option(help="A new name.")] = None,
    exclude: ExcludeOpt = [],  # noqa: B006
    clear_exclusions: Annotated[
        bool, typer.Option("--clear-exclusions", help="Remove every exclusion phrase.")
    ] = False,
    source: SourceOpt = [],  # noqa: B006
    all_sources: Annotated[
        bool, typer.Option("--all-sources", help="Apply to every source again.")
    ] = False,
    enabled: Annotated[
        bool | None, typer.Option("--enable/--disable", help="Switch matching on or off.")
    ] = None,
) -> None:
    """Change a topic (a change of what it matches is kept as a new version)."""
    from tingfeng.db.engine import write_transaction
    from tingfeng.topics.store import get_topic, resolve_sources, update_topic

    try:
        with write_transaction(engine_of(ctx)) as conn:
            current = get_topic(conn, ref)
            exclusions = None
            if clear_exclusions:
                exclusions = list(exclude)
            elif exclude:
                exclusions = [*current.exclusions, *exclude]
            source_ids: Any = False
            if all_sources:
                source_ids = None
            elif source:
                source_ids = resolve_sources(conn, source)
            topic = update_topic(
                conn,
                ref,
                name=name,
                query=query,
                exclusions=exclusions,
                source_ids=source_ids,
                enabled=enabled,
                by="cli",
            )
    except Exception as exc:
        _fail_for(query or "", exc)
    typer.echo(f"topic {topic.id} is at version {topic.version}: {topic.query}")


@topics_app.command("remove")
def topics_remove(ctx: typer.Context, ref: str) -> None:
    """Remove a topic and its matches (the posts and events stay)."""
    from tingfeng.db.engine import write_transaction
    from tingfeng.topics.store import TopicError, delete_topic

    try:
        with write_transaction(engine_of(ctx)) as conn:
            topic = delete_topic(conn, ref)
    except TopicError as exc:
        fail(str(exc))
    typer.echo(f"topic {topic.id} removed: {topic.name}")


@topics_app.command("rematch")
def topics_rematch(ctx: typer.Context, ref: str) -> None:
    """Match a topic against the posts stored already (after adding or changing it)."""
    from tingfeng.topics.store import TopicError, get_topic

    engine = engine_of(ctx)
    with engine.connect() as conn:
        try:
            topic = get_topic(conn, ref)
        except TopicError as exc:
            fail(str(exc))
    _rematch(engine, topic.id)
