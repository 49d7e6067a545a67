"""Heat index: bounded, explained, monotone, and the media tiers."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tingfeng.events.heat import (
    TIER_WEIGHTS,
    Heat,
    HeatInputs,
    HeatParams,
    MediaTier,
    heat_index,
    saturate,
    source_weight,
)

COUNTY = HeatInputs(
    posts=40, posts_last_hour=6, posts_prev_hour=2, engagement=150, source_weight=12, sources=5
)
NATIONAL = HeatInputs(
    posts=300_000,
    posts_last_hour=20_000,
    posts_prev_hour=15_000,
    engagement=5_000_000,
    source_weight=4_000,
    sources=2_000,
)

counts = st.integers(min_value=0, max_value=10_000_000)
inputs = st.builds(
    HeatInputs,
    posts=counts,
    posts_last_hour=counts,
    posts_prev_hour=counts,
    engagement=counts,
    source_weight=st.floats(min_value=0, max_value=1e7, allow_nan=False),
    sources=counts,
)


def test_components_add_up_and_explain() -> None:
    heat = heat_index(COUNTY)
    assert set(heat.components) == {
        "volume",
        "velocity",
        "growth",
        "engagement",
        "authority",
        "breadth",
    }
    assert heat.value == pytest.approx(sum(c for _, c in heat.components.values()))
    assert heat.components["volume"][0] == 40
    assert heat.components["velocity"][0] == 6  # max(last, mean of the two hours)
    assert heat.components["growth"][0] == 4
    # Half-saturation point gives half the weight.
    p = HeatParams()
    half = heat_index(replace(COUNTY, posts=int(p.volume.half)))
    assert half.components["volume"][1] == pytest.approx(p.volume.weight / 2)


def test_empty_is_zero_and_scales_stay_readable() -> None:
    assert heat_index(HeatInputs(0, 0, 0, 0, 0.0, 0)).value == 0.0
    county, national = heat_index(COUNTY).value, heat_index(NATIONAL).value
    # A county story is on the scale, a national one near the top but not pinned at 100.
    assert 15 < county < 50 < 80 < national < 100
    assert sum(p.weight for p in vars(HeatParams()).values() if hasattr(p, "weight")) == 100


@settings(max_examples=100, deadline=None)
@given(inputs)
def test_bounded_and_sums(x: HeatInputs) -> None:
    heat = heat_index(x)
    assert 0.0 <= heat.value < 100.0
    assert heat.value == pytest.approx(sum(c for _, c in heat.components.values()))
    assert all(c >= 0 for _, c in heat.components.values())


@settings(max_examples=100, deadline=None)
@given(inputs, st.sampled_from(["posts", "posts_last_hour", "engagement", "sources"]), counts)
def test_monotone_in_each_input(x: HeatInputs, field: str, more: int) -> None:
    bigger = replace(x, **{field: getattr(x, field) + more})
    assert heat_index(bigger).value >= heat_index(x).value
    heavier = replace(x, source_weight=x.source_weight + more)
    assert heat_index(heavier).value >= heat_index(x).value


@settings(max_examples=100, deadline=None)
@given(inputs, counts)
def test_previous_hour_direction(x: HeatInputs, more: int) -> None:
    """Rising story (prev below last) is hotter than a steady one; above last, prev adds heat."""
    before, after = heat_index(x), heat_index(replace(x, posts_prev_hour=x.posts_prev_hour + more))
    if x.posts_prev_hour + more <= x.posts_last_hour:
        assert after.value <= before.value + 1e-9
    if x.posts_prev_hour >= x.posts_last_hour:
        assert after.value >= before.value - 1e-9


def test_strictly_increasing_volume_scale() -> None:
    values = [saturate(x, 200) for x in (0, 1, 10, 100, 1_000, 10_000, 1_000_000)]
    assert values == sorted(values) and len(set(values)) == len(values)
    assert values[0] == 0 and values[-1] < 1
    assert saturate(200, 200) == pytest.approx(0.5)
    assert math.isclose(saturate(0, 5), 0.0)


def test_media_tiers() -> None:
    labels = {t.value: t.label for t in MediaTier}
    assert labels == {
        "central_media": "中央媒体",
        "provincial_media": "省级媒体",
        "local_media": "地方媒体",
        "government": "政务账号",
        "forum": "论坛社区",
        "individual": "个人账号",
        "other": "其他",
    }
    w = TIER_WEIGHTS
    assert w[MediaTier.central_media] > w[MediaTier.provincial_media] > w[MediaTier.local_media]
    assert w[MediaTier.local_media] > w[MediaTier.forum] > w[MediaTier.individual] > 0
    assert MediaTier.central_media.weight == 10.0
    assert source_weight(["central_media", MediaTier.individual, "individual"]) == 12.0
    custom = {**TIER_WEIGHTS, MediaTier.individual: 0.5}
    assert source_weight([MediaTier.individual] * 4, custom) == 2.0
    # A central-media pick-up raises the heat more than the same number of individual posts.
    by_media = replace(COUNTY, source_weight=source_weight(["central_media"] * 3))
    by_people = replace(COUNTY, source_weight=source_weight(["individual"] * 3))
    assert heat_index(by_media).value > heat_index(by_people).value
    with pytest.raises(ValueError):
        source_weight(["tabloid"])


def test_heat_type() -> None:
    heat = heat_index(COUNTY)
    assert isinstance(heat, Heat)
    assert all(isinstance(v, tuple) and len(v) == 2 for v in heat.components.values())
