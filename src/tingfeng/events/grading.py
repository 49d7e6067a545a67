"""Event grading (舆情分级): 一般 / 较大 / 重大 / 特大, with the reasons in plain words.

The score is a weighted mean of ten factor scores, each 0..1: five on the nature of the event
(specificity, evidence, seriousness, consequences, negativity) and five on how wide it is
(volume, velocity, reach, source authority, spread across sources and regions). Weights are
normalised, so every contribution is `weight × factor score` and they sum to the score exactly:
the explanation never hides arithmetic. Thresholds turn the score into a level; hysteresis
keeps a level from flapping (upgrade at once, downgrade only after the score stays below the
line minus a margin for a dwell time); a person may override the level with a reason, and the
computed grade is still shown beside it.

There is no labelled data for levels: the defaults are set by reasoning from practice and
checked on worked examples in docs/events-spread-grading.md.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import cache, lru_cache
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tingfeng.analyze.normalize import normalize
from tingfeng.problems import ProblemsError

__all__ = [
    "DEFAULT_MODEL",
    "EventFacts",
    "Factor",
    "Grade",
    "GradeEntry",
    "GradeState",
    "GradingModel",
    "GradingModelError",
    "Level",
    "Override",
    "apply_override",
    "clear_override",
    "find_consequences",
    "grade",
]

_EPS = 1e-9  # float slack when comparing scores with thresholds


class Level(StrEnum):
    """The four levels, lowest first; compare with <, >, or by `rank` (0..3)."""

    general = "general"
    serious = "serious"
    major = "major"
    critical = "critical"

    @property
    def rank(self) -> int:
        return _ORDER.index(self)

    @property
    def zh(self) -> str:
        return _ZH[self]

    @property
    def en(self) -> str:
        return self.value

    @property
    def roman(self) -> str:
        return ("IV", "III", "II", "I")[self.rank]

    @property
    def label_zh(self) -> str:
        """一般（IV级）."""
        return f"{self.zh}（{self.roman}级）"

    @property
    def label_en(self) -> str:
        """general (IV)."""
        return f"{self.value} ({self.roman})"

    def up(self) -> Level | None:
        return _ORDER[self.rank + 1] if self.rank < 3 else None

    def down(self) -> Level | None:
        return _ORDER[self.rank - 1] if self.rank > 0 else None

    @classmethod
    def from_rank(cls, rank: int) -> Level:
        return _ORDER[max(0, min(3, rank))]

    # Ordering by severity, not by spelling (str would put "critical" first).
    def __lt__(self, other: object) -> bool:
        return self.rank < other.rank if isinstance(other, Level) else NotImplemented

    def __le__(self, other: object) -> bool:
        return self.rank <= other.rank if isinstance(other, Level) else NotImplemented

    def __gt__(self, other: object) -> bool:
        return self.rank > other.rank if isinstance(other, Level) else NotImplemented

    def __ge__(self, other: object) -> bool:
        return self.rank >= other.rank if isinstance(other, Level) else NotImplemented


_ORDER = (Level.general, Level.serious, Level.major, Level.critical)


def level_rank(level: str | None) -> int:
    """0..3 for general..critical; a missing or unknown level counts as general."""
    try:
        return Level(level or "general").rank
    except ValueError:
        return 0


_ZH = {Level.general: "一般", Level.serious: "较大", Level.major: "重大", Level.critical: "特大"}


# --- the facts ---------------------------------------------------------------------------------

TIERS = (
    "central_media",
    "provincial_media",
    "local_media",
    "government",
    "forum",
    "individual",
    "other",
)
TIER_LABELS = {
    "central_media": ("中央媒体", "central media"),
    "provincial_media": ("省级媒体", "provincial media"),
    "local_media": ("地方媒体", "local media"),
    "government": ("政府机构", "government accounts"),
    "forum": ("论坛社区", "forums"),
    "individual": ("个人账号", "individual accounts"),
    "other": ("其他来源", "other sources"),
}


@dataclass(frozen=True, slots=True)
class EventFacts:
    """What an event looks like now. Counts are ≥ 0; shares and scores are 0..1."""

    posts: int = 0
    sources: int = 0
    regions: int = 0  # distinct regions mentioned
    posts_per_hour: float = 0.0  # recent velocity
    reach: int = 0  # sum of public follower counts, when known
    engagement: int = 0  # likes + comments + reposts
    negative_share: float = 0.0
    categories: tuple[str, ...] = ()  # hot-area slugs (taxonomy.json)
    keywords: tuple[str, ...] = ()
    tiers: Mapping[str, int] = field(default_factory=dict)  # posts per media tier
    specificity: float = 0.0  # share of named places/people/times/numbers
    evidence: float = 0.0  # links, images, named sources
    consequences: tuple[str, ...] = ()  # matched consequence terms (see find_consequences)
    heat: float | None = None  # shown, not scored: it is made of volume and velocity again
    texts: tuple[str, ...] = ()  # sample post texts: consequence terms are also looked up here

    def __post_init__(self) -> None:
        for name in ("posts", "sources", "regions", "posts_per_hour", "reach", "engagement"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise ValueError(f"EventFacts.{name} must be a finite number ≥ 0, got {value!r}")
        for name in ("negative_share", "specificity", "evidence"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and 0.0 <= value <= 1.0):
                raise ValueError(f"EventFacts.{name} must be between 0 and 1, got {value!r}")
        for tier, count in self.tiers.items():
            if not (isinstance(count, int) and count >= 0):
                raise ValueError(f"EventFacts.tiers[{tier!r}] must be an int ≥ 0, got {count!r}")


# --- the model ---------------------------------------------------------------------------------

Unit = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LogScale(_Strict):
    """0 at or below `lo`, 1 at or above `hi`, logarithmic between: 10 → 100 posts is worth
    as much as 100 → 1,000."""

    lo: float = Field(gt=0, allow_inf_nan=False)
    hi: float = Field(gt=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _ordered(self) -> LogScale:
        if self.hi <= self.lo:
            raise ValueError(f"hi ({self.hi}) must be greater than lo ({self.lo})")
        return self

    def score(self, x: float) -> float:
        if x <= self.lo:
            return 0.0
        return min(1.0, math.log(x / self.lo) / math.log(self.hi / self.lo))

    def inverse(self, s: float) -> float:
        """The smallest raw value scoring `s`."""
        return self.lo * (self.hi / self.lo) ** min(max(s, 0.0), 1.0)


class LinearScale(_Strict):
    lo: Unit = 0.0
    hi: Unit = 1.0

    @model_validator(mode="after")
    def _ordered(self) -> LinearScale:
        if self.hi <= self.lo:
            raise ValueError(f"hi ({self.hi}) must be greater than lo ({self.lo})")
        return self

    def score(self, x: float) -> float:
        return min(1.0, max(0.0, (x - self.lo) / (self.hi - self.lo)))

    def inverse(self, s: float) -> float:
        return self.lo + min(max(s, 0.0), 1.0) * (self.hi - self.lo)


Weight = Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)]


class Weights(_Strict):
    """Relative weights (normalised to sum 1): half on the nature, half on the width."""

    specificity: Weight = 0.07
    evidence: Weight = 0.07
    seriousness: Weight = 0.12
    consequences: Weight = 0.17
    negativity: Weight = 0.07
    volume: Weight = 0.12
    velocity: Weight = 0.12
    reach: Weight = 0.08
    authority: Weight = 0.10
    spread: Weight = 0.08

    @model_validator(mode="after")
    def _some(self) -> Weights:
        if sum(self.model_dump().values()) <= 0:
            raise ValueError("at least one factor weight must be > 0")
        return self


class Thresholds(_Strict):
    """Lowest score of each level above general."""

    serious: float = Field(0.35, gt=0, le=1, allow_inf_nan=False)
    major: float = Field(0.60, gt=0, le=1, allow_inf_nan=False)
    critical: float = Field(0.78, gt=0, le=1, allow_inf_nan=False)

    @model_validator(mode="after")
    def _increasing(self) -> Thresholds:
        if not self.serious < self.major < self.critical:
            raise ValueError(
                "thresholds must increase: serious < major < critical, got "
                f"{self.serious} / {self.major} / {self.critical}"
            )
        return self

    def of(self, level: Level) -> float:
        return 0.0 if level is Level.general else float(getattr(self, level.value))


DEFAULT_TIER_AUTHORITY = {
    "central_media": 1.0,
    "government": 0.8,
    "provincial_media": 0.7,
    "local_media": 0.4,
    "forum": 0.2,
    "individual": 0.1,
    "other": 0.1,
}
# Sensitivity of the ten hot areas: what a county office escalates fastest (ethnicity and
# religion, safety, officials) weighs most; gossip about firms and celebrities least.
DEFAULT_CATEGORY_SEVERITY = {
    "ethnicity-religion": 0.9,
    "public-safety": 0.8,
    "officials-corruption": 0.7,
    "environment": 0.6,
    "education": 0.6,
    "health": 0.6,
    "livelihood-fees": 0.5,
    "wealth-fairness": 0.5,
    "ethics": 0.4,
    "enterprises-celebrities": 0.3,
}
DEFAULT_SERIOUSNESS_KEYWORDS = {
    "群体性事件": 0.9,
    "暴恐": 0.9,
    "打砸": 0.8,
    "暴力执法": 0.8,
    "性侵": 0.8,
    "虐童": 0.8,
    "疫苗": 0.7,
    "食品安全": 0.7,
    "校园欺凌": 0.7,
    "医疗事故": 0.7,
    "强拆": 0.7,
    "围堵": 0.7,
    "罢工": 0.7,
    "罢课": 0.7,
    "疫情": 0.7,
    "冲突": 0.6,
    "聚集": 0.6,
    "上访": 0.6,
    "讨薪": 0.6,
    "拆迁": 0.6,
    "维权": 0.5,
    "riot": 0.9,
    "abuse": 0.7,
    "vaccine": 0.7,
    "outbreak": 0.7,
    "protest": 0.6,
    "strike": 0.6,
}
DEFAULT_CONSEQUENCES = {
    "死亡": 1.0,
    "身亡": 1.0,
    "遇难": 1.0,
    "丧生": 1.0,
    "罹难": 1.0,
    "伤亡": 0.9,
    "爆炸": 0.9,
    "失踪": 0.8,
    "重伤": 0.8,
    "坍塌": 0.8,
    "垮塌": 0.8,
    "受伤": 0.7,
    "被困": 0.7,
    "中毒": 0.7,
    "泄漏": 0.7,
    "火灾": 0.7,
    "起火": 0.6,
    "感染": 0.6,
    "疏散": 0.5,
    "送医": 0.5,
    "住院": 0.5,
    "污染": 0.5,
    "停水": 0.4,
    "停电": 0.4,
    "停气": 0.4,
    "停课": 0.4,
    "停产": 0.4,
    "交通中断": 0.4,
    "经济损失": 0.4,
    "封路": 0.3,
    "deaths": 1.0,
    "dead": 1.0,
    "died": 1.0,
    "killed": 1.0,
    "fatalities": 1.0,
    "explosion": 0.9,
    "missing": 0.8,
    "collapse": 0.8,
    "injured": 0.7,
    "injuries": 0.7,
    "trapped": 0.7,
    "poisoning": 0.7,
    "leak": 0.7,
    "fire": 0.6,
    "evacuated": 0.5,
    "hospitalized": 0.5,
    "contamination": 0.5,
    "outage": 0.4,
}


class GradingModel(_Strict):
    """Everything grading depends on; load a JSON file with `GradingModel.load(path)`."""

    format: Literal[1] = 1
    weights: Weights = Weights()
    posts: LogScale = LogScale(lo=1, hi=10_000)
    posts_per_hour: LogScale = LogScale(lo=1, hi=1_000)
    reach: LogScale = LogScale(lo=1_000, hi=100_000_000)
    engagement: LogScale = LogScale(lo=10, hi=1_000_000)
    sources: LogScale = LogScale(lo=1, hi=200)
    regions: LogScale = LogScale(lo=1, hi=30)
    spread_sources_share: Unit = 0.6  # the rest of the spread factor is regions
    negativity: LinearScale = LinearScale(lo=0.2, hi=0.8)
    tier_authority: dict[str, Unit] = Field(default_factory=lambda: dict(DEFAULT_TIER_AUTHORITY))
    category_severity: dict[str, Unit] = Field(
        default_factory=lambda: dict(DEFAULT_CATEGORY_SEVERITY)
    )
    uncategorised_severity: Unit = 0.2
    seriousness_keywords: dict[str, Unit] = Field(
        default_factory=lambda: dict(DEFAULT_SERIOUSNESS_KEYWORDS)
    )
    consequence_terms: dict[str, Unit] = Field(default_factory=lambda: dict(DEFAULT_CONSEQUENCES))
    unknown_consequence_severity: Unit = 0.3
    thresholds: Thresholds = Thresholds()
    hysteresis_margin: Unit = 0.05
    downgrade_dwell_hours: float = Field(6.0, ge=0, le=24 * 90, allow_inf_nan=False)
    to_next_options: int = Field(4, ge=0, le=10)

    @model_validator(mode="after")
    def _margin_fits(self) -> GradingModel:
        t = self.thresholds
        room = min(t.serious, t.major - t.serious, t.critical - t.major)
        if self.hysteresis_margin >= room:
            raise ValueError(
                f"hysteresis_margin ({self.hysteresis_margin}) must be smaller than the "
                f"lowest threshold and every gap between thresholds ({room:.3g})"
            )
        return self

    @property
    def dwell(self) -> timedelta:
        return timedelta(hours=self.downgrade_dwell_hours)

    def level_for(self, score: float) -> Level:
        level = Level.general
        for candidate in _ORDER[1:]:
            if score >= self.thresholds.of(candidate) - _EPS:
                level = candidate
        return level

    @classmethod
    def from_dict(cls, data: Any) -> GradingModel:
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise GradingModelError(_describe(exc)) from None

    @classmethod
    def from_json(cls, text: str) -> GradingModel:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise GradingModelError([f"not valid JSON: {exc}"]) from None
        return cls.from_dict(data)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> GradingModel:
        return cls.from_json(Path(path).read_text(encoding="utf-8-sig"))

    def to_json(self, *, indent: int | None = 2) -> str:
        return json.dumps(self.model_dump(mode="json"), ensure_ascii=False, indent=indent)


class GradingModelError(ProblemsError):
    """A grading model is invalid; `problems` has one line per problem."""

    what = "grading model"


def _describe(exc: ValidationError) -> list[str]:
    problems = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"]) or "model"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown field (check the spelling)"
        elif error["type"] != "value_error" and isinstance(
            error.get("input"), str | int | float | bool | None
        ):
            message = f"{message}, got {error['input']!r}"
        problems.append(f"grading model, field {where!r}: {message}")
    return problems


DEFAULT_MODEL = GradingModel()


# --- state, overrides, history -----------------------------------------------------------------


@dataclass(frozen=True)
class Override:
    """A level set by a person; `reason` is required."""

    level: Level
    reason: str
    by: str
    at: datetime

    def __post_init__(self) -> None:
        if not isinstance(self.reason, str) or not self.reason.strip():
            raise ValueError("an override needs a reason")
        if not isinstance(self.by, str) or not self.by.strip():
            raise ValueError("an override needs the name of the person who made it")
        object.__setattr__(self, "level", Level(self.level))


class GradeEntry(BaseModel):
    """One line of an event's grading history."""

    model_config = ConfigDict(extra="forbid")

    at: datetime
    kind: Literal["grade", "override", "clear_override"]
    level: Level
    score: float | None = None
    reason: str | None = None
    by: str | None = None


