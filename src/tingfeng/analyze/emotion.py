"""Emotion of Chinese posts: the six SMP2020-EWECT classes with the probability of the winner."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tingfeng.analyze.features import Features
from tingfeng.analyze.linear_model import LinearTextModel
from tingfeng.analyze.local_model import ModelLoadError, TextClassifier

__all__ = ["EMOTIONS", "Emotion", "EmotionReader"]

EMOTIONS = ("neutral", "angry", "happy", "sad", "fear", "surprise")


@dataclass(slots=True, frozen=True)
class Emotion:
    label: str  # one of EMOTIONS, or "unknown"
    score: float | None  # probability of that label

    def __reduce__(self) -> tuple:  # see Reading.__reduce__
        return (Emotion, (self.label, self.score))


UNKNOWN_EMOTION = Emotion("unknown", None)


class EmotionReader:
    def __init__(self, model: TextClassifier) -> None:
        labels = list(model.labels)
        if sorted(labels) != sorted(EMOTIONS):
            raise ModelLoadError(
                f"an emotion model needs the labels {', '.join(EMOTIONS)}; this one has {labels}. "
                "Give a label map in the configuration."
            )
        self.model = model
        self.labels = labels

    def probabilities(self, texts: Sequence[str], features: Features | None = None) -> np.ndarray:
        if isinstance(self.model, LinearTextModel):
            return self.model.predict_proba(texts, features)
        return self.model.predict_proba(texts)

    def read(self, texts: Sequence[str], features: Features | None = None) -> list[Emotion]:
        """Emotions of Chinese texts (callers pass only texts that have letters)."""
        if not texts:
            return []
        probs = self.probabilities(texts, features)
        best = probs.argmax(axis=1)
        # In float64: a float32 rounded to 4 places is not 0.9434 but 0.9434000253677368, which
        # the API, the CLI and the database would all show.
        top = np.round(probs[np.arange(len(best)), best].astype(np.float64), 4).tolist()
        return [Emotion(self.labels[k], p) for k, p in zip(best.tolist(), top, strict=True)]
