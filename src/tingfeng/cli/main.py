"""The `tingfeng` command line."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer

from tingfeng.settings import Settings, load_settings

T = TypeVar("T")

app = typer.Typer(
    help="Tingfeng (听风): online public-opinion monitoring and response.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
source_app = typer.Typer(help="Add, inspect, test and remove sources (信源).", no_args_is_help=True)
lead_app = typer.Typer(help="Submit leads (线索) by hand.", no_args_is_help=True)
bench_app = typer.Typer(help="Benchmarks.", no_args_is_help=True)
dict_app = typer.Typer(help="The user dictionary for Chinese segmentation.", no_args_is_help=True)
app.add_typer(dict_app, name="dict")
app.add_typer(source_app, name="source")
app.add_typer(lead_app, name="lead")
app.add_typer(bench_app, name="bench")


def fail(message: str, code: int = 2) -> NoReturn:
    """Print a message for a person on stderr and exit non-zero."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


@contextmanager
def refusals() -> Iterator[None]:
    """Input the services refuse (a bad rule, an unknown person, channel, topic, source…) as
    its message and exit status 2."""
    from tingfeng.collect.sources import SourceNotFound
    from tingfeng.problems import ProblemsError
    from tingfeng.topics.store import TopicError

    try:
        yield
    except (ProblemsError, TopicError, SourceNotFound) as exc:
        fail(str(exc))


def in_write(ctx: typer.Context, work: Callable[[Any], T]) -> T:
    """`work(conn)` in a write transaction, refusals reported."""
    from tingfeng.db.engine import write_transaction

    with refusals(), write_transaction(engine_of(ctx)) as conn:
        return work(conn)


def in_read(ctx: typer.Context, work: Callable[[Any], T]) -> T:
    with refusals(), engine_of(ctx).connect() as conn:
        return work(conn)


