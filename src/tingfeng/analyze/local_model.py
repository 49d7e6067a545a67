"""Text classifiers from local model files: the common interface and an ONNX loader.

Polarity and emotion analysis go through `TextClassifier`, so an administrator can swap the
built-in model for a stronger one, e.g. a fine-tuned transformer exported with
`optimum-cli export onnx --task text-classification`. Such a directory holds `model.onnx`,
`tokenizer.json` and `config.json` (with `id2label`); `load_text_classifier` opens it.

Everything runs on the CPU with onnxruntime and the Rust `tokenizers` library; nothing is
downloaded. Both are imported on first load only, so importing this module stays cheap.
See docs/analysis-local-models.md.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    import onnxruntime
    import tokenizers

__all__ = [
    "ModelLoadError",
    "OnnxTextClassifier",
    "TextClassifier",
    "declared_labels",
    "load_text_classifier",
]

log = logging.getLogger(__name__)

MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
CONFIG_FILE = "config.json"

# Graph inputs we know how to fill. Anything else (position_ids, past_key_values, pixel_values)
# means the export is not a plain text-classification graph.
_KNOWN_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_INPUT_DTYPES = {"tensor(int64)": np.int64, "tensor(int32)": np.int32}

# config.json key telling that the first output is already a probability distribution (e.g. a
# graph ending in Softmax). Hugging Face exports always give logits, hence the default.
OUTPUT_KIND_KEY = "output_kind"
_OUTPUT_KINDS = ("logits", "probabilities")
# config.json key of a two-label polarity model: P(positive) within this distance of 0.5 reads
# as neutral (docs/analysis-local-models.md).
NEUTRAL_BAND_KEY = "neutral_band"

# Hugging Face's placeholder names when a model was trained without naming its classes.
_GENERIC_LABEL = re.compile(r"LABEL_\d+")
# Hugging Face writes this "no limit" sentinel (int(1e30)) as model_max_length.
_UNBOUNDED_LENGTH = 1_000_000
# Position embeddings of these architectures start after the padding index (fairseq heritage),
# so max_position_embeddings overstates the usable length by pad_token_id + 1.
_OFFSET_POSITIONS = {"roberta", "xlm-roberta", "camembert", "longformer", "bart", "mbart"}
# Texts are tokenized this many batches at a time, then sorted by length so that each batch
# pads to similar lengths (padding is wasted compute) without holding every encoding at once.
_SORT_WINDOW_BATCHES = 16
_PROBE_TEXT = "模型加载检查 model check"
# What load_text_classifier accepts, for its error messages.
_SUPPORTED = (
    f"a directory holding {MODEL_FILE}, {TOKENIZER_FILE} and {CONFIG_FILE}, as written by "
    "`optimum-cli export onnx --task text-classification`"
)


class ModelLoadError(Exception):
    """A configured model cannot be used; the message says what is wrong and what to do."""


class _OutputShapeError(RuntimeError):
    """The graph's output does not have one score per label for each text."""


@runtime_checkable
class TextClassifier(Protocol):
    """Anything that turns texts into a probability distribution over fixed labels."""

    labels: list[str]

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Probabilities, shape (len(texts), len(labels)); every row sums to 1."""
        ...


def declared_labels(directory: Path) -> tuple[list[str], float]:
    """The labels and neutral band that a model directory's config.json declares, unloaded."""
    config_path = Path(directory) / CONFIG_FILE
    config = _read_json(config_path)
    if not isinstance(config, dict):
        raise ModelLoadError(f"{config_path} must hold a JSON object.")
    return _labels_from_config(config, config_path), _neutral_band(config, config_path)


