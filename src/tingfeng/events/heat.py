"""Heat index (热度指数) of an event or a topic: one 0-100 number, explained by its parts.

Each input goes through a saturating log scale, ``s(x) = 1 / (1 + (log1p(half) / log1p(x))**steepness)``,
which is 0 at x = 0, 0.5 at x = ``half`` and tends to 1. On a log scale a county office's
story (tens of posts) and a national one (hundreds of thousands) both land on readable,
distinct numbers instead of the national story pinning the scale and the local one reading 0.
The heat is the sum of ``weight * s(input)`` over the components, so it stays below 100 and the
contributions add up to it exactly; the UI shows them as the reason for the number.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum


class MediaTier(StrEnum):
    """Kind of source a post comes from, by authority (媒体层级)."""

    central_media = "central_media"
    provincial_media = "provincial_media"
    local_media = "local_media"
    government = "government"
    forum = "forum"
    individual = "individual"
    other = "other"

    @property
    def label(self) -> str:
        """Chinese label for the UI."""
        return TIER_LABELS[self]

    @property
    def weight(self) -> float:
        """Default authority weight of one post from this tier."""
        return TIER_WEIGHTS[self]


TIER_LABELS: Mapping[MediaTier, str] = {
    MediaTier.central_media: "中央媒体",
    MediaTier.provincial_media: "省级媒体",
    MediaTier.local_media: "地方媒体",
    MediaTier.government: "政务账号",
    MediaTier.forum: "论坛社区",
    MediaTier.individual: "个人账号",
    MediaTier.other: "其他",
}

# One ordinary account's post is the unit. A central outlet picking a story up is what turns a
# local matter national, so it counts ten; an official account is evidence the matter is
# acknowledged, between provincial and local media. Per-source overrides come later.
TIER_WEIGHTS: Mapping[MediaTier, float] = {
    MediaTier.central_media: 10.0,
    MediaTier.provincial_media: 6.0,
    MediaTier.government: 5.0,
    MediaTier.local_media: 3.0,
    MediaTier.forum: 1.5,
    MediaTier.individual: 1.0,
    MediaTier.other: 1.0,
}


def source_weight(
    tiers: Iterable[MediaTier | str], weights: Mapping[MediaTier, float] | None = None
) -> float:
    """Sum of tier weights over posts (one tier per post): the ``source_weight`` input."""
    table = TIER_WEIGHTS if weights is None else weights
    return sum(table[MediaTier(t)] for t in tiers)


@dataclass
class HeatInputs:
    """What the heat is computed from; all counts are for the event/topic (or the window)."""

    posts: int
    posts_last_hour: int
    posts_prev_hour: int
    engagement: int = 0  # reposts + comments + likes summed; 0 when unknown
    source_weight: float = 0.0  # sum over posts of their source's tier weight
    sources: int = 0  # distinct sources


@dataclass(frozen=True)
class Scale:
    """A component's weight (its most points) and where its log scale reaches half."""

    weight: float
    half: float


@dataclass
class HeatParams:
    """Weights (summing to 100) and half-saturation points of the components.

    Defaults are set for a county-to-national range: half the volume points at 200 posts, half
    the velocity points at 20 posts/hour, and so on (see docs/events-heat-spikes.md).
    """

    volume: Scale = field(default_factory=lambda: Scale(25.0, 200.0))
    velocity: Scale = field(default_factory=lambda: Scale(20.0, 20.0))
    growth: Scale = field(default_factory=lambda: Scale(10.0, 10.0))
    engagement: Scale = field(default_factory=lambda: Scale(15.0, 2000.0))
    authority: Scale = field(default_factory=lambda: Scale(20.0, 30.0))
    breadth: Scale = field(default_factory=lambda: Scale(10.0, 10.0))
    # 2 spreads one decade either side of `half` over roughly 0.2-0.8 of the weight.
    steepness: float = 2.0


@dataclass
class Heat:
    """The heat (0-100) and, per component, (input value, points contributed)."""

    value: float
    components: dict[str, tuple[float, float]]


def saturate(x: float, half: float, steepness: float = 2.0) -> float:
    """Saturating log scale in [0, 1): 0 at 0, 0.5 at ``half``, strictly increasing."""
    if x <= 0:
        return 0.0
    # Written as a logistic in log(log1p(x)) so a tiny x underflows to 0 instead of overflowing.
    z = steepness * (math.log(math.log1p(half)) - math.log(math.log1p(x)))
    return 0.0 if z > 700 else 1.0 / (1.0 + math.exp(z))


def heat_index(inputs: HeatInputs, params: HeatParams | None = None) -> Heat:
    """Heat of an event/topic: non-decreasing in every input except ``posts_prev_hour``.

    Velocity is the recent rate ``max(last, (last + prev) / 2)``, so a story that was busy an
    hour ago is still warm; growth is ``max(0, last - prev)``, the acceleration bonus. For a
    fixed last hour a smaller previous hour means more growth, so heat is non-increasing in
    ``posts_prev_hour`` while the last hour is the larger of the two (a rising story is hotter
    than a steady one at the same rate), and non-decreasing in it otherwise.
    """
    p = params or HeatParams()
    last, prev = max(inputs.posts_last_hour, 0), max(inputs.posts_prev_hour, 0)
    values = {
        "volume": (float(inputs.posts), p.volume),
        "velocity": (max(float(last), (last + prev) / 2.0), p.velocity),
        "growth": (float(max(0, last - prev)), p.growth),
        "engagement": (float(inputs.engagement), p.engagement),
        "authority": (float(inputs.source_weight), p.authority),
        "breadth": (float(inputs.sources), p.breadth),
    }
    components = {
        name: (x, scale.weight * saturate(x, scale.half, p.steepness))
        for name, (x, scale) in values.items()
    }
    return Heat(value=sum(c for _, c in components.values()), components=components)
