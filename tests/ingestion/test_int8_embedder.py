"""The int8 ONNX embedder: vector shape and norm, agreement with float32, its own name."""

from __future__ import annotations

import collections
import json

import numpy as np
import pytest

from ingestion import EmbedderMismatchError, KnowledgeIndex, build_index
from ingestion.embedder import (
    DEFAULT_MODEL_NAME,
    FLOAT32_MODEL_NAME,
    INT8_MODEL_NAME,
    default_model_dir,
)
from ingestion.onnx_embedder import (
    _DISABLED_OPTIMIZERS,
    OnnxInt8Embedder,
    build_int8_model,
)
from warden.intent import IntentClassifier

TEXTS = [
    "How do I reset my card PIN at an ATM?",
    "Refunds for international wire transfers take 3 to 5 business days.",
    "",
    "¿Puedo cambiar la dirección de envío de mi pedido?",
    "Our savings account pays 4.1 % interest, compounded monthly. " * 40,
    "ok",
    "Lost card",
    "The mobile app shows a pending top-up that never arrived; what now?",
]


def test_vectors_have_model_dimension(minilm):
    vectors = minilm.embed(TEXTS)

    assert minilm.dimension == 384
    assert vectors.shape == (len(TEXTS), 384)
    assert vectors.dtype == np.float32


def test_vectors_are_unit_length(minilm):
    norms = np.linalg.norm(minilm.embed(TEXTS), axis=1)

    np.testing.assert_allclose(norms, 1.0, atol=1e-5)


def test_empty_input_gives_empty_matrix(minilm):
    vectors = minilm.embed([])

    assert vectors.shape == (0, 384)
    assert vectors.dtype == np.float32


SENTENCE_ROWS = [0, 1, 3, 4, 7]
"""Rows of ``TEXTS`` with five words or more; the others are one or two words, or empty."""


def test_close_to_float32_by_cosine(minilm, minilm_float32):
    cosine = np.sum(minilm.embed(TEXTS) * minilm_float32.embed(TEXTS), axis=1)

    assert cosine[SENTENCE_ROWS].min() >= 0.985, cosine
    assert cosine.min() >= 0.94, cosine
    assert cosine.mean() >= 0.98, cosine


@pytest.mark.parametrize(
    ("query", "expected_row"),
    [
        ("I forgot my PIN", 0),
        ("when will my wire transfer refund arrive", 1),
        ("interest rate on savings", 4),
        ("my top-up is still pending", 7),
    ],
)
def test_same_nearest_text_as_float32(minilm, minilm_float32, query, expected_row):
    int8_scores = minilm.embed(TEXTS) @ minilm.embed([query])[0]
    float32_scores = minilm_float32.embed(TEXTS) @ minilm_float32.embed([query])[0]

    assert int(float32_scores.argmax()) == expected_row
    assert int(int8_scores.argmax()) == expected_row


def test_vector_independent_of_batch(minilm):
    alone = np.vstack([minilm.embed([text]) for text in TEXTS])
    together = minilm.embed(TEXTS)

    np.testing.assert_array_equal(alone, together)


def test_one_thread_matches_two(minilm):
    single = OnnxInt8Embedder(default_model_dir(), "single-thread", threads=1)

    np.testing.assert_array_equal(single.embed(TEXTS), minilm.embed(TEXTS))


def test_batch_order_does_not_change_result(minilm):
    forward = minilm.embed(TEXTS)
    backward = minilm.embed(TEXTS[::-1])[::-1]

    np.testing.assert_allclose(forward, backward, atol=1e-6)


def test_session_leaves_skip_layer_norm_unfused(tmp_path):
    import onnx  # noqa: PLC0415
    import onnxruntime  # noqa: PLC0415

    options = onnxruntime.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    # ONNX Runtime warns that a saved fully optimized model is hardware specific.
    options.log_severity_level = 3
    onnxruntime.InferenceSession(
        build_int8_model(default_model_dir()),
        options,
        providers=["CPUExecutionProvider"],
        disabled_optimizers=_DISABLED_OPTIMIZERS,
    )
    graph = onnx.load(str(tmp_path / "optimized.onnx")).graph
    operators = collections.Counter(node.op_type for node in graph.node)

    assert operators["SkipLayerNormalization"] == 0
    assert operators["LayerNormalization"] == 13


def test_long_text_truncated_like_float32(minilm, minilm_float32):
    long_text = " ".join(f"word{i}" for i in range(2000))
    truncated = " ".join(f"word{i}" for i in range(1200))
    vectors = minilm.embed([long_text, truncated])
    reference = minilm_float32.embed([long_text])

    assert float(vectors[0] @ vectors[1]) > 0.999
    assert float(vectors[0] @ reference[0]) > 0.97


