"""Alert benchmark: latency from a post pushed to its alert at a webhook receiver, lost and
duplicated alerts, at 100 and 1,000 posts/s (`tingfeng bench alerts` each time, on a fresh
embedded instance). Baselines in the same run: the sender's wake-up turned off (`--no-wake`:
it only polls the outbox every second) at 100 posts/s, and pushed posts analysed in the web
process instead of the helper (`--no-helper`, tingfeng.ingest.helper) at 1,000 posts/s.

`python -m bench alerts [--quick]` runs it; --quick pushes for 5 s instead of 20.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

FLOORS = {"p99_ms_at_1000": 1000.0, "lost": 0, "duplicated": 0}


def run(data: Path, *, quick: bool = False) -> dict[str, Any]:
    from tingfeng.alerts.bench import run_alert_bench

    seconds = 5.0 if quick else 20.0
    runs = [
        run_alert_bench(100, seconds),
        run_alert_bench(1000, seconds),
        run_alert_bench(100, seconds, wake=False),
        run_alert_bench(1000, seconds, helper=False),
    ]
    return {"runs": runs, "floors": FLOORS}


def print_table(r: dict[str, Any]) -> None:
    print("\nalerts: post pushed → alert at a loopback webhook (one post in 20 fires the rule)")
    print(
        "\n| rate (posts/s) | set-up | achieved | alerts sent | received | lost | duplicated "
        "| p50 ms | p95 ms | p99 ms | > 1 s | push p99 ms |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for x in r["runs"]:
        print(
            f"| {x['rate']:,.0f} | {setup_label(x)} "
            f"| {x['posts_per_s_achieved']:,.0f} | {x['sent']} | {x['received']} | {x['lost']} "
            f"| {x['duplicated']} | {x['p50_ms']} | {x['p95_ms']} | {x['p99_ms']} "
            f"| {x['over_1s']} | {x.get('push_p99_ms')} |"
        )
    print(f"\nfloors: {r['floors']}")


def setup_label(x: dict[str, Any]) -> str:
    """How a run was set up, for tables (also docs/reliability.md)."""
    if not x["wake"]:
        return "poll only (baseline)"
    if not x.get("helper", True):
        return "no helper (baseline)"
    return "wake, helper"