class GradeState(BaseModel):
    """What to store between gradings: the graded level (hysteresis applied, override not),
    since when, the open override and the history. JSON round-trips: `to_json` / `from_json`."""

    model_config = ConfigDict(extra="forbid")

    level: Level
    since: datetime
    score: float | None = None
    below_since: datetime | None = None  # when the score first fell under the downgrade line
    override: Override | None = None
    history: list[GradeEntry] = Field(default_factory=list)

    def to_json(self) -> str:
        return self.model_dump_json()

    @classmethod
    def from_json(cls, text: str) -> GradeState:
        return cls.model_validate_json(text)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data (times as ISO 8601 strings)."""
        return self.model_dump(mode="json")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GradeState:
        return cls.model_validate(data)


def apply_override(
    state: GradeState | None, level: Level | str, reason: str, by: str, at: datetime | None = None
) -> GradeState:
    """A new state with `level` set by hand (the reason is required and kept in the history)."""
    at = _aware(at or datetime.now(UTC))
    override = Override(Level(level), reason.strip() if isinstance(reason, str) else reason, by, at)
    entry = GradeEntry(at=at, kind="override", level=override.level, reason=override.reason, by=by)
    if state is None:
        return GradeState(level=override.level, since=at, override=override, history=[entry])
    return state.model_copy(update={"override": override, "history": [*state.history, entry]})


def clear_override(
    state: GradeState, by: str, reason: str = "", at: datetime | None = None
) -> GradeState:
    """A new state without the override: the computed grade shows again."""
    at = _aware(at or datetime.now(UTC))
    entry = GradeEntry(
        at=at, kind="clear_override", level=state.level, reason=reason or None, by=by
    )
    return state.model_copy(update={"override": None, "history": [*state.history, entry]})


# --- grading -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Factor:
    name: str
    label_zh: str
    label_en: str
    value: Any  # the raw fact(s) behind the score
    score: float  # 0..1
    weight: float  # normalised: the weights of all factors sum to 1
    contribution: float  # weight × score
    detail_zh: str = ""
    detail_en: str = ""


@dataclass(frozen=True)
class Grade:
    level: Level  # what to show: the override when there is one, else the computed level
    score: float
    factors: list[Factor]
    next_level: Level | None  # the level above the computed one
    to_next: list[str]  # first the gap, then concrete ways to close it
    to_next_zh: list[str]
    explanation_zh: str
    explanation_en: str
    held: bool  # hysteresis kept a higher level than the score alone gives
    override: Override | None
    computed_level: Level  # hysteresis applied, override not
    score_level: Level  # the score alone
    state: GradeState  # store this and pass it as `previous` next time

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data for storing and showing (the state is stored on its own)."""
        return {
            "level": self.level.value,
            "level_zh": self.level.zh,
            "roman": self.level.roman,
            "score": round(self.score, 4),
            "computed_level": self.computed_level.value,
            "score_level": self.score_level.value,
            "held": self.held,
            "next_level": self.next_level.value if self.next_level else None,
            "to_next": list(self.to_next),
            "to_next_zh": list(self.to_next_zh),
            "explanation_zh": self.explanation_zh,
            "explanation_en": self.explanation_en,
            "override": (
                {
                    "level": self.override.level.value,
                    "reason": self.override.reason,
                    "by": self.override.by,
                    "at": self.override.at.isoformat(),
                }
                if self.override
                else None
            ),
            "factors": [
                {
                    "name": f.name,
                    "label_zh": f.label_zh,
                    "label_en": f.label_en,
                    "value": _jsonable(f.value),
                    "score": round(f.score, 4),
                    "weight": round(f.weight, 4),
                    "contribution": round(f.contribution, 4),
                    "detail_zh": f.detail_zh,
                    "detail_en": f.detail_en,
                }
                for f in self.factors
            ],
        }