def print_table(headers: list[str], rows: list[list[Any]]) -> None:
    """Columns aligned by display width, so Chinese (two cells a character) lines up."""
    from rich.cells import cell_len

    cells = [[("" if v is None else str(v)) for v in row] for row in [headers, *rows]]
    widths = [max(cell_len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        padded = [v + " " * (w - cell_len(v)) for v, w in zip(row, widths, strict=True)]
        typer.echo("  ".join(padded).rstrip())


def dump_json(value: Any) -> None:
    typer.echo(json.dumps(value, ensure_ascii=False, indent=2, default=str))


def local_time(ctx: typer.Context, value: datetime | str | None) -> str:
    """A stored (UTC) time as `YYYY-MM-DD HH:MM` in the configured time zone; "" for none."""
    from zoneinfo import ZoneInfo

    if not value:
        return ""
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    zone = ZoneInfo(settings_of(ctx).default_timezone)
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M")


def settings_of(ctx: typer.Context) -> Settings:
    return ctx.obj["settings"]  # type: ignore[no-any-return]


def engine_of(ctx: typer.Context, *, migrate: bool = True) -> Any:
    """The database engine, with the schema brought up to date."""
    from sqlalchemy.exc import OperationalError

    from tingfeng.db.engine import make_engine
    from tingfeng.db.migrate import upgrade

    if "engine" not in ctx.obj:
        settings = settings_of(ctx)
        try:
            engine = make_engine(settings.database_url)
            if migrate:
                upgrade(engine)
        except OperationalError as exc:
            fail(f"cannot open the database {settings.database_url}: {exc.orig}")
        except Exception as exc:
            if exc.__class__.__name__ in ("ArgumentError", "NoSuchModuleError"):
                fail(f"the database URL {settings.database_url!r} is not valid: {exc}")
            raise
        ctx.obj["engine"] = engine
    return ctx.obj["engine"]


@app.callback()
def main(
    ctx: typer.Context,
    db: Annotated[
        str | None,
        typer.Option("--db", help="Database URL (sqlite:///FILE or postgresql+psycopg://...)."),
    ] = None,
    queue: Annotated[
        str | None, typer.Option("--queue", help="Queue URL (redis://...); empty for embedded.")
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="Configuration file (TOML).")
    ] = None,
    log_level: Annotated[
        str | None, typer.Option("--log-level", help="DEBUG, INFO, WARNING, ERROR.")
    ] = None,
    log_format: Annotated[
        str | None, typer.Option("--log-format", help="text, or json (one object per line).")
    ] = None,
) -> None:
    import os

    if config is not None:
        if not config.exists():
            fail(f"the configuration file {config} does not exist")
        os.environ["TINGFENG_CONFIG"] = str(config)
    try:
        settings = load_settings(
            database_url=db, queue_url=queue, log_level=log_level, log_format=log_format
        )
    except Exception as exc:
        fail(f"invalid configuration: {exc}")
    from tingfeng.logs import configure

    configure(settings.log_level, settings.log_format, role=ctx.invoked_subcommand)
    ctx.obj = {"settings": settings}


@app.command()
def init(ctx: typer.Context) -> None:
    """Create or upgrade the database schema."""
    engine_of(ctx)
    typer.echo(f"database ready: {settings_of(ctx).database_url}")


# --- sources ---------------------------------------------------------------------------------


def _parse_sets(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            fail(f"--set expects KEY=VALUE, got {pair!r}")
        key, value = pair.split("=", 1)
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


def _config_from(url: str | None, config: str | None, sets: list[str], kind: str) -> dict[str, Any]:
    data: dict[str, Any] = {}
    if config:
        try:
            data = json.loads(config)
        except json.JSONDecodeError as exc:
            fail(f"--config is not valid JSON ({exc.msg} at position {exc.pos}).")
        if not isinstance(data, dict):
            fail('--config must be a JSON object, e.g. \'{"url": "https://..."}\'.')
    if url:
        key = {
            "board": "list_url",
            "site_search": "url_template",
            "json_api": "url_template",
            "import": "path",
            "replay": "path",
        }.get(kind, "url")
        data[key] = url
    data.update(_parse_sets(sets))
    return data


@source_app.command("add")
def source_add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="A unique name.")],
    kind: Annotated[
        str, typer.Argument(help="feed, board, site_search, json_api, import, replay, push, lead.")
    ],
    url: Annotated[
        str | None, typer.Option(help="The main URL (or file path) of the source.")
    ] = None,
    config: Annotated[str | None, typer.Option(help="Connector configuration as JSON.")] = None,
    set_: Annotated[list[str], typer.Option("--set", help="KEY=VALUE configuration items.")] = [],  # noqa: B006
    interval: Annotated[str, typer.Option(help="Fetch interval: 90s, 15m, 2h.")] = "15m",
    hot_interval: Annotated[str, typer.Option(help="Interval while hot.")] = "1m",
    timezone: Annotated[
        str | None, typer.Option(help="Time zone for times given without one.")
    ] = None,
    region: Annotated[str | None, typer.Option(help="The region this source concerns.")] = None,
    disabled: Annotated[bool, typer.Option("--disabled", help="Add without fetching yet.")] = False,
) -> None:
    """Add a source (its configuration is checked first)."""
    from tingfeng.collect.errors import ConfigError
    from tingfeng.collect.sources import add_source, issue_push_token, parse_interval
    from tingfeng.db.engine import write_transaction

    settings = settings_of(ctx)
    engine = engine_of(ctx)
    try:
        with write_transaction(engine) as conn:
            source = add_source(
                conn,
                name=name,
                kind=kind,
                config=_config_from(url, config, set_, kind),
                interval_s=parse_interval(interval),
                hot_interval_s=parse_interval(hot_interval),
                timezone=timezone or settings.default_timezone,
                region=region,
                enabled=not disabled,
            )
            token = issue_push_token(conn, source.id) if kind == "push" else None
    except ConfigError as exc:
        fail(exc.message)
    typer.echo(f"added source {source.id}: {source.name} ({source.kind})")
    if token:
        typer.echo(f"push token (shown once, keep it secret): {token}")
        typer.echo(
            f"push with: POST /api/v1/sources/{source.id}/posts  Authorization: Bearer <token>"
        )


def _source_dict(s: Any) -> dict[str, Any]:
    return {
        "id": s.id,
        "name": s.name,
        "kind": s.kind,
        "enabled": s.enabled,
        "interval_s": s.interval_s,
        "hot_interval_s": s.hot_interval_s,
        "hot_until": s.hot_until.isoformat() if s.hot_until else None,
        "timezone": s.timezone,
        "region": s.region,
        "config": s.config,
        "items_total": s.items_total,
    }


@source_app.command("list")
def source_list(
    ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json")] = False
) -> None:
    """List sources."""
    from tingfeng.collect.sources import list_sources

    with engine_of(ctx).connect() as conn:
        sources = list_sources(conn)
    if as_json:
        typer.echo(json.dumps([_source_dict(s) for s in sources], ensure_ascii=False))
        return
    for s in sources:
        state = "on " if s.enabled else "off"
        typer.echo(
            f"{s.id:>4}  {state}  {s.kind:<11} {s.interval_s:>6}s  {s.items_total:>9}  {s.name}"
        )


@source_app.command("show")
def source_show(ctx: typer.Context, ref: str) -> None:
    """Show one source's configuration and health as JSON."""
    from tingfeng.collect.health import health_report
    from tingfeng.collect.sources import SourceNotFound, find_source

    with engine_of(ctx).connect() as conn:
        try:
            source = find_source(conn, ref)
        except SourceNotFound as exc:
            fail(str(exc))
        health = health_report(conn, [source], datetime.now(UTC))[0]
    out = _source_dict(source) | {"health": health.as_dict()}
    typer.echo(json.dumps(out, ensure_ascii=False, indent=2))


