"""Intent classifier: training, prediction, thresholds and saved artefacts."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from ingestion.embedder import load_default_embedder
from warden.intent import (
    RETAIL_INTENTS,
    IntentClassifier,
    main,
    read_examples,
    training_checksum,
)

EXAMPLES = (
    Path(__file__).resolve().parent.parent / "examples" / "retail" / "intents.jsonl"
)


class _OtherEmbedder:
    name = "other-embedder"
    dimension = 8

    def embed(self, texts):
        return np.ones((len(texts), 8), dtype=np.float32) / np.sqrt(8)


@pytest.fixture(scope="module")
def embedder():
    return load_default_embedder()


@pytest.fixture(scope="module")
def retail(embedder) -> IntentClassifier:
    texts, labels = read_examples(EXAMPLES)
    return IntentClassifier.train(texts, labels, embedder)


def test_examples_cover_every_retail_intent():
    texts, labels = read_examples(EXAMPLES)
    counts = Counter(labels)

    assert set(counts) == set(RETAIL_INTENTS)
    assert min(counts.values()) >= 25
    assert len(set(texts)) == len(texts)


CLEAR_MESSAGES = [
    (
        "Please cancel order #W1029384, I bought it twice by accident.",
        "cancel_order",
    ),
    ("The kettle I received leaks, I want my money back.", "return_items"),
    ("I live at a new address now, update my account.", "change_default_address"),
    ("Has order #W5566778 shipped yet?", "order_question"),
    ("Let me speak to a human.", "talk_to_human"),
    ("Who won the world cup in 2010?", "out_of_scope"),
]
# Its confidence lies within 0.05 of the calibrated threshold with either
# MiniLM embedder (float32 0.650 against 0.629, int8 0.626 against 0.671),
# so only its label is checked, not the path.
BORDERLINE_MESSAGES = [
    ("Can I get the delivered boots in a size 10 instead?", "exchange_items"),
]


@pytest.mark.parametrize(("message", "intent"), CLEAR_MESSAGES + BORDERLINE_MESSAGES)
def test_retail_messages_labelled(retail, message, intent):
    prediction = retail.predict(message)

    assert prediction.label == intent
    assert 0.0 <= prediction.confidence <= 1.0


@pytest.mark.parametrize(("message", "intent"), CLEAR_MESSAGES)
def test_clear_messages_skip_model(retail, message, intent):
    prediction = retail.predict(message)

    assert prediction.path == "classifier"


def test_probabilities_sum_to_one(retail, embedder):
    text = "change the card I pay with on my pending order"
    probabilities = retail.probabilities(text, embedder.embed([text])[0])

    assert probabilities.shape == (len(RETAIL_INTENTS),)
    assert probabilities.sum() == pytest.approx(1.0, abs=1e-5)


def test_low_confidence_goes_to_model(retail, monkeypatch):
    monkeypatch.setattr(retail, "threshold", 0.999999)

    prediction = retail.predict("I think there might be an issue with something I got")

    assert prediction.path == "model"
    assert prediction.confidence < 0.999999
    assert prediction.label in RETAIL_INTENTS


def test_default_threshold_is_calibrated(retail):
    assert 0.0 < retail.threshold < 1.0
    assert retail.metadata["heldout_accuracy"] > 0.8
    assert 0.05 <= retail.temperature <= 20.0


def test_embedding_input_matches_text_input(retail, embedder):
    text = "Where is my package? Order #W7788990."
    from_text = retail.predict(text)
    from_embedding = retail.predict(embedder.embed([text])[0], text=text)

    assert from_embedding.label == from_text.label
    assert from_embedding.confidence == pytest.approx(from_text.confidence, abs=1e-5)


def test_embedding_without_text_raises(retail, embedder):
    with pytest.raises(ValueError, match="without text="):
        retail.predict(embedder.embed(["hello"])[0])


def test_save_load_round_trip(retail, embedder, tmp_path):
    retail.save(tmp_path / "model")
    loaded = IntentClassifier.load(tmp_path / "model", embedder)

    for message in (
        "return my jacket",
        "what's the capital of Peru",
        "change my order's address",
    ):
        original = retail.predict(message)
        restored = loaded.predict(message)
        assert restored.label == original.label
        assert restored.confidence == pytest.approx(original.confidence, abs=1e-5)
        assert restored.path == original.path
    assert loaded.threshold == retail.threshold
    assert loaded.labels == retail.labels


def test_saved_files_are_json_and_npy(retail, tmp_path):
    retail.save(tmp_path / "model")

    names = sorted(path.name for path in (tmp_path / "model").iterdir())
    document = json.loads(
        (tmp_path / "model" / "intent_model.json").read_text(encoding="utf-8")
    )
    assert names == [
        "char_idf.npy",
        "coef.npy",
        "intent_model.json",
        "intercept.npy",
        "word_idf.npy",
    ]
    assert document["format"] == "warden-intent-classifier"
    assert document["format_version"] == 1
    assert document["training"]["training_data_sha256"] == training_checksum(
        *read_examples(EXAMPLES)
    )


def test_load_rejects_other_embedder(retail, tmp_path):
    retail.save(tmp_path / "model")

    with pytest.raises(ValueError, match="'other-embedder' \\(dimension 8\\)"):
        IntentClassifier.load(tmp_path / "model", _OtherEmbedder())


def test_load_rejects_tampered_array(retail, embedder, tmp_path):
    retail.save(tmp_path / "model")
    np.save(
        tmp_path / "model" / "intercept.npy",
        np.zeros(11, dtype=np.float32),
        allow_pickle=False,
    )

    with pytest.raises(ValueError, match="does not match its checksum"):
        IntentClassifier.load(tmp_path / "model", embedder)


def test_load_rejects_missing_model(embedder, tmp_path):
    with pytest.raises(ValueError, match="intent_model.json is missing"):
        IntentClassifier.load(tmp_path, embedder)


def test_train_rejects_single_example_label(embedder):
    with pytest.raises(ValueError, match="fewer than two examples"):
        IntentClassifier.train(["a", "b", "c"], ["x", "x", "y"], embedder)


def test_read_examples_rejects_bad_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "hi", "intent": "x"}\n{"text": 3}\n', encoding="utf-8")

    with pytest.raises(ValueError, match="bad.jsonl:2"):
        read_examples(path)


def test_cli_train_writes_model(tmp_path, capsys):
    small = tmp_path / "small.jsonl"
    lines = [line for line in EXAMPLES.read_text(encoding="utf-8").splitlines()]
    keep = [
        line
        for line in lines
        if json.loads(line)["intent"]
        in {"cancel_order", "talk_to_human", "out_of_scope"}
    ]
    small.write_text("\n".join(keep) + "\n", encoding="utf-8")

    code = main(["train", "--data", str(small), "--out", str(tmp_path / "model")])

    assert code == 0
    assert "3 intents" in capsys.readouterr().out
    document = json.loads(
        (tmp_path / "model" / "intent_model.json").read_text(encoding="utf-8")
    )
    assert document["training"]["training_file_sha256"]
    assert document["labels"] == ["cancel_order", "out_of_scope", "talk_to_human"]


@pytest.mark.parametrize("reload", [False, True])
def test_lexical_fast_path_matches_sklearn(retail, embedder, tmp_path, reload):
    from warden.intent import _lexical_features

    model = retail
    if reload:
        retail.save(tmp_path / "model")
        model = IntentClassifier.load(tmp_path / "model", embedder)
    for text in (
        "Cancel cancel my order #W2378156!!",
        "zzz qqq",
        "¿Dónde está mi pedido?",
        "",
    ):
        expected = np.asarray(
            _lexical_features(model._word, model._char, [text]) @ model._coef_lexical
        )[0]
        assert np.allclose(model._lexical_logits(text), expected, atol=1e-5)