FACTOR_LABELS = {
    "specificity": ("具体程度", "specificity"),
    "evidence": ("证据充分度", "evidence"),
    "seriousness": ("性质严重程度", "seriousness"),
    "consequences": ("后果", "consequences"),
    "negativity": ("负面程度", "negativity"),
    "volume": ("信息量", "volume"),
    "velocity": ("传播速度", "velocity"),
    "reach": ("覆盖面", "reach"),
    "authority": ("信源权威性", "source authority"),
    "spread": ("扩散范围", "spread"),
}


def grade(
    facts: EventFacts,
    model: GradingModel | None = None,
    previous: GradeState | None = None,
    now: datetime | None = None,
) -> Grade:
    """Grade an event now; pass the last `Grade.state` as `previous` for hysteresis."""
    model = model or DEFAULT_MODEL
    now = _aware(now or datetime.now(UTC))
    factors = _factors(facts, model)
    score = math.fsum(f.contribution for f in factors)
    score_level = model.level_for(score)
    state = _next_state(score, score_level, previous, model, now)
    held = state.level > score_level
    override = state.override
    next_level = state.level.up()
    to_next, to_next_zh = _to_next(facts, factors, score, next_level, model)
    zh, en = _explain(score, state, held, override, factors, to_next, to_next_zh, next_level, model)
    return Grade(
        level=override.level if override else state.level,
        score=score,
        factors=factors,
        next_level=next_level,
        to_next=to_next,
        to_next_zh=to_next_zh,
        explanation_zh=zh,
        explanation_en=en,
        held=held,
        override=override,
        computed_level=state.level,
        score_level=score_level,
        state=state,
    )


