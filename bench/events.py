"""Event grouping benchmark: B-cubed quality, the plain baseline beside it, and stream speed.

`python -m bench.events [--quick]` runs it alone. In one run it measures:

1. B-cubed precision/recall/F1 of `EventGrouper` (through `evaluate_file`, the same code as the
   live pipeline) on mmds2025-dev (the only file the defaults were tuned on), mmds2025-test and
   ecbplus (report only).
2. The plain baseline on the same files: TF-IDF over character 2-3-grams, average-linkage
   clustering, cosine threshold tuned on mmds2025-dev in this same run.
3. Speed on a time-ordered stream of CED Weibo posts (source posts and their reposts), posts
   per wall-second, with repost links and with links removed (content only), and the share of
   reposts that land in their cascade's event in each case.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "data"
FILES = ("mmds2025-dev", "mmds2025-test", "ecbplus")
STREAM_POSTS = 100_000
QUICK_STREAM_POSTS = 20_000
BASELINE_THRESHOLDS = [round(0.20 + 0.05 * i, 2) for i in range(11)]  # 0.20 .. 0.70

# (key in the result, what, floor): met when value >= floor.
FLOORS: list[tuple[str, str, float]] = [
    ("grouper.mmds2025-test.f1", "mmds2025-test B-cubed F1", 0.85),
    ("grouper.ecbplus.f1", "ecbplus B-cubed F1", 0.80),
    ("speed.links.posts_per_s", "CED stream with links, posts/s", 5_000.0),
    ("speed.content.posts_per_s", "CED stream content only, posts/s", 5_000.0),
]


def _get(result: dict[str, Any], dotted: str) -> Any:
    node: Any = result
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


# -- quality -----------------------------------------------------------------------------------


def grouper_scores(events_dir: Path) -> dict[str, Any]:
    from tingfeng.events.evaluation import evaluate_file

    return {name: evaluate_file(events_dir / f"{name}.jsonl") for name in FILES}


def _baseline_labels(texts: list[str], threshold: float) -> list[int]:
    from sklearn.cluster import AgglomerativeClustering
    from sklearn.feature_extraction.text import TfidfVectorizer

    matrix = TfidfVectorizer(analyzer="char", ngram_range=(2, 3), sublinear_tf=True).fit_transform(
        texts
    )
    model = AgglomerativeClustering(
        n_clusters=None, metric="cosine", linkage="average", distance_threshold=1.0 - threshold
    )
    return model.fit_predict(matrix.toarray()).tolist()


def baseline_scores(events_dir: Path) -> dict[str, Any]:
    """Char 2-3-gram TF-IDF + average-linkage; threshold chosen on mmds2025-dev here."""
    from tingfeng.analyze.normalize import normalize
    from tingfeng.events.evaluation import bcubed, read_event_file

    def score(name: str, threshold: float) -> dict[str, Any]:
        records = read_event_file(events_dir / f"{name}.jsonl")
        texts = [normalize(f"{r.title}\n{r.text}") for r in records]
        started = time.perf_counter()
        labels = _baseline_labels(texts, threshold)
        seconds = time.perf_counter() - started
        result = bcubed(
            {r.id: label for r, label in zip(records, labels, strict=True)},
            {r.id: r.event for r in records},
        )
        return {
            "precision": round(result.precision, 4),
            "recall": round(result.recall, 4),
            "f1": round(result.f1, 4),
            "threshold": threshold,
            "seconds": round(seconds, 3),
        }

    dev = {t: score("mmds2025-dev", t) for t in BASELINE_THRESHOLDS}
    best = max(dev, key=lambda t: dev[t]["f1"])
    out: dict[str, Any] = {
        "threshold_tuned_on_dev": best,
        "dev_sweep": {t: dev[t]["f1"] for t in dev},
    }
    out["mmds2025-dev"] = dev[best]
    for name in FILES[1:]:
        out[name] = score(name, best)
    return out


# -- CED stream --------------------------------------------------------------------------------


def ced_stream(path: Path, n: int) -> list[dict[str, Any]]:
    """The first cascades' posts (sources and reposts) up to `n`, in time order."""
    posts: list[dict[str, Any]] = []
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        for line in handle:
            cascade = json.loads(line)
            source = str(cascade["id"])
            posts.append(
                {"key": source, "text": cascade.get("text") or "", "time": float(cascade["time"]),
                 "parent": None, "cascade": source}
            )  # fmt: skip
            for repost in cascade.get("reposts") or ():
                try:
                    when = datetime.strptime(repost["date"], "%Y-%m-%d %H:%M:%S")
                except (KeyError, TypeError, ValueError):
                    continue
                posts.append(
                    {"key": str(repost["mid"]), "text": repost.get("text") or "",
                     "time": when.replace(tzinfo=UTC).timestamp(),
                     "parent": str(repost.get("parent") or source), "cascade": source}
                )  # fmt: skip
            if len(posts) >= n:
                break
    posts = posts[:n]
    posts.sort(key=lambda p: p["time"])
    return posts


