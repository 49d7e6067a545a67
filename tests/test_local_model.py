"""Local text classifiers: ONNX exports built here (tiny WordPiece tokenizer + hand-made graph)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
tokenizers = pytest.importorskip("tokenizers")

from onnx import TensorProto, helper  # noqa: E402

from tingfeng.analyze.local_model import (  # noqa: E402
    ModelLoadError,
    OnnxTextClassifier,
    TextClassifier,
    load_text_classifier,
)

LABELS3 = ["negative", "neutral", "positive"]
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]

# Enough text that every character and English word below is its own vocabulary entry.
CORPUS = [
    "这家店的服务很好",
    "质量太差了",
    "今天天气不错",
    "产品很好用",
    "售后服务太差",
    "我们明天去北京",
    "医院的医生很好",
    "物流速度差",
    "价格还可以",
    "这个手机真好",
    "态度差评",
    "会议在下午三点开始",
    "the service was good",
    "the quality is bad",
    "good phone good price",
    "bad delivery bad support",
    "we meet in the morning",
    "a very good day",
    "a really bad day",
    "the weather today",
    "news about the city",
    "好 差 好 差",
    "good bad good bad",
    "市政府发布通知",
    "网友评论很多",
    "这部电影好看",
    "这次体验很差",
    "学校放假了",
    "公司发布新产品",
    "the product launch",
    "people talk about the news",
    "交通拥堵",
    "数据显示增长",
    "消费者投诉增加",
    "good news for people",
    "bad news for the city",
]

# Per-token scores (one per label) of the toy model: mean over tokens, then identity weights.
POSITIVE_TOKENS = ("好", "good")
NEGATIVE_TOKENS = ("差", "bad")


def train_tokenizer(*, template: bool = True) -> tokenizers.Tokenizer:
    """A BERT-style WordPiece tokenizer (one token per Chinese character) trained on CORPUS."""
    from tokenizers import models, normalizers, pre_tokenizers, processors, trainers

    tokenizer = tokenizers.Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(handle_chinese_chars=True, lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=400, special_tokens=SPECIALS, min_frequency=1)
    tokenizer.train_from_iterator(CORPUS, trainer=trainer)
    if template:
        tokenizer.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]",
            pair="[CLS] $A [SEP] $B:1 [SEP]:1",
            special_tokens=[("[CLS]", 2), ("[SEP]", 3)],
        )
    for token in (*POSITIVE_TOKENS, *NEGATIVE_TOKENS):
        assert tokenizer.token_to_id(token) is not None, token
    return tokenizer


def embedding(tokenizer: tokenizers.Tokenizer, labels: int) -> np.ndarray:
    """Token vectors: 好/good push the last label, 差/bad the first, everything else the middle."""
    table = np.zeros((tokenizer.get_vocab_size(), labels), dtype=np.float32)
    table[:, labels // 2] = 1.0
    for token in POSITIVE_TOKENS:
        table[tokenizer.token_to_id(token)] = 0.0
        table[tokenizer.token_to_id(token), -1] = 20.0
    for token in NEGATIVE_TOKENS:
        table[tokenizer.token_to_id(token)] = 0.0
        table[tokenizer.token_to_id(token), 0] = 20.0
    return table


def build_graph(
    path: Path,
    table: np.ndarray,
    *,
    labels: int | None = None,
    token_type_ids: bool = False,
    dtype: int = TensorProto.INT64,
    ids_name: str = "input_ids",
    extra_input: str | None = None,
    dims: tuple[int | str, int | str] = ("batch_size", "sequence_length"),
    output_dims: list[int | str] | None = None,
    softmax: bool = False,
    token_output: bool = False,
    dynamic_width: bool = False,
) -> None:
    """Gather -> masked mean pooling -> MatMul + bias -> logits (or probabilities)."""
    width = table.shape[1]
    labels = width if labels is None else labels
    weights = np.eye(width, labels, dtype=np.float32)
    initializers = [
        helper.make_tensor("embedding", TensorProto.FLOAT, table.shape, table.flatten()),
        helper.make_tensor("weight", TensorProto.FLOAT, weights.shape, weights.flatten()),
        helper.make_tensor("bias", TensorProto.FLOAT, [labels], np.zeros(labels, np.float32)),
        helper.make_tensor("axis_last", TensorProto.INT64, [1], [-1]),
        helper.make_tensor("axis_seq", TensorProto.INT64, [1], [1]),
        helper.make_tensor("tiny", TensorProto.FLOAT, [], [1e-9]),
    ]
    inputs = [
        helper.make_tensor_value_info(ids_name, dtype, list(dims)),
        helper.make_tensor_value_info("attention_mask", dtype, list(dims)),
    ]
    if dtype == TensorProto.FLOAT:  # a valid graph, but not one fed with token ids
        nodes = [
            helper.make_node("Cast", [ids_name], ["ids_int"], to=TensorProto.INT64),
            helper.make_node("Gather", ["embedding", "ids_int"], ["tokens"]),
        ]
    else:
        nodes = [helper.make_node("Gather", ["embedding", ids_name], ["tokens"])]
    if token_type_ids:
        # The segment embedding is zero, but the input is really used: ORT must get it.
        segments = np.zeros((2, width), dtype=np.float32)
        initializers.append(
            helper.make_tensor("segments", TensorProto.FLOAT, segments.shape, segments.flatten())
        )
        inputs.append(helper.make_tensor_value_info("token_type_ids", dtype, list(dims)))
        nodes += [
            helper.make_node("Gather", ["segments", "token_type_ids"], ["segment_vectors"]),
            helper.make_node("Add", ["tokens", "segment_vectors"], ["vectors"]),
        ]
    else:
        nodes.append(helper.make_node("Identity", ["tokens"], ["vectors"]))
    if extra_input:
        inputs.append(helper.make_tensor_value_info(extra_input, dtype, list(dims)))
        nodes += [
            helper.make_node("Cast", [extra_input], ["extra_float"], to=TensorProto.FLOAT),
            helper.make_node("Unsqueeze", ["extra_float", "axis_last"], ["extra3"]),
            helper.make_node("Mul", ["vectors", "extra3"], ["vectors_used"]),
        ]
        vectors = "vectors_used"
    else:
        vectors = "vectors"
    nodes += [
        helper.make_node("Cast", ["attention_mask"], ["mask"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["mask", "axis_last"], ["mask3"]),
        helper.make_node("Mul", [vectors, "mask3"], ["masked"]),
        helper.make_node("ReduceSum", ["masked", "axis_seq"], ["summed"], keepdims=0),
        helper.make_node("ReduceSum", ["mask", "axis_seq"], ["count"], keepdims=1),
        helper.make_node("Max", ["count", "tiny"], ["safe_count"]),
        helper.make_node("Div", ["summed", "safe_count"], ["pooled"]),
        helper.make_node("MatMul", ["pooled", "weight"], ["scores"]),
        helper.make_node(
            "Add", ["scores", "bias"], ["raw" if softmax or dynamic_width else "logits"]
        ),
    ]
    if dynamic_width:
        # Reshape to (batch, -1) computed at run time: onnxruntime cannot know the width.
        initializers += [
            helper.make_tensor("zero", TensorProto.INT64, [1], [0]),
            helper.make_tensor("one", TensorProto.INT64, [1], [1]),
            helper.make_tensor("minus_one", TensorProto.INT64, [1], [-1]),
        ]
        nodes += [
            helper.make_node("Shape", [ids_name], ["ids_shape"]),
            helper.make_node("Slice", ["ids_shape", "zero", "one"], ["batch"]),
            helper.make_node("Concat", ["batch", "minus_one"], ["out_shape"], axis=0),
            helper.make_node("Reshape", ["raw", "out_shape"], ["logits"]),
        ]
    if softmax:
        nodes.append(helper.make_node("Softmax", ["raw"], ["logits"], axis=-1))
    if token_output:
        outputs = [
            helper.make_tensor_value_info("masked", TensorProto.FLOAT, [dims[0], dims[1], width])
        ]
    else:
        shape = output_dims if output_dims is not None else [dims[0], labels]
        outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, shape)]
    graph = helper.make_graph(nodes, "toy_classifier", inputs, outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # readable by any onnxruntime of the last few years
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def write_model(
    directory: Path,
    *,
    labels: list[str] = LABELS3,
    tokenizer: tokenizers.Tokenizer | None = None,
    config: dict | None = None,
    **graph: object,
) -> Path:
    """A directory laid out like an `optimum-cli export onnx` output."""
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = tokenizer or train_tokenizer()
    tokenizer.save(str(directory / "tokenizer.json"))
    build_graph(directory / "model.onnx", embedding(tokenizer, len(labels)), **graph)
    if config is None:
        config = {
            "model_type": "bert",
            "architectures": ["BertForSequenceClassification"],
            "id2label": {str(i): name for i, name in enumerate(labels)},
            "label2id": {name: i for i, name in enumerate(labels)},
            "max_position_embeddings": 512,
            "vocab_size": tokenizer.get_vocab_size(),
        }
    (directory / "config.json").write_text(json.dumps(config, ensure_ascii=False), "utf-8")
    (directory / "special_tokens_map.json").write_text(json.dumps({"pad_token": "[PAD]"}), "utf-8")
    return directory


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_model(tmp_path_factory.mktemp("model") / "sentiment")


@pytest.fixture(scope="module")
def classifier(model_dir: Path) -> OnnxTextClassifier:
    return OnnxTextClassifier.load(model_dir, threads=1)


@pytest.fixture
def broken(model_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the good model, to damage."""
    return Path(shutil.copytree(model_dir, tmp_path / "copy"))


