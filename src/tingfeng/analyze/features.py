"""Hashed n-gram features for the built-in text models, computed for a whole batch at once.

Character n-grams (1-3) carry Chinese sentiment well without a segmenter; English gets word
uni- and bigrams with negation marking. Hashing keeps the models small (no vocabulary to ship)
and makes features the same at training and at run time by construction.

The character featurizer works on one NumPy array of code points for the whole batch: about
ten vectorised operations replace a Python loop over every n-gram, which is what lets polarity
run at tens of thousands of posts per second on one core. sklearn's `HashingVectorizer` builds
its n-grams in Python and manages about 2,000 reviews/s here.
"""

from __future__ import annotations

import itertools
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Features", "char_features", "idf_weights", "word_features"]

# Texts are cut before featurising: a reading of a 100 KB post from its first 2,000 characters
# is as good as any, and the cost stays bounded.
MAX_CHARS = 2000

_MIX = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing: spreads nearby keys over all bits
_P1, _P2 = np.uint64(0x1F1F1F1F), np.uint64(0x5BD1E995)
_ORDER = (np.uint64(0), np.uint64(0x100000000), np.uint64(0x200000000))


@dataclass(slots=True)
class Features:
    """A batch of sparse rows: row `i` is `indices[indptr[i]:indptr[i+1]]` with `values`."""

    indptr: np.ndarray  # int64, len n+1
    indices: np.ndarray  # int64 feature ids < n_features
    values: np.ndarray  # float32 weights (log-scaled counts, L2-normalised per row)
    n_features: int
    # Products with joint weight matrices, by id of the matrix (see LinearTextModel.joint).
    products: dict[int, np.ndarray] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return len(self.indptr) - 1

    def to_csr(self):  # type: ignore[no-untyped-def]
        """The same matrix for scikit-learn (training only; scipy is not needed at run time)."""
        from scipy.sparse import csr_matrix

        return csr_matrix(
            (self.values, self.indices, self.indptr), shape=(self.rows, self.n_features)
        )

    def dot(self, weights: np.ndarray) -> np.ndarray:
        """Rows times a dense (n_features, k) weight matrix: (n, k) scores."""
        k = weights.shape[1]
        out = np.zeros((self.rows, k), dtype=np.float32)
        if len(self.indices) == 0:
            return out
        contrib = weights[self.indices].astype(np.float32) * self.values[:, None]
        nonempty = np.flatnonzero(np.diff(self.indptr))
        out[nonempty] = np.add.reduceat(contrib, self.indptr[nonempty], axis=0)
        return out


def _hash(keys: np.ndarray, bits: int) -> np.ndarray:
    return ((keys * _MIX) >> np.uint64(64 - bits)).astype(np.int64)


def _finish(
    doc: np.ndarray,
    feat: np.ndarray,
    n_docs: int,
    bits: int,
    idf: np.ndarray | None = None,
    binary: bool = False,
) -> Features:
    """Count (doc, feature) pairs, log-scale the counts, weigh by idf and normalise each row.

    `binary`: presence only, not normalised (for the NB-weighted English model).
    """
    n_features = 1 << bits
    if len(doc) == 0:
        return Features(
            np.zeros(n_docs + 1, np.int64),
            np.zeros(0, np.int64),
            np.zeros(0, np.float32),
            n_features,
        )
    keys, counts = np.unique(doc * n_features + feat, return_counts=True)
    rows = keys >> bits
    indptr = np.zeros(n_docs + 1, np.int64)
    np.cumsum(np.bincount(rows, minlength=n_docs), out=indptr[1:])
    if binary:
        return Features(indptr, keys & (n_features - 1), np.ones(len(keys), np.float32), n_features)
    values = (1.0 + np.log(counts)).astype(np.float32)
    if idf is not None:
        values *= idf[keys & (n_features - 1)]
    norms = np.sqrt(np.add.reduceat(values * values, indptr[:-1][np.diff(indptr) > 0]))
    values /= np.repeat(norms, np.diff(indptr)[np.diff(indptr) > 0]).astype(np.float32)
    return Features(indptr, keys & (n_features - 1), values, n_features)


def idf_weights(features: Features) -> np.ndarray:
    """Smoothed inverse document frequency of every feature (as scikit-learn computes it)."""
    df = np.bincount(features.indices, minlength=features.n_features)
    return (np.log((1.0 + features.rows) / (1.0 + df)) + 1.0).astype(np.float32)


def char_features(
    texts: Sequence[str], bits: int = 20, max_n: int = 3, idf: np.ndarray | None = None
) -> Features:
    """Character 1..max_n-grams of normalised texts (see `tingfeng.analyze.normalize`)."""
    n_docs = len(texts)
    # NUL separates texts in the joined batch; n-grams that span it are dropped below.
    joined = "\0".join(t[:MAX_CHARS].replace("\0", " ") for t in texts) + "\0"
    codes = np.frombuffer(joined.encode("utf-32-le", "surrogatepass"), dtype=np.uint32).astype(
        np.uint64
    )
    if n_docs == 0:
        return _finish(np.zeros(0, np.int64), np.zeros(0, np.int64), 0, bits)
    is_sep = codes == 0
    doc_of = np.cumsum(is_sep) - is_sep  # index of the text each position belongs to
    docs: list[np.ndarray] = []
    feats: list[np.ndarray] = []
    key = codes.copy()
    valid = ~is_sep
    for n in range(1, max_n + 1):
        if n > 1:
            # Extend each n-gram key by the next character; invalid if it crosses a separator.
            key = key[:-1] * _P1 + codes[n - 1 :] * _P2
            valid = valid[:-1] & ~is_sep[n - 1 :]
        keep = np.flatnonzero(valid)
        docs.append(doc_of[keep])
        feats.append(_hash(key[keep] + _ORDER[n - 1], bits))
    return _finish(np.concatenate(docs).astype(np.int64), np.concatenate(feats), n_docs, bits, idf)


_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|n't|[!?]")
_NEGATORS = frozenset(
    [
        "not",
        "no",
        "never",
        "nothing",
        "nor",
        "neither",
        "without",
        "hardly",
        "barely",
        "cannot",
        "none",
        "n't",
        "nobody",
        "nowhere",
    ]
)
_CLAUSE_END = re.compile(r"[.,;:!?]")


def english_tokens(text: str) -> list[str]:
    """Lower-case words; words after a negator get a `neg_` prefix until the clause ends.

    "not good" and "good" then weigh differently in a linear model, which word bigrams
    alone only partly capture.
    """
    out: list[str] = []
    for clause in _CLAUSE_END.split(text[:MAX_CHARS].lower().replace("’", "'")):
        negated = False
        for word in _WORD.findall(clause):
            out.append("neg_" + word if negated else word)
            if word in _NEGATORS or word.endswith("n't"):
                negated = True
    return out


def word_features(texts: Sequence[str], bits: int = 20, idf: np.ndarray | None = None) -> Features:
    """English word uni- and bigrams (binary: presence matters, repetition does not)."""
    doc_ids: list[int] = []
    hashes: list[int] = []
    for i, text in enumerate(texts):
        words = english_tokens(text)
        grams = words + [f"{a} {b}" for a, b in itertools.pairwise(words)]
        for gram in set(grams):
            doc_ids.append(i)
            hashes.append(zlib.crc32(gram.encode()))
    doc = np.asarray(doc_ids, dtype=np.int64)
    feat = _hash(np.asarray(hashes, dtype=np.uint64), bits) if hashes else np.zeros(0, np.int64)
    return _finish(doc, feat, len(texts), bits, binary=True)
