"""The web application and the REST API."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from zoneinfo import ZoneInfo


def local_formatter(tz: str, fmt: str = "%Y-%m-%d %H:%M") -> Callable[[str | None], str]:
    """For the pages: a stored (UTC, ISO) time shown in the office's time zone; "" for none."""
    zone = ZoneInfo(tz)

    def local(iso: str | None) -> str:
        return datetime.fromisoformat(iso).astimezone(zone).strftime(fmt) if iso else ""

    return local