def bench_stream(posts: list[dict[str, Any]], *, links: bool) -> dict[str, Any]:
    from tingfeng.events.grouping import EventGrouper, GroupItem

    items = [
        GroupItem(
            key=p["key"],
            text=p["text"],
            time=datetime.fromtimestamp(p["time"], UTC),
            parent=p["parent"] if links else None,
        )
        for p in posts
    ]
    grouper = EventGrouper()
    started = time.perf_counter()
    events = grouper.add_many(items)
    seconds = time.perf_counter() - started
    event_of = dict(zip((p["key"] for p in posts), events, strict=True))
    reposts = [p for p in posts if p["parent"] is not None]

    def in_cascade(p: dict[str, Any]) -> bool:
        return event_of[p["key"]] == event_of.get(p["cascade"])

    joined = sum(map(in_cascade, reposts))
    # Most reposts say nothing of their own ("", "转发微博", emoticons): by content alone they
    # cannot join anything, so the share is also given over reposts with at least one term.
    extractor = grouper.extractor
    wordy = [p for p in reposts if extractor.tokens(p["text"])]
    return {
        "posts": len(posts),
        "seconds": round(seconds, 2),
        "posts_per_s": round(len(posts) / seconds, 1) if seconds else None,
        "events": len(set(events)),
        "cascades": len({p["cascade"] for p in posts}),
        "reposts": len(reposts),
        "repost_share_in_cascade_event": round(joined / len(reposts), 4) if reposts else None,
        "reposts_with_terms": len(wordy),
        "share_of_those_in_cascade_event": (
            round(sum(map(in_cascade, wordy)) / len(wordy), 4) if wordy else None
        ),
        "open_events_at_end": grouper.open_events,
    }


# -- run and print -----------------------------------------------------------------------------


def run(data: Path, *, quick: bool = False) -> dict[str, Any]:
    """Everything above on the shared data folder `data`."""
    from tingfeng.events.similarity import _glossary

    events_dir = data / "events"
    ced = data / "rumor" / "ced" / "cascades.jsonl.gz"
    print("grouping event files …", file=sys.stderr)
    result: dict[str, Any] = {
        "cc_cedict_glossary_words": len(_glossary()),
        "grouper": grouper_scores(events_dir),
    }
    print("baseline …", file=sys.stderr)
    result["baseline"] = baseline_scores(events_dir)
    n = QUICK_STREAM_POSTS if quick else STREAM_POSTS
    print(f"CED stream of {n:,} posts …", file=sys.stderr)
    posts = ced_stream(ced, n)
    result["speed"] = {
        "links": bench_stream(posts, links=True),
        "content": bench_stream(posts, links=False),
    }
    result["floors"] = {
        key: {"what": what, "floor": floor, "value": _get(result, key),
              "met": (_get(result, key) or 0) >= floor}
        for key, what, floor in FLOORS
    }  # fmt: skip
    return result


def print_table(result: dict[str, Any]) -> None:
    """Markdown tables of a `run` result."""
    print(f"\nCC-CEDICT glossary words: {result['cc_cedict_glossary_words']:,}")
    print("\n| B-cubed | grouper P | R | F1 | baseline P | R | F1 |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name in FILES:
        g, b = result["grouper"][name], result["baseline"][name]
        print(
            f"| {name} | {g['precision']:.3f} | {g['recall']:.3f} | {g['f1']:.3f} | "
            f"{b['precision']:.3f} | {b['recall']:.3f} | {b['f1']:.3f} |"
        )
    print(
        f"\nbaseline threshold tuned on mmds2025-dev: {result['baseline']['threshold_tuned_on_dev']}"
    )
    print(
        "\n| CED stream | posts | posts/s | events | reposts in cascade's event "
        "| same, reposts with terms |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for mode, s in result["speed"].items():
        print(
            f"| {mode} | {s['posts']:,} | {s['posts_per_s']:,.0f} | {s['events']:,} | "
            f"{s['repost_share_in_cascade_event']:.3f} | "
            f"{s['share_of_those_in_cascade_event']:.3f} ({s['reposts_with_terms']:,}) |"
        )
    print("\n| floor | value | floor | met |\n|---|---:|---:|---|")
    for f in result["floors"].values():
        value = f["value"]
        shown = f"{value:,.3f}" if isinstance(value, float) and value < 10 else f"{value:,.0f}"
        print(f"| {f['what']} | {shown} | {f['floor']:,} | {'yes' if f['met'] else 'NO'} |")


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.events", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="shared data directory")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_STREAM_POSTS:,} CED posts")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    if not (args.data / "events").is_dir():
        print(f"error: {args.data} has no events/ (pass --data DIR)", file=sys.stderr)
        return 2
    result = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        **run(args.data, quick=args.quick),
    }
    print_table(result)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"events-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    path.write_text(json.dumps(result, ensure_ascii=False, indent=2), encoding="utf-8")
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
