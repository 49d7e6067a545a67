"""研判 of one post: every analysis stage together, in batches, never stopping on bad input.

A `Reading` holds polarity, emotion, keywords, entities, regions, categories and the
credibility flag. `Reader.read_batch` computes them for many posts at once (the character
features are computed once and shared by the three Chinese models), and a stage that fails on
one odd post leaves that part of its reading empty and says so in `problems`; it never raises.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tingfeng.analyze.builtin_models import (
    MODEL_DIR,
    builtin_classifier,
    builtin_model,
    load_classifier,
)
from tingfeng.analyze.categories import CategoryMatcher, Taxonomy
from tingfeng.analyze.credibility import UNASSESSED, Credibility, CredibilityReader
from tingfeng.analyze.emotion import UNKNOWN_EMOTION, Emotion, EmotionReader
from tingfeng.analyze.entities import extract_entities
from tingfeng.analyze.features import Features
from tingfeng.analyze.keywords import KeywordExtractor, load_default_idf
from tingfeng.analyze.linear_model import LinearTextModel, join
from tingfeng.analyze.polarity import UNKNOWN_POLARITY, Polarity, PolarityReader, script_of
from tingfeng.analyze.regions import RegionFinder, default_finder
from tingfeng.analyze.segment import Segmenter

__all__ = ["Reader", "Reading", "default_readers"]

log = logging.getLogger(__name__)

# Analyses read the start of very long posts: what a 100 KB post is about shows in its first
# pages, and the cost of a reading stays bounded.
MAX_READ_CHARS = 20_000
# Raise when a rule-based stage (keywords, entities, regions, category matching: their code,
# not the taxonomy, which has its own version) starts reading differently, so that the
# readings' version changes and `tingfeng reanalyze` re-reads stored posts with the new rules.
# 2 (session 13): persons drop reduplicated words, interjections and times of day; English
# posts get regions from pinyin spellings.
RULES_VERSION = 2
# Readings of short texts are remembered across batches (reposts repeat the same few words).
_MEMO_MAX_CHARS = 140
_MEMO_SIZE = 50_000


@dataclass(slots=True)
class Reading:
    polarity: Polarity = UNKNOWN_POLARITY
    emotion: Emotion = UNKNOWN_EMOTION
    credibility: Credibility = UNASSESSED
    keywords: list[tuple[str, float]] = field(default_factory=list)
    entities: dict[str, Any] = field(default_factory=dict)
    regions: list[dict[str, Any]] = field(default_factory=list)
    categories: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    # Column values encoded for SQLite ahead of writing (ingest/readings.sqlite_encoded), so a
    # helper process does the JSON work rather than the one that writes.
    encoded: tuple[Any, ...] | None = None

    def __reduce__(self) -> tuple:
        # Readings cross from the helper process to the writer by pickle. A slots dataclass
        # pickles through dataclasses' Python-level __getstate__ (a `fields()` call per
        # object); a plain constructor call costs about half (dumping ~14 -> ~6 µs, loading
        # ~20 -> ~12 µs a reading), and pickling was a sixth of a helper's work per post.
        return (
            Reading,
            (
                self.polarity,
                self.emotion,
                self.credibility,
                self.keywords,
                self.entities,
                self.regions,
                self.categories,
                self.problems,
                self.encoded,
            ),
        )

    def to_row(self) -> dict[str, Any]:
        """Column values of the `readings` table (without post id and version)."""
        return {
            "polarity": self.polarity.label,
            "polarity_score": self.polarity.score,
            "emotion": self.emotion.label,
            "emotion_score": self.emotion.score,
            "needs_verification": self.credibility.needs_verification,
            "credibility_score": self.credibility.score,
            "keywords": [[w, round(float(s), 4)] for w, s in self.keywords],
            "entities": self.entities,
            "regions": self.regions,
            "categories": self.categories,
            "problems": self.problems or None,
        }

    def labels(self) -> list[tuple[str, str]]:
        """(kind, value) pairs to filter on: each category and each region with its ancestors."""
        out = [("category", c["slug"]) for c in self.categories]
        codes: dict[str, None] = {}
        for region in self.regions:
            for code in [*region.get("path_codes", ()), region["code"]]:
                codes[code] = None
        out += [("region", code) for code in codes]
        return out


def default_readers(
    model_dir: Path | None = None,
) -> tuple[PolarityReader, EmotionReader, CredibilityReader]:
    """The built-in polarity, emotion and credibility readers."""
    d = model_dir or MODEL_DIR
    polarity = PolarityReader(builtin_model("polarity-zh", d), builtin_classifier("polarity-en", d))
    return (
        polarity,
        EmotionReader(builtin_model("emotion-zh", d)),
        CredibilityReader(builtin_model("credibility-zh", d)),
    )


class Reader:
    """All analysis stages; build once per process (loading takes about a second)."""

    def __init__(
        self,
        segmenter: Segmenter,
        *,
        polarity: PolarityReader | None = None,
        emotion: EmotionReader | None = None,
        credibility: CredibilityReader | None = None,
        taxonomy: Taxonomy | None = None,
        regions: RegionFinder | None = None,
        keyword_count: int = 8,
    ) -> None:
        if polarity is None or emotion is None or credibility is None:
            defaults = default_readers()
            polarity = polarity or defaults[0]
            emotion = emotion or defaults[1]
            credibility = credibility or defaults[2]
        self.segmenter = segmenter
        self.polarity = polarity
        self.emotion = emotion
        self.credibility = credibility
        self.categories = CategoryMatcher(taxonomy or Taxonomy.default())
        self.regions = regions or default_finder()
        self.keywords = KeywordExtractor(load_default_idf(), segmenter)
        self.keyword_count = keyword_count
        chinese = [self.polarity.models["zh"], self.emotion.model, self.credibility.model]
        if (
            all(isinstance(m, LinearTextModel) for m in chinese)
            and len({id(m) for m in chinese}) == 3
        ):
            join(chinese)  # type: ignore[arg-type]
        self._memory: dict[tuple, Reading] = {}
        self._version_base = self._model_fingerprint()

    @classmethod
    def from_settings(
        cls, settings: Any, segmenter: Segmenter, taxonomy: Taxonomy | None = None
    ) -> Reader:
        """Readers with any stronger local models the configuration names."""
        zh, en, emo = (
            builtin_model("polarity-zh"),
            builtin_classifier("polarity-en"),
            builtin_model("emotion-zh"),
        )
        if settings.polarity_model_zh:
            zh = load_classifier(settings.polarity_model_zh, settings.model_label_map or None)
        if settings.polarity_model_en:
            en = load_classifier(settings.polarity_model_en, settings.model_label_map or None)
        if settings.emotion_model:
            emo = load_classifier(settings.emotion_model, settings.model_label_map or None)
        return cls(
            segmenter,
            polarity=PolarityReader(zh, en),
            emotion=EmotionReader(emo),
            credibility=CredibilityReader(
                builtin_model("credibility-zh"), settings.credibility_threshold
            ),
            taxonomy=taxonomy,
        )

    def _model_fingerprint(self) -> str:
        parts = [
            f"rules={RULES_VERSION}",
            f"credibility>={self.credibility.threshold}",
            f"bands={sorted(self.polarity.bands.items())}",
        ]
        for model in (*self.polarity.models.values(), self.emotion.model, self.credibility.model):
            if isinstance(model, LinearTextModel):
                parts.append(f"{model.name}:{model.meta.get('seed')}:{float(model.bias.sum()):.6f}")
            else:
                # A local model replaced in place must change the version: its files' sizes and times.
                directory = getattr(model, "directory", None)
                stamp = ""
                if directory is not None:
                    stamp = ",".join(
                        f"{p.name}:{p.stat().st_size}:{int(p.stat().st_mtime)}"
                        for p in sorted(Path(directory).glob("*"))
                        if p.is_file()
                    )
                parts.append(f"{model.__class__.__name__}:{stamp or repr(model)}")
        return hashlib.sha256("|".join(parts).encode()).hexdigest()[:12]

    @property
    def version(self) -> str:
        """Changes when a model, the taxonomy or the rules (`RULES_VERSION`) change: what
        `reanalyze` compares."""
        return f"{self._version_base}-{self.categories.version}"

    def set_taxonomy(self, taxonomy: Taxonomy) -> None:
        self.categories = CategoryMatcher(taxonomy)
        self._memory = {}  # remembered readings carry the old categories

    def read(self, text: str, lang: str | None = None, source_region: str | None = None) -> Reading:
        return self.read_batch([text], [lang], [source_region])[0]

    def warm_up(self) -> None:
        """Load what the first reading would (models, dictionaries), so no batch waits for it."""
        # Chinese only: the English transformer opens with the first English post
        # (builtin_models.LoadedOnFirstUse), so all-Chinese offices never pay its memory.
        self.read_batch(["预热：加载模型"], ["zh"], [None])

    def read_batch(
        self,
        texts: Sequence[str],
        langs: Sequence[str | None],
        source_regions: Sequence[str | None] | None = None,
    ) -> list[Reading]:
        """Readings of normalised texts (title and body joined), in order.

        Identical texts (same language and source region) are read once: reposts repeat each
        other ("转发微博"), and in the CED stream fewer than half of the texts are distinct.
        Short texts are also remembered across batches.
        """
        regions = source_regions or [None] * len(texts)
        keys = [
            ((t or "")[:MAX_READ_CHARS], lang, region)
            for t, lang, region in zip(texts, langs, regions, strict=True)
        ]
        todo: dict[tuple, Reading | None] = {}
        for key in keys:
            if key not in todo:
                todo[key] = self._memory.get(key)
        fresh = [key for key, reading in todo.items() if reading is None]
        if fresh:
            for key, reading in zip(fresh, self._read_distinct(fresh), strict=True):
                todo[key] = reading
                # A reading with problems (a model failed) is not worth remembering.
                if len(key[0]) <= _MEMO_MAX_CHARS and not reading.problems:
                    if len(self._memory) >= _MEMO_SIZE:
                        self._memory.clear()  # crude but bounded; frequent texts come back fast
                    self._memory[key] = reading
        # The same Reading object may serve several posts: readings are not changed afterwards.
        return [todo[key] for key in keys]  # type: ignore[misc]

    def _read_distinct(self, keys: list[tuple]) -> list[Reading]:
        texts = [key[0] for key in keys]
        readings = [Reading() for _ in texts]
        scripts = [script_of(t, lang) if t.strip() else None for t, lang, _ in keys]
        self._models(texts, scripts, readings)
        for (text, _, region), reading in zip(keys, readings, strict=True):
            self._text_stages(text, region, reading)
        return readings

    def _models(self, texts: list[str], scripts: list[str | None], readings: list[Reading]) -> None:
        zh = [i for i, s in enumerate(scripts) if s == "zh"]
        en = [i for i, s in enumerate(scripts) if s == "en"]
        try:
            if zh:
                zh_texts = [texts[i] for i in zh]
                # The built-in Chinese models read the same features: computed once for all.
                cache: dict[tuple, Features] = {}

                def feats(model: object) -> Features | None:
                    if not isinstance(model, LinearTextModel):
                        return None
                    if model.feature_key not in cache:
                        cache[model.feature_key] = model.features(zh_texts)
                    return cache[model.feature_key]

                pol = self.polarity.label(
                    self.polarity.probabilities(zh_texts, "zh", feats(self.polarity.models["zh"])),
                    "zh",
                )
                emo = self.emotion.read(zh_texts, feats(self.emotion.model))
                cred = self.credibility.read(zh_texts, feats(self.credibility.model))
                for k, i in enumerate(zh):
                    readings[i].polarity, readings[i].emotion, readings[i].credibility = (
                        pol[k],
                        emo[k],
                        cred[k],
                    )
            if en and self.polarity.models.get("en") is not None:
                en_texts = [texts[i] for i in en]
                pol = self.polarity.label(self.polarity.probabilities(en_texts, "en"), "en")
                for k, i in enumerate(en):
                    readings[i].polarity = pol[k]
        except Exception as exc:  # a broken local model must not stop ingest
            log.exception("polarity/emotion models failed on a batch")
            for reading in readings:
                reading.problems.append(f"models: {exc.__class__.__name__}: {exc}")

    def _text_stages(self, text: str, source_region: str | None, reading: Reading) -> None:
        stages = (
            (
                "keywords",
                lambda: [(k.word, k.weight) for k in self.keywords.tfidf(text, self.keyword_count)],
            ),
            ("entities", lambda: extract_entities(text, self.segmenter).to_dict()),
            ("regions", lambda: [m.to_dict() for m in self.regions.find(text, source_region)]),
            ("categories", lambda: [m.to_dict() for m in self.categories.classify(text)]),
        )
        for name, stage in stages:
            try:
                setattr(reading, name, stage())
            except Exception as exc:  # one odd post loses one stage, not the post
                log.exception("analysis stage %s failed", name)
                reading.problems.append(f"{name}: {exc.__class__.__name__}: {exc}")
