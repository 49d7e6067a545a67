"""The credibility flag: "needs verification" for posts that read like unverified claims.

Trained on the CED Weibo rumour data (source posts of reported rumours against others, split
by cascade). The flag asks the office to check the facts and publish them; it is a prompt for
people, never a reason to remove or hide anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tingfeng.analyze.features import Features
from tingfeng.analyze.linear_model import LinearTextModel

__all__ = ["Credibility", "CredibilityReader"]


@dataclass(slots=True, frozen=True)
class Credibility:
    needs_verification: bool | None  # None: not assessed (not Chinese, or no text)
    score: float | None  # probability that the post is an unverified claim

    def __reduce__(self) -> tuple:  # see Reading.__reduce__
        return (Credibility, (self.needs_verification, self.score))


UNASSESSED = Credibility(None, None)


class CredibilityReader:
    def __init__(self, model: LinearTextModel, threshold: float = 0.5) -> None:
        self.model = model
        self.threshold = threshold
        self.column = model.labels.index("needs_verification")

    def read(self, texts: Sequence[str], features: Features | None = None) -> list[Credibility]:
        if not texts:
            return []
        column = self.model.predict_proba(texts, features)[:, self.column]
        probs = np.round(column.astype(np.float64), 4).tolist()  # float64: see emotion.read
        return [Credibility(p >= self.threshold, p) for p in probs]