def _next_state(
    score: float,
    score_level: Level,
    previous: GradeState | None,
    model: GradingModel,
    now: datetime,
) -> GradeState:
    """Hysteresis: up at once; down only after `dwell` below the line minus the margin."""
    history = list(previous.history) if previous else []
    if previous is None or score_level >= previous.level:
        level, since, below_since = score_level, now, None
        if previous is not None and score_level == previous.level:
            since = previous.since
    else:
        # The highest level the score still holds once the margin is allowed for.
        with_margin = model.level_for(score + model.hysteresis_margin)
        if with_margin >= previous.level:
            level, since, below_since = previous.level, previous.since, None
        else:
            below_since = _aware(previous.below_since or now)
            if now - below_since >= model.dwell:
                level, since, below_since = with_margin, now, None
            else:
                level, since = previous.level, previous.since
    if previous is None or level != previous.level:
        history.append(GradeEntry(at=now, kind="grade", level=level, score=round(score, 4)))
    return GradeState(
        level=level,
        since=since,
        score=score,
        below_since=below_since,
        override=previous.override if previous else None,
        history=history,
    )


def _factors(facts: EventFacts, m: GradingModel) -> list[Factor]:
    weights = m.weights.model_dump()
    total = math.fsum(weights.values())
    out: list[Factor] = []

    def add(name: str, value: Any, score: float, zh: str, en: str) -> None:
        w = weights[name] / total
        label_zh, label_en = FACTOR_LABELS[name]
        out.append(Factor(name, label_zh, label_en, value, score, w, w * score, zh, en))

    add(
        "specificity",
        facts.specificity,
        facts.specificity,
        f"{facts.specificity:.0%}",
        f"{facts.specificity:.0%}",
    )
    add(
        "evidence", facts.evidence, facts.evidence, f"{facts.evidence:.0%}", f"{facts.evidence:.0%}"
    )

    severity, why = _seriousness(facts, m)
    names = [_category_name(w) for w in why]
    add(
        "seriousness",
        why,
        severity,
        _join_zh([n[0] for n in names]),
        ", ".join(n[1] for n in names),
    )

    found = [t for text in facts.texts for t in find_consequences(text, m)]
    terms = _dedupe(normalize(t) for t in (*facts.consequences, *found))
    lexicon = _normalized(tuple(m.consequence_terms.items()))
    spared = 1.0
    for term in terms:
        spared *= 1.0 - lexicon.get(term, m.unknown_consequence_severity)
    add("consequences", tuple(terms), 1.0 - spared, _join_zh(terms), ", ".join(terms))

    share = facts.negative_share
    add(
        "negativity",
        share,
        m.negativity.score(share),
        f"负面占{share:.0%}",
        f"{share:.0%} negative",
    )
    add(
        "volume",
        facts.posts,
        m.posts.score(facts.posts),
        f"{facts.posts:,}条",
        f"{facts.posts:,} posts",
    )
    pph = facts.posts_per_hour
    add(
        "velocity",
        pph,
        m.posts_per_hour.score(pph),
        f"每小时{pph:,.0f}条",
        f"{pph:,.0f} posts/hour",
    )
    reach_s = max(m.reach.score(facts.reach), m.engagement.score(facts.engagement))
    add(
        "reach",
        {"reach": facts.reach, "engagement": facts.engagement},
        reach_s,
        f"粉丝覆盖{facts.reach:,}，互动{facts.engagement:,}",
        f"{facts.reach:,} followers, {facts.engagement:,} engagements",
    )
    top_tier, authority = _authority(facts, m)
    tier_zh, tier_en = TIER_LABELS.get(top_tier, (top_tier, top_tier)) if top_tier else ("", "")
    add("authority", top_tier, authority, tier_zh, tier_en)
    a = m.spread_sources_share
    spread_s = a * m.sources.score(facts.sources) + (1 - a) * m.regions.score(facts.regions)
    add(
        "spread",
        {"sources": facts.sources, "regions": facts.regions},
        spread_s,
        f"{facts.sources}个来源、{facts.regions}个地区",
        f"{facts.sources} sources, {facts.regions} regions",
    )
    return out


