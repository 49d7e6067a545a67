"""Event grading: factors, thresholds, hysteresis, overrides, explanations, model files."""

from __future__ import annotations

import dataclasses
import json
import math
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tingfeng.events.grading import (
    DEFAULT_MODEL,
    EventFacts,
    GradeState,
    GradingModel,
    GradingModelError,
    Level,
    Override,
    apply_override,
    clear_override,
    find_consequences,
    grade,
)

T0 = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)

HANDFUL = EventFacts(
    posts=5,
    sources=2,
    regions=1,
    posts_per_hour=0.5,
    reach=2_500,
    engagement=30,
    negative_share=0.6,
    categories=("livelihood-fees",),
    tiers={"individual": 4, "local_media": 1},
    specificity=0.4,
    evidence=0.3,
)
LOCAL_FATAL = EventFacts(
    posts=20,
    sources=5,
    regions=1,
    posts_per_hour=10,
    reach=100_000,
    engagement=300,
    negative_share=0.7,
    categories=("public-safety",),
    tiers={"local_media": 2, "individual": 18},
    specificity=0.7,
    evidence=0.6,
    consequences=("死亡",),
)
CRITICAL = EventFacts(
    posts=5_000,
    sources=200,
    regions=15,
    posts_per_hour=400,
    reach=50_000_000,
    engagement=200_000,
    negative_share=0.8,
    categories=("public-safety",),
    tiers={"central_media": 5, "provincial_media": 20, "individual": 4_000},
    specificity=0.8,
    evidence=0.8,
    consequences=("死亡", "爆炸", "受伤"),
)


GROWN = dataclasses.replace(
    LOCAL_FATAL,
    posts=200,
    posts_per_hour=50,
    sources=30,
    regions=3,
    reach=1_000_000,
    tiers={"provincial_media": 3, "individual": 180},
)


def test_levels_order_and_labels() -> None:
    assert sorted([Level.critical, Level.general, Level.major, Level.serious]) == [
        Level.general,
        Level.serious,
        Level.major,
        Level.critical,
    ]
    assert Level.major > Level.serious and Level.general < Level.critical
    assert [lv.zh for lv in Level] == ["一般", "较大", "重大", "特大"]
    assert [lv.roman for lv in Level] == ["IV", "III", "II", "I"]
    assert Level.critical.up() is None and Level.general.down() is None
    assert Level.serious.up() is Level.major and Level.from_rank(3) is Level.critical
    assert Level("major") is Level.major and str(Level.major) == "major"


def test_calibration_examples() -> None:
    """A handful of local posts is 一般; a fatal local accident 较大; casualties at hundreds
    of posts an hour with central media 特大."""
    assert grade(HANDFUL, now=T0).level is Level.general
    assert grade(LOCAL_FATAL, now=T0).level is Level.serious
    assert grade(GROWN, now=T0).level is Level.major
    assert grade(CRITICAL, now=T0).level is Level.critical


def test_contributions_sum_to_score_and_each_factor_counts() -> None:
    g = grade(CRITICAL, now=T0)
    assert math.isclose(sum(f.contribution for f in g.factors), g.score, abs_tol=1e-12)
    assert math.isclose(sum(f.weight for f in g.factors), 1.0, abs_tol=1e-12)
    names = {f.name for f in g.factors}
    assert names == {
        "specificity",
        "evidence",
        "seriousness",
        "consequences",
        "negativity",
        "volume",
        "velocity",
        "reach",
        "authority",
        "spread",
    }
    for f in g.factors:
        assert 0.0 <= f.score <= 1.0
        assert math.isclose(f.contribution, f.weight * f.score)
    by = {f.name: f for f in g.factors}
    assert by["authority"].value == "central_media" and by["authority"].score == 1.0
    assert by["consequences"].value == ("死亡", "爆炸", "受伤")
    assert by["consequences"].score == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("change", "factor"),
    [
        ({"specificity": 0.9}, "specificity"),
        ({"evidence": 0.9}, "evidence"),
        ({"categories": ("ethnicity-religion",)}, "seriousness"),
        ({"keywords": ("群体性事件现场",)}, "seriousness"),
        ({"consequences": ("失踪",)}, "consequences"),
        ({"negative_share": 0.95}, "negativity"),
        ({"posts": 500}, "volume"),
        ({"posts_per_hour": 100.0}, "velocity"),
        ({"reach": 5_000_000}, "reach"),
        ({"engagement": 100_000}, "reach"),
        ({"tiers": {"central_media": 1}}, "authority"),
        ({"sources": 40}, "spread"),
        ({"regions": 8}, "spread"),
    ],
)
def test_each_factor_raises_its_own_contribution(change: dict, factor: str) -> None:
    before = grade(HANDFUL, now=T0)
    after = grade(dataclasses.replace(HANDFUL, **change), now=T0)
    b = {f.name: f.contribution for f in before.factors}
    a = {f.name: f.contribution for f in after.factors}
    assert a[factor] > b[factor]
    assert after.score > before.score
    assert {n for n in a if not math.isclose(a[n], b[n])} == {factor}


