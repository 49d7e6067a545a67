"""Polarity: positive / neutral / negative with a score in [-1, 1] (P(positive) − P(negative)).

Chinese posts go to a three-class model trained on reviews and Weibo posts; English posts to
a two-class model whose "neutral" is a band of low confidence around 0.5 (tuned on dev data:
the English training set has no neutral class). Any classifier with the labels negative /
(neutral) / positive can replace either (`TextClassifier`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tingfeng.analyze.features import Features
from tingfeng.analyze.linear_model import LinearTextModel
from tingfeng.analyze.local_model import ModelLoadError, TextClassifier

__all__ = ["UNKNOWN", "Polarity", "PolarityReader", "has_letters", "script_of"]

UNKNOWN = "unknown"
LABELS = ("negative", "neutral", "positive")


@dataclass(slots=True, frozen=True)
class Polarity:
    label: str  # negative / neutral / positive / unknown
    score: float | None  # P(positive) − P(negative); None when unknown
    negative: float | None = None
    positive: float | None = None

    def __reduce__(self) -> tuple:  # see Reading.__reduce__
        return (Polarity, (self.label, self.score, self.negative, self.positive))


UNKNOWN_POLARITY = Polarity(UNKNOWN, None)


def has_letters(text: str) -> bool:
    return any(ch.isalpha() for ch in text)


# @mentions and links: bylines and addresses, not words anyone wrote about anything.
_NOT_PROSE = re.compile(r"@[^\s@:：,，]+|(?:https?:|www\.)\S*", re.IGNORECASE)


def _has_chinese(text: str) -> bool:
    return any("\u4e00" <= ch <= "\u9fff" for ch in text)


def script_of(text: str, lang: str | None) -> str | None:
    """ "zh", "en" or None: which model can read this text.

    None also for a text without Chinese that is only @mentions and links ("@leekayak",
    "http:" cut short): there is no opinion in it to read, and reading it would cost a model
    run (the English transformer takes ~2 ms even for one word). Text with Chinese is left to
    the Chinese model: Weibo text often runs on after a mention with no space
    ("@中国联通有信号也打不通电话"), so where a mention ends cannot be told.
    """
    if (
        ("@" in text or "http" in text or "www" in text)
        and not has_letters(_NOT_PROSE.sub(" ", text))
        and not _has_chinese(text)
    ):
        return None
    if lang in ("zh", "en"):
        return lang
    if _has_chinese(text):
        return "zh"
    if any("a" <= ch <= "z" for ch in text.lower()):
        return "en"
    return None


def _three_way(model: TextClassifier) -> list[int | None]:
    labels = list(model.labels)
    unknown = set(labels) - set(LABELS)
    if unknown or "negative" not in labels or "positive" not in labels:
        raise ModelLoadError(
            f"a polarity model needs the labels negative, positive (and optionally neutral); "
            f"this one has {labels}. Give a label map in the configuration."
        )
    return [labels.index(name) if name in labels else None for name in LABELS]


def _band_of(model: TextClassifier | None) -> float:
    if isinstance(model, LinearTextModel):
        return float(model.meta.get("neutral_band", 0.0))
    return float(getattr(model, "neutral_band", 0.0))


class PolarityReader:
    """Reads batches of normalised texts; thread-safe (the models are read-only)."""

    def __init__(
        self, zh: TextClassifier, en: TextClassifier | None, neutral_band: float | None = None
    ) -> None:
        self.models = {"zh": zh, "en": en}
        self.columns = {lang: _three_way(m) for lang, m in self.models.items() if m is not None}
        # A two-label model calls "neutral" what it is unsure of: the band comes with the model
        # (tuned on its own dev data), or is given; each language has its own.
        self.bands = {
            lang: float(neutral_band) if neutral_band is not None else _band_of(model)
            for lang, model in self.models.items()
        }

    def probabilities(
        self, texts: Sequence[str], lang: str, features: Features | None = None
    ) -> np.ndarray:
        """(n, 3) probabilities of negative, neutral, positive."""
        model = self.models[lang]
        assert model is not None
        if isinstance(model, LinearTextModel):
            raw = model.predict_proba(texts, features)
        else:
            raw = model.predict_proba(texts)
        out = np.zeros((len(texts), 3), dtype=np.float64)
        for k, column in enumerate(self.columns[lang]):
            if column is not None:
                out[:, k] = raw[:, column]
        return out

    def label(self, probs: np.ndarray, lang: str) -> list[Polarity]:
        # Vectorised: a Python loop with np.argmax per row cost ~15 µs a post. float64, so
        # scores round to 4 places exactly (see emotion.read).
        probs = np.asarray(probs, dtype=np.float64)
        neg, pos = probs[:, 0], probs[:, 2]
        if self.columns[lang][1] is None:
            band = self.bands.get(lang, 0.0)
            total = neg + pos
            share = np.divide(pos, total, out=np.full_like(pos, 0.5), where=total > 0)
            index = np.where(share >= 0.5 + band, 2, np.where(share <= 0.5 - band, 0, 1))
        else:
            index = probs.argmax(axis=1)
        names = [LABELS[k] for k in index.tolist()]
        scores = np.round(pos - neg, 4).tolist()
        return [
            Polarity(name, score, n, p)
            for name, score, n, p in zip(
                names, scores, np.round(neg, 4).tolist(), np.round(pos, 4).tolist(), strict=True
            )
        ]

    def read(
        self,
        texts: Sequence[str],
        langs: Sequence[str | None],
        features: dict[str, Features] | None = None,
    ) -> list[Polarity]:
        """A reading per text; `unknown` for texts no model can read (empty, no letters, no model)."""
        out: list[Polarity] = [UNKNOWN_POLARITY] * len(texts)
        groups: dict[str, list[int]] = {}
        for i, (text, lang) in enumerate(zip(texts, langs, strict=True)):
            script = script_of(text, lang) if text.strip() else None
            if script is not None and self.models.get(script) is not None:
                groups.setdefault(script, []).append(i)
        for lang, idx in groups.items():
            probs = self.probabilities([texts[i] for i in idx], lang, (features or {}).get(lang))
            for i, polarity in zip(idx, self.label(probs, lang), strict=True):
                out[i] = polarity
        return out
