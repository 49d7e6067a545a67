"""The Reader: every analysis stage on real-looking posts, odd inputs, and configured models."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from tingfeng.analyze.builtin_models import MODEL_DIR, LoadedOnFirstUse, builtin_model
from tingfeng.analyze.categories import Taxonomy
from tingfeng.analyze.linear_model import LinearTextModel
from tingfeng.analyze.local_model import ModelLoadError
from tingfeng.analyze.normalize import normalize
from tingfeng.analyze.polarity import PolarityReader
from tingfeng.analyze.reading import Reader, Reading
from tingfeng.analyze.segment import Segmenter
from tingfeng.settings import Settings

COMPLAINT = "这家饭店太差劲了，服务员态度恶劣，菜又贵又难吃，再也不来了！"
HAPPY = "今天收到录取通知书，太开心了，感谢老师和家人！"
ANGRY = "气死我了！物业又停水三天，打电话没人接，简直欺人太甚！"
FIRE = "浙江杭州萧山区一厂房发生火灾，消防救援人员正在现场灭火，暂无人员伤亡。"
RUMOUR = "网传某地自来水被投毒，紧急扩散！转发告诉家人千万不要喝自来水！"
OFFICIAL = "国家统计局发布数据显示，一季度国内生产总值同比增长5.3%。"
ENGLISH_BAD = "The hotel was dirty and the staff were rude. Terrible experience, never again."
ENGLISH_GOOD = "What a wonderful day, the concert was amazing and I loved every minute of it."


@pytest.fixture(scope="module")
def segmenter() -> Segmenter:
    return Segmenter()


@pytest.fixture(scope="module")
def reader(segmenter: Segmenter) -> Reader:
    # Loading the models takes a second or two: once for the module.
    return Reader(segmenter)


def read(reader: Reader, text: str, lang: str | None = None) -> Reading:
    # Posts are read as ingest reads them: normalised first.
    return reader.read(normalize(text), lang)


def assert_all_unknown(reading: Reading) -> None:
    assert reading.polarity.label == "unknown" and reading.polarity.score is None
    assert reading.emotion.label == "unknown" and reading.emotion.score is None
    assert reading.credibility.needs_verification is None
    assert reading.credibility.score is None
    assert reading.keywords == [] and reading.regions == [] and reading.categories == []
    assert reading.problems == []


# --- what realistic posts read as ---------------------------------------------------------------


def test_a_complaint_reads_negative(reader: Reader) -> None:
    reading = read(reader, COMPLAINT)
    assert reading.polarity.label == "negative"
    assert reading.polarity.score is not None and reading.polarity.score < -0.5
    assert reading.polarity.negative > reading.polarity.positive  # type: ignore[operator]
    assert reading.problems == []


def test_a_happy_post_reads_positive_and_happy(reader: Reader) -> None:
    reading = read(reader, HAPPY)
    assert reading.polarity.label == "positive"
    assert reading.polarity.score is not None and reading.polarity.score > 0.5
    assert reading.emotion.label == "happy"


def test_an_angry_post_reads_angry(reader: Reader) -> None:
    reading = read(reader, ANGRY)
    assert reading.emotion.label == "angry"
    assert reading.emotion.score is not None and reading.emotion.score > 0.5
    assert reading.polarity.label == "negative"


def test_a_fire_in_hangzhou_gets_its_place_and_the_public_safety_category(
    reader: Reader,
) -> None:
    reading = read(reader, FIRE)
    assert reading.regions, "no region found"
    region = reading.regions[0]
    assert region["code"] == "330109"  # 萧山区
    assert region["path_codes"][:2] == ["330000", "330100"]
    assert region["path"][:2] == ["浙江省", "杭州市"]
    assert region["origin"] == "text"
    slugs = [c["slug"] for c in reading.categories]
    assert "public-safety" in slugs
    match = next(c for c in reading.categories if c["slug"] == "public-safety")
    assert any(e["keyword"] == "火灾" for e in match["evidence"])
    # Filter labels carry the ancestors, so a province filter finds the county's post.
    labels = reading.labels()
    for code in ("330000", "330100", "330109"):
        assert ("region", code) in labels
    assert ("category", "public-safety") in labels


def test_a_rumour_needs_verification_and_an_official_notice_does_not(reader: Reader) -> None:
    rumour, official = read(reader, RUMOUR), read(reader, OFFICIAL)
    assert rumour.credibility.needs_verification is True
    assert official.credibility.needs_verification is False
    assert rumour.credibility.score > official.credibility.score  # type: ignore[operator]


def test_keywords_and_entities_are_filled(reader: Reader) -> None:
    reading = read(reader, FIRE)
    words = [w for w, _ in reading.keywords]
    assert "火灾" in words
    assert 0 < len(words) <= reader.keyword_count
    places = [p["name"] if isinstance(p, dict) else p[0] for p in reading.entities["places"]]
    assert any("杭州" in p or "萧山" in p for p in places)


def test_a_source_region_is_used_when_the_text_names_no_place(reader: Reader) -> None:
    reading = reader.read(normalize(COMPLAINT), None, "浙江省杭州市")
    assert [(r["code"], r["origin"]) for r in reading.regions] == [("330100", "source")]


def test_a_batch_reads_each_text_as_if_alone(reader: Reader) -> None:
    texts = [normalize(t) for t in (COMPLAINT, HAPPY, "", FIRE, ENGLISH_BAD, RUMOUR)]
    langs: list[str | None] = [None, None, None, None, "en", None]
    together = reader.read_batch(texts, langs)
    alone = [reader.read(t, lang) for t, lang in zip(texts, langs, strict=True)]
    assert [r.to_row() for r in together] == [r.to_row() for r in alone]


def test_scores_are_stored_rounded_to_four_places(reader: Reader) -> None:
    """Scores go to the database, the API and the CLI as written: 0.9434, never the float32
    0.9434000253677368."""
    texts = [normalize(t) for t in (COMPLAINT, HAPPY, FIRE, RUMOUR, ENGLISH_BAD)]
    readings = reader.read_batch(texts, [None, None, None, None, "en"])
    scores = [
        value
        for r in readings
        for value in (
            r.polarity.score, r.polarity.negative, r.polarity.positive,
            r.emotion.score, r.credibility.score,
        )
        if value is not None
    ]  # fmt: skip
    assert len(scores) == 5 * 3 + 4 * 2
    assert all(type(v) is float and repr(v) == repr(round(v, 4)) for v in scores), scores


def test_english_gets_polarity_but_no_emotion_or_credibility(reader: Reader) -> None:
    bad, good = read(reader, ENGLISH_BAD, "en"), read(reader, ENGLISH_GOOD, "en")
    assert bad.polarity.label == "negative" and bad.polarity.score < 0  # type: ignore[operator]
    assert good.polarity.label == "positive" and good.polarity.score > 0  # type: ignore[operator]
    for reading in (bad, good):
        assert reading.emotion.label == "unknown" and reading.emotion.score is None
        assert reading.credibility.needs_verification is None
        assert reading.credibility.score is None
        assert reading.problems == []


NOT_BAD = "The new bridge is not bad at all, traffic is much better."


def test_english_is_read_by_the_shipped_transformer(reader: Reader) -> None:
    """The built-in English model reads what a bag of words cannot: "not bad at all"."""
    from tingfeng.analyze.local_model import OnnxTextClassifier

    english = reader.polarity.models["en"]
    assert isinstance(english, LoadedOnFirstUse)
    assert english.directory == MODEL_DIR / "polarity-en"
    # Three labels: the model reads "neutral" itself (learned from Weibo, not a band).
    assert english.labels == ["negative", "neutral", "positive"]
    assert reader.polarity.columns["en"] == [0, 1, 2]
    notice = "The council meets on Tuesday at 7 pm in the town hall."
    assert read(reader, notice, "en").polarity.label == "neutral"
    linear = PolarityReader(builtin_model("polarity-zh"), builtin_model("polarity-en-linear"))
    assert linear.read([NOT_BAD], ["en"])[0].score < 0  # type: ignore[operator]
    assert read(reader, NOT_BAD, "en").polarity.score > 0.5  # type: ignore[operator]
    assert isinstance(english.model, OnnxTextClassifier)


def test_the_english_transformer_loads_with_the_first_english_text() -> None:
    """Its session costs ~140 MB a process: Chinese posts alone never open it."""
    english = LoadedOnFirstUse(MODEL_DIR / "polarity-en")
    assert english.labels == ["negative", "neutral", "positive"] and not english.loaded
    polarity = PolarityReader(builtin_model("polarity-zh"), english)
    assert polarity.read([normalize(COMPLAINT)], ["zh"])[0].label == "negative"
    assert not english.loaded
    assert polarity.read([ENGLISH_BAD], ["en"])[0].label == "negative"
    assert english.loaded


def test_an_english_reading_does_not_depend_on_its_batch(reader: Reader) -> None:
    """int8 activations are scaled per batch: the shipped model reads each text alone."""
    texts = [ENGLISH_BAD, ENGLISH_GOOD, NOT_BAD, "I went to the store today.", "ok"]
    together = reader.polarity.read(texts, ["en"] * len(texts))
    assert together == [reader.polarity.read([t], ["en"])[0] for t in texts]
    assert together == reader.polarity.read(texts[::-1], ["en"] * len(texts))[::-1]


def test_the_fast_english_model_can_be_chosen_by_name(
    settings: Settings, segmenter: Segmenter, reader: Reader
) -> None:
    fast = Reader.from_settings(
        settings.model_copy(update={"polarity_model_en": "polarity-en-linear"}), segmenter
    )
    assert isinstance(fast.polarity.models["en"], LinearTextModel)
    assert fast.read(NOT_BAD, "en").polarity.score < 0  # type: ignore[operator]
    assert fast.read(ENGLISH_BAD, "en").polarity.label == "negative"
    assert fast.version != reader.version
    # A name that is no shipped model is taken as a path, and says so.
    with pytest.raises(ModelLoadError, match="polarity-en-fast does not exist"):
        Reader.from_settings(
            settings.model_copy(update={"polarity_model_en": "polarity-en-fast"}), segmenter
        )


# --- odd inputs never raise, and say "unknown" ---------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["", "   ", "\n\t\u3000", "😀😂🔥👍", "\x00\x01\x02\x07\x1b"],
    ids=["empty", "spaces", "whitespace", "emoji", "controls"],
)
def test_texts_without_letters_read_as_unknown(reader: Reader, text: str) -> None:
    reading = read(reader, text)
    assert_all_unknown(reading)
    row = reading.to_row()
    assert row["polarity"] == "unknown" and row["needs_verification"] is None
    json.dumps(row)  # storable as it is


@pytest.mark.parametrize(
    "text", ["@leekayak", "@Kyle_Fu @David-Cy", "？ http:", "http://t.cn/abc www.x.cn"]
)
def test_posts_of_only_mentions_and_links_read_as_unknown(reader: Reader, text: str) -> None:
    """A bare byline or address holds no opinion; in the CED stream such reposts were most
    of the "English" posts, each costing a transformer run."""
    for lang in (None, "en", "zh"):
        assert_all_unknown(read(reader, normalize(text), lang))


def test_a_mention_with_words_is_still_read(reader: Reader) -> None:
    assert read(reader, "@张三 " + COMPLAINT).polarity.label == "negative"
    assert read(reader, "回复@李四:" + HAPPY).emotion.label == "happy"
    assert read(reader, "@user " + ENGLISH_BAD, "en").polarity.label == "negative"
    # Weibo text runs on after a mention without a space: it is read, not taken for a name.
    run_on = read(reader, "@中国联通有信号也打不通电话、要不就根本没信号、天天无服务，气死了")
    assert run_on.polarity.label == "negative"
    assert read(reader, "@张三").polarity.label != "unknown"  # Chinese: left to the model


def test_a_reading_crosses_processes_whole() -> None:
    """Readings reach the writer by pickle (Reading.__reduce__): every field must survive."""
    import dataclasses
    import pickle

    from tingfeng.analyze.credibility import Credibility
    from tingfeng.analyze.emotion import Emotion
    from tingfeng.analyze.polarity import Polarity

    reading = Reading(
        polarity=Polarity("negative", -0.8, 0.85, 0.05),
        emotion=Emotion("angry", 0.7),
        credibility=Credibility(True, 0.9),
        keywords=[("停水", 0.5)],
        entities={"persons": [], "organizations": ["物业"], "places": []},
        regions=[{"code": "330100", "name": "杭州市"}],
        categories=[{"slug": "livelihood"}],
        problems=["regions: boom"],
        encoded=("negative", -0.8),
    )
    defaults = {f.name: getattr(Reading(), f.name) for f in dataclasses.fields(Reading)}
    assert all(getattr(reading, name) != value for name, value in defaults.items())
    copy = pickle.loads(pickle.dumps(reading, protocol=pickle.HIGHEST_PROTOCOL))
    assert copy == reading and copy is not reading


def test_control_characters_inside_a_post_do_not_stop_the_reading(reader: Reader) -> None:
    reading = read(reader, "\x00\x01" + COMPLAINT + "\x07\x1b\x7f")
    assert reading.polarity.label == "negative"
    assert reading.problems == []
    # PostgreSQL refuses U+0000 in JSON; nothing stored may carry it.
    assert "\\u0000" not in json.dumps(reading.to_row())


def test_a_100_kb_post_is_read_quickly(reader: Reader) -> None:
    text = ("医院排队三个小时没人管，服务太差了，患者投诉无门。" * 4200)[:100_000]
    assert len(text) == 100_000
    started = time.perf_counter()
    reading = read(reader, text)
    elapsed = time.perf_counter() - started
    assert reading.polarity.label == "negative"
    assert reading.keywords and reading.problems == []
    assert elapsed < 5.0, f"a 100 KB post took {elapsed:.1f} s"


@pytest.mark.parametrize(
    "text",
    [
        ("The clinic was dirty and the staff were rude. " * 2200)[:100_000],
        "rude \x00\x07 staff, dirty \x1b[31m clinic",
        "😡😡😡 terrible",
        "@user #fail http://t.co/x",
    ],
    ids=["100 KB", "controls", "emoji", "handles and links"],
)
def test_odd_english_posts_get_a_reading_from_the_transformer(reader: Reader, text: str) -> None:
    """The transformer reads its first 128 tokens: a 100 KB post is no slower than a tweet."""
    started = time.perf_counter()
    reading = read(reader, normalize(text), "en")
    assert time.perf_counter() - started < 2.0
    assert reading.polarity.label in ("negative", "neutral", "positive")
    assert reading.problems == []
    if "rude" in text or "terrible" in text:
        assert reading.polarity.score < 0  # type: ignore[operator]


def test_traditional_text_reads_like_its_simplified_form(reader: Reader) -> None:
    traditional = "這家醫院的醫生態度很好，我們非常滿意，謝謝護士們的照顧。"
    simplified = "这家医院的医生态度很好，我们非常满意，谢谢护士们的照顾。"
    assert normalize(traditional) == normalize(simplified)
    trad, simp = read(reader, traditional), read(reader, simplified)
    assert trad.polarity.label == "positive"
    assert trad.to_row() == simp.to_row()


def test_mixed_chinese_and_english_is_read_as_chinese(reader: Reader) -> None:
    reading = read(reader, "这个phone真的很好用，I love it，推荐大家购买！")
    assert reading.polarity.label == "positive"
    assert reading.emotion.label != "unknown"  # the Chinese models read it
    assert reading.credibility.needs_verification is not None
    assert reading.problems == []


# --- failures of configured models ----------------------------------------------------------


def test_a_missing_configured_model_fails_at_load(settings: Settings, segmenter, tmp_path) -> None:  # type: ignore[no-untyped-def]
    missing_dir = settings.model_copy(update={"polarity_model_zh": str(tmp_path / "no-model")})
    with pytest.raises(ModelLoadError, match="does not exist"):
        Reader.from_settings(missing_dir, segmenter)
    missing_npz = settings.model_copy(update={"emotion_model": str(tmp_path / "emo.npz")})
    with pytest.raises(ModelLoadError, match="no such model file"):
        Reader.from_settings(missing_npz, segmenter)


def test_a_corrupt_or_mislabelled_model_fails_at_load(
    settings: Settings, segmenter: Segmenter, tmp_path: Path
) -> None:
    whole = (MODEL_DIR / "polarity-zh.npz").read_bytes()
    for name, content in (
        ("half-copied.npz", whole[: len(whole) // 2]),  # a copy cut short: a broken zip
        ("garbage.npz", b"not a model at all\n" * 20),
    ):
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ModelLoadError, match="not a Tingfeng linear model"):
            Reader.from_settings(
                settings.model_copy(update={"polarity_model_zh": str(tmp_path / name)}),
                segmenter,
            )
    odd = tiny_linear_model(["bad", "good"], bias=[0.0, 0.0])
    odd.save(tmp_path / "odd.npz")
    with pytest.raises(ModelLoadError, match="negative, positive"):
        Reader.from_settings(
            settings.model_copy(update={"polarity_model_zh": str(tmp_path / "odd.npz")}),
            segmenter,
        )


class ExplodingModel:
    """A model that loaded but fails on every call (a damaged runtime, out of memory, ...)."""

    def __init__(self) -> None:
        self.labels = ["negative", "neutral", "positive"]

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        raise RuntimeError("the model runtime went away")


class ExplodingRegions:
    def find(self, text: str, source_region: object = None) -> list[object]:
        raise ValueError("region table damaged")


def test_a_model_failing_while_reading_is_a_problem_not_an_exception(
    segmenter: Segmenter,
) -> None:
    broken = Reader(
        segmenter, polarity=PolarityReader(ExplodingModel(), builtin_model("polarity-en-linear"))
    )
    readings = broken.read_batch([normalize(FIRE), normalize(COMPLAINT)], [None, None])
    for reading in readings:
        assert reading.polarity.label == "unknown"
        assert any(
            p.startswith("models:") and "the model runtime went away" in p for p in reading.problems
        ), reading.problems
        json.dumps(reading.to_row())
    # The text stages still ran.
    fire = readings[0]
    assert "public-safety" in [c["slug"] for c in fire.categories]
    assert fire.regions and fire.keywords
    # A failed reading is not remembered: once the model works again, the text is read anew.
    broken.polarity = PolarityReader(
        builtin_model("polarity-zh"), builtin_model("polarity-en-linear")
    )
    again = broken.read_batch([normalize(COMPLAINT)], [None])[0]
    assert again.polarity.label == "negative" and not again.problems


def test_a_failing_text_stage_loses_only_that_stage(segmenter: Segmenter) -> None:
    broken = Reader(segmenter, regions=ExplodingRegions())  # type: ignore[arg-type]
    reading = broken.read(normalize(FIRE), None)
    assert reading.regions == []
    assert reading.problems == ["regions: ValueError: region table damaged"]
    assert "public-safety" in [c["slug"] for c in reading.categories]
    assert reading.polarity.label != "unknown" and reading.keywords


# --- models named in the settings are really used -------------------------------------------


def tiny_linear_model(
    labels: list[str], bias: list[float], boost: dict[str, tuple[str, float]] | None = None
) -> LinearTextModel:
    """A linear model with hand-set weights: `boost` maps a character to (label, weight)."""
    bits = 12
    weights = np.zeros((1 << bits, len(labels)), dtype=np.float32)
    model = LinearTextModel(
        name="tiny-test-model",
        labels=labels,
        featurizer="char",
        bits=bits,
        weights=weights,
        bias=np.asarray(bias, dtype=np.float32),
        meta={"seed": 7},
    )
    for char, (label, weight) in (boost or {}).items():
        # The unigram feature of the character alone is the only feature of that 1-char text.
        (index,) = model.features([char]).indices.tolist()
        weights[index, labels.index(label)] = weight
    return model


def test_a_linear_model_file_named_in_settings_is_used(
    settings: Settings, segmenter: Segmenter, reader: Reader, tmp_path: Path
) -> None:
    # Confident both ways (P > 0.95), so the neutral band of two-label models cannot matter.
    polarity = tiny_linear_model(
        ["negative", "positive"], bias=[3.0, 0.0], boost={"好": ("positive", 8.0)}
    )
    polarity.save(tmp_path / "polarity.npz")
    emotion = tiny_linear_model(
        ["neutral", "angry", "happy", "sad", "fear", "surprise"],
        bias=[0.0, 0.0, 0.0, 0.0, 0.0, 2.0],
    )
    emotion.save(tmp_path / "emotion.npz")
    configured = settings.model_copy(
        update={
            "polarity_model_zh": str(tmp_path / "polarity.npz"),
            "emotion_model": str(tmp_path / "emotion.npz"),
        }
    )
    custom = Reader.from_settings(configured, segmenter)
    # The built-in model reads the happy post as positive; this one has only 好 to go on.
    no_good = custom.read(normalize(HAPPY), None)
    assert no_good.polarity.label == "negative"
    expected_negative = 1 / (1 + np.exp(-3.0))
    assert no_good.polarity.negative == pytest.approx(expected_negative, abs=1e-3)
    good = custom.read(normalize("好"), None).polarity
    assert good.label == "positive"
    assert good.positive == pytest.approx(1 / (1 + np.exp(-5.0)), abs=1e-3)
    # Every post is "surprise" to the emotion model: bias 2 against 0.
    surprise = np.exp(2) / (np.exp(2) + 5)
    assert no_good.emotion.label == "surprise"
    assert no_good.emotion.score == pytest.approx(surprise, abs=1e-3)
    # English keeps the built-in model.
    assert custom.read(ENGLISH_BAD, "en").polarity.label == "negative"
    assert custom.version != reader.version


def test_an_onnx_model_directory_named_in_settings_is_used(
    settings: Settings, segmenter: Segmenter, reader: Reader, tmp_path: Path
) -> None:
    from tests.test_local_model import write_model

    directory = write_model(tmp_path / "onnx-polarity", labels=["negative", "positive"])
    custom = Reader.from_settings(
        settings.model_copy(update={"polarity_model_zh": str(directory)}), segmenter
    )
    # The toy model scores 差 for negative and every other token 1.0 for positive (see
    # tests/test_local_model.py): "[CLS] 质 量 太 差 了 [SEP]" pools to (20/7, 6/7).
    poor = custom.read(normalize("质量太差了"), None)
    assert poor.polarity.label == "negative"
    assert poor.polarity.negative == pytest.approx(1 / (1 + np.exp(-2.0)), abs=1e-3)
    # Every token but 好/差 weighs 1.0 for positive: a complaint without either gets exactly
    # P(positive) = sigmoid(1), where the built-in model reads it as clearly negative.
    assert "差" not in ANGRY and "好" not in ANGRY
    assert read(reader, ANGRY).polarity.label == "negative"
    complaint = custom.read(normalize(ANGRY), None)
    assert complaint.polarity.positive == pytest.approx(1 / (1 + np.exp(-1.0)), abs=1e-3)
    # Three 好 make it confidently positive to the toy model; the built-in one is not fooled.
    fed_up = "好失望，好难过，好生气"
    assert read(reader, fed_up).polarity.label == "negative"
    assert custom.read(normalize(fed_up), None).polarity.label == "positive"
    assert custom.version != reader.version


def test_a_label_map_in_settings_names_an_onnx_models_labels(
    settings: Settings, segmenter: Segmenter, tmp_path: Path
) -> None:
    from tests.test_local_model import write_model

    directory = write_model(tmp_path / "generic", labels=["LABEL_0", "LABEL_1"])
    plain = settings.model_copy(update={"polarity_model_zh": str(directory)})
    with pytest.raises(ModelLoadError, match="label map"):
        Reader.from_settings(plain, segmenter)
    mapped = plain.model_copy(
        update={"model_label_map": {"LABEL_0": "negative", "LABEL_1": "positive"}}
    )
    custom = Reader.from_settings(mapped, segmenter)
    assert custom.read(normalize("质量太差了"), None).polarity.label == "negative"


# --- the version -------------------------------------------------------------------------------


def test_the_version_changes_with_the_rules(
    segmenter: Segmenter, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tingfeng.analyze import reading

    before = Reader(segmenter).version
    monkeypatch.setattr(reading, "RULES_VERSION", reading.RULES_VERSION + 1)
    after = Reader(segmenter).version
    assert after != before
    assert after.split("-")[1] == before.split("-")[1]  # the taxonomy part stays


def test_the_version_changes_with_the_taxonomy(segmenter: Segmenter) -> None:
    own = Reader(segmenter)
    before = own.version
    assert before == Reader(segmenter).version  # the same models and taxonomy: the same version
    wider = Taxonomy.default().add_category(
        {
            "slug": "transport",
            "name_zh": "交通出行",
            "name_en": "Transport",
            "keywords": {"交通拥堵": 2.0, "堵车": 2.0},
        }
    )
    own.set_taxonomy(wider)
    assert own.version != before
    # Only the taxonomy part changed: the model part stays.
    assert own.version.split("-")[0] == before.split("-")[0]
    assert "transport" in [
        c["slug"] for c in own.read(normalize("早高峰严重堵车，交通拥堵两小时"), None).categories
    ]
    own.set_taxonomy(Taxonomy.default())
    assert own.version == before


def test_identical_texts_are_read_once_and_forgotten_on_a_taxonomy_change(
    segmenter: Segmenter,
) -> None:
    reader = Reader(segmenter)
    calls: list[int] = []
    original = reader._read_distinct

    def counting(keys):  # type: ignore[no-untyped-def]
        calls.append(len(keys))
        return original(keys)

    reader._read_distinct = counting  # type: ignore[method-assign]
    repost = normalize("转发微博")
    fire = normalize("杭州一厂房发生火灾，消防正在灭火")
    readings = reader.read_batch([repost, fire, repost, repost], ["zh"] * 4)
    assert calls == [2]  # two distinct texts in a batch of four
    assert readings[0] is readings[2] and readings[0].polarity == readings[3].polarity
    reader.read_batch([fire, repost], ["zh", "zh"])
    assert calls == [2]  # both remembered from the first batch
    # The same text from a source with another region is another reading.
    other = reader.read_batch([repost], ["zh"], ["北京市"])[0]
    assert calls == [2, 1] and other.regions and other.regions[0]["code"] == "110000"
    # A new taxonomy must not serve readings with the old categories.
    taxonomy = reader.categories.taxonomy.remove_category("public-safety")
    reader.set_taxonomy(taxonomy)
    again = reader.read_batch([fire], ["zh"])[0]
    assert calls == [2, 1, 1]
    assert "public-safety" not in [c["slug"] for c in again.categories]


def test_joined_models_score_exactly_as_alone() -> None:
    from tingfeng.analyze.linear_model import join

    rng = np.random.default_rng(7)
    models = []
    for k in (3, 6, 2):
        model = LinearTextModel(
            name=f"m{k}", labels=[str(i) for i in range(k)], featurizer="char", bits=12,
            weights=rng.normal(size=(1 << 12, k)).astype(np.float32),
            bias=rng.normal(size=k).astype(np.float32),
        )  # fmt: skip
        models.append(model)
    texts = ["杭州西湖区停水", "", "服务太差了😡", "good"]
    alone = [m.predict_proba(texts) for m in models]
    join(models)
    assert models[0].joint is not None and models[0].joint[0] is models[2].joint[0]
    features = models[0].features(texts)
    for model, expected in zip(models, alone, strict=True):
        np.testing.assert_allclose(
            model.predict_proba(texts, features), expected, rtol=1e-5, atol=1e-6
        )
    assert len(features.products) == 1  # one product served the three models