def top(model: TextClassifier, texts: list[str]) -> list[str]:
    return [model.labels[i] for i in model.predict_proba(texts).argmax(axis=1)]


MIXED = [
    "这家店的服务很好",
    "质量太差了",
    "今天天气不错",
    "the service was good",
    "a really bad day",
    "会议在下午三点开始",
    "售后服务太差!!!",
    "医生很好 good",
    "未见过的字词 zyxw",
]
EXPECTED = [
    "positive",
    "negative",
    "neutral",
    "positive",
    "negative",
    "neutral",
    "negative",
    "positive",
    "neutral",
]


# --------------------------------------------------------------------------------------------
# Predictions


def test_predicts_expected_labels_and_rows_sum_to_one(classifier: OnnxTextClassifier) -> None:
    assert isinstance(classifier, TextClassifier)
    assert classifier.labels == LABELS3
    assert classifier.input_names == ["input_ids", "attention_mask"]
    probabilities = classifier.predict_proba(MIXED)
    assert probabilities.shape == (len(MIXED), 3)
    assert probabilities.dtype == np.float64
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-12)
    assert (probabilities >= 0).all()
    assert top(classifier, MIXED) == EXPECTED


def test_probabilities_match_the_model_arithmetic(classifier: OnnxTextClassifier) -> None:
    # [CLS] 很 好 [SEP]: three neutral tokens (1.0) and one positive (20.0), averaged.
    logits = np.array([0.0, 3 / 4, 20 / 4])
    expected = np.exp(logits) / np.exp(logits).sum()
    np.testing.assert_allclose(classifier.predict_proba(["很好"])[0], expected, rtol=1e-5)


