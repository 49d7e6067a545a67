"""Shared fixtures: loopback HTTP servers, settings that allow loopback, databases."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.loopback import LoopbackServer
from tingfeng.settings import Settings


@pytest.fixture
def loopback() -> Iterator[LoopbackServer]:
    with LoopbackServer() as server:
        yield server


@pytest.fixture
def settings(tmp_path) -> Settings:
    """Settings for tests: a private data dir, loopback allowed, no politeness delays."""
    return Settings(
        database_url=f"sqlite:///{tmp_path / 'tf.db'}",
        data_dir=tmp_path / "var",
        fetch_allowed_networks=["127.0.0.0/8"],
        fetch_per_host_interval_s=0.0,
        fetch_backoff_s=0.01,
        fetch_read_timeout_s=5.0,
        fetch_total_timeout_s=10.0,
    )
