"""Spike detection (突增检测) on hourly post counts of a topic or an event, streaming.

For each hour the detector asks what count the series would normally have at this hour and
how much it normally varies, from its own past:

- ``seasonal`` baseline, once ``min_weeks`` weeks are known: the same hour-of-week over the
  last ``history_weeks`` weeks (hour-of-day x day-of-week season), pooled with the same
  hour-of-day over the last ``recent_days`` days (the recent level, at this hour).
- ``recent`` baseline, from the second day until then: the same pool with fewer (or no)
  weekly values, so the daily cycle is known from day two and the weekly one as it comes in.
- ``cold`` baseline, on the first day: the median of the hours seen so far.

``expected`` is the median of those values and ``spread`` the MAD-based sigma
(1.4826 * MAD), floored at ``sqrt(max(expected, mean of the values, mean of the last 24 h,
1))``: Poisson noise of a count at that level, which keeps a sparse series (median 0, MAD 0) from firing on 0 -> 2 and a small-count
series from firing on the median's chance lows. ``score`` is the robust z
``(count - expected) / spread``. An hour fires when score >= ``k``, count >= ``min_count`` and
count / max(expected, 1) >= ``min_ratio``. Each fire-worthy hour extends a cooldown of
``cooldown_hours``; only the first hour of such a run is reported, so one surge is one spike,
unless an hour of it reaches ``refire_ratio`` times the largest count of the ``refire_hours``
before it: a sudden second wave (often another story on the same topic) is news of its own.

Medians make the baseline robust to the surges it is meant to catch: one spiking week out of
four does not move the seasonal expectation. Hours are absolute (UTC) and the season is
found by lag (t - 168 h is the same hour of the same weekday), so no time zone is needed for
the season as long as the local zone keeps a fixed offset (as China's does).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from typing import Any

HOUR = 3600
WEEK_HOURS = 168
DAY_HOURS = 24
MAD_SIGMA = 1.4826  # MAD of a normal distribution times this is its sigma
STATE_VERSION = 1


@dataclass
class SpikeParams:
    """Thresholds and baseline shape; defaults chosen as described in docs/events-heat-spikes.md."""

    k: float = 4.0  # robust z to fire
    min_count: int = 5  # posts in the hour: fewer never fire
    min_ratio: float = 2.0  # count / max(expected, 1) to fire
    season_hours: int = WEEK_HOURS  # 168: hour-of-week; 24: hour-of-day only
    history_weeks: int = 4  # how far back the seasonal values go
    min_weeks: int = 2  # seasonal values needed before the baseline is "seasonal"
    recent_days: int = 6  # same-hour-of-day values for the "recent" baseline
    cooldown_hours: int = 24  # quiet hours after a surge before the next spike may fire
    # In a surge, count >= refire_ratio x the max of the last refire_hours is a new wave and
    # fires again; 0 (the default, as picked on the tuning half) never re-fires in a surge.
    refire_ratio: float = 0.0
    refire_hours: int = 12


@dataclass
class Spike:
    """One unusual hour of a series."""

    series: str
    hour: datetime  # UTC start of the hour
    count: int
    expected: float
    spread: float
    score: float  # robust z: (count - expected) / spread
    ratio: float  # count / max(expected, 1)
    baseline: str  # "seasonal" | "recent" | "cold"

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["hour"] = self.hour.isoformat()
        return d


def hour_floor(t: datetime) -> datetime:
    """UTC start of the hour holding ``t``; a naive time is taken as UTC."""
    t = t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)
    return t.replace(minute=0, second=0, microsecond=0)


def _index(t: datetime) -> int:
    """Absolute hour number (hours since the epoch) of the hour holding ``t``."""
    return int(hour_floor(t).timestamp()) // HOUR


def _at(index: int) -> datetime:
    return datetime.fromtimestamp(index * HOUR, tz=UTC)


@dataclass
class _Series:
    """Past counts of one series in a ring indexed by absolute hour, and its cooldown."""

    size: int
    first: int  # first hour observed
    last: int  # last hour observed
    ring: list[int]
    cool_until: int = -1  # hours up to and including this one continue the last surge

    def get(self, index: int) -> int:
        return self.ring[index % self.size]

    def advance(self, index: int, count: int) -> None:
        """Write ``count`` at ``index``, the skipped hours since ``last`` as zero."""
        gap = index - self.last - 1
        if gap >= self.size:
            self.ring = [0] * self.size
        else:
            for i in range(self.last + 1, index):
                self.ring[i % self.size] = 0
        self.ring[index % self.size] = count
        self.last = index


def _mad_sigma(values: list[int], center: float) -> float:
    return MAD_SIGMA * statistics.median([abs(v - center) for v in values])


class SpikeDetector:
    """Streaming spike detector over many named hourly series.

    ``observe`` takes hours in order per series; ``add_post`` + ``flush`` bucket raw post
    times for event streams. ``state``/``from_state`` persist everything as plain JSON.
    """

    def __init__(self, params: SpikeParams | None = None) -> None:
        self.params = params or SpikeParams()
        p = self.params
        self._size = max(
            p.history_weeks * WEEK_HOURS, p.recent_days * DAY_HOURS + 1, p.refire_hours + 1
        )
        self._seasons = p.history_weeks * WEEK_HOURS // p.season_hours
        self._series: dict[str, _Series] = {}
        self._pending: dict[str, dict[int, int]] = {}
        self.late_posts = 0  # posts for an hour already flushed: counted here, not observed

    # --- the baseline ------------------------------------------------------------------------

    def baseline(self, series: str, hour: datetime) -> tuple[float, float, str]:
        """(expected, spread, kind) for ``series`` at ``hour``, from the hours before it."""
        s = self._series.get(series)
        index = _index(hour)
        if s is None:
            return 0.0, 1.0, "cold"
        return self._baseline(s, index)

    def _baseline(self, s: _Series, index: int) -> tuple[float, float, str]:
        p = self.params
        # Hours before `first` are unknown, not zero; hours after `last` (a gap) are zero.
        known = min(index - s.first, self._size)

        def value(i: int) -> int:
            return s.get(i) if i <= s.last else 0

        seasonal = [
            value(index - j * p.season_hours)
            for j in range(1, self._seasons + 1)
            if j * p.season_hours <= known
        ]
        daily = [
            value(index - j * DAY_HOURS)
            for j in range(1, p.recent_days + 1)
            if j * DAY_HOURS <= known and (j * DAY_HOURS) % p.season_hours
        ]
        weeks_needed = p.min_weeks * WEEK_HOURS // p.season_hours
        # Both pool the same hour of the last days with the same hour-of-week: a median of four
        # weekly values alone is too noisy a level (a Poisson(3) series then fires weekly).
        if len(seasonal) >= max(weeks_needed, 1):
            values, kind = seasonal + daily, "seasonal"
        elif known >= DAY_HOURS:
            values, kind = seasonal + daily, "recent"
        elif known > 0:
            values, kind = [value(index - j) for j in range(1, known + 1)], "cold"
        else:
            return 0.0, 1.0, "cold"
        expected = float(statistics.median(values))
        # Poisson floor from the mean: with few small counts the median and MAD both come out
        # low by chance (a Poisson(3) hour-of-day often has median 1-2), the mean much less so.
        # The last day's mean joins the floor for the same reason (the spec's recent level):
        # at night it makes a quiet hour less touchy, which costs little.
        day = [value(index - j) for j in range(1, min(known, DAY_HOURS) + 1)]
        level = max(expected, statistics.fmean(values), statistics.fmean(day), 1.0)
        spread = max(_mad_sigma(values, expected), level**0.5)
        return expected, spread, kind

    # --- streaming -----------------------------------------------------------------------------

    def observe(self, series: str, hour: datetime, count: int) -> Spike | None:
        """Feed the count of one hour; returns a Spike when this hour starts a surge.

        Hours must come in increasing order per series; hours skipped since the last call
        count as zero. The first call starts the series: its past is unknown, not zero, so
        that hour never fires.
        """
        index = _index(hour)
        s = self._series.get(series)
        if s is None:
            s = _Series(self._size, index, index - 1, [0] * self._size)
            self._series[series] = s
        elif index <= s.last:
            raise ValueError(f"{series}: hour {_at(index)} is not after {_at(s.last)}")
        expected, spread, kind = self._baseline(s, index)
        known = index > s.first
        p = self.params
        s.advance(index, count)
        score = (count - expected) / spread
        ratio = count / max(expected, 1.0)
        # The very first hour of a series has no past to be unusual against.
        if not (known and score >= p.k and count >= p.min_count and ratio >= p.min_ratio):
            return None
        continuing = index <= s.cool_until
        s.cool_until = index + p.cooldown_hours
        if continuing and not (p.refire_ratio and count >= p.refire_ratio * self._lately(s, index)):
            return None
        return Spike(series, _at(index), count, expected, spread, score, ratio, kind)

    def _lately(self, s: _Series, index: int) -> int:
        """Largest count of the ``refire_hours`` before ``index`` (skipped hours are zero)."""
        lo = max(index - self.params.refire_hours, s.first)
        return max((s.get(i) for i in range(lo, index)), default=0)

    def add_post(self, series: str, t: datetime) -> None:
        """Count one post at time ``t`` into its hour, to be observed by ``flush``."""
        index = _index(t)
        s = self._series.get(series)
        if s is not None and index <= s.last:
            self.late_posts += 1
            return
        bucket = self._pending.setdefault(series, {})
        bucket[index] = bucket.get(index, 0) + 1

    def flush(self, until: datetime) -> list[Spike]:
        """Observe every pending hour that ended at or before ``until``; spikes in time order."""
        end = int(until.replace(tzinfo=until.tzinfo or UTC).timestamp()) // HOUR
        spikes: list[Spike] = []
        for series in list(self._pending):
            bucket = self._pending[series]
            for index in sorted(i for i in bucket if i < end):
                spike = self.observe(series, _at(index), bucket.pop(index))
                if spike is not None:
                    spikes.append(spike)
            if not bucket:
                del self._pending[series]
        spikes.sort(key=lambda sp: (sp.hour, sp.series))
        return spikes

    # --- persistence ---------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """Everything needed to resume, as JSON-able values (rings stored sparsely)."""
        series = {}
        for name, s in self._series.items():
            lo = max(s.first, s.last - s.size + 1)
            nonzero = [[i - lo, s.get(i)] for i in range(lo, s.last + 1) if s.get(i)]
            series[name] = {
                "first": s.first,
                "last": s.last,
                "cool_until": s.cool_until,
                "counts_from": lo,
                "counts": nonzero,
            }
        return {
            "version": STATE_VERSION,
            "params": asdict(self.params),
            "series": series,
            "pending": {
                n: [[i, c] for i, c in sorted(b.items())] for n, b in self._pending.items()
            },
            "late_posts": self.late_posts,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> SpikeDetector:
        """A detector that continues exactly where ``state()`` was taken."""
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"unknown spike detector state version {state.get('version')!r}")
        names = {f.name for f in fields(SpikeParams)}
        det = cls(SpikeParams(**{k: v for k, v in state["params"].items() if k in names}))
        for name, d in state["series"].items():
            s = _Series(det._size, d["first"], d["last"], [0] * det._size, d["cool_until"])
            for offset, count in d["counts"]:
                s.ring[(d["counts_from"] + offset) % det._size] = count
            det._series[name] = s
        det._pending = {n: {i: c for i, c in b} for n, b in state["pending"].items()}
        det.late_posts = state.get("late_posts", 0)
        return det

    @property
    def series(self) -> list[str]:
        return list(self._series)


def detect_spikes(
    counts: Sequence[tuple[datetime, int]],
    params: SpikeParams | None = None,
    *,
    series: str = "",
) -> list[Spike]:
    """Spikes of one whole hourly series (for charts and re-computation): the streaming logic.

    Counts may come in any order; counts for the same hour are added; hours absent are zero
    from the first hour given.
    """
    merged: dict[int, int] = {}
    for t, c in counts:
        merged[_index(t)] = merged.get(_index(t), 0) + c
    det = SpikeDetector(params)
    out = []
    for index in sorted(merged):
        spike = det.observe(series, _at(index), merged[index])
        if spike is not None:
            out.append(spike)
    return out


__all__ = [
    "Spike",
    "SpikeDetector",
    "SpikeParams",
    "detect_spikes",
    "hour_floor",
]