def test_batching_and_order_give_the_same_results(model_dir: Path) -> None:
    texts = MIXED + [c * n for n, c in enumerate("好差天气good", start=1)] + [""] + MIXED[::-1]
    batched = OnnxTextClassifier.load(model_dir, batch_size=4)
    alone = OnnxTextClassifier.load(model_dir, batch_size=1)
    together = batched.predict_proba(texts)
    one_by_one = np.vstack([alone.predict_proba([text]) for text in texts])
    np.testing.assert_allclose(together, one_by_one, atol=1e-6)
    # Sorting by length inside predict_proba must not reorder the answers.
    assert top(batched, texts[: len(MIXED)]) == EXPECTED


def test_label_map_renames_the_models_labels(tmp_path: Path) -> None:
    directory = write_model(tmp_path / "m", labels=["LABEL_0", "LABEL_1", "LABEL_2"])
    plain = OnnxTextClassifier.load(directory)
    assert plain.labels == ["LABEL_0", "LABEL_1", "LABEL_2"]
    mapping = {"LABEL_0": "negative", "LABEL_1": "neutral", "LABEL_2": "positive"}
    renamed = load_text_classifier(directory, label_map=mapping)
    assert renamed.labels == LABELS3
    assert top(renamed, MIXED) == EXPECTED
    np.testing.assert_array_equal(renamed.predict_proba(MIXED), plain.predict_proba(MIXED))


def test_label_map_from_chinese_names_and_merging(tmp_path: Path) -> None:
    directory = write_model(tmp_path / "m", labels=["负面", "中性", "正面"])
    renamed = OnnxTextClassifier.load(
        directory, label_map={"负面": "negative", "中性": "neutral", "正面": "positive"}
    )
    assert renamed.labels == LABELS3
    assert top(renamed, MIXED) == EXPECTED

    # Two labels mapped to one name are merged: their probabilities add up.
    merged = OnnxTextClassifier.load(directory, label_map={"中性": "其他", "正面": "其他"})
    assert merged.labels == ["负面", "其他"]
    full = renamed.predict_proba(MIXED)
    both = merged.predict_proba(MIXED)
    np.testing.assert_allclose(both[:, 0], full[:, 0])
    np.testing.assert_allclose(both[:, 1], full[:, 1] + full[:, 2])
    np.testing.assert_allclose(both.sum(axis=1), 1.0)