def load_text_classifier(
    spec: str | Path,
    *,
    label_map: Mapping[str, str] | None = None,
    max_length: int = 256,
    batch_size: int = 32,
    threads: int | None = None,
) -> TextClassifier:
    """Open the model that `spec` names: an ONNX export directory (or its model.onnx)."""
    if isinstance(spec, str) and not spec.strip():
        raise ModelLoadError("No model given: name a model directory.")
    path = Path(spec).expanduser()
    if not path.exists():
        raise ModelLoadError(
            f"Model path {path} does not exist. Give the directory of an exported model "
            f"({_SUPPORTED})."
        )
    # Pointing at the .onnx file itself is a natural mistake; its directory is what we need.
    if path.is_file() and path.name == MODEL_FILE:
        path = path.parent
    # Other .onnx files (model_quantized.onnx, ...): let the loader explain the naming.
    if path.is_dir() and any(path.glob("*.onnx")):
        return OnnxTextClassifier.load(
            path,
            label_map=label_map,
            max_length=max_length,
            batch_size=batch_size,
            threads=threads,
        )
    raise ModelLoadError(f"{path} is not a model this version can load. Supported: {_SUPPORTED}.")


class OnnxTextClassifier:
    """A sequence-classification model exported to ONNX, run with onnxruntime on the CPU.

    Create it with `load`. Texts are truncated to `max_length` tokens and padded per batch;
    texts that yield no tokens at all get a uniform distribution. Safe to share between
    threads (onnxruntime sessions and tokenizers are).
    """

    def __init__(
        self,
        *,
        directory: Path,
        session: onnxruntime.InferenceSession,
        tokenizer: tokenizers.Tokenizer,
        labels: list[str],
        model_labels: list[str],
        merge: np.ndarray | None,
        inputs: list[tuple[str, type[np.integer]]],
        output_name: str,
        outputs_probabilities: bool,
        max_length: int,
        batch_size: int,
        pad_id: int,
        pad_type_id: int,
        pad_left: bool,
        fixed_batch: int | None,
        fixed_length: int | None,
        neutral_band: float = 0.0,
    ) -> None:
        self.directory = directory
        # For a negative/positive model read as polarity: how far from an even split a text
        # must be to count as not neutral (config.json `neutral_band`, tuned with the model).
        self.neutral_band = neutral_band
        self.labels = labels
        self.model_labels = model_labels
        self.max_length = max_length
        self.batch_size = batch_size
        self._session = session
        self._tokenizer = tokenizer
        self._merge = merge
        self._inputs = inputs
        self._output_name = output_name
        self._outputs_probabilities = outputs_probabilities
        self._pad_id = pad_id
        self._pad_type_id = pad_type_id
        self._pad_left = pad_left
        self._fixed_batch = fixed_batch
        self._fixed_length = fixed_length
        self._warned_nonfinite = False

    def __repr__(self) -> str:
        return f"OnnxTextClassifier({str(self.directory)!r}, labels={self.labels!r})"

    @property
    def input_names(self) -> list[str]:
        """The graph inputs this model is fed."""
        return [name for name, _ in self._inputs]

    @classmethod
    def load(
        cls,
        directory: Path,
        *,
        label_map: Mapping[str, str] | None = None,
        max_length: int = 256,
        batch_size: int = 32,
        threads: int | None = None,
    ) -> OnnxTextClassifier:
        """Open an exported model directory; raises ModelLoadError saying what to fix.

        `label_map` renames the model's labels (those in config.json) to ours; labels mapped
        to the same name are merged by adding their probabilities. `threads` sets
        onnxruntime's intra-op threads (None: one per physical core).
        """
        directory = Path(directory).expanduser()
        _check_options(max_length, batch_size, threads)
        model_path, tokenizer_path, config_path = _check_files(directory)
        config = _read_json(config_path)
        if not isinstance(config, dict):
            raise ModelLoadError(f"{config_path} must hold a JSON object.")
        model_labels = _labels_from_config(config, config_path)
        labels, merge = _apply_label_map(model_labels, label_map)
        outputs_probabilities = _output_kind(config, config_path) == "probabilities"
        neutral_band = _neutral_band(config, config_path)
        if config.get("problem_type") == "regression":
            raise ModelLoadError(
                f"{config_path} says problem_type 'regression': the model predicts a score, "
                "not classes. Use a text-classification model."
            )
        if config.get("problem_type") == "multi_label_classification":
            # Softmax keeps the ranking of independent sigmoid scores; callers need a
            # distribution over the labels, not independent yes/no answers.
            log.info("%s: multi-label model, its scores are normalised with softmax", directory)
        if label_map is None and all(_GENERIC_LABEL.fullmatch(name) for name in model_labels):
            log.warning(
                "%s: the model's labels are placeholders %s; pass a label map naming them",
                directory,
                model_labels,
            )

        ort, tokenizers_module = _import_runtime()
        tokenizer = _open_tokenizer(tokenizers_module, tokenizer_path)
        _check_vocabulary(tokenizer, config, tokenizer_path, config_path)
        pad_id, pad_type_id, pad_left = _padding(tokenizer, directory, config)
        session = _open_session(ort, model_path, threads)
        inputs, fixed_batch, fixed_length = _graph_inputs(session, model_path)
        output_name = _graph_output(session, model_path, len(model_labels), config_path)

        limit = _length_limit(directory, config)
        if fixed_length is not None:
            limit = fixed_length if limit is None else min(limit, fixed_length)
        if limit is not None and max_length > limit:
            log.warning("%s: max_length %d lowered to the model's %d", directory, max_length, limit)
            max_length = limit
        tokenizer.no_padding()  # padding is done per batch here, to the longest text
        tokenizer.enable_truncation(max_length)
        if fixed_batch is not None:
            batch_size = fixed_batch

        classifier = cls(
            directory=directory,
            session=session,
            tokenizer=tokenizer,
            labels=labels,
            model_labels=model_labels,
            merge=merge,
            inputs=inputs,
            output_name=output_name,
            outputs_probabilities=outputs_probabilities,
            max_length=max_length,
            batch_size=batch_size,
            pad_id=pad_id,
            pad_type_id=pad_type_id,
            pad_left=pad_left,
            fixed_batch=fixed_batch,
            fixed_length=fixed_length,
            neutral_band=neutral_band,
        )
        classifier._probe(model_path, config_path, tokenizer_path)
        return classifier

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Probabilities, shape (len(texts), len(labels)), float64; every row sums to 1."""
        if isinstance(texts, str):
            # A string is a Sequence[str] too: each character would be classified.
            raise TypeError("predict_proba takes a list of texts, not a single string")
        texts = list(texts)
        for position, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"text {position} is {type(text).__name__}, not str")
        result = np.empty((len(texts), len(self.labels)), dtype=np.float64)
        window = self.batch_size * _SORT_WINDOW_BATCHES
        for start in range(0, len(texts), window):
            chunk = texts[start : start + window]
            encodings = self._encode(chunk)
            order = sorted(range(len(chunk)), key=lambda i: len(encodings[i].ids))
            # Texts without a single token (empty text, tokenizers without [CLS]) would give
            # a zero-length input; no model output means anything there, so they are uniform.
            empty = [i for i in order if not encodings[i].ids]
            order = order[len(empty) :]
            for i in empty:
                result[start + i] = 1.0 / len(self.labels)
            for first in range(0, len(order), self.batch_size):
                batch = order[first : first + self.batch_size]
                probabilities = self._run([encodings[i] for i in batch])
                result[[start + i for i in batch]] = probabilities
        return result

    def _encode(self, texts: list[str]) -> list[tokenizers.Encoding]:
        # The fast variant skips character offsets, which classification never uses.
        encode = getattr(self._tokenizer, "encode_batch_fast", self._tokenizer.encode_batch)
        return encode(texts)

    def _run(self, encodings: list[tokenizers.Encoding]) -> np.ndarray:
        """Our label probabilities for one batch of non-empty encodings."""
        count = len(encodings)
        rows = self._fixed_batch or count
        width = self._fixed_length or max(len(e.ids) for e in encodings)
        ids = np.full((rows, width), self._pad_id, dtype=np.int64)
        mask = np.zeros((rows, width), dtype=np.int64)
        types = np.full((rows, width), self._pad_type_id, dtype=np.int64)
        for row, encoding in enumerate(encodings):
            length = len(encoding.ids)
            span = slice(width - length, width) if self._pad_left else slice(0, length)
            ids[row, span] = encoding.ids
            mask[row, span] = encoding.attention_mask
            types[row, span] = encoding.type_ids
        # A graph with a fixed batch size gets filler rows (copies of the first), then dropped.
        ids[count:], mask[count:], types[count:] = ids[0], mask[0], types[0]
        arrays = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        feeds = {name: arrays[name].astype(dtype, copy=False) for name, dtype in self._inputs}
        raw = self._session.run([self._output_name], feeds)[0]
        scores = np.asarray(raw, dtype=np.float64)
        if scores.ndim != 2 or scores.shape[0] != rows or scores.shape[1] != len(self.model_labels):
            raise _OutputShapeError(
                f"{self.directory / MODEL_FILE} returned shape {scores.shape} for a batch of "
                f"{rows}; expected ({rows}, {len(self.model_labels)}), one score per label"
            )
        scores = scores[:count]
        probabilities = _normalise(scores) if self._outputs_probabilities else _softmax(scores)
        bad = ~np.isfinite(probabilities).all(axis=1)
        if bad.any():
            # A broken weight or an overflow in a float16 graph; one bad text must not stop
            # the analysis of the rest, but the administrator should hear of it.
            if not self._warned_nonfinite:
                log.warning(
                    "%s: the model produced NaN/inf; those texts get uniform scores", self.directory
                )
                self._warned_nonfinite = True
            probabilities[bad] = 1.0 / probabilities.shape[1]
        if self._merge is not None:
            probabilities = probabilities @ self._merge
        return probabilities

    def _probe(self, model_path: Path, config_path: Path, tokenizer_path: Path) -> None:
        """Run one sentence now, so a mismatched tokenizer or graph fails at load time."""
        encodings = self._encode([_PROBE_TEXT])
        if not encodings[0].ids:  # a tokenizer that drops unknown text: nothing to run
            return
        try:
            self._run(encodings)
        except _OutputShapeError as error:
            raise ModelLoadError(
                f"{error}. {config_path} names {len(self.model_labels)} labels; make id2label "
                "list exactly the model's classes, in output order."
            ) from None
        except Exception as error:
            raise ModelLoadError(
                f"{model_path} failed on a test sentence: {error}. Check that {tokenizer_path.name} "
                f"and {config_path.name} come from the same export as the model."
            ) from error


def _check_options(max_length: int, batch_size: int, threads: int | None) -> None:
    if max_length < 2:
        raise ModelLoadError(f"max_length must be at least 2 tokens, not {max_length}.")
    if batch_size < 1:
        raise ModelLoadError(f"batch_size must be at least 1, not {batch_size}.")
    if threads is not None and threads < 1:
        raise ModelLoadError(f"threads must be at least 1 (or unset for automatic), not {threads}.")


def _check_files(directory: Path) -> tuple[Path, Path, Path]:
    if not directory.exists():
        raise ModelLoadError(
            f"Model directory {directory} does not exist. Export the model there first "
            "(see docs/analysis-local-models.md) or correct the path."
        )
    if not directory.is_dir():
        raise ModelLoadError(
            f"{directory} is a file; give the directory holding {MODEL_FILE}, {TOKENIZER_FILE} "
            f"and {CONFIG_FILE}."
        )
    model_path = directory / MODEL_FILE
    if not model_path.is_file():
        others = sorted(p.name for p in directory.glob("*.onnx"))
        hint = (
            f" It has {', '.join(others)}: rename the one to use to {MODEL_FILE}."
            if others
            else " Export the model with `optimum-cli export onnx --task text-classification`."
        )
        raise ModelLoadError(f"{directory} has no {MODEL_FILE}.{hint}")
    tokenizer_path = directory / TOKENIZER_FILE
    if not tokenizer_path.is_file():
        raise ModelLoadError(
            f"{directory} has no {TOKENIZER_FILE}. Copy it from the fine-tuned model's directory "
            "(transformers' fast tokenizers save it; a model with only vocab.txt can be "
            "converted by loading it with AutoTokenizer and calling save_pretrained)."
        )
    config_path = directory / CONFIG_FILE
    if not config_path.is_file():
        raise ModelLoadError(
            f"{directory} has no {CONFIG_FILE}. Copy the fine-tuned model's config.json there, "
            'or write one with "id2label", e.g. {"id2label": {"0": "negative", "1": "positive"}}.'
        )
    return model_path, tokenizer_path, config_path


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelLoadError(
            f"Cannot read {path}: {error}. It must be a UTF-8 JSON file."
        ) from None


def _labels_from_config(config: dict[str, Any], path: Path) -> list[str]:
    """The model's labels in output order, from `id2label`, `labels` or `label2id`."""
    if "id2label" in config:
        mapping = config["id2label"]
        source = "id2label"
    elif "labels" in config:
        names = config["labels"]
        if not isinstance(names, list):
            raise ModelLoadError(f'"labels" in {path} must be a list of names.')
        mapping = dict(enumerate(names))
        source = "labels"
    elif "label2id" in config and isinstance(config["label2id"], dict):
        mapping = {index: name for name, index in config["label2id"].items()}
        source = "label2id"
    else:
        raise ModelLoadError(
            f"{path} names no labels. Add the model's classes in output order, e.g. "
            '"id2label": {"0": "negative", "1": "neutral", "2": "positive"}.'
        )
    if not isinstance(mapping, dict) or not mapping:
        raise ModelLoadError(f'"{source}" in {path} is empty or not an object.')
    by_index: dict[int, str] = {}
    for key, name in mapping.items():
        try:
            index = int(key)
        except (TypeError, ValueError):
            raise ModelLoadError(f'"{source}" in {path}: {key!r} is not an output index.') from None
        if not isinstance(name, str) or not name.strip():
            raise ModelLoadError(f'"{source}" in {path}: label {index} has no name.')
        by_index[index] = name
    if sorted(by_index) != list(range(len(by_index))):
        raise ModelLoadError(
            f'"{source}" in {path} must number the labels 0..{len(by_index) - 1} without gaps; '
            f"it has {sorted(by_index)}."
        )
    labels = [by_index[i] for i in range(len(by_index))]
    if len(set(labels)) != len(labels):
        raise ModelLoadError(f'"{source}" in {path} repeats a label name: {labels}.')
    if len(labels) < 2:
        raise ModelLoadError(f"{path} names only {labels}; a classifier needs two labels or more.")
    return labels


