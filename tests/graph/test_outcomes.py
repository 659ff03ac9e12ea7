"""The answer prompt sees every outcome of the turn, lookups included."""

from __future__ import annotations

from graphs.support import _render_outcomes
from warden.actions import ActionResult


def test_outcomes_include_successful_lookups():
    state = {
        "customer": {"user_id": "omar_khan_2363", "method": "name_zip"},
        "lookups": [
            ActionResult(action_id="c1", tool="get_order_details", arguments={"order_id": "#W6304490"},
                         status="done", output={"status": "delivered"}),
            ActionResult(action_id="c2", tool="get_order_details", arguments={"order_id": "#W1"},
                         status="failed", error="order '#W1' not found"),
        ],
        "results": [
            ActionResult(action_id="a1", tool="cancel_pending_order", arguments={"order_id": "#W2"},
                         status="rejected", error="rejected by alice: call us"),
        ],
    }
    text = _render_outcomes(state)
    assert '"status":"delivered"' in text
    assert "lookup get_order_details failed" in text
    assert "CHANGE NOT DONE (rejected)" in text
    assert "CHANGE DONE" not in text