def test_two_label_model(tmp_path: Path) -> None:
    directory = write_model(tmp_path / "m", labels=["neg", "pos"])
    model = load_text_classifier(directory, label_map={"neg": "negative", "pos": "positive"})
    assert model.labels == ["negative", "positive"]
    assert top(model, ["服务很好", "太差", "good good", "bad"]) == [
        "positive",
        "negative",
        "positive",
        "negative",
    ]


def test_neutral_band_from_config_sets_polaritys_neutral(tmp_path: Path) -> None:
    """A two-label model's config.json `neutral_band` is how unsure "neutral" is."""
    from tingfeng.analyze.builtin_models import builtin_model
    from tingfeng.analyze.polarity import PolarityReader

    plain = write_model(tmp_path / "plain", labels=["negative", "positive"])
    banded = write_model(tmp_path / "banded", labels=["negative", "positive"])
    config = json.loads((banded / "config.json").read_text())
    (banded / "config.json").write_text(json.dumps({**config, "neutral_band": 0.3}))
    zh = builtin_model("polarity-zh")
    # The toy model gives "good bad" P(positive) = sigmoid(0.5) ≈ 0.62: inside a band of 0.3
    # around 0.5, outside none.
    readings = {
        name: PolarityReader(zh, OnnxTextClassifier.load(d)).read(["good bad"], ["en"])[0]
        for name, d in (("plain", plain), ("banded", banded))
    }
    assert OnnxTextClassifier.load(banded).neutral_band == 0.3
    assert readings["plain"].label == "positive"
    assert readings["banded"].label == "neutral"
    assert readings["plain"].score == readings["banded"].score  # the band labels, scores stay


def test_graph_with_token_type_ids(tmp_path: Path) -> None:
    directory = write_model(tmp_path / "m", token_type_ids=True)
    model = OnnxTextClassifier.load(directory)
    assert model.input_names == ["input_ids", "attention_mask", "token_type_ids"]
    assert top(model, MIXED) == EXPECTED
    np.testing.assert_allclose(model.predict_proba(MIXED).sum(axis=1), 1.0)


def test_int32_inputs_are_fed_as_declared(tmp_path: Path) -> None:
    directory = write_model(tmp_path / "m", token_type_ids=True, dtype=TensorProto.INT32)
    assert top(OnnxTextClassifier.load(directory), MIXED) == EXPECTED


def test_fixed_shape_graph_is_padded_to_its_size(tmp_path: Path) -> None:
    directory = write_model(tmp_path / "m", dims=(1, 24), output_dims=[1, 3])
    model = OnnxTextClassifier.load(directory, batch_size=8, max_length=256)
    assert model.batch_size == 1
    assert model.max_length == 24
    assert top(model, [*MIXED, "好" * 500]) == [*EXPECTED, "positive"]


def test_probability_output_is_used_as_is(tmp_path: Path, classifier: OnnxTextClassifier) -> None:
    config = json.loads((classifier.directory / "config.json").read_text("utf-8"))
    config["output_kind"] = "probabilities"
    directory = write_model(tmp_path / "m", softmax=True, config=config)
    model = OnnxTextClassifier.load(directory)
    np.testing.assert_allclose(
        model.predict_proba(MIXED), classifier.predict_proba(MIXED), rtol=1e-5
    )


def test_labels_list_in_config(tmp_path: Path) -> None:
    directory = write_model(tmp_path / "m", config={"labels": LABELS3})
    assert top(OnnxTextClassifier.load(directory), MIXED) == EXPECTED