def _apply_label_map(
    model_labels: list[str], label_map: Mapping[str, str] | None
) -> tuple[list[str], np.ndarray | None]:
    """Our labels and the matrix that sums model columns into them (None: same columns)."""
    if not label_map:
        return list(model_labels), None
    unknown = [name for name in label_map if name not in model_labels]
    if unknown:
        raise ModelLoadError(
            f"The label map names {unknown}, which the model does not have; its labels are "
            f"{model_labels}."
        )
    for source, target in label_map.items():
        if not isinstance(target, str) or not target.strip():
            raise ModelLoadError(f"The label map gives {source!r} no new name.")
    renamed = [label_map.get(name, name) for name in model_labels]
    labels = list(dict.fromkeys(renamed))
    if len(labels) < 2:
        raise ModelLoadError(f"The label map merges every label into {labels}; keep two or more.")
    if labels == renamed:
        return labels, None
    merge = np.zeros((len(model_labels), len(labels)))
    for row, name in enumerate(renamed):
        merge[row, labels.index(name)] = 1.0
    return labels, merge


def _output_kind(config: dict[str, Any], path: Path) -> str:
    kind = config.get(OUTPUT_KIND_KEY, "logits")
    if kind not in _OUTPUT_KINDS:
        raise ModelLoadError(
            f'"{OUTPUT_KIND_KEY}" in {path} is {kind!r}; use "logits" (the default) or '
            '"probabilities".'
        )
    return str(kind)