@source_app.command("remove")
def source_remove(
    ctx: typer.Context,
    ref: str,
    delete_posts: Annotated[
        bool, typer.Option("--delete-posts", help="Also delete its posts.")
    ] = False,
) -> None:
    """Remove a source; a source with posts is disabled unless --delete-posts."""
    from tingfeng.collect.sources import SourceNotFound, remove_source
    from tingfeng.db.engine import write_transaction

    try:
        with write_transaction(engine_of(ctx)) as conn:
            if delete_posts:
                from tingfeng.retention import delete_posts_of_source

                delete_posts_of_source(conn, ref)
            source = remove_source(conn, ref, keep_posts=not delete_posts)
    except SourceNotFound as exc:
        fail(str(exc))
    verb = (
        "disabled (it has posts; use --delete-posts to delete them too)"
        if source.enabled is False and not delete_posts
        else "removed"
    )
    typer.echo(f"source {source.id} {source.name}: {verb}")


@source_app.command("hot")
def source_hot(
    ctx: typer.Context,
    ref: str,
    minutes: Annotated[int, typer.Option(help="How long hot mode lasts; 0 ends it.")] = 60,
) -> None:
    """Switch a source to its hot interval for a while (an event is active)."""
    from datetime import timedelta

    from sqlalchemy import update

    from tingfeng.collect.sources import SourceNotFound, find_source
    from tingfeng.db.engine import write_transaction
    from tingfeng.db.models import Source

    now = datetime.now(UTC)
    try:
        with write_transaction(engine_of(ctx)) as conn:
            source = find_source(conn, ref)
            until = now + timedelta(minutes=minutes) if minutes > 0 else None
            conn.execute(
                update(Source)
                .where(Source.id == source.id)
                .values(hot_until=until, next_fetch_at=now)
            )
    except SourceNotFound as exc:
        fail(str(exc))
    typer.echo(
        f"{source.name}: hot until {until.isoformat()}"
        if until
        else f"{source.name}: hot mode ended"
    )


@source_app.command("tier")
def source_tier(
    ctx: typer.Context,
    ref: str,
    tier: Annotated[
        str,
        typer.Argument(
            help="central_media, provincial_media, local_media, government, forum, "
            "individual, other (or the Chinese label, e.g. 中央媒体)."
        ),
    ],
) -> None:
    """Set a source's media tier (媒体层级): it weighs the source in heat and grading."""
    from sqlalchemy import update

    from tingfeng.collect.sources import SourceNotFound, find_source
    from tingfeng.db.engine import write_transaction
    from tingfeng.db.models import Source
    from tingfeng.events.heat import TIER_LABELS, MediaTier

    by_label = {label: t for t, label in TIER_LABELS.items()}
    value = by_label.get(tier.strip()) or (
        MediaTier(tier.strip()) if tier.strip() in MediaTier.__members__ else None
    )
    if value is None:
        allowed = ", ".join(f"{t.value} ({label})" for t, label in TIER_LABELS.items())
        fail(f"unknown tier {tier!r}: use one of {allowed}")
    try:
        with write_transaction(engine_of(ctx)) as conn:
            source = find_source(conn, ref)
            conn.execute(update(Source).where(Source.id == source.id).values(tier=value.value))
    except SourceNotFound as exc:
        fail(str(exc))
    typer.echo(f"{source.name}: {value.value} ({value.label})")


@source_app.command("token")
def source_token(ctx: typer.Context, ref: str) -> None:
    """Issue a new push token for a push source (the old one stops working)."""
    from tingfeng.collect.sources import SourceNotFound, find_source, issue_push_token
    from tingfeng.db.engine import write_transaction

    try:
        with write_transaction(engine_of(ctx)) as conn:
            source = find_source(conn, ref)
            if source.kind != "push":
                fail(
                    f"source {source.name} is a {source.kind} source; only push sources take tokens"
                )
            token = issue_push_token(conn, source.id)
    except SourceNotFound as exc:
        fail(str(exc))
    typer.echo(token)


@source_app.command("health")
def source_health(
    ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json")] = False
) -> None:
    """Health of every source: last success, last error, failures, items per day, stale."""
    from tingfeng.collect.health import health_report
    from tingfeng.collect.sources import list_sources

    now = datetime.now(UTC)
    with engine_of(ctx).connect() as conn:
        report = health_report(conn, list_sources(conn), now)
    if as_json:
        typer.echo(json.dumps([h.as_dict() for h in report], ensure_ascii=False))
        return
    for h in report:
        last = h.last_success_at.strftime("%Y-%m-%d %H:%M") if h.last_success_at else "never"
        typer.echo(
            f"{h.id:>4}  {h.status:<8} {h.items_last_24h:>7}/24h  last ok {last:<16}  {h.name}"
        )
        if h.last_error:
            typer.echo(f"      last error: {h.last_error}")