@settings(max_examples=150, deadline=None)
@given(
    posts=st.integers(0, 10**6),
    extra=st.integers(1, 10**6),
    pph=st.floats(0, 1e5),
    extra_pph=st.floats(0.01, 1e5),
    sources=st.integers(0, 1000),
)
def test_more_posts_never_lowers_the_score(
    posts: int, extra: int, pph: float, extra_pph: float, sources: int
) -> None:
    base = dataclasses.replace(HANDFUL, posts=posts, posts_per_hour=pph, sources=sources)
    more = dataclasses.replace(base, posts=posts + extra, posts_per_hour=pph + extra_pph)
    more_sources = dataclasses.replace(base, sources=sources + 1)
    s = grade(base, now=T0).score
    assert grade(more, now=T0).score >= s
    assert grade(more_sources, now=T0).score >= s


def test_thresholds_decide_the_level() -> None:
    t = DEFAULT_MODEL.thresholds
    assert DEFAULT_MODEL.level_for(0.0) is Level.general
    assert DEFAULT_MODEL.level_for(t.serious - 0.001) is Level.general
    assert DEFAULT_MODEL.level_for(t.serious) is Level.serious
    assert DEFAULT_MODEL.level_for(t.major) is Level.major
    assert DEFAULT_MODEL.level_for(t.critical) is Level.critical
    strict = GradingModel(thresholds={"serious": 0.1, "major": 0.3, "critical": 0.5})
    assert grade(HANDFUL, strict, now=T0).level is Level.serious


def test_to_next_suggestions_really_reach_the_next_level() -> None:
    g = grade(LOCAL_FATAL, now=T0)
    assert g.next_level is Level.major
    assert g.to_next[0].startswith("score 0.58 needs +0.02")
    options = g.to_next[1:]
    assert any(o.endswith("more posts/hour") for o in options)
    assert "coverage by provincial media" in options
    for option in options:
        n = int(option.split()[0].replace(",", "")) if option[0].isdigit() else None
        if option.endswith("more posts/hour"):
            facts = dataclasses.replace(LOCAL_FATAL, posts_per_hour=LOCAL_FATAL.posts_per_hour + n)
        elif option.endswith("more posts"):
            facts = dataclasses.replace(LOCAL_FATAL, posts=LOCAL_FATAL.posts + n)
        elif option == "coverage by provincial media":
            facts = dataclasses.replace(
                LOCAL_FATAL, tiers={**LOCAL_FATAL.tiers, "provincial_media": 1}
            )
        else:
            continue
        assert grade(facts, now=T0).level is Level.major, option
    # one post/hour less than suggested is not enough
    pph = next(o for o in options if o.endswith("more posts/hour"))
    n = int(pph.split()[0])
    short = dataclasses.replace(LOCAL_FATAL, posts_per_hour=LOCAL_FATAL.posts_per_hour + n - 1)
    assert grade(short, now=T0).level is Level.serious
    assert grade(CRITICAL, now=T0).to_next == []