def _import_runtime() -> tuple[Any, Any]:
    try:
        import onnxruntime
        import tokenizers
    except ImportError as error:
        raise ModelLoadError(
            f"Local models need the onnxruntime and tokenizers packages ({error}). Install "
            "them into Tingfeng's environment: pip install onnxruntime tokenizers"
        ) from None
    return onnxruntime, tokenizers


def _open_tokenizer(tokenizers_module: Any, path: Path) -> tokenizers.Tokenizer:
    try:
        return tokenizers_module.Tokenizer.from_file(str(path))
    except Exception as error:  # the Rust side raises plain Exception
        raise ModelLoadError(
            f"{path} is not a tokenizer the tokenizers library can read: {error}. Save it "
            "again with a recent transformers (a fast tokenizer's save_pretrained)."
        ) from None


def _check_vocabulary(
    tokenizer: tokenizers.Tokenizer, config: dict[str, Any], tokenizer_path: Path, config_path: Path
) -> None:
    """Refuse a tokenizer that can emit ids past the model's embedding table."""
    size = config.get("vocab_size")
    if not isinstance(size, int) or size <= 0:
        return
    largest = max(tokenizer.get_vocab(with_added_tokens=True).values(), default=-1)
    if largest >= size:
        raise ModelLoadError(
            f"{tokenizer_path} has token ids up to {largest} but {config_path} says the model "
            f"knows {size} tokens; they belong to different models. Use the tokenizer the "
            "model was fine-tuned with."
        )


