"""The systemd units in deploy/systemd start real `tingfeng` commands with valid options."""

from __future__ import annotations

import configparser
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

UNITS = Path(__file__).resolve().parents[1] / "deploy" / "systemd"
SERVICES = sorted(UNITS.glob("*.service"))


def _unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(path)
    return parser


def test_every_role_has_a_unit() -> None:
    names = {p.name for p in SERVICES}
    assert {
        "tingfeng-web@.service",
        "tingfeng-scheduler.service",
        "tingfeng-worker@.service",
        "tingfeng-migrate.service",
    } <= names
    assert (UNITS / "tingfeng.target").exists()


@pytest.mark.parametrize("path", SERVICES, ids=lambda p: p.name)
def test_unit_runs_a_valid_tingfeng_command(path: Path) -> None:
    unit = _unit(path)
    assert unit["Unit"]["PartOf"] == "tingfeng.target"
    assert unit["Service"]["User"] == "tingfeng"
    argv = shlex.split(unit["Service"]["ExecStart"].replace("%i", "8001"))
    assert argv[0] == "/opt/tingfeng/.venv/bin/tingfeng"
    if "serve" in argv:
        assert unit["Service"]["Restart"] == "always"
        assert "tingfeng-migrate.service" in unit["Unit"]["Requires"]
    # The options parse (a wrong one exits 2 with "No such option") and the command exists.
    done = subprocess.run(
        [sys.executable, "-m", "tingfeng.cli", *argv[1:], "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
