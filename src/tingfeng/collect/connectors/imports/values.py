"""Reading values from cells and JSON: times, counts, ids, text, kinds, dotted paths.

Times: naive date-times stay naive (the pipeline reads them in the source's time zone);
numeric epochs (seconds, milliseconds or microseconds) become aware UTC times.
"""

from __future__ import annotations

import email.utils
import math
import re
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

from tingfeng.collect.counts import parse_count  # noqa: F401 - part of this module's interface
from tingfeng.collect.items import POST_KINDS


def _from_epoch(number: float) -> datetime:
    magnitude = abs(number)
    if magnitude < 1e11:
        seconds = number
    elif magnitude < 1e14:
        seconds = number / 1e3
    else:
        seconds = number / 1e6
    try:
        value = datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise ValueError(f"{number!r} is not a plausible time") from exc
    if not 1990 <= value.year <= 2100:
        raise ValueError(f"{number!r} is not a plausible time (it reads as {value:%Y-%m-%d})")
    return value


_DATE_NUMBERS = re.compile(
    r"^(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})"
    r"(?:[ T]+(\d{1,2}):(\d{1,2})(?::(\d{1,2})(?:\.(\d{1,6}))?)?)?$"
)
_CHINESE_DATE = re.compile(
    r"^(?:(\d{4})\s*年\s*)?(\d{1,2})\s*月\s*(\d{1,2})\s*[日号]\s*"
    r"(?:(\d{1,2})\s*[:：时点]\s*(\d{1,2})\s*(?:[:：分]\s*(?:(\d{1,2})\s*秒?)?)?)?$"
)
_MONTH_DAY = re.compile(r"^(\d{1,2})-(\d{1,2})\s+(\d{1,2}):(\d{2})(?::(\d{2}))?$")
_WEIBO_API = "%a %b %d %H:%M:%S %z %Y"


def _without_year(month: int, day: int, clock: tuple[int, int, int], now: datetime) -> datetime:
    """A date shown without its year ("3月5日 10:20"): the latest such date not in the future."""
    reference = now.replace(tzinfo=None) if now.tzinfo else now
    value = datetime(reference.year, month, day, *clock)
    if value > reference + timedelta(days=1):
        value = value.replace(year=reference.year - 1)
    return value


def parse_time(
    value: Any,
    time_format: str | None = None,
    *,
    now: datetime | None = None,
    excel: bool = False,
) -> datetime | None:
    """A date-time from a cell or JSON value; None for an empty one; ValueError if unreadable.

    Naive results stay naive. Numbers are Unix epochs in s, ms or µs (aware UTC); with `excel`,
    numbers in the range of Excel day serials are read as such (a date cell saved as a number).
    """
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError(f"{value!r} is not a time")
        if excel and 20_000 <= value < 80_000:
            return datetime(1899, 12, 30) + timedelta(days=float(value))
        return _from_epoch(value)
    if not isinstance(value, str):
        raise ValueError(f"expected a date/time, found a JSON {json_type(value)}")
    text = value.strip()
    if not text:
        return None
    if time_format:
        try:
            return datetime.strptime(text, time_format)
        except ValueError as exc:
            raise ValueError(f"{text!r} does not match the time format {time_format!r}") from exc
    return _parse_time_text(text, now or datetime.now())


def _parse_time_text(text: str, now: datetime) -> datetime:
    if text.isdigit():
        if len(text) == 8:  # 20240305
            return datetime.strptime(text, "%Y%m%d")
        if len(text) == 14:  # 20240305102030
            return datetime.strptime(text, "%Y%m%d%H%M%S")
        return _from_epoch(int(text))
    try:
        return _from_epoch(float(text))
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        pass
    match = _DATE_NUMBERS.match(text)
    if match:
        y, mo, d, h, mi, s, frac = match.groups()
        micro = int((frac or "0").ljust(6, "0"))
        return datetime(int(y), int(mo), int(d), int(h or 0), int(mi or 0), int(s or 0), micro)
    match = _CHINESE_DATE.match(text)
    if match:
        y, mo, d, h, mi, s = match.groups()
        clock = (int(h or 0), int(mi or 0), int(s or 0))
        if y:
            return datetime(int(y), int(mo), int(d), *clock)
        return _without_year(int(mo), int(d), clock, now)
    match = _MONTH_DAY.match(text)
    if match:
        mo, d, h, mi, s = match.groups()
        return _without_year(int(mo), int(d), (int(h), int(mi), int(s or 0)), now)
    try:
        return datetime.strptime(text, _WEIBO_API)
    except ValueError:
        pass
    try:
        parsed = email.utils.parsedate_to_datetime(text)
        if parsed is not None:
            return parsed
    except (TypeError, ValueError, IndexError):
        pass
    if re.search(r"\d{4}", text):
        from dateutil import parser as dateutil_parser

        try:
            return dateutil_parser.parse(text, default=datetime(now.year, 1, 1))
        except (ValueError, OverflowError):
            pass
    raise ValueError(f"cannot read {text!r} as a date/time")


def _as_id(value: Any) -> str | None:
    """An identifier as text; spreadsheets turn long ids into floats, which are undone here."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, int | float | str):
        text = str(value).strip()
        return text or None
    return None


def _as_text(value: Any) -> str | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str | int | float):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise ValueError(f"expected text, found a JSON {json_type(value)}")


_KIND_WORDS = {
    "原创": "post",
    "微博": "post",
    "帖子": "post",
    "转发": "repost",
    "retweet": "repost",
    "share": "repost",
    "评论": "comment",
    "回复": "comment",
    "reply": "comment",
    "文章": "article",
    "新闻": "article",
    "news": "article",
}


def _as_kind(value: Any) -> str:
    text = (_as_text(value) or "").strip()
    kind = _KIND_WORDS.get(text, text.lower())
    if kind not in POST_KINDS:
        raise ValueError(f"kind {text!r} is not one of {', '.join(POST_KINDS)}")
    return kind


def _lookup(record: Mapping[str, Any], path: str) -> Any:
    """The value at `path`: a key, or a dotted path into nested objects ("user.name", "pics.0")."""
    if path in record:
        return record[path]
    if "." not in path:
        return None
    current: Any = record
    for part in path.split("."):
        if isinstance(current, Mapping):
            current = current.get(part)
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            return None
        if current is None:
            return None
    return current


def json_type(value: Any) -> str:
    """The JSON name of a value's type, for messages ("string", "list", "object")."""
    names = {dict: "object", list: "list", str: "string", bool: "boolean", type(None): "null"}
    kind = names.get(type(value))
    return kind or ("number" if isinstance(value, int | float) else type(value).__name__)


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())
