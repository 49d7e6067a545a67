"""Scores of the models: the metrics, `tingfeng eval`, and every test split for the card and bench."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from tingfeng.training import datasets as ds


def accuracy(gold: Sequence, pred: Sequence) -> float:
    return float(np.mean(np.asarray(gold) == np.asarray(pred))) if len(gold) else 0.0


def macro_f1(gold: Sequence, pred: Sequence, labels: Sequence | None = None) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(gold, pred, average="macro", labels=labels, zero_division=0))


def macro_recall(gold: Sequence, pred: Sequence) -> float:
    from sklearn.metrics import recall_score

    return float(recall_score(gold, pred, average="macro", zero_division=0))


def best_neutral_band(gold: Sequence[str], p_positive: np.ndarray) -> tuple[float, float]:
    """(macro-recall, band): the band around 0.5 read as neutral that recalls gold best.

    For two-label polarity models, tuned on dev data (never on test).
    """
    best = (-1.0, 0.0)
    for band in np.linspace(0.0, 0.49, 50):
        pred = np.where(
            p_positive >= 0.5 + band,
            "positive",
            np.where(p_positive <= 0.5 - band, "negative", "neutral"),
        )
        best = max(best, (macro_recall(gold, pred), round(float(band), 3)))
    return best


def english_dev_scores(
    data: Path, p_positive: Callable[[list[str]], np.ndarray]
) -> tuple[dict[str, float], float]:
    """SST-2 dev accuracy of a two-label English model, and its neutral band tuned on dev.

    SST-2 has no neutral class, so the band around 0.5 within which a text is called neutral
    is tuned on SST-2 dev (positive/negative) plus English news sentences from the events dev
    file (neutral by genre). No tweets are used. `p_positive` gives P(positive) per text.
    """
    sst = ds.sentiment_set(data, "sst2", "dev")
    news = ds.english_news_sentences(data)
    p = p_positive(sst.texts + news)
    head = p[: len(sst.texts)]
    accuracy_ = float(np.mean(np.where(head > 0.5, "positive", "negative") == np.array(sst.labels)))
    recall, band = best_neutral_band(sst.labels + ["neutral"] * len(news), p)
    return {"sst2_accuracy": accuracy_, "dev_mix_macro_recall": recall}, band


def sentiment_scores(reader, texts: list[str], gold: list[str]) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """Accuracy, macro-F1 (and macro-recall) of polarity on labelled texts.

    With only negative/positive in the gold labels, the prediction is the more likely of the
    two (the evaluation contract); otherwise the three-way reading.
    """
    from tingfeng.analyze.language import detect_language

    langs = [detect_language(t) for t in texts]
    readings = reader.read(texts, langs)
    if set(gold) <= {"negative", "positive"}:
        pred = [
            "positive" if (r.positive or 0.0) > (r.negative or 0.0) else "negative"
            for r in readings
        ]
    else:
        pred = [r.label if r.label != "unknown" else "neutral" for r in readings]
    return {
        "accuracy": round(accuracy(gold, pred), 4),
        "macro_f1": round(macro_f1(gold, pred), 4),
        "macro_recall": round(macro_recall(gold, pred), 4),
        "n": len(gold),
    }


def emotion_scores(reader, texts: list[str], gold: list[str]) -> dict[str, float]:  # type: ignore[no-untyped-def]
    pred = [e.label for e in reader.read(texts)]
    return {
        "macro_f1": round(macro_f1(gold, pred, labels=list(ds.EMOTIONS)), 4),
        "accuracy": round(accuracy(gold, pred), 4),
        "n": len(gold),
    }


def evaluate_all(data: Path, model_dir: Path | None = None) -> dict[str, dict]:
    """Every test split in the shared data, scored with the models in `model_dir`."""
    from tingfeng.analyze.reading import default_readers

    polarity, emotion, _ = default_readers(model_dir)
    out: dict[str, dict] = {}
    chn_train = {
        t.replace(" ", "") for t in ds.read_tsv(data / "sentiment/chnsenticorp/train.tsv").raw
    }
    chn = ds.sentiment_set(data, "chnsenticorp", "test")
    out["chnsenticorp"] = sentiment_scores(polarity, chn.texts, chn.labels)
    unseen = [i for i, raw in enumerate(chn.raw) if raw.replace(" ", "") not in chn_train]
    out["chnsenticorp_unseen"] = sentiment_scores(
        polarity, [chn.texts[i] for i in unseen], [chn.labels[i] for i in unseen]
    )
    for part in ("usual", "virus"):
        smp = ds.emotion_set(data, part, "test")
        out[f"smp2020_{part}"] = emotion_scores(emotion, smp.texts, smp.labels)
        out[f"smp2020_{part}_polarity"] = sentiment_scores(
            polarity, smp.texts, [ds.EMOTION_POLARITY[e] for e in smp.labels]
        )
    sst = ds.sentiment_set(data, "sst2", "test")
    out["sst2"] = sentiment_scores(polarity, sst.texts, sst.labels)
    tweets = ds.tweeteval_test(data)
    out["tweeteval"] = sentiment_scores(polarity, tweets.texts, tweets.labels)
    return out