def _padding(
    tokenizer: tokenizers.Tokenizer, directory: Path, config: dict[str, Any]
) -> tuple[int, int, bool]:
    """Pad id, pad type id and whether to pad on the left, as the model was trained."""
    saved = tokenizer.padding
    if saved:
        return int(saved["pad_id"]), int(saved["pad_type_id"]), saved["direction"] == "left"
    pad_left = False
    names: list[str] = []
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        path = directory / name
        if not path.is_file():
            continue
        data = _read_json(path)
        if not isinstance(data, dict):
            continue
        token = data.get("pad_token")
        if isinstance(token, dict):
            token = token.get("content")
        if isinstance(token, str):
            names.append(token)
        if data.get("padding_side") == "left":
            pad_left = True
    for token in names:
        token_id = tokenizer.token_to_id(token)
        if token_id is not None:
            return token_id, 0, pad_left
    if isinstance(config.get("pad_token_id"), int):
        return config["pad_token_id"], 0, pad_left
    for token in ("[PAD]", "<pad>", "<|endoftext|>"):
        token_id = tokenizer.token_to_id(token)
        if token_id is not None:
            return token_id, 0, pad_left
    # With the attention mask the pad id is not looked at by encoder models; 0 is a valid id.
    log.info("%s: no padding token found, padding with id 0", directory)
    return 0, 0, pad_left


