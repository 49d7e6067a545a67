"""Engagement counts as platforms and exports write them: 1234, "1,234", "1.2万", "10万+", "3k"."""

from __future__ import annotations

import math
import re
from typing import Any

_COUNT = re.compile(r"^([\d.]+)\s*([万亿wWkKmM]?)")
_UNITS = {"": 1, "万": 10_000, "w": 10_000, "亿": 100_000_000, "k": 1_000, "m": 1_000_000}


def parse_count(value: Any) -> int | None:
    """A non-negative count, or None when unreadable.

    Lenient on purpose: a post with an odd like count is still worth keeping, and a trailing
    word ("1.2万赞", "10万+") is ignored.
    """
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, float):
        return int(value) if math.isfinite(value) and value >= 0 else None
    if not isinstance(value, str):
        return None
    found = _COUNT.match(value.strip().replace(",", "").replace("，", ""))
    if not found:
        return None
    try:
        number = float(found.group(1)) * _UNITS[found.group(2).lower()]
    except ValueError:
        return None
    return int(number) if math.isfinite(number) else None
