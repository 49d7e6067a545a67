"""`tingfeng bench alerts --json`: the command line contract issue 5 names, on a real fresh
instance (its own `tingfeng serve`, a webhook receiver on loopback)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.faults import cli_env


@pytest.mark.parametrize("helper", [True, False], ids=["helper", "no-helper"])
def test_bench_alerts_prints_one_json_object_with_every_alert_received_once(helper) -> None:  # type: ignore[no-untyped-def]
    args = [sys.executable, "-m", "tingfeng.cli", "bench", "alerts"]
    args += ["--rate", "300", "--seconds", "2", "--fire-every", "30", "--json"]
    if not helper:
        args.append("--no-helper")
    done = subprocess.run(args, env=cli_env(), capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    for key in ("p50_ms", "p95_ms", "p99_ms", "sent", "received", "lost", "duplicated"):
        assert key in result
    # 300 posts/s for 2 s in batches of 30 (one per 100 ms, enough for the helper process):
    # each batch holds one post that fires the rule. Timing may fit a tick more or less.
    assert 300 <= result["posts"] <= 660 and result["posts"] % 30 == 0, result
    sent = result["posts"] // 30
    assert result["sent"] == sent and result["received"] == sent, result
    assert result["lost"] == 0 and result["duplicated"] == 0, result
    assert result["helper"] is helper and result["push_errors"] == 0, result
    assert 0 < result["p50_ms"] <= result["p95_ms"] <= result["p99_ms"] <= result["max_ms"]
