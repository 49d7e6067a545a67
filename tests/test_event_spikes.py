"""Spike detector: seasonal baseline, cold start, gaps, persistence, batch = stream, real data."""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from tingfeng.events.spikes import SpikeDetector, SpikeParams, detect_spikes, hour_floor

START = datetime(2024, 3, 4, tzinfo=UTC)  # a Monday, 00:00 UTC
H = timedelta(hours=1)
CRISISLEX = Path(__file__).resolve().parents[2] / "shared" / "data" / "events" / "crisislex26.jsonl"


def daily_profile(hour: int, night: float = 2.0, peak: float = 30.0) -> float:
    """Smooth daily cycle: `night` at 02:00, `peak` at 14:00."""
    return night + (peak - night) * (1 - math.cos((hour - 2) / 24 * 2 * math.pi)) / 2


def seasonal_series(weeks: int, seed: int = 7) -> list[tuple[datetime, int]]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(weeks * 168):
        t = START + i * H
        weekend = 0.6 if t.weekday() >= 5 else 1.0
        out.append((t, int(rng.poisson(daily_profile(t.hour) * weekend))))
    return out


def test_flat_seasonal_series_has_no_spikes() -> None:
    series = seasonal_series(weeks=6)
    # The first day knows no cycle (its morning rise may fire); after it, nothing may fire.
    assert [s for s in detect_spikes(series) if s.hour >= START + timedelta(days=1)] == []
    # The same series makes the naive "3 x mean of the previous 24 h" rule fire: not a blank test.
    counts = [c for _, c in series]
    naive = [i for i in range(24, len(counts)) if counts[i] >= 3 * sum(counts[i - 24 : i]) / 24]
    assert naive


def test_daily_peak_is_not_a_spike_once_the_season_is_known() -> None:
    series = [(START + i * H, round(daily_profile((START + i * H).hour))) for i in range(21 * 24)]
    peak = 30
    assert peak >= 10 * min(c for _, c in series[:24])  # far above the night
    spikes = detect_spikes(series)
    assert all(s.hour < START + timedelta(days=1) for s in spikes)
    det = SpikeDetector()
    for t, c in series:
        det.observe("t", t, c)
    expected, _, kind = det.baseline("t", START + 21 * 24 * H + 14 * H)
    assert (expected, kind) == (peak, "seasonal")
    det2 = SpikeDetector()
    for t, c in series[: 3 * 24]:
        det2.observe("t", t, c)
    expected, _, kind = det2.baseline("t", START + 3 * 24 * H + 14 * H)
    assert (expected, kind) == (peak, "recent")  # same hour of the previous days


def test_surge_fires_once_with_its_numbers() -> None:
    series = [(START + i * H, round(daily_profile((START + i * H).hour))) for i in range(28 * 24)]
    at = START + 22 * 24 * H + 10 * H  # a Tuesday, 10:00
    base = round(daily_profile(10))
    surge = {at: 90, at + H: 120, at + 2 * H: 80}
    series = [(t, surge.get(t, c)) for t, c in series]
    day1 = START + timedelta(days=1)
    spikes = [s for s in detect_spikes(series, series="topic") if s.hour >= day1]
    assert len(spikes) == 1
    s = spikes[0]
    assert (s.series, s.hour, s.count, s.baseline) == ("topic", at, 90, "seasonal")
    assert s.expected == base
    # MAD is 0, so the Poisson floor holds: sqrt of the last day's mean, above this hour's level.
    day_mean = sum(c for t, c in series if at - 24 * H <= t < at) / 24
    assert s.spread == pytest.approx(math.sqrt(max(base, day_mean)))
    assert s.score == pytest.approx((90 - base) / s.spread)
    assert s.ratio == pytest.approx(90 / base)
    # A second surge after the cooldown is a new spike.
    later = at + 3 * 24 * H
    again = detect_spikes([(t, 100 if t == later else c) for t, c in series])
    assert [x.hour for x in again if x.hour >= day1] == [at, later]


def test_cold_start_does_not_fire_on_one_post() -> None:
    det = SpikeDetector()
    assert det.observe("new", START, 0) is None
    assert det.observe("new", START + H, 1) is None
    assert det.baseline("new", START + 2 * H)[2] == "cold"
    assert det.observe("new", START + 2 * H, 2) is None
    spike = det.observe("new", START + 3 * H, 9)
    assert spike is not None and spike.baseline == "cold" and spike.expected == 1.0
    # The very first hour of a series has no past and never fires.
    assert SpikeDetector().observe("other", START, 500) is None