def _neutral_band(config: dict[str, Any], config_path: Path) -> float:
    band = config.get(NEUTRAL_BAND_KEY, 0.0)
    if isinstance(band, bool) or not isinstance(band, int | float) or not 0.0 <= band < 0.5:
        raise ModelLoadError(
            f"{config_path}: {NEUTRAL_BAND_KEY} must be a number from 0 up to (not including) "
            f"0.5, not {band!r}."
        )
    return float(band)


def _length_limit(directory: Path, config: dict[str, Any]) -> int | None:
    """The longest input the model accepts, if its files say."""
    path = directory / "tokenizer_config.json"
    if path.is_file():
        data = _read_json(path)
        limit = data.get("model_max_length") if isinstance(data, dict) else None
        if isinstance(limit, int | float) and 2 <= limit < _UNBOUNDED_LENGTH:
            return int(limit)
    positions = config.get("max_position_embeddings")
    if isinstance(positions, int) and positions >= 2:
        if config.get("model_type") in _OFFSET_POSITIONS:
            pad = config.get("pad_token_id")
            positions -= (pad if isinstance(pad, int) else 1) + 1
        return max(positions, 2)
    return None


def _open_session(ort: Any, path: Path, threads: int | None) -> onnxruntime.InferenceSession:
    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
    # One request runs at a time per call; parallelism comes from intra-op threads.
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime's own exception types share no useful base
        raise ModelLoadError(
            f"onnxruntime {ort.__version__} cannot load {path}: {error}. Re-export the model "
            "(optimum-cli export onnx) with an opset this onnxruntime supports, or check that "
            "the file was copied completely (with model.onnx_data, if the export has one)."
        ) from None