def test_explanation_names_level_and_top_factor() -> None:
    g = grade(CRITICAL, now=T0)
    top = max(g.factors, key=lambda f: f.contribution)
    assert top.name == "consequences"
    assert "特大（I级）" in g.explanation_zh and top.label_zh in g.explanation_zh
    assert "死亡" in g.explanation_zh
    assert "critical (I)" in g.explanation_en and top.label_en in g.explanation_en
    handful = grade(HANDFUL, now=T0)
    top = max(handful.factors, key=lambda f: f.contribution)
    assert top.name == "seriousness" and "民生与收费" in handful.explanation_zh
    assert "一般（IV级）" in handful.explanation_zh


def test_hysteresis_does_not_flap_near_a_threshold() -> None:
    """A score wobbling around the major line moves up once and stays up."""
    line = DEFAULT_MODEL.thresholds.major
    state = None
    levels = []
    for i in range(48):  # every 10 minutes for 8 hours, ±0.02 around the line
        wobble = 0.02 if i % 2 else -0.02
        facts = _facts_scoring(line + wobble)
        g = grade(facts, previous=state, now=T0 + timedelta(minutes=10 * i))
        state = g.state
        levels.append(g.level)
    assert levels[0] is Level.serious  # starts below the line
    assert set(levels[1:]) == {Level.major}  # up at the first crossing, never down again
    changes = [e for e in state.history if e.kind == "grade"]
    assert [e.level for e in changes] == [Level.serious, Level.major]


def test_downgrade_waits_for_the_dwell_time() -> None:
    g = grade(CRITICAL, now=T0)
    assert g.level is Level.critical
    low = HANDFUL
    dwell = DEFAULT_MODEL.dwell
    g1 = grade(low, previous=g.state, now=T0 + timedelta(minutes=5))
    assert g1.level is Level.critical and g1.held and g1.score_level is Level.general
    assert "防止等级反复" in g1.explanation_zh
    g2 = grade(low, previous=g1.state, now=T0 + timedelta(minutes=5) + dwell / 2)
    assert g2.level is Level.critical and g2.held
    # the score recovers above the line minus the margin: the dwell clock restarts
    near = _facts_scoring(DEFAULT_MODEL.thresholds.critical - DEFAULT_MODEL.hysteresis_margin / 2)
    g3 = grade(near, previous=g2.state, now=T0 + dwell)
    assert g3.level is Level.critical and g3.state.below_since is None
    g4 = grade(low, previous=g3.state, now=T0 + dwell + timedelta(minutes=1))
    g5 = grade(low, previous=g4.state, now=T0 + dwell + timedelta(minutes=1) + dwell * 0.99)
    assert g5.level is Level.critical
    g6 = grade(low, previous=g5.state, now=T0 + dwell + timedelta(minutes=1) + dwell)
    assert g6.level is Level.general and not g6.held
    # an upgrade is immediate
    g7 = grade(CRITICAL, previous=g6.state, now=T0 + 3 * dwell)
    assert g7.level is Level.critical
    assert [e.level for e in g7.state.history] == [
        Level.critical,
        Level.general,
        Level.critical,
    ]


def test_override_keeps_the_computed_grade_and_history() -> None:
    g = grade(LOCAL_FATAL, now=T0)
    with pytest.raises(ValueError, match="reason"):
        apply_override(g.state, Level.major, "  ", by="王科长", at=T0)
    with pytest.raises(ValueError, match="reason"):
        Override(Level.major, "", "王科长", T0)
    state = apply_override(
        g.state, "major", "涉及学校，上级要求按重大处置", by="王科长", at=T0 + timedelta(minutes=1)
    )
    g2 = grade(HANDFUL, previous=state, now=T0 + timedelta(minutes=2))
    assert g2.level is Level.major and g2.override is not None
    assert g2.computed_level is Level.serious and g2.held  # the computed grade is still there
    assert g2.score == pytest.approx(grade(HANDFUL, now=T0).score)
    assert "王科长" in g2.explanation_zh and "涉及学校" in g2.explanation_zh
    assert "computed: serious (III)" in g2.explanation_en
    cleared = clear_override(g2.state, by="王科长", at=T0 + timedelta(hours=1))
    g3 = grade(LOCAL_FATAL, previous=cleared, now=T0 + timedelta(hours=1, minutes=1))
    assert g3.override is None and g3.level is Level.serious
    kinds = [(e.kind, e.level, e.by) for e in g3.state.history]
    assert kinds == [
        ("grade", Level.serious, None),
        ("override", Level.major, "王科长"),
        ("clear_override", Level.serious, "王科长"),
    ]
    assert g3.state.history[1].reason == "涉及学校，上级要求按重大处置"