@source_app.command("test")
def source_test(
    ctx: typer.Context,
    ref: Annotated[str | None, typer.Argument(help="An existing source (name or id).")] = None,
    kind: Annotated[str | None, typer.Option(help="Or test a draft source of this kind.")] = None,
    url: Annotated[str | None, typer.Option(help="The draft source's URL.")] = None,
    config: Annotated[
        str | None, typer.Option(help="The draft source's configuration (JSON).")
    ] = None,
    set_: Annotated[list[str], typer.Option("--set")] = [],  # noqa: B006
    limit: Annotated[int, typer.Option(help="Items to show at most.")] = 10,
) -> None:
    """Fetch once and print what would be stored; stores nothing."""
    from tingfeng.collect.preview import preview_source

    if ref is None and kind is None:
        fail("give a source name, or --kind and --url for a draft source")
    try:
        result = preview_source(
            settings_of(ctx),
            engine_of(ctx) if ref is not None else None,
            ref=ref,
            kind=kind,
            config=_config_from(url, config, set_, kind or "") if kind else None,
            limit=limit,
        )
    except LookupError as exc:
        fail(str(exc))
    for row in result.items:
        typer.echo(json.dumps(row, ensure_ascii=False))
    if result.error:
        fail(result.error, 1)
    typer.echo(f"{len(result.items)} items would be stored ({result.errors} unreadable)", err=True)


# --- ingest and search ------------------------------------------------------------------------


@app.command()
def ingest(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="A CED, JSONL, CSV or XLSX file (also .gz).")],
    format: Annotated[
        str, typer.Option("--format", help="ced, jsonl, csv, xlsx or auto.")
    ] = "auto",
    limit: Annotated[int | None, typer.Option(help="Read at most N items.")] = None,
    source: Annotated[
        str | None, typer.Option(help="Source name (default import:<file name>).")
    ] = None,
    mapping: Annotated[
        str | None, typer.Option(help='Field mapping as JSON, e.g. \'{"text": "content"}\'.')
    ] = None,
    preset: Annotated[
        str | None, typer.Option(help="A mapping preset, e.g. import_hotline_12345.")
    ] = None,
    platform: Annotated[
        str | None, typer.Option(help="Platform of the items' ids (weibo, …).")
    ] = None,
) -> None:
    """Import a file; prints {"read", "stored", "duplicates", "errors", "seconds"}."""
    from tingfeng.collect.errors import CollectError
    from tingfeng.ingest.files import IngestFailed, ingest_file

    try:
        stats = ingest_file(
            settings_of(ctx),
            engine_of(ctx),
            file,
            format=format,
            limit=limit,
            source_name=source,
            mapping=json.loads(mapping) if mapping else None,
            preset=preset,
            platform=platform,
        )
    except json.JSONDecodeError as exc:
        fail(f"--mapping is not valid JSON ({exc.msg})")
    except IngestFailed as exc:
        typer.echo(json.dumps(exc.stats.summary(), ensure_ascii=False))
        fail(f"{exc.message} (the {exc.stats.stored} posts stored before this stay stored)")
    except CollectError as exc:
        fail(exc.message)
    except (OSError, ValueError, LookupError) as exc:
        fail(getattr(exc, "message", None) or str(exc))
    typer.echo(json.dumps(stats.summary(), ensure_ascii=False))
    for sample in stats.error_samples[:5]:
        typer.echo(f"skipped {sample}", err=True)