def _seriousness(facts: EventFacts, m: GradingModel) -> tuple[float, tuple[str, ...]]:
    """Highest severity among the categories and the sensitive keywords, and what gave it."""
    best, why = m.uncategorised_severity, ()
    for slug in facts.categories:
        severity = m.category_severity.get(slug, m.uncategorised_severity)
        if severity > best or (severity == best and not why):
            best, why = severity, (slug,)
    keywords = [normalize(k) for k in facts.keywords]
    for term, severity in m.seriousness_keywords.items():
        t = normalize(term)
        if severity > best and any(t in k for k in keywords):
            best, why = severity, (term,)
    return best, why


def _authority(facts: EventFacts, m: GradingModel) -> tuple[str | None, float]:
    best_tier, best = None, 0.0
    for tier, count in facts.tiers.items():
        if count > 0:
            weight = m.tier_authority.get(tier, m.tier_authority.get("other", 0.0))
            if best_tier is None or weight > best:
                best_tier, best = tier, weight
    return best_tier, best


def _to_next(
    facts: EventFacts,
    factors: list[Factor],
    score: float,
    next_level: Level | None,
    m: GradingModel,
) -> tuple[list[str], list[str]]:
    """The gap to the next level and single-factor changes that would close it."""
    if next_level is None:
        return [], []
    target = m.thresholds.of(next_level)
    gap = max(target - score, 0.0)
    en = [f"score {score:.2f} needs +{gap:.2f} to reach {next_level.label_en} at {target:.2f}"]
    zh = [f"评分{score:.2f}，还需+{gap:.2f}才能达到{next_level.label_zh}（{target:.2f}）"]
    by_name = {f.name: f for f in factors}
    order = (
        "velocity",
        "volume",
        "authority",
        "reach",
        "spread",
        "consequences",
        "seriousness",
        "evidence",
        "specificity",
        "negativity",
    )
    for name in order:
        if len(en) > m.to_next_options:
            break
        f = by_name[name]
        if f.weight <= 0:
            continue
        needed = f.score + (gap + 1e-6) / f.weight
        if needed > 1.0:
            continue
        option = _OPTIONS[name](facts, f, needed, m)
        if option is not None:
            en.append(option[1])
            zh.append(option[0])
    return en, zh