def test_empty_texts_never_crash(classifier: OnnxTextClassifier, tmp_path: Path) -> None:
    # With [CLS]/[SEP] the empty text is a real input: the model's own answer for it.
    probabilities = classifier.predict_proba(["", "   ", "很好", ""])
    np.testing.assert_allclose(probabilities[0], probabilities[1])
    np.testing.assert_allclose(probabilities[0], probabilities[3])
    assert top(classifier, ["", "很好"]) == ["neutral", "positive"]
    assert classifier.predict_proba([]).shape == (0, 3)

    # Without special tokens an empty text has no tokens at all: uniform, not a crash.
    bare = write_model(tmp_path / "bare", tokenizer=train_tokenizer(template=False))
    model = OnnxTextClassifier.load(bare)
    probabilities = model.predict_proba(["", "很好", " \n ", "差"])
    np.testing.assert_allclose(probabilities[0], [1 / 3] * 3)
    np.testing.assert_allclose(probabilities[2], [1 / 3] * 3)
    assert top(model, ["很好", "差"]) == ["positive", "negative"]
    np.testing.assert_allclose(model.predict_proba(["", ""]), np.full((2, 3), 1 / 3))


def test_long_text_is_truncated(model_dir: Path) -> None:
    model = OnnxTextClassifier.load(model_dir, max_length=32)
    # The first 30 content tokens hold 20 positive and 10 negative ones; the whole text is
    # overwhelmingly negative, so only truncation explains a positive answer.
    text = "好" * 20 + "差" * 5000
    assert top(model, [text]) == ["positive"]
    huge = "舆情监测 public opinion " * 20_000
    probabilities = model.predict_proba([huge, "很好"])
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)


def test_max_length_is_capped_by_the_model(model_dir: Path, broken: Path) -> None:
    assert OnnxTextClassifier.load(model_dir, max_length=4096).max_length == 512
    (broken / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 64}), "utf-8")
    assert OnnxTextClassifier.load(broken, max_length=4096).max_length == 64
    assert OnnxTextClassifier.load(broken, max_length=16).max_length == 16


def test_padding_side_and_pad_token_from_tokenizer_files(broken: Path) -> None:
    (broken / "tokenizer_config.json").write_text(
        json.dumps({"pad_token": {"content": "[PAD]"}, "padding_side": "left"}), "utf-8"
    )
    model = OnnxTextClassifier.load(broken, batch_size=16)
    assert model._pad_left and model._pad_id == 0
    assert top(model, MIXED) == EXPECTED


def test_padding_saved_in_tokenizer_json_wins(tmp_path: Path) -> None:
    tokenizer = train_tokenizer()
    tokenizer.enable_padding(direction="left", pad_id=3, pad_token="[SEP]", length=64)
    directory = write_model(tmp_path / "m", tokenizer=tokenizer)
    model = OnnxTextClassifier.load(directory, batch_size=16)
    assert (model._pad_left, model._pad_id) == (True, 3)
    assert top(model, MIXED) == EXPECTED


def test_shared_between_threads(classifier: OnnxTextClassifier) -> None:
    expected = classifier.predict_proba(MIXED)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: classifier.predict_proba(MIXED), range(8)))
    for result in results:
        np.testing.assert_allclose(result, expected)


def test_wrong_argument_types(classifier: OnnxTextClassifier) -> None:
    with pytest.raises(TypeError, match="single string"):
        classifier.predict_proba("很好")
    with pytest.raises(TypeError, match="text 1"):
        classifier.predict_proba(["很好", None])  # type: ignore[list-item]


# --------------------------------------------------------------------------------------------
# Dispatcher


def test_dispatcher_accepts_directory_string_and_model_file(model_dir: Path) -> None:
    for spec in (model_dir, str(model_dir), model_dir / "model.onnx"):
        model = load_text_classifier(spec, threads=2)
        assert isinstance(model, OnnxTextClassifier)
        assert top(model, MIXED) == EXPECTED


def test_dispatcher_names_supported_formats(tmp_path: Path) -> None:
    (tmp_path / "weights.bin").write_bytes(b"\0" * 16)
    for spec in (tmp_path, tmp_path / "weights.bin"):
        with pytest.raises(ModelLoadError, match="optimum-cli export onnx"):
            load_text_classifier(spec)
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_text_classifier(tmp_path / "nowhere")
    with pytest.raises(ModelLoadError, match="No model given"):
        load_text_classifier("  ")


# --------------------------------------------------------------------------------------------
# Errors


def _remove(name: str) -> Callable[[Path], None]:
    return lambda d: (d / name).unlink()


def _config(**changes: object) -> Callable[[Path], None]:
    def change(directory: Path) -> None:
        path = directory / "config.json"
        config = json.loads(path.read_text("utf-8"))
        for key, value in changes.items():
            if value is None:
                config.pop(key, None)
            else:
                config[key] = value
        path.write_text(json.dumps(config), "utf-8")

    return change