def test_missing_hours_count_as_zero() -> None:
    rng = np.random.default_rng(3)
    dense = [(START + i * H, int(rng.poisson(0.7)) * int(rng.random() < 0.4)) for i in range(2000)]
    dense[1500] = (dense[1500][0], 40)
    dense[1700] = (dense[1700][0], 25)
    sparse = [(t, c) for i, (t, c) in enumerate(dense) if c or i == 0]
    a, b = SpikeDetector(), SpikeDetector()
    got_a = [a.observe("s", t, c) for t, c in dense]
    got_b = [b.observe("s", t, c) for t, c in sparse]
    spikes_a = [s for s in got_a if s]
    assert spikes_a == [s for s in got_b if s]
    assert {s.hour for s in spikes_a} >= {dense[1500][0], dense[1700][0]}
    assert a.baseline("s", START + 2100 * H) == b.baseline("s", START + 2100 * H)
    # A gap longer than the whole history is all zeros.
    c = SpikeDetector()
    c.observe("s", START, 10)
    c.observe("s", START + H, 10)
    assert c.baseline("s", START + 3000 * H)[0] == 0.0
    with pytest.raises(ValueError):
        c.observe("s", START + H, 1)


def test_state_round_trips_through_json() -> None:
    series = seasonal_series(weeks=5, seed=11)
    series[700] = (series[700][0], 200)
    series[800] = (series[800][0], 150)
    whole = SpikeDetector()
    out_whole = [whole.observe("x", t, c) for t, c in series]
    half = SpikeDetector()
    out_half = [half.observe("x", t, c) for t, c in series[:750]]
    half.add_post("y", START + 3 * H)
    restored = SpikeDetector.from_state(json.loads(json.dumps(half.state())))
    out_half += [restored.observe("x", t, c) for t, c in series[750:]]
    assert out_half == out_whole
    assert {series[700][0], series[800][0]} <= {s.hour for s in out_whole if s}
    assert restored.state()["series"]["x"] == whole.state()["series"]["x"]
    assert restored.state()["pending"] == {"y": [[int((START + 3 * H).timestamp()) // 3600, 1]]}


def test_batch_equals_streaming_and_posts() -> None:
    rng = np.random.default_rng(5)
    counts = [(START + i * H, int(rng.poisson(3))) for i in range(24 * 30)]
    for i in (300, 301, 600):
        counts[i] = (counts[i][0], 40)
    det = SpikeDetector()
    streamed = [s for t, c in counts if (s := det.observe("", t, c))]
    batch = detect_spikes(list(reversed(counts)))
    assert batch == streamed
    assert {counts[300][0], counts[600][0]} <= {s.hour for s in batch}
    assert counts[301][0] not in {s.hour for s in batch}  # same surge: cooled down
    # Post by post: the same spikes once the hours are flushed.
    posts = SpikeDetector()
    for t, c in counts:
        for j in range(c):
            posts.add_post("", t + timedelta(minutes=j % 60, seconds=7))
    flushed = posts.flush(START + 24 * 30 * H)
    assert [s.hour for s in flushed] == [s.hour for s in streamed]
    posts.add_post("", START)  # an hour already observed
    assert posts.late_posts == 1


@pytest.mark.skipif(not CRISISLEX.exists(), reason="shared CrisisLexT26 data not present")
def test_real_crises_fire_within_48_hours() -> None:
    topics = {
        "2013_Boston_bombings": re.compile(r"\b(?:boston|bomb\w*)\b"),
        "2013_Russia_meteor": re.compile(r"\b(?:meteor\w*|russia\w*)\b"),
    }
    hourly: dict[str, Counter[datetime]] = {name: Counter() for name in topics}
    first: dict[str, datetime] = {}
    with CRISISLEX.open(encoding="utf-8") as handle:
        for line in handle:
            d = json.loads(line)
            t = datetime.fromisoformat(d["time"])
            text = d["text"].lower()
            for name, pattern in topics.items():
                if pattern.search(text):
                    hourly[name][hour_floor(t)] += 1
            if d["event"] in topics:
                first[d["event"]] = min(first.get(d["event"], t), t)
    start = min(min(c) for c in hourly.values())
    for name, counts in hourly.items():
        series = [(start, counts.get(start, 0)), *sorted(counts.items())]
        spikes = detect_spikes(series, SpikeParams(), series=name)
        onset = first[name]
        near = [s for s in spikes if onset - 6 * H <= s.hour <= onset + 48 * H]
        assert near, name
        assert near[0].count >= 5 and near[0].score >= 4