def _more_count(scale: LogScale, have: float, needed: float) -> int:
    return max(1, math.ceil(scale.inverse(needed) - have))


def _opt_volume(facts: EventFacts, f: Factor, s: float, m: GradingModel) -> tuple[str, str]:
    n = _more_count(m.posts, facts.posts, s)
    return f"再增加{n:,}条信息", f"{n:,} more posts"


def _opt_velocity(facts: EventFacts, f: Factor, s: float, m: GradingModel) -> tuple[str, str]:
    n = _more_count(m.posts_per_hour, facts.posts_per_hour, s)
    return f"每小时再增加{n:,}条", f"{n:,} more posts/hour"


def _opt_reach(facts: EventFacts, f: Factor, s: float, m: GradingModel) -> tuple[str, str]:
    x = math.ceil(m.reach.inverse(s))
    return f"粉丝覆盖达到{x:,}", f"a reach of {x:,} followers"


def _opt_authority(
    facts: EventFacts, f: Factor, s: float, m: GradingModel
) -> tuple[str, str] | None:
    fits = sorted((w, t) for t, w in m.tier_authority.items() if w >= s - _EPS)
    if not fits:
        return None
    zh, en = TIER_LABELS.get(fits[0][1], (fits[0][1], fits[0][1]))
    return f"{zh}报道或转发", f"coverage by {en}"


