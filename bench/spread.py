"""Spread-path benchmark: the repost tree of every CED cascade (3,387 trees, 1.27 M reposts).

`python -m bench.spread [DATA_DIR] [--quick]` runs it. It measures, in one pass:

1. Speed of `tingfeng.events.spread.spread_path` alone (trees and nodes per CPU-second of this
   process), apart from reading and parsing the file (`cascade_nodes`, timed on its own).
2. Shape: depth, breadth, size and structural virality (Goel et al.), as percentiles; the
   share of orphans, duplicate keys, self-parents, cycles and time inversions in the real data.
3. Rumours against the rest (CED labels): median depth, virality, depth-1 share, time to the
   first repost. This describes the data set; it is not a model and nothing is tuned on it.
"""

from __future__ import annotations

import gzip
import json
import statistics
import time
from pathlib import Path
from typing import Any

CED = Path("rumor") / "ced" / "cascades.jsonl.gz"
QUICK_CASCADES = 400


def run(data: Path, *, quick: bool = False) -> dict[str, Any]:
    """`data`: the shared data directory (or the cascades file itself)."""
    from tingfeng.events.spread import cascade_nodes, spread_path

    path = data if data.is_file() else data / CED
    parse_cpu = tree_cpu = 0.0
    rows: list[dict[str, Any]] = []
    totals = dict.fromkeys(
        ("nodes", "orphans", "duplicates", "self_parents", "cycles", "inversions"), 0
    )
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        for i, line in enumerate(handle):
            if quick and i >= QUICK_CASCADES:
                break
            record = json.loads(line)
            c0 = time.process_time()
            root, root_time, nodes = cascade_nodes(record)
            c1 = time.process_time()
            s = spread_path(root, nodes, root_time=root_time)
            c2 = time.process_time()
            parse_cpu += c1 - c0
            tree_cpu += c2 - c1
            totals["nodes"] += s.size - 1
            totals["orphans"] += s.orphans
            totals["duplicates"] += s.duplicates
            totals["self_parents"] += s.self_parents
            totals["cycles"] += s.cycles_broken
            totals["inversions"] += s.time_inversions
            first = s.generations[0].first_time_s if s.generations else None
            rows.append(
                {
                    "label": record.get("label"),
                    "size": s.size,
                    "depth": s.depth,
                    "breadth": s.breadth,
                    "virality": s.structural_virality,
                    "direct_share": (s.generations[0].count / (s.size - 1)) if s.size > 1 else None,
                    "first_repost_s": first,
                }
            )
    n = len(rows)
    return {
        "cascades": n,
        "quick": quick,
        "speed": {
            "tree_cpu_s": round(tree_cpu, 3),
            "parse_cpu_s": round(parse_cpu, 3),
            "cascades_per_cpu_s": round(n / tree_cpu, 1) if tree_cpu else None,
            "nodes_per_cpu_s": round(totals["nodes"] / tree_cpu, 1) if tree_cpu else None,
            "nodes_per_cpu_s_with_parsing": (
                round(totals["nodes"] / (tree_cpu + parse_cpu), 1) if tree_cpu else None
            ),
        },
        "totals": totals,
        "shares": {
            k: round(totals[k] / totals["nodes"], 6) if totals["nodes"] else 0.0
            for k in ("orphans", "duplicates", "self_parents", "inversions")
        },
        "shape": {k: _spread(rows, k) for k in ("size", "depth", "breadth", "virality")},
        "by_label": {
            label: {
                "cascades": sum(1 for r in rows if r["label"] == label),
                **{
                    k: _median([r[k] for r in rows if r["label"] == label])
                    for k in ("size", "depth", "breadth", "virality", "direct_share")
                },
                "depth_mean": _mean([r["depth"] for r in rows if r["label"] == label]),
                "virality_mean": _mean([r["virality"] for r in rows if r["label"] == label]),
                "first_repost_s_median": _median(
                    [r["first_repost_s"] for r in rows if r["label"] == label]
                ),
            }
            for label in sorted({r["label"] for r in rows if r["label"]})
        },
    }


def _values(values: list[Any]) -> list[float]:
    return sorted(float(v) for v in values if v is not None)


def _median(values: list[Any]) -> float | None:
    v = _values(values)
    return round(statistics.median(v), 4) if v else None


def _mean(values: list[Any]) -> float | None:
    v = _values(values)
    return round(statistics.fmean(v), 4) if v else None


def _spread(rows: list[dict[str, Any]], key: str) -> dict[str, float | None]:
    v = _values([r[key] for r in rows])
    if not v:
        return {}

    def pct(p: float) -> float:
        return round(v[min(len(v) - 1, round(p * (len(v) - 1)))], 3)

    return {
        "min": round(v[0], 3),
        "p25": pct(0.25),
        "median": pct(0.5),
        "p75": pct(0.75),
        "p95": pct(0.95),
        "max": round(v[-1], 3),
        "mean": round(statistics.fmean(v), 3),
    }


def print_table(r: dict[str, Any]) -> None:
    s, t = r["speed"], r["totals"]
    print(f"\nspread paths: {r['cascades']:,} CED cascades, {t['nodes']:,} reposts")
    print("\n| speed | value |\n|---|---:|")
    print(f"| cascades/s per core (spread_path) | {s['cascades_per_cpu_s']:,.0f} |")
    print(f"| reposts/s per core (spread_path) | {s['nodes_per_cpu_s']:,.0f} |")
    print(f"| reposts/s per core with parsing | {s['nodes_per_cpu_s_with_parsing']:,.0f} |")
    print(f"| CPU s in spread_path / in parsing | {s['tree_cpu_s']} / {s['parse_cpu_s']} |")
    print("\n| repaired links | count | share of reposts |\n|---|---:|---:|")
    for key in ("orphans", "duplicates", "self_parents", "inversions"):
        print(f"| {key} | {t[key]:,} | {r['shares'][key]:.4%} |")
    print(f"| cycles broken | {t['cycles']:,} | |")
    print("\n| shape | min | p25 | median | p75 | p95 | max | mean |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for key, d in r["shape"].items():
        cells = " | ".join(f"{d[c]:g}" for c in ("min", "p25", "median", "p75", "p95", "max"))
        print(f"| {key} | {cells} | {d['mean']:g} |")
    print(
        "\n| label | cascades | median size | median depth | mean depth | median virality | "
        "mean virality | median direct share | median s to first repost |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for label, d in r["by_label"].items():
        print(
            f"| {label} | {d['cascades']:,} | {d['size']:g} | {d['depth']:g} | "
            f"{d['depth_mean']:g} | {d['virality']:.3f} | {d['virality_mean']:.3f} | "
            f"{d['direct_share']:.3f} | {d['first_repost_s_median']:g} |"
        )


if __name__ == "__main__":
    import sys

    root = Path(__file__).resolve().parent.parent
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    data = Path(args[0]) if args else root.parent / "shared" / "data"
    print_table(run(data, quick="--quick" in sys.argv))
