"""Cancellation of a streamed run: a disconnect after the run ends changes nothing."""

from __future__ import annotations

import uuid

import pytest

from warden.service.sse import CancelOnDisconnect, RunCancellation, StreamCancelled


def _token_passes(handler: CancelOnDisconnect, thread_id: str) -> bool:
    """Stream one model token of a new run on ``thread_id``; return whether it went through."""
    run_id = uuid.uuid4()
    handler.on_chat_model_start({}, [], run_id=run_id, metadata={"thread_id": thread_id})
    try:
        handler.on_llm_new_token("word", run_id=run_id)
    except StreamCancelled:
        return False
    finally:
        handler.on_llm_end(None, run_id=run_id)
    return True


def test_disconnect_during_run_stops_it():
    handler = CancelOnDisconnect()
    RunCancellation(handler, "t-1").cancel()
    assert not _token_passes(handler, "t-1")
    assert _token_passes(handler, "t-2")


@pytest.mark.parametrize("order", [("finish", "cancel"), ("cancel", "finish")])
def test_finished_run_leaves_thread_uncancelled(order):
    handler = CancelOnDisconnect()
    cancellation = RunCancellation(handler, "t-1")
    for step in order:
        getattr(cancellation, step)()
    assert _token_passes(handler, "t-1")