def _opt_spread(facts: EventFacts, f: Factor, s: float, m: GradingModel) -> tuple[str, str] | None:
    a = m.spread_sources_share
    zh: list[str] = []
    en: list[str] = []
    if a > 0:
        need = (s - (1 - a) * m.regions.score(facts.regions)) / a
        if need <= 1.0:
            n = _more_count(m.sources, facts.sources, need)
            zh.append(f"再增加{n}个来源")
            en.append(f"{n} more sources")
    if a < 1:
        need = (s - a * m.sources.score(facts.sources)) / (1 - a)
        if need <= 1.0:
            n = _more_count(m.regions, facts.regions, need)
            zh.append(f"再波及{n}个地区")
            en.append(f"{n} more regions")
    if not en:
        return None
    return "或".join(zh), " or ".join(en)


def _opt_consequences(
    facts: EventFacts, f: Factor, s: float, m: GradingModel
) -> tuple[str, str] | None:
    have = f.score
    if have >= 1.0:
        return None
    needed = 1.0 - (1.0 - s) / (1.0 - have)
    present = set(f.value)
    fits = [
        (sev, i, term)
        for i, (term, sev) in enumerate(m.consequence_terms.items())
        if sev >= needed - _EPS and term not in present
    ]
    if not fits:
        return None
    term = min(fits)[2]
    return f"出现{term}等后果", f"a consequence such as {term}"


def _opt_seriousness(
    facts: EventFacts, f: Factor, s: float, m: GradingModel
) -> tuple[str, str] | None:
    fits = sorted(
        (sev, slug)
        for slug, sev in m.category_severity.items()
        if sev >= s - _EPS and slug not in facts.categories
    )
    if not fits:
        return None
    zh, en = _category_name(fits[0][1])
    return f"涉及{zh}等更敏感领域", f"a more serious area such as {en.lower()}"


def _opt_share(name: str, zh_label: str) -> Callable[..., tuple[str, str]]:
    def option(facts: EventFacts, f: Factor, s: float, m: GradingModel) -> tuple[str, str]:
        x = min(1.0, math.ceil(s * 100) / 100)
        return f"{zh_label}提高到{x:.0%}", f"{name} of at least {x:.0%}"

    return option


def _opt_negativity(facts: EventFacts, f: Factor, s: float, m: GradingModel) -> tuple[str, str]:
    x = min(1.0, math.ceil(m.negativity.inverse(s) * 100) / 100)
    return f"负面占比升至{x:.0%}", f"a negative share of at least {x:.0%}"


_OPTIONS: dict[str, Callable[..., tuple[str, str] | None]] = {
    "volume": _opt_volume,
    "velocity": _opt_velocity,
    "reach": _opt_reach,
    "authority": _opt_authority,
    "spread": _opt_spread,
    "consequences": _opt_consequences,
    "seriousness": _opt_seriousness,
    "evidence": _opt_share("evidence", "证据充分度"),
    "specificity": _opt_share("specificity", "具体程度"),
    "negativity": _opt_negativity,
}