@app.command()
def search(
    ctx: typer.Context,
    query: Annotated[str, typer.Argument(help='Terms, "phrases", OR, -excluded, (groups).')],
    count_only: Annotated[
        bool, typer.Option("--count", help="Print only the number of matches.")
    ] = False,
    limit: Annotated[int, typer.Option(help="Results to show.")] = 20,
    offset: Annotated[int, typer.Option(help="Skip this many results.")] = 0,
    sort: Annotated[str, typer.Option(help="newest, oldest or relevance.")] = "newest",
    since: Annotated[str | None, typer.Option(help="From this date/time (ISO 8601).")] = None,
    until: Annotated[str | None, typer.Option(help="Before this date/time (ISO 8601).")] = None,
    source: Annotated[list[str], typer.Option(help="Only these sources (name or id).")] = [],  # noqa: B006
    lang: Annotated[list[str], typer.Option(help="Only these languages (zh, en, other).")] = [],  # noqa: B006
    polarity: Annotated[list[str], typer.Option(help="negative, neutral, positive.")] = [],  # noqa: B006
    emotion: Annotated[list[str], typer.Option(help="angry, sad, fear, happy, ...")] = [],  # noqa: B006
    category: Annotated[
        list[str], typer.Option(help="Category slugs (tingfeng category list).")
    ] = [],  # noqa: B006
    region: Annotated[
        list[str], typer.Option(help="Division code or name, e.g. 330100 or 杭州.")
    ] = [],  # noqa: B006
    needs_verification: Annotated[
        bool | None,
        typer.Option("--needs-verification/--verified-only", help="By the credibility flag."),
    ] = None,
    where: Annotated[
        str | None,
        typer.Option(help="Also a query in the topic language, e.g. 'sentiment:negative NEAR...'."),
    ] = None,
    topic: Annotated[
        list[str], typer.Option(help="Only posts matched by this saved topic (name or id).")
    ] = [],  # noqa: B006
    keywords: Annotated[
        int, typer.Option(help="Print the N keywords of the matching posts (newest 2,000) instead.")
    ] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per result.")] = False,
) -> None:
    """Full-text search over stored posts, filtered by their readings if asked."""
    from tingfeng.analyze.regions import region_codes
    from tingfeng.collect.sources import SourceNotFound, find_source
    from tingfeng.search.query import QueryError
    from tingfeng.search.service import SearchFilters, count
    from tingfeng.search.service import search as run_search

    try:
        codes = region_codes(region)
    except ValueError as exc:
        fail(str(exc))
    filters = SearchFilters(
        since=_parse_time(since, "--since"), until=_parse_time(until, "--until"), langs=list(lang),
        polarities=list(polarity), emotions=list(emotion), categories=list(category),
        regions=codes, needs_verification=needs_verification,
    )  # fmt: skip
    with engine_of(ctx).connect() as conn:
        try:
            filters.source_ids = [find_source(conn, ref).id for ref in source]
            if topic:
                from tingfeng.topics.store import get_topic

                filters.topic_ids = [get_topic(conn, ref).id for ref in topic]
            if where:
                from tingfeng.search.service import where_ids

                filters.post_ids = where_ids(
                    conn, where, since=filters.since, until=filters.until,
                    source_ids=filters.source_ids or None,
                )  # fmt: skip
            if keywords:
                from tingfeng.search.service import group_keywords

                for word, weight in group_keywords(conn, query, filters, k=keywords):
                    typer.echo(f"{word}\t{weight:.3f}")
                return
            if count_only:
                typer.echo(count(conn, query, filters))
                return
            page = run_search(conn, query, filters, sort=sort, limit=limit, offset=offset)
        except (QueryError, SourceNotFound, ValueError) as exc:
            fail(str(exc))
    for hit in page.hits:
        if as_json:
            typer.echo(
                json.dumps(
                    {
                        "id": hit.id,
                        "source_id": hit.source_id,
                        "title": hit.title,
                        "url": hit.url,
                        "published_at": hit.published_at.isoformat() if hit.published_at else None,
                        "lang": hit.lang,
                        "dup_group": hit.dup_group,
                        "snippet_html": hit.snippet_html,
                    },
                    ensure_ascii=False,
                )
            )
        else:
            when = hit.published_at.strftime("%Y-%m-%d %H:%M") if hit.published_at else "?"
            plain = hit.snippet_html.replace("<mark>", "[").replace("</mark>", "]")
            import html as _html

            typer.echo(f"{hit.id:>8}  {when}  {_html.unescape(plain)[:160]}")


def _parse_time(value: str | None, option: str) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        fail(f"{option} {value!r} is not a date: use e.g. 2024-03-05 or 2024-03-05T14:00+08:00")
    if parsed.tzinfo is None:
        from zoneinfo import ZoneInfo

        parsed = parsed.replace(tzinfo=ZoneInfo("Asia/Shanghai"))
    return parsed


# --- leads ------------------------------------------------------------------------------------


@lead_app.command("add")
def lead_add(
    ctx: typer.Context,
    url: Annotated[str | None, typer.Option(help="The URL of the post or article.")] = None,
    text: Annotated[str | None, typer.Option(help="Or the pasted text.")] = None,
    by: Annotated[str, typer.Option("--by", help="Who submits the lead.")] = "",
    note: Annotated[str | None, typer.Option(help="A note for the analysts.")] = None,
) -> None:
    """Submit a lead (a URL, fetched and extracted, or a pasted text)."""
    from tingfeng.collect.errors import CollectError
    from tingfeng.ingest.leads import submit_lead

    if not (url or text):
        fail("give --url or --text")
    if not by.strip():
        fail("say who submits the lead with --by")
    try:
        post_id, stored = submit_lead(
            settings_of(ctx), engine_of(ctx), url=url, text=text, submitted_by=by, note=note
        )
    except CollectError as exc:
        fail(exc.message)
    typer.echo(json.dumps({"post_id": post_id, "new": stored}))


