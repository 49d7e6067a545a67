"""The emotion model's training: train splits only, then self-training on unlabelled CED posts.

Run on a small data directory written here in the shared data's formats, so the whole recipe
(fit, offsets tuned on dev, pseudo-labelled second fit) runs in seconds.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from tingfeng.training import datasets as ds
from tingfeng.training import train as training

# A few words per emotion, so a tiny model can tell them apart.
MARKS = {
    "neutral": ["通知", "公告", "时间表", "安排"],
    "angry": ["气死", "可恶", "愤怒", "无耻"],
    "happy": ["开心", "快乐", "幸福", "高兴"],
    "sad": ["难过", "伤心", "想哭", "心碎"],
    "fear": ["害怕", "恐惧", "吓人", "担心"],
    "surprise": ["竟然", "居然", "没想到", "震惊"],
}
FILLERS = ["今天", "小区", "学校", "医院", "路口", "单位", "朋友", "邻居"]


def _post(emotion: str, n: int) -> str:
    marks = MARKS[emotion]
    return f"{FILLERS[n % len(FILLERS)]}{marks[n % len(marks)]}{marks[(n + 1) % len(marks)]}第{n}次"


def _tsv(path: Path, rows: list[tuple[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("label\ttext_a\n" + "".join(f"{a}\t{b}\n" for a, b in rows), encoding="utf-8")


def _cascades(path: Path, cascades: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        for cascade in cascades:
            handle.write(json.dumps(cascade, ensure_ascii=False) + "\n")


@pytest.fixture
def data(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    for part in ("usual", "virus"):
        for split, count, start in (("train", 24, 0), ("dev", 8, 100)):
            rows = [
                (str(i), _post(emotion, start + n + (50 if part == "virus" else 0)))
                for i, emotion in enumerate(ds.EMOTIONS)
                for n in range(count)
            ]
            _tsv(root / "sentiment" / "smp2020-ewect" / part / f"{split}.tsv", rows)
    # The shared idf also reads the review set.
    _tsv(
        root / "sentiment" / "chnsenticorp" / "train.tsv",
        [("1", "房间干净服务很好"), ("0", "房间很脏服务很差")] * 5,
    )
    # The unlabelled pool: 30 posts of each emotion but fear, which has 2.
    reposts = [
        {"mid": f"m{e}{n}", "parent": "", "uid": "u", "text": _post(e, 500 + n), "date": ""}
        for e in ds.EMOTIONS
        for n in range(2 if e == "fear" else 30)
    ]
    _cascades(
        root / "rumor" / "ced" / "cascades.jsonl.gz",
        [{"id": "1", "label": "rumor", "text": "源微博通知安排如下", "reposts": reposts}],
    )
    return root


def test_ced_post_texts_are_each_posts_own_words_once(tmp_path: Path) -> None:
    reposts = [
        {"text": "这事太吓人了吧//@某人:原文在此"},  # the repost's own words, before the chain
        {"text": "这事太吓人了吧"},  # the same words again: once
        {"text": "转发微博"},  # a bare repost says nothing
        {"text": "好的"},  # under six characters
        {"text": "網絡謠言真的令人擔心"},  # Traditional: normalised like every training text
        {"text": "//@某人:只有转发链"},  # no words of its own
    ]
    _cascades(
        tmp_path / "rumor" / "ced" / "cascades.jsonl.gz",
        [{"id": "1", "text": "源微博的正文内容", "reposts": reposts}],
    )
    got = ds.ced_post_texts(tmp_path, 100, seed=3)
    assert sorted(got) == sorted(["源微博的正文内容", "这事太吓人了吧", "网络谣言真的令人担心"])
    # Drawn with the seed: the same seed gives the same posts in the same order.
    assert ds.ced_post_texts(tmp_path, 100, seed=3) == got
    assert ds.ced_post_texts(tmp_path, 2, seed=3) == got[:2]


def test_emotion_self_training_adds_the_most_confident_pool_posts_of_each_class(
    data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = {"pool": 1_000, "per_class": 5, "weight": 0.5, "data": "test pool"}
    monkeypatch.setitem(
        training.PARAMS, "emotion-zh", {**training.PARAMS["emotion-zh"], "self_training": settings}
    )
    got = training.train_emotion(data)
    meta = got.model.meta
    # Train rows only are counted as labelled: dev is never trained on.
    assert meta["train_rows"] == 2 * 24 * len(ds.EMOTIONS)
    # At most `per_class` posts of each emotion; fear has only the two in the pool.
    assert meta["pseudo_labelled_rows"] == {
        "neutral": 5, "angry": 5, "happy": 5, "sad": 5, "fear": 2, "surprise": 5,
    }  # fmt: skip
    assert set(meta["dev_before_self_training"]) == set(got.dev)
    assert meta["params"]["self_training"] == settings
    # The self-trained model still reads each emotion.
    texts = [_post(e, 900) for e in ds.EMOTIONS]
    assert [ds.EMOTIONS[i] for i in got.model.scores(texts).argmax(1)] == ds.EMOTIONS


def test_emotion_without_self_training_is_the_train_only_fit(
    data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    params = {k: v for k, v in training.PARAMS["emotion-zh"].items() if k != "self_training"}
    monkeypatch.setitem(training.PARAMS, "emotion-zh", params)
    got = training.train_emotion(data)
    assert "pseudo_labelled_rows" not in got.model.meta
    assert got.model.meta["train_rows"] == 2 * 24 * len(ds.EMOTIONS)
    assert np.all(np.isfinite(got.model.weights))
