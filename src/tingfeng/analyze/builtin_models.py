"""Where the shipped models live, and loading a model named in the configuration.

The built-in files are in `tingfeng/models/` (trained by `tingfeng train`; see
`tingfeng/models/MODEL_CARD.md`). A configured path replaces one of them: a directory with
`model.onnx` (a fine-tuned transformer, see docs/analysis-local-models.md) or a `.npz` file
written by `LinearTextModel.save` (e.g. retrained on your own labels).
"""

from __future__ import annotations

import threading
import zipfile
from pathlib import Path

from tingfeng.analyze.linear_model import LinearTextModel
from tingfeng.analyze.local_model import ModelLoadError, TextClassifier, load_text_classifier

__all__ = ["MODEL_DIR", "builtin_model", "load_classifier"]

MODEL_DIR = Path(__file__).resolve().parents[1] / "models"
_cache: dict[Path, LinearTextModel] = {}
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


def load_classifier(spec: str | Path, label_map: dict[str, str] | None = None) -> TextClassifier:
    """A configured model: a `.npz` linear model or an ONNX model directory."""
    path = Path(spec).expanduser()
    if path.suffix == ".npz":
        if not path.is_file():
            raise ModelLoadError(f"{path}: no such model file; check the configured path")
        try:
            return LinearTextModel.load(path)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
            raise ModelLoadError(f"{path}: not a Tingfeng linear model ({exc})") from exc
    return load_text_classifier(path, label_map=label_map)