@dict_app.command("add")
def dict_add(
    ctx: typer.Context,
    words: Annotated[list[str], typer.Argument(help="Words to keep whole, e.g. 东风镇卫生院.")],
    freq: Annotated[int | None, typer.Option(help="Frequency (higher wins ties).")] = None,
    tag: Annotated[
        str | None, typer.Option(help="Part-of-speech tag, e.g. ns for a place.")
    ] = None,
) -> None:
    """Add words to the user dictionary (used by processes started afterwards)."""
    path = settings_of(ctx).user_dict_file
    path.parent.mkdir(parents=True, exist_ok=True)
    existing = path.read_text(encoding="utf-8-sig").split("\n") if path.exists() else []
    known = {line.split()[0] for line in existing if line.strip() and not line.startswith("#")}
    added = []
    with path.open("a", encoding="utf-8") as handle:
        for word in words:
            word = word.strip()
            if not word or any(ch.isspace() for ch in word):
                fail(f"{word!r} is not a single word: words cannot contain spaces")
            if word in known:
                continue
            handle.write(" ".join(x for x in (word, str(freq) if freq else None, tag) if x) + "\n")
            known.add(word)
            added.append(word)
    typer.echo(f"added {len(added)} words to {path}; restart the service to use them")


@dict_app.command("list")
def dict_list(ctx: typer.Context) -> None:
    """Show the user dictionary."""
    from tingfeng.analyze.segment import read_user_dict

    path = settings_of(ctx).user_dict_file
    if not path.exists():
        typer.echo(f"no user dictionary yet ({path})", err=True)
        return
    for word, freq, tag in read_user_dict(path):
        typer.echo(" ".join(x for x in (word, str(freq) if freq else None, tag) if x))


# --- serving ----------------------------------------------------------------------------------


@app.command()
def serve(
    ctx: typer.Context,
    role: Annotated[str, typer.Option(help="all (embedded), web, scheduler or worker.")] = "all",
    host: Annotated[str | None, typer.Option(help="Listen address.")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port.")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker threads (worker/all roles).")] = None,
) -> None:
    """Run the service: everything in one process, or one role of a scale-out deployment."""
    from tingfeng import logs
    from tingfeng.service import ROLES, run_role

    if role not in ROLES:
        fail(f"unknown role {role!r}: choose one of {', '.join(ROLES)}")
    settings = settings_of(ctx)
    updates: dict[str, Any] = {}
    if host:
        updates["web_host"] = host
    if port:
        updates["web_port"] = port
    if workers:
        updates["workers"] = workers
    settings = settings.model_copy(update=updates)
    logs.set_role(role)
    _hint_first_user(engine_of(ctx))  # migrates before anything starts
    run_role(settings, role)


@app.command()
def launch(
    ctx: typer.Context,
    web: Annotated[int, typer.Option("--web", help="Web processes, on consecutive ports.")] = 2,
    workers: Annotated[int, typer.Option("--workers", help="Worker processes.")] = 2,
    threads: Annotated[int, typer.Option("--threads", help="Threads per worker process.")] = 2,
    host: Annotated[str | None, typer.Option(help="Listen address of the web processes.")] = None,
    port: Annotated[int | None, typer.Option(help="Port of the first web process.")] = None,
) -> None:
    """Scale-out on one machine: web, scheduler and worker processes, restarted if they die.

    Needs a queue URL (Redis): the processes share work through it. Put a reverse proxy in
    front of the web ports (docs/deployment.md)."""
    from tingfeng.launcher import Launcher, plan

    settings = settings_of(ctx)
    if not settings.queue_url:
        fail(
            "launch runs separate processes, which share work through Redis: give --queue "
            "redis://HOST:PORT/DB (or queue_url in tingfeng.toml); for one process use `serve`"
        )
    if web < 1 or workers < 1 or threads < 1:
        fail("--web, --workers and --threads must be at least 1")
    _hint_first_user(engine_of(ctx))  # migrates once, before any child starts
    first = port or settings.web_port
    children = plan(
        settings, web=web, workers=workers, threads=threads,
        host=host or settings.web_host, port=first,
    )  # fmt: skip
    typer.echo(
        f"launching {web} web process(es) on ports {first}-{first + web - 1}, one scheduler and "
        f"{workers} worker(s); Ctrl-C or SIGTERM stops them all",
        err=True,
    )
    raise typer.Exit(Launcher(children).run())