def _explain(
    score: float,
    state: GradeState,
    held: bool,
    override: Override | None,
    factors: list[Factor],
    to_next: list[str],
    to_next_zh: list[str],
    next_level: Level | None,
    m: GradingModel,
) -> tuple[str, str]:
    """A short paragraph a leader can read, in Chinese and in English."""
    top = sorted((f for f in factors if f.contribution > 0), key=lambda f: -f.contribution)[:3]
    level = state.level
    zh = [f"综合评分{score:.2f}（满分1），定为{level.label_zh}。"]
    en = [f"Graded {level.label_en}, {level.zh}, with a score of {score:.2f} out of 1."]
    if top:
        zh.append(
            "主要因素："
            + "；".join(
                f"{f.label_zh}"
                + (f"（{f.detail_zh}）" if f.detail_zh else "")
                + f"+{f.contribution:.2f}"
                for f in top
            )
            + "。"
        )
        en.append(
            "Top factors: "
            + "; ".join(
                f"{f.label_en}"
                + (f" ({f.detail_en})" if f.detail_en else "")
                + f" +{f.contribution:.2f}"
                for f in top
            )
            + "."
        )
    if held:
        line = m.thresholds.of(level) - m.hysteresis_margin
        hours = f"{m.downgrade_dwell_hours:g}"
        zh.append(
            f"评分已低于{level.zh}线，为防止等级反复，评分持续低于{line:.2f}满{hours}小时后才降级。"
        )
        en.append(
            f"The score is below the {level.value} line; to avoid flapping the level is kept "
            f"until the score stays below {line:.2f} for {hours} h."
        )
    if next_level is not None:
        gap = m.thresholds.of(next_level) - score
        label = next_level.label_en[0].upper() + next_level.label_en[1:]
        if len(to_next) > 1:
            zh.append(
                f"距{next_level.label_zh}还差{gap:.2f}分，例如："
                + "，或".join(to_next_zh[1:])
                + "。"
            )
            en.append(f"{label} needs +{gap:.2f}, e.g. " + ", or ".join(to_next[1:]) + ".")
        else:
            zh.append(f"距{next_level.label_zh}还差{gap:.2f}分，需多项因素同时上升。")
            en.append(f"{label} needs +{gap:.2f}: no single factor can close that alone.")
    if override is not None:
        when = override.at.strftime("%Y-%m-%d %H:%M")
        zh.append(
            f"已由{override.by}于{when}人工调整为{override.level.label_zh}，理由：{override.reason}"
            f"（计算等级：{level.label_zh}）。"
        )
        en.append(
            f"Set by hand to {override.level.label_en} by {override.by} at {when} UTC"
            f" because: {override.reason} (computed: {level.label_en})."
        )
    return "".join(zh), " ".join(en)


# --- helpers -----------------------------------------------------------------------------------

_NEGATION = re.compile(r"无|未|没有|没|零|并非|不是|\b(?:no|zero|without|not|nobody)\b")
# 无辜 (innocent), 无数 (countless), 无人机 (drone) contain 无 but negate nothing.
_NOT_NEGATION = re.compile(r"无(?:辜|数|人机)")


def find_consequences(text: str, model: GradingModel | None = None) -> tuple[str, ...]:
    """Consequence terms of the model found in `text` (normalised), skipping negated mentions
    such as 无人员伤亡 / 未造成人员受伤 / no one was injured. A heuristic, for EventFacts."""
    model = model or DEFAULT_MODEL
    norm = normalize(text)
    found: list[str] = []
    for term in model.consequence_terms:
        t = normalize(term)
        start = 0
        while (i := norm.find(t, start)) >= 0:
            start = i + len(t)
            if t.isascii() and not _word_at(norm, i, len(t)):
                continue
            window = norm[max(0, i - (12 if t.isascii() else 6)) : i]
            window = _NOT_NEGATION.sub("", window)
            if _NEGATION.search(window):
                continue
            found.append(term)
            break
    return tuple(found)


def _word_at(text: str, i: int, n: int) -> bool:
    before = text[i - 1] if i > 0 else " "
    after = text[i + n] if i + n < len(text) else " "
    return not (before.isascii() and before.isalnum()) and not (after.isascii() and after.isalnum())


@cache
def _category_names() -> dict[str, tuple[str, str]]:
    text = resources.files("tingfeng.analyze").joinpath("taxonomy.json").read_text("utf-8")
    return {c["slug"]: (c["name_zh"], c["name_en"]) for c in json.loads(text).get("categories", ())}


def _category_name(key: str) -> tuple[str, str]:
    """(Chinese, English) name of a category slug; a keyword stands for itself."""
    return _category_names().get(key, (key, key))


@lru_cache(maxsize=32)
def _normalized(items: tuple[tuple[str, float], ...]) -> dict[str, float]:
    return {normalize(k): v for k, v in items}


def _join_zh(items: tuple[str, ...] | list[str]) -> str:
    return "、".join(items)


def _dedupe(items: Any) -> list[str]:
    return list(dict.fromkeys(i for i in items if i))


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value


def _aware(t: datetime) -> datetime:
    # Naive times are taken as UTC so stored and fresh times compare.
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)
