"""The whole pipeline on the bundled local model, real index, Redis and SQLite."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ingestion.embedder import load_default_embedder
from ingestion.index import KnowledgeIndex, build_index
from tests.graph.conftest import CANCEL_MESSAGE, EMMA_ORDER
from warden.models import LocalChatModel, ensure_local_model
from warden.runtime import Warden, open_intent_classifier
from warden.settings import EXAMPLE_DOMAIN_DIR, Settings

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def local_model(tmp_path_factory: pytest.TempPathFactory) -> LocalChatModel:
    path = os.environ.get("WARDEN_MODEL_PATH")
    model_path = Path(path) if path else ensure_local_model(tmp_path_factory.mktemp("models"))
    return LocalChatModel(model_path=str(model_path), n_threads=os.cpu_count() or 2)


@pytest.fixture(scope="session")
def example_index(tmp_path_factory: pytest.TempPathFactory) -> KnowledgeIndex:
    index_dir = tmp_path_factory.mktemp("index")
    embedder = load_default_embedder()
    build_index(EXAMPLE_DOMAIN_DIR / "kb", index_dir, embedder, progress=False)
    return KnowledgeIndex.load(index_dir, embedder)


@pytest.fixture(scope="session")
def intent_classifier(tmp_path_factory: pytest.TempPathFactory):
    settings = Settings.from_env(data_dir=tmp_path_factory.mktemp("intent"))
    return open_intent_classifier(settings)


def test_cancel_request_end_to_end_on_local_model(
    settings: Settings, store, local_model, example_index, intent_classifier
):
    with Warden.open(
        settings, chat_model=local_model, index=example_index, intent_classifier=intent_classifier
    ) as warden:
        outcome = warden.send("t-local", CANCEL_MESSAGE)
        state = warden.graph.get_state(warden._config("t-local")).values
        assert state["intent"].label == "cancel_order"
        assert state["intent"].path == "classifier"
        assert state["intent"].entities.order_ids == [EMMA_ORDER]
        assert state["customer"]["user_id"] == "emma_smith_8564"
        assert state["retrieved"]
        assert outcome.status == "awaiting_approval", state["plan"]
        [action] = outcome.pending
        assert action.tool == "cancel_pending_order"
        assert action.arguments["order_id"] == EMMA_ORDER
        assert store.call("get_order_details", {"order_id": EMMA_ORDER})["status"] == "pending"

        tokens: list[str] = []
        chunks: list[tuple[object, dict]] = []
        warden.decide("t-local", {action.action_id: {"decision": "approve", "reviewer": "alice"}})
        outcome = warden.decide(
            "t-local",
            {action.action_id: {"decision": "approve", "reviewer": "bob"}},
            on_token=tokens.append,
            on_chunk=lambda chunk, metadata: chunks.append((chunk, metadata)),
        )
        assert outcome.status == "answered"
        assert outcome.answer.strip()
        # No model call streams raw tokens: the customer gets the checked answer
        # as tokens, and the message stream carries it once, whole.
        assert not [c for c, _ in chunks if c.type == "AIMessageChunk"]
        assert "".join(tokens) == outcome.answer
        answers = [c for c, m in chunks if c.type == "ai" and m["langgraph_node"] == "respond"]
        assert [c.content for c in answers] == [outcome.answer]
        order = store.call("get_order_details", {"order_id": EMMA_ORDER})
        assert order["status"] == "cancelled"
        assert len([p for p in order["payment_history"] if p["transaction_type"] == "refund"]) == 1
        assert warden.messages("t-local")[-1].content == outcome.answer
