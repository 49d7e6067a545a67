"""Readers for the shared labelled data sets, and the by-cascade split of CED.

Rule of use (../shared/data/README.md): fit on `train`, tune on `dev`, report on `test`.
"""

from __future__ import annotations

import csv
import gzip
import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tingfeng.analyze.normalize import normalize

# SMP2020-EWECT label ids (labels.json) and the polarity each emotion maps to (data README).
EMOTIONS = ["neutral", "angry", "happy", "sad", "fear", "surprise"]
EMOTION_POLARITY = {
    "neutral": "neutral",
    "angry": "negative",
    "happy": "positive",
    "sad": "negative",
    "fear": "negative",
    "surprise": "neutral",
}
POLARITIES = ["negative", "neutral", "positive"]
_TEXT_COLUMNS = ("text_a", "text", "content", "sentence", "review")
_LABEL_WORDS = {
    "0": "negative", "1": "positive", "neg": "negative", "neu": "neutral", "pos": "positive",
    "negative": "negative", "neutral": "neutral", "positive": "positive",
}  # fmt: skip


def default_data_dir() -> Path:
    """`../shared/data` beside the checkout (where the project's data sets live)."""
    return Path(__file__).resolve().parents[3].parent / "shared" / "data"


class DataFileError(ValueError):
    """A labelled file that cannot be read; the message says which line and what to fix."""


@dataclass
class Labelled:
    texts: list[str]  # normalised
    labels: list[str]
    raw: list[str]
    lines: list[int] | None = None  # line of each row in its file, for error messages


def read_tsv(path: Path, label_names: list[str] | None = None) -> Labelled:
    """A TSV with a header naming a label column and a text column.

    Labels are read as written, or as `label_names[int(label)]` when names are given.
    """
    if not path.is_file():
        raise DataFileError(f"{path}: no such file")
    texts, labels, raw, lines = [], [], [], []
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, None)
        if not header or "label" not in header:
            raise DataFileError(
                f"{path}: the first line must be a header with a 'label' column and a text "
                f"column ({', '.join(_TEXT_COLUMNS)}), separated by tabs"
            )
        li = header.index("label")
        ti = next((header.index(c) for c in _TEXT_COLUMNS if c in header), None)
        if ti is None:
            ti = 1 - li if len(header) == 2 else None
        if ti is None:
            raise DataFileError(f"{path}: no text column; name one of {', '.join(_TEXT_COLUMNS)}")
        for line, row in enumerate(reader, start=2):
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) <= max(li, ti):
                raise DataFileError(f"{path}:{line}: expected {len(header)} tab-separated fields")
            label = row[li].strip()
            if label_names is not None:
                if not label.isdigit() or int(label) >= len(label_names):
                    raise DataFileError(
                        f"{path}:{line}: label {label!r} is not 0-{len(label_names) - 1}"
                    )
                label = label_names[int(label)]
            raw.append(row[ti])
            texts.append(normalize(row[ti]))
            labels.append(label)
            lines.append(line)
    return Labelled(texts, labels, raw, lines)


def polarity_labels(labels: list[str], path: Path, lines: list[int] | None = None) -> list[str]:
    """Sentiment labels as negative/neutral/positive (0/1, neg/neu/pos and the words)."""
    out = []
    for n, label in enumerate(labels):
        value = _LABEL_WORDS.get(label.lower())
        if value is None:
            where = f"{path}:{lines[n]}" if lines else f"{path}: row {n + 1}"
            raise DataFileError(f"{where}: label {label!r} is not one of 0/1 or neg/neu/pos")
        out.append(value)
    return out


def emotion_labels(labels: list[str], path: Path, lines: list[int] | None = None) -> list[str]:
    """SMP2020-EWECT labels as emotion names (ids 0-5 or the names)."""
    out = []
    for n, label in enumerate(labels):
        if label.isdigit() and int(label) < len(EMOTIONS):
            out.append(EMOTIONS[int(label)])
        elif label in EMOTIONS:
            out.append(label)
        else:
            where = f"{path}:{lines[n]}" if lines else f"{path}: row {n + 1}"
            raise DataFileError(
                f"{where}: label {label!r} is not 0-5 or one of {', '.join(EMOTIONS)}"
            )
    return out


def sentiment_set(data: Path, name: str, split: str) -> Labelled:
    """ChnSentiCorp or SST-2 as negative/positive."""
    path = data / "sentiment" / name / f"{split}.tsv"
    got = read_tsv(path)
    got.labels = polarity_labels(got.labels, path)
    return got


def emotion_set(data: Path, part: str, split: str) -> Labelled:
    """SMP2020-EWECT `usual` or `virus` with the six emotion names."""
    return read_tsv(data / "sentiment" / "smp2020-ewect" / part / f"{split}.tsv", EMOTIONS)


def tweeteval_test(data: Path) -> Labelled:
    base = data / "sentiment" / "tweeteval"
    raw = (base / "test_text.txt").read_text(encoding="utf-8").splitlines()
    ids = (base / "test_labels.txt").read_text(encoding="utf-8").split()
    names = ["negative", "neutral", "positive"]
    return Labelled([normalize(t) for t in raw], [names[int(i)] for i in ids], raw)


def english_news_sentences(data: Path, limit: int = 1500) -> list[str]:
    """Sentences of English news from the events `dev` file: neutral examples for tuning."""
    out: list[str] = []
    with (data / "events" / "mmds2025-dev.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            item = json.loads(line)
            # Most English articles carry no language tag: take those written in Latin letters.
            body = item.get("text") or ""
            if item.get("lang") == "zh" or sum(ch.isascii() for ch in body) < 0.9 * max(
                len(body), 1
            ):
                continue
            for sentence in (item.get("text") or "").replace("\n", " ").split(". "):
                if 40 <= len(sentence) <= 300:
                    out.append(normalize(sentence))
    return out[:limit]


def ced_cascades(data: Path) -> Iterator[dict]:
    with gzip.open(data / "rumor" / "ced" / "cascades.jsonl.gz", "rt", encoding="utf-8") as handle:
        for line in handle:
            yield json.loads(line)


def ced_post_texts(data: Path, limit: int, seed: int) -> list[str]:
    """`limit` distinct CED posts (source posts, and each repost's own words before "//@"),
    normalised, drawn with `seed`: unlabelled Weibo text, free to use for training.

    Bare reposts ("转发微博") and texts under six characters say nothing and are left out.
    """
    import random

    seen: set[str] = set()
    for cascade in ced_cascades(data):
        seen.add(cascade["text"])
        for repost in cascade["reposts"]:
            own = repost["text"].split("//@")[0].strip()
            if len(own) >= 6 and own not in _BARE_REPOSTS:
                seen.add(own)
    texts = sorted(seen)
    random.Random(seed).shuffle(texts)
    return [normalize(t) for t in texts[:limit]]


_BARE_REPOSTS = frozenset({"转发微博", "轉發微博", "Repost"})


def cascade_fold(cascade_id: str, folds: int = 5) -> int:
    """A cascade's fold: by its id, so a source post and its reposts never straddle folds."""
    return zlib.crc32(str(cascade_id).encode()) % folds