def test_state_json_round_trip() -> None:
    g = grade(LOCAL_FATAL, now=T0)
    state = apply_override(g.state, Level.critical, "领导批示", by="李主任", at=T0)
    again = GradeState.from_json(state.to_json())
    assert again == state
    assert again.override is not None and again.override.level is Level.critical
    assert GradeState.from_dict(json.loads(json.dumps(state.to_dict()))) == state
    # and grading goes on from the restored state exactly as from the original
    later = T0 + timedelta(minutes=3)
    assert (
        grade(HANDFUL, previous=again, now=later).state
        == grade(HANDFUL, previous=state, now=later).state
    )
    body = json.loads(json.dumps(grade(CRITICAL, now=T0).to_dict(), ensure_ascii=False))
    assert body["level"] == "critical" and len(body["factors"]) == 10


def test_model_json_round_trip_and_file(tmp_path) -> None:
    model = GradingModel(
        weights={"consequences": 0.3, "volume": 0.2},
        thresholds={"serious": 0.3, "major": 0.5, "critical": 0.7},
        category_severity={"public-safety": 1.0},
    )
    again = GradingModel.from_json(model.to_json())
    assert again == model
    path = tmp_path / "grading.json"
    path.write_text(model.to_json(), encoding="utf-8")
    assert GradingModel.load(path) == model
    assert grade(LOCAL_FATAL, again, now=T0).score == grade(LOCAL_FATAL, model, now=T0).score
    assert grade(LOCAL_FATAL, again, now=T0).score != grade(LOCAL_FATAL, now=T0).score


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"thresholds": {"serious": 0.6, "major": 0.5}}, "thresholds must increase"),
        ({"weights": {"volum": 0.2}}, "weights.volum"),
        ({"weights": {"volume": -1}}, "weights.volume"),
        ({"posts": {"lo": 100, "hi": 10}}, "hi (10.0) must be greater than lo (100.0)"),
        ({"hysteresis_margin": 0.3}, "hysteresis_margin"),
        ({"consequence_terms": {"死亡": 2}}, "consequence_terms.死亡"),
        ({"format": 2}, "format"),
    ],
)
def test_invalid_model_gives_a_clear_error(data: dict, message: str) -> None:
    with pytest.raises(GradingModelError) as info:
        GradingModel.from_dict(data)
    assert message in str(info.value)
    with pytest.raises(GradingModelError, match="not valid JSON"):
        GradingModel.from_json("{weights: 1")


def test_invalid_facts_are_rejected() -> None:
    with pytest.raises(ValueError, match="negative_share"):
        EventFacts(negative_share=1.5)
    with pytest.raises(ValueError, match="posts"):
        EventFacts(posts=-1)


def test_find_consequences_skips_negated_mentions() -> None:
    assert find_consequences("爆炸造成3人死亡，暂无人员失踪，未造成人员受伤") == ("死亡", "爆炸")
    assert find_consequences("No one was injured; two people died in the fire") == ("died", "fire")
    assert find_consequences("無人機爆炸，無辜群眾受傷") == ("爆炸", "受伤")
    assert find_consequences("firefighters") == ()
    facts = dataclasses.replace(HANDFUL, texts=("化工厂爆炸，多人受伤",))
    by = {f.name: f for f in grade(facts, now=T0).factors}
    assert set(by["consequences"].value) == {"爆炸", "受伤"}


def _facts_scoring(target: float) -> EventFacts:
    """Facts whose score is `target` (found by bisecting posts per hour on a fixed base)."""
    base = dataclasses.replace(LOCAL_FATAL if target < 0.65 else GROWN, posts_per_hour=0.0)
    lo, hi = 0.0, 1e6
    for _ in range(80):
        mid = (lo + hi) / 2
        if grade(dataclasses.replace(base, posts_per_hour=mid), now=T0).score < target:
            lo = mid
        else:
            hi = mid
    facts = dataclasses.replace(base, posts_per_hour=hi)
    assert grade(facts, now=T0).score == pytest.approx(target, abs=1e-6)
    return facts