def _hint_first_user(engine: Any) -> None:
    """Every page needs signing in: say how to make the first account when there is none."""
    from sqlalchemy import select

    from tingfeng.db.models import User

    with engine.connect() as conn:
        if conn.execute(select(User.id).where(User.password_hash.is_not(None))).first():
            return
    typer.echo(
        "nobody can sign in yet: add an administrator first, e.g.\n"
        "  tingfeng user add --username admin --password '…' --role admin",
        err=True,
    )


demo_app = typer.Typer(
    help="The demo: a live replay of CED and news feeds (default), or `seed` for a ready-made "
    "demonstration database.",
)
app.add_typer(demo_app, name="demo")


@demo_app.callback(invoke_without_command=True)
def demo(
    ctx: typer.Context,
    speed: Annotated[
        float, typer.Option(help="Replay speed: seconds of data per second.")
    ] = 1800.0,
    feeds: Annotated[
        bool, typer.Option(help="Also add the starter set of public news feeds.")
    ] = True,
    ced: Annotated[Path | None, typer.Option(help="The CED cascades file to replay.")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port.")] = None,
    seed: Annotated[
        bool,
        typer.Option(
            help="First fill the database with the demonstration office and its cases "
            "(`demo seed`), unless it already has them."
        ),
    ] = False,
) -> None:
    """Set up the demo sources (CED replay, news feeds) and serve."""
    if ctx.invoked_subcommand is not None:
        return
    from tingfeng.demo import find_ced, setup_demo

    # The demo shows the public message board too.
    settings = settings_of(ctx).model_copy(update={"board_enabled": True})
    if port:
        settings = settings.model_copy(update={"web_port": port})
    if seed:
        from tingfeng.demo.seed import SeedFailed, SeedRefused, seed_demo, summary_lines

        path = find_ced(ced)
        if path is None:
            typer.echo("no CED data set found: the demonstration cases are not seeded", err=True)
        else:
            try:
                report = seed_demo(
                    settings, engine_of(ctx), ced_path=path,
                    progress=lambda line: typer.echo(line, err=True),
                )  # fmt: skip
                for line in summary_lines(report):
                    typer.echo(line)
            except SeedRefused:
                typer.echo("the demonstration office is already there: not seeded again")
            except SeedFailed as exc:
                typer.echo(f"the demonstration cases could not all be seeded: {exc}", err=True)
    messages = setup_demo(settings, engine_of(ctx), speed=speed, with_feeds=feeds, ced_path=ced)
    for line in messages:
        typer.echo(line)
    from tingfeng.service import run_role

    _hint_first_user(engine_of(ctx))
    typer.echo(
        f"open http://{settings.web_host}:{settings.web_port}/ and sign in; posts arrive at /live"
    )
    run_role(settings, "all")


@demo_app.command("seed")
def demo_seed(
    ctx: typer.Context,
    ced: Annotated[
        Path | None,
        typer.Option(help="The CED cascades file (default: ../shared/data/rumor/ced/…)."),
    ] = None,
    posts: Annotated[
        int, typer.Option(help="How many CED posts to ingest (each story with ≤20 reposts).")
    ] = 3000,
    no_evidence: Annotated[
        bool, typer.Option("--no-evidence", help="Skip capturing evidence pages.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Fill a fresh database with a realistic demonstration: an office with users of every
    role, topics, events and alerts from the real CED posts, cases in every state with replies
    and evidence. Refuses (exit 2) a database that already has cases."""
    from tingfeng.demo import find_ced
    from tingfeng.demo.seed import MIN_POSTS, SeedFailed, SeedRefused, seed_demo, summary_lines

    if ced is not None and not ced.exists():
        fail(f"the CED file {ced} does not exist")
    path = find_ced(ced)
    if path is None:
        fail(
            "the CED data set was not found (looked for ../shared/data/rumor/ced/"
            "cascades.jsonl.gz and $TINGFENG_DEMO_CED): pass --ced FILE"
        )
    if posts < MIN_POSTS:
        fail(f"--posts must be at least {MIN_POSTS}, so that every kind of case has a story")
    try:
        report = seed_demo(
            settings_of(ctx),
            engine_of(ctx),
            ced_path=path,
            posts=posts,
            evidence=not no_evidence,
            progress=None if as_json else lambda line: typer.echo(line, err=True),
        )
    except SeedRefused as exc:
        fail(str(exc))
    except SeedFailed as exc:
        fail(str(exc), 1)
    if as_json:
        dump_json(report)
    else:
        for line in summary_lines(report):
            typer.echo(line)


# --- benchmarks -------------------------------------------------------------------------------


@bench_app.command("ingest")
def bench_ingest(
    ctx: typer.Context,
    input: Annotated[Path, typer.Option("--input", help="CED cascades file (or any import file).")],
    limit: Annotated[int | None, typer.Option(help="Items to ingest at most.")] = None,
    queue: Annotated[
        str | None,
        typer.Option("--queue", help="Scale-out: a Redis URL; the file is drained by workers."),
    ] = None,
    workers: Annotated[
        int, typer.Option("--workers", help="With --queue: worker processes to start.")
    ] = 1,
    threads: Annotated[
        int,
        typer.Option(
            "--threads", help="Threads per worker process (1: the processes are what is compared)."
        ),
    ] = 1,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Ingest a file end to end and report posts/s and peak memory; with --queue, drained
    by --workers worker processes (tingfeng serve --role worker) from Redis."""
    from tingfeng.ingest.bench import run_ingest_bench, run_worker_bench

    settings = settings_of(ctx)
    if queue:
        settings = settings.model_copy(update={"queue_url": queue})
    if not input.exists():
        fail(f"{input} does not exist")
    if workers < 1 or threads < 1:
        fail("--workers and --threads must be at least 1")
    t0 = time.perf_counter()
    if settings.queue_url:
        try:
            result = run_worker_bench(
                settings, engine_of(ctx), input, workers=workers, threads=threads, limit=limit
            )
        except (ValueError, RuntimeError) as exc:
            fail(str(exc))
    else:
        result = run_ingest_bench(settings, engine_of(ctx), input, limit=limit)
    result.setdefault("wall_seconds", round(time.perf_counter() - t0, 3))
    if as_json:
        typer.echo(json.dumps(result, ensure_ascii=False))
    else:
        for key, value in result.items():
            typer.echo(f"{key:>16}: {value}")


@bench_app.command("alerts")
def bench_alerts(
    rate: Annotated[float, typer.Option("--rate", help="Posts per second pushed.")] = 100.0,
    seconds: Annotated[float, typer.Option("--seconds", help="How long to push.")] = 10.0,
    fire_every: Annotated[
        int, typer.Option("--fire-every", help="One post in N fires the rule.")
    ] = 20,
    no_wake: Annotated[
        bool, typer.Option("--no-wake", help="Baseline: the sender only polls the outbox.")
    ] = False,
    no_helper: Annotated[
        bool,
        typer.Option("--no-helper", help="Baseline: pushed posts analysed in the web process."),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Alert latency from push to a webhook receiver, with lost and duplicated alerts, on a
    fresh embedded instance (its own temporary database and `tingfeng serve`)."""
    from tingfeng.alerts.bench import run_alert_bench

    if rate <= 0 or seconds <= 0 or fire_every < 1:
        fail("--rate and --seconds must be positive and --fire-every at least 1")
    try:
        result = run_alert_bench(
            rate, seconds, fire_every=fire_every, wake=not no_wake, helper=not no_helper
        )
    except RuntimeError as exc:
        fail(str(exc))
    if as_json:
        typer.echo(json.dumps(result, ensure_ascii=False))
    else:
        for key, value in result.items():
            typer.echo(f"{key:>22}: {value}")


# Registers the analysis commands (eval, train, reanalyze, analyze, category) on `app`.
from tingfeng.cli import alerts as _alerts  # noqa: E402, F401
from tingfeng.cli import analysis as _analysis  # noqa: E402, F401
from tingfeng.cli import backup as _backup  # noqa: E402, F401

# Registers `case`, `user`, `department` and `audit` (cases, sign-in users, the audit log).
from tingfeng.cli import cases as _cases  # noqa: E402, F401

# Registers `deadline` (due times on the Chinese working-day calendar).
from tingfeng.cli import deadline as _deadline  # noqa: E402, F401

# Registers `people`, `duty` and `alerts` (the office, the duty roster, alert rules and channels).
from tingfeng.cli import duty as _duty  # noqa: E402, F401

# Registers `topics` and `events` (the topic language, events, grading).
from tingfeng.cli import events as _events  # noqa: E402, F401

# Registers `evidence` (取证: WARC + screenshot capture, listing, hash verification).
from tingfeng.cli import evidence as _evidence  # noqa: E402, F401

# A locked, read-only, full or unreachable database ends a command with a sentence.
from tingfeng.cli import faults as _faults  # noqa: E402, F401

# Registers `ready` (the readiness checks of /readyz, for machines without a web server).
from tingfeng.cli import health as _health  # noqa: E402, F401
from tingfeng.cli import privacy as _privacy  # noqa: E402, F401

# Registers `report` (日报告表, 周报, 月报, 季通报, 专报, 零报告 as DOCX, PDF, HTML, XLSX).
from tingfeng.cli import reports as _reports  # noqa: E402, F401
from tingfeng.cli import topics as _topics  # noqa: E402, F401

if __name__ == "__main__":  # pragma: no cover
    app(sys.argv[1:])