def test_default_is_int8_with_own_name(minilm, minilm_float32):
    assert DEFAULT_MODEL_NAME == INT8_MODEL_NAME
    assert minilm.name == INT8_MODEL_NAME
    assert minilm_float32.name == FLOAT32_MODEL_NAME
    assert INT8_MODEL_NAME != FLOAT32_MODEL_NAME


@pytest.fixture(scope="module")
def int8_index(tmp_path_factory, minilm):
    root = tmp_path_factory.mktemp("int8-index")
    source = root / "kb"
    source.mkdir()
    (source / "cards.md").write_text(
        "# Cards\n\n## PIN\n\nReset your PIN at any ATM of the bank.\n",
        encoding="utf-8",
    )
    build_index(source, root / "index", minilm, progress=False)
    return root / "index"


def test_manifest_records_int8_name(int8_index):
    manifest = json.loads((int8_index / "manifest.json").read_text(encoding="utf-8"))

    assert manifest["embedder"] == {"name": INT8_MODEL_NAME, "dimension": 384}


def test_int8_index_loads_and_finds_chunk(int8_index, minilm):
    hits = KnowledgeIndex.load(int8_index, minilm).search("reset my PIN", k=1)

    assert [hit.heading for hit in hits] == ["PIN"]


def test_float32_embedder_rejects_int8_index(int8_index, minilm_float32):
    with pytest.raises(EmbedderMismatchError) as caught:
        KnowledgeIndex.load(int8_index, minilm_float32)

    message = str(caught.value)
    assert f"{INT8_MODEL_NAME!r} (dimension 384)" in message
    assert f"{FLOAT32_MODEL_NAME!r} (dimension 384)" in message


def test_float32_intent_model_rejected_by_int8(tmp_path, minilm, minilm_float32):
    texts = [
        "cancel my order",
        "stop the order",
        "where is my parcel",
        "track my package",
    ]
    labels = ["cancel", "cancel", "track", "track"]
    IntentClassifier.train(texts, labels, minilm_float32, threshold=0.5).save(tmp_path)

    with pytest.raises(ValueError) as caught:
        IntentClassifier.load(tmp_path, minilm)

    message = str(caught.value)
    assert repr(FLOAT32_MODEL_NAME) in message
    assert repr(INT8_MODEL_NAME) in message


def _copy_model_dir(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    source = default_model_dir()
    for name in ("modules.json", "sentence_bert_config.json"):
        (target / name).write_text(
            (source / name).read_text(encoding="utf-8"), encoding="utf-8"
        )
    (target / "1_Pooling").mkdir()
    pooling = json.loads(
        (source / "1_Pooling" / "config.json").read_text(encoding="utf-8")
    )
    return target, pooling


def test_cls_pooled_model_rejected(tmp_path):
    model_dir, pooling = _copy_model_dir(tmp_path)
    pooling.update(pooling_mode_mean_tokens=False, pooling_mode_cls_token=True)
    (model_dir / "1_Pooling" / "config.json").write_text(
        json.dumps(pooling), encoding="utf-8"
    )

    with pytest.raises(ValueError, match="pooling_mode_cls_token"):
        OnnxInt8Embedder(model_dir, "cls-pooled")


def test_missing_model_config_rejected(tmp_path):
    with pytest.raises(FileNotFoundError, match="sentence_bert_config.json is missing"):
        OnnxInt8Embedder(tmp_path, "empty-folder")


def test_built_model_is_cached_and_checked(tmp_path, caplog):
    import logging  # noqa: PLC0415

    from ingestion.embedder import default_model_dir  # noqa: PLC0415
    from ingestion.onnx_embedder import cached_int8_model  # noqa: PLC0415

    model_dir = default_model_dir()
    built = cached_int8_model(model_dir, tmp_path)
    [cached] = tmp_path.glob("minilm-int8-*.onnx")
    first_write = cached.stat().st_mtime_ns

    assert cached_int8_model(model_dir, tmp_path) == built
    assert cached.stat().st_mtime_ns == first_write

    cached.write_bytes(b"not a model")
    with caplog.at_level(logging.WARNING, logger="ingestion.onnx_embedder"):
        rebuilt = cached_int8_model(model_dir, tmp_path)
    assert "does not match its digest" in caplog.text
    assert cached.read_bytes() == rebuilt
    embedder = OnnxInt8Embedder(model_dir, "cached", cache_dir=tmp_path)
    assert embedder.embed(["where is my order"]).shape == (1, embedder.dimension)