def _graph_inputs(
    session: onnxruntime.InferenceSession, path: Path
) -> tuple[list[tuple[str, type[np.integer]]], int | None, int | None]:
    """(name, dtype) of each graph input, plus the batch size and length if fixed."""
    declared = session.get_inputs()
    names = [node.name for node in declared]
    unknown = [name for name in names if name not in _KNOWN_INPUTS]
    if unknown or "input_ids" not in names:
        problem = f"unsupported inputs {unknown}" if unknown else "no input_ids input"
        raise ModelLoadError(
            f"{path} has {problem} (its inputs: {names}); a text-classification graph takes "
            f"{', '.join(_KNOWN_INPUTS[:-1])} and optionally token_type_ids. Export it with "
            "`--task text-classification`."
        )
    inputs: list[tuple[str, type[np.integer]]] = []
    fixed_batch: int | None = None
    fixed_length: int | None = None
    for node in declared:
        dtype = _INPUT_DTYPES.get(node.type)
        if dtype is None:
            raise ModelLoadError(
                f"{path}: input {node.name} is {node.type}; token inputs must be int64 or int32."
            )
        if len(node.shape) != 2:
            raise ModelLoadError(
                f"{path}: input {node.name} has shape {node.shape}; expected (batch, sequence)."
            )
        batch, length = node.shape
        # Exports for some accelerators fix the shapes; we then pad to exactly that size.
        if isinstance(batch, int) and batch > 0:
            fixed_batch = batch
        if isinstance(length, int) and length > 0:
            fixed_length = length
        inputs.append((node.name, dtype))
    return inputs, fixed_batch, fixed_length


def _graph_output(
    session: onnxruntime.InferenceSession, path: Path, label_count: int, config_path: Path
) -> str:
    """Name of the first output (the logits), checked against the label count."""
    output = session.get_outputs()[0]
    shape = output.shape
    if len(shape) != 2:
        raise ModelLoadError(
            f"{path}: first output {output.name} has shape {shape}, not (batch, labels); this "
            "is not a sequence-classification model (token classification or a bare encoder?). "
            "Export it with `--task text-classification`."
        )
    width = shape[1]
    if isinstance(width, int) and width != label_count:
        raise ModelLoadError(
            f"{path} outputs {width} scores but {config_path} names {label_count} labels; "
            "make id2label list exactly the model's classes, in output order."
        )
    return str(output.name)


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def _normalise(probabilities: np.ndarray) -> np.ndarray:
    """Probabilities from the graph, made exact: no negatives, rows summing to 1."""
    clipped = np.clip(probabilities, 0.0, None)
    totals = clipped.sum(axis=1, keepdims=True)
    uniform = np.full_like(clipped, 1.0 / clipped.shape[1])
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, clipped / totals, uniform)
