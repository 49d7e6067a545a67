"""Where the shipped models live, and loading a model named in the configuration.

The built-in files are in `tingfeng/models/` (trained by `tingfeng train`; see
`tingfeng/models/MODEL_CARD.md`): linear models as `.npz` files, and English polarity as a
small fine-tuned transformer in `polarity-en/` (ONNX). A configured model replaces one of
them: a directory with `model.onnx` (a fine-tuned transformer, see
docs/analysis-local-models.md), a `.npz` file written by `LinearTextModel.save` (e.g.
retrained on your own labels), or the name of another shipped model (`polarity-en-linear`,
the fast English alternative).
"""

from __future__ import annotations

import threading
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tingfeng.analyze.linear_model import LinearTextModel
from tingfeng.analyze.local_model import (
    ModelLoadError,
    TextClassifier,
    declared_labels,
    load_text_classifier,
)

__all__ = [
    "MODEL_DIR",
    "LoadedOnFirstUse",
    "builtin_classifier",
    "builtin_model",
    "load_classifier",
    "open_builtin_transformer",
]

MODEL_DIR = Path(__file__).resolve().parents[1] / "models"
# Shipped transformers read at most this many tokens: the opening of a long post carries its
# tone, and attention costs grow with the square of the length.
BUILTIN_MAX_TOKENS = 128
# The shipped transformer is int8 with dynamically quantised activations, whose scale spans
# the batch: read alone, a text's reading never depends on its neighbours (and nothing is
# padded). One thread: a second one gained little on short texts and the process has other work.
BUILTIN_BATCH = 1
BUILTIN_THREADS = 1
_cache: dict[Path, LinearTextModel] = {}
_onnx_cache: dict[Path, TextClassifier] = {}
_lock = threading.Lock()


def builtin_model(name: str, directory: Path | None = None) -> LinearTextModel:
    """A shipped model by name (`polarity-zh`, `emotion-zh`, `polarity-en`, `credibility-zh`)."""
    path = (directory or MODEL_DIR) / f"{name}.npz"
    with _lock:
        model = _cache.get(path)
        if model is None:
            if not path.is_file():
                raise ModelLoadError(
                    f"the built-in model {name!r} is missing ({path}); reinstall Tingfeng or run "
                    "`tingfeng train` to rebuild the models"
                )
            model = _cache[path] = LinearTextModel.load(path)
    return model


def builtin_classifier(name: str, directory: Path | None = None) -> TextClassifier:
    """A shipped model by name: its ONNX directory `name/` if there is one, else `name.npz`."""
    folder = (directory or MODEL_DIR) / name
    if not (folder / "model.onnx").is_file():
        return builtin_model(name, directory)
    with _lock:
        model = _onnx_cache.get(folder)
        if model is None:
            model = _onnx_cache[folder] = LoadedOnFirstUse(folder)
    return model


class LoadedOnFirstUse:
    """A shipped transformer whose onnxruntime session opens when the first text comes.

    The session and its libraries take about 140 MB in every process that reads posts; an
    office whose posts are all Chinese never pays that. Labels and the neutral band come from
    config.json at once, so the polarity reader is set up without the session.
    """

    def __init__(self, folder: Path) -> None:
        self.directory = folder
        self.labels, self.neutral_band = declared_labels(folder)
        self._model: TextClassifier | None = None
        self._lock = threading.Lock()

    @property
    def model(self) -> TextClassifier:
        with self._lock:
            if self._model is None:
                self._model = open_builtin_transformer(self.directory)
            return self._model

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        return self.model.predict_proba(texts)


def open_builtin_transformer(folder: Path) -> TextClassifier:
    """A shipped transformer folder, read the way the shipped model is measured and used."""
    return load_text_classifier(
        folder, max_length=BUILTIN_MAX_TOKENS, batch_size=BUILTIN_BATCH, threads=BUILTIN_THREADS
    )


def load_classifier(spec: str | Path, label_map: dict[str, str] | None = None) -> TextClassifier:
    """A configured model: a `.npz` linear model, an ONNX model directory, or a shipped name."""
    if isinstance(spec, str) and _is_builtin_name(spec):
        return builtin_classifier(spec)
    path = Path(spec).expanduser()
    if path.suffix == ".npz":
        if not path.is_file():
            raise ModelLoadError(f"{path}: no such model file; check the configured path")
        try:
            return LinearTextModel.load(path)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
            raise ModelLoadError(f"{path}: not a Tingfeng linear model ({exc})") from exc
    return load_text_classifier(path, label_map=label_map)


def _is_builtin_name(spec: str) -> bool:
    """`polarity-en-linear` and the like: a plain name (no path) of a file in MODEL_DIR."""
    if not spec or "/" in spec or "\\" in spec or spec.startswith("."):
        return False
    return (MODEL_DIR / f"{spec}.npz").is_file() or (MODEL_DIR / spec / "model.onnx").is_file()
