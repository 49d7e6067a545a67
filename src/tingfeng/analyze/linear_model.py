"""The built-in text models: a linear layer over hashed n-gram features, in one `.npz` file.

Training (`tingfeng.training`) fits scikit-learn models on `tingfeng.analyze.features` and
saves the weights here; reading needs only NumPy. The file holds the weights as float16 (half
the size, no measurable change in any score) and a JSON header with the labels, the featurizer
and the training record that the model card is built from.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tingfeng.analyze.features import Features, char_features, word_features

__all__ = ["LinearTextModel"]

FEATURIZERS = {"char": char_features, "word": word_features}


@dataclass
class LinearTextModel:
    """Scores = features · weights + bias; probabilities by softmax over `temperature`-scaled scores."""

    name: str
    labels: list[str]
    featurizer: str  # "char" or "word"
    bits: int
    weights: np.ndarray  # (2**bits, len(labels)) float32
    bias: np.ndarray  # (len(labels),) float32
    temperature: float = 1.0
    meta: dict[str, Any] = field(default_factory=dict)
    idf: np.ndarray | None = None  # (2**bits,) feature weights applied before normalising
    # Set by `join`: these weights are columns of a matrix shared with other models reading
    # the same features, so one gather serves all of them.
    joint: tuple[np.ndarray, slice] | None = None

    @property
    def feature_key(self) -> tuple[str, int, str | None]:
        """Models with equal keys read the same features (computed once for all of them)."""
        return (self.featurizer, self.bits, self.meta.get("idf_sha"))

    def features(self, texts: Sequence[str]) -> Features:
        return FEATURIZERS[self.featurizer](texts, bits=self.bits, idf=self.idf)

    def scores(self, texts: Sequence[str], features: Features | None = None) -> np.ndarray:
        feats = features if features is not None else self.features(texts)
        if self.joint is not None:
            matrix, columns = self.joint
            product = feats.products.get(id(matrix))
            if product is None:
                product = feats.products[id(matrix)] = feats.dot(matrix)
            return product[:, columns] + self.bias
        return feats.dot(self.weights) + self.bias

    def predict_proba(self, texts: Sequence[str], features: Features | None = None) -> np.ndarray:
        z = self.scores(texts, features) * self.temperature
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def save(self, path: Path) -> None:
        header = {
            "name": self.name,
            "labels": self.labels,
            "featurizer": self.featurizer,
            "bits": self.bits,
            "temperature": self.temperature,
            "meta": self.meta,
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as handle:
            np.savez_compressed(
                handle,
                header=np.frombuffer(json.dumps(header, ensure_ascii=False).encode(), np.uint8),
                weights=self.weights.astype(np.float16),
                bias=self.bias.astype(np.float32),
                **({"idf": self.idf.astype(np.float16)} if self.idf is not None else {}),
            )

    @classmethod
    def load(cls, path: Path) -> LinearTextModel:
        with np.load(path) as data:
            header = json.loads(bytes(data["header"]).decode())
            weights = data["weights"].astype(np.float32)
            bias = data["bias"].astype(np.float32)
            idf = data["idf"].astype(np.float32) if "idf" in data.files else None
        if header["featurizer"] not in FEATURIZERS:
            raise ValueError(f"{path}: unknown featurizer {header['featurizer']!r}")
        if weights.shape != (1 << header["bits"], len(header["labels"])):
            raise ValueError(f"{path}: weights of shape {weights.shape} do not fit the header")
        return cls(
            name=header["name"],
            labels=list(header["labels"]),
            featurizer=header["featurizer"],
            bits=int(header["bits"]),
            weights=weights,
            bias=bias,
            temperature=float(header.get("temperature", 1.0)),
            meta=header.get("meta", {}),
            idf=idf,
        )


def join(models: Sequence[LinearTextModel]) -> None:
    """Put the weights of models that read the same features side by side in one matrix.

    A gather of the weight rows of a post's features is the cost of a linear model here (cache
    misses in a 2²⁰-row matrix); one matrix of 11 columns costs about what one of 3 does, so
    polarity, emotion and credibility together take ~12 µs a post less. The models keep their
    `weights` as views of the joint matrix, so no memory is added.
    """
    if len(models) < 2 or len({m.feature_key for m in models}) != 1:
        return
    if all(m.joint is not None and m.joint[0] is models[0].joint[0] for m in models):  # type: ignore[index]
        return  # already joined
    matrix = np.ascontiguousarray(np.hstack([m.weights for m in models]))
    start = 0
    for model in models:
        width = model.weights.shape[1]
        model.joint = (matrix, slice(start, start + width))
        model.weights = matrix[:, start : start + width]
        start += width