def _graph(**options: object) -> Callable[[Path], None]:
    def change(directory: Path) -> None:
        tokenizer = tokenizers.Tokenizer.from_file(str(directory / "tokenizer.json"))
        build_graph(directory / "model.onnx", embedding(tokenizer, 3), **options)

    return change


def _write(name: str, content: str) -> Callable[[Path], None]:
    return lambda d: (d / name).write_text(content, "utf-8")


def _rename_model(directory: Path) -> None:
    (directory / "model.onnx").rename(directory / "model_quantized.onnx")


ERROR_CASES: dict[str, tuple[Callable[[Path], None], str]] = {
    "no model.onnx": (_remove("model.onnx"), r"has no model\.onnx\. Export"),
    "other onnx name": (_rename_model, r"model_quantized\.onnx: rename"),
    "no tokenizer": (_remove("tokenizer.json"), r"has no tokenizer\.json"),
    "no config": (_remove("config.json"), r"has no config\.json.*id2label"),
    "config not JSON": (_write("config.json", "{id2label: 1"), r"must be a UTF-8 JSON file"),
    "config not object": (_write("config.json", "[1, 2]"), r"must hold a JSON object"),
    "no labels": (_config(id2label=None, label2id=None), r"names no labels"),
    "label gap": (_config(id2label={"0": "a", "2": "b", "3": "c"}), r"without gaps"),
    "label index": (_config(id2label={"zero": "a", "1": "b"}), r"not an output index"),
    "one label": (_config(id2label={"0": "a"}, label2id=None), r"two labels or more"),
    "repeated label": (_config(id2label={"0": "a", "1": "a", "2": "b"}), r"repeats"),
    "label count": (_config(id2label={"0": "neg", "1": "pos"}), r"outputs 3 scores.*2 labels"),
    "label count dynamic": (
        _graph(labels=4, output_dims=["batch_size", "n"], dynamic_width=True),
        r"returned shape \(1, 4\).*names 3 labels",
    ),
    "regression": (_config(problem_type="regression"), r"regression"),
    "output kind": (_config(output_kind="softmax"), r'"logits" \(the default\) or "probabilities"'),
    "no input_ids": (_graph(ids_name="ids"), r"unsupported inputs \['ids'\]"),
    "extra input": (_graph(extra_input="position_ids"), r"unsupported inputs \['position_ids'\]"),
    "float inputs": (_graph(dtype=TensorProto.FLOAT), r"must be int64 or int32"),
    "token output": (_graph(token_output=True), r"not a sequence-classification model"),
    "garbage onnx": (_write("model.onnx", "not a model"), r"onnxruntime .* cannot load"),
    "garbage tokenizer": (_write("tokenizer.json", "{}"), r"not a tokenizer"),
    "vocabulary": (_config(vocab_size=10), r"different models"),
    "neutral band too wide": (_config(neutral_band=0.5), r"neutral_band must be a number from 0"),
    "neutral band text": (_config(neutral_band="0.1"), r"neutral_band must be a number"),
}


@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_load_errors_say_what_is_wrong(broken: Path, case: str) -> None:
    damage, message = ERROR_CASES[case]
    damage(broken)
    with pytest.raises(ModelLoadError, match=message):
        OnnxTextClassifier.load(broken)
    if case != "no model.onnx":  # that directory is no ONNX export at all for the dispatcher
        with pytest.raises(ModelLoadError, match=message):
            load_text_classifier(broken)


def test_missing_directory_and_file_instead_of_directory(model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="does not exist"):
        OnnxTextClassifier.load(tmp_path / "absent")
    with pytest.raises(ModelLoadError, match="is a file"):
        OnnxTextClassifier.load(model_dir / "config.json")


def test_bad_label_map_and_options(model_dir: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"\['NEG'\], which the model does not have"):
        OnnxTextClassifier.load(model_dir, label_map={"NEG": "negative"})
    with pytest.raises(ModelLoadError, match="no new name"):
        OnnxTextClassifier.load(model_dir, label_map={"negative": ""})
    with pytest.raises(ModelLoadError, match="merges every label"):
        OnnxTextClassifier.load(model_dir, label_map={name: "x" for name in LABELS3})
    for options in ({"max_length": 1}, {"batch_size": 0}, {"threads": 0}):
        with pytest.raises(ModelLoadError, match="must be at least"):
            OnnxTextClassifier.load(model_dir, **options)
