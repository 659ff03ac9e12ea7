"""Conversations over HTTP: streamed answers, approvals end to end, disconnects mid-answer."""

from __future__ import annotations

import time

from tests.graph.conftest import CANCEL_MESSAGE, EMMA_ORDER, cancel_script
from tests.service.conftest import (
    ADMIN_KEY,
    ALICE_KEY,
    BOB_KEY,
    CUSTOMER_KEY,
    answer_script,
    read_events,
)

# The answer check releases whole sentences, so a streamed answer needs several.
LONG_ANSWER = " ".join(f"Sentence {i}." for i in range(40))


def _names(events):
    return [name for name, _ in events]


def _order(service):
    return service.store.call("get_order_details", {"order_id": EMMA_ORDER})


def _refunds(order):
    return [p for p in order["payment_history"] if p["transaction_type"] == "refund"]


def test_openapi_lists_endpoints(start_service):
    service = start_service(answer_script("hi"))
    schema = service.client().get("/openapi.json").json()
    for path in ["/v1/threads", "/v1/threads/{thread_id}/messages", "/v1/approvals", "/v1/approvals/{thread_id}/decisions"]:
        assert path in schema["paths"]
    assert "HTTPBearer" in schema["components"]["securitySchemes"]


def test_only_answer_tokens_are_streamed(start_service):
    answer = "Your order #W2417020 is pending and ships soon."
    service = start_service(answer_script(answer))
    thread_id = service.new_thread()
    events = service.send(thread_id, "Where is my order #W2417020?")
    tokens = [data["text"] for name, data in events if name == "token"]
    assert _names(events)[-1] == "done"
    assert set(_names(events)[:-1]) == {"token"}
    assert "".join(tokens) == answer
    assert events[-1][1] == {"thread_id": thread_id, "status": "answered", "answer": answer}

    state = service.client(CUSTOMER_KEY).get(f"/v1/threads/{thread_id}").json()
    ai_messages = [m["content"] for m in state["messages"] if m["type"] == "ai" and m["content"]]
    assert ai_messages == [answer]
    assert state["status"] == "idle"


def test_cancel_pauses_then_approval_executes_once(start_service):
    service = start_service(cancel_script("Your order #W2417020 is cancelled."))
    thread_id = service.new_thread()
    events = service.send(thread_id, CANCEL_MESSAGE)
    assert _names(events) == ["approval_pending", "done"]
    approval = events[0][1]
    assert approval["thread_id"] == thread_id
    [action] = approval["actions"]
    assert action["tool"] == "cancel_pending_order"
    assert action["verdict"]["approvals_required"] == 1
    assert events[1][1]["status"] == "awaiting_approval"
    assert _order(service)["status"] == "pending"

    listed = service.client(ALICE_KEY).get("/v1/approvals").json()
    assert [item["thread_id"] for item in listed] == [thread_id]
    detail = service.client(ALICE_KEY).get(f"/v1/approvals/{thread_id}").json()
    assert detail["message"] == CANCEL_MESSAGE
    assert [step["tool"] for step in detail["plan"]] == [
        "find_user_id_by_name_zip", "get_order_details", "cancel_pending_order",
    ]
    assert detail["actions"][0]["verdict"]["verdict"] == "needs_approval"
    assert detail["actions"][0]["can_decide"] is True
    assert detail["expired"] is False

    with service.decide_stream(thread_id, {action["action_id"]: {"decision": "approve"}}, ALICE_KEY) as response:
        assert response.status_code == 200
        decided = read_events(response)
    names = _names(decided)
    assert names[-2:] == ["action_executed", "done"]
    assert set(names[:-2]) == {"token"}
    executed = decided[-2][1]
    assert executed["action_id"] == action["action_id"]
    assert executed["reviewer"] == "alice"
    assert decided[-1][1]["answer"] == "Your order #W2417020 is cancelled."

    order = _order(service)
    assert order["status"] == "cancelled"
    assert len(_refunds(order)) == 1
    assert service.client(ALICE_KEY).get("/v1/approvals").json() == []
    again = service.decide(thread_id, {action["action_id"]: {"decision": "approve"}}, BOB_KEY)
    assert again.status_code == 409
    assert len(_refunds(_order(service))) == 1

    history = service.client(CUSTOMER_KEY).get(f"/v1/threads/{thread_id}/history").json()
    events_seen = [event["event"] for event in history["audit"]]
    assert "approval_requested" in events_seen
    assert "decision_approve" in events_seen
    assert history["checkpoints"][-1]["next"] == []


def test_refund_over_threshold_needs_two_reviewers(start_service):
    service = start_service(cancel_script(), approval_threshold=500.0)
    thread_id = service.new_thread()
    [action] = service.send(thread_id, CANCEL_MESSAGE)[0][1]["actions"]
    action_id = action["action_id"]
    assert action["verdict"]["approvals_required"] == 2

    first = service.decide(thread_id, {action_id: {"decision": "approve"}}, ALICE_KEY)
    assert first.status_code == 200
    assert first.json()["status"] == "awaiting_approval"
    assert first.json()["approval"]["actions"][0]["approved_by"] == ["alice"]
    twice = service.decide(thread_id, {action_id: {"decision": "approve"}}, ALICE_KEY)
    assert twice.status_code in (409, 422)
    assert "alice" in twice.json()["detail"]
    assert _order(service)["status"] == "pending"

    second = service.decide(thread_id, {action_id: {"decision": "approve"}}, BOB_KEY)
    assert second.status_code == 200
    assert second.json()["status"] == "answered"
    assert [r["status"] for r in second.json()["results"]] == ["done"]
    assert _order(service)["status"] == "cancelled"


def test_reject_records_reviewer_and_reason(start_service):
    service = start_service(cancel_script("I did not cancel the order."))
    thread_id = service.new_thread()
    [action] = service.send(thread_id, CANCEL_MESSAGE)[0][1]["actions"]
    before = service.store.checksum()
    response = service.decide(
        thread_id, {action["action_id"]: {"decision": "reject", "reason": "customer must call"}}, ALICE_KEY
    )
    assert response.status_code == 200
    [result] = response.json()["results"]
    assert result["status"] == "rejected"
    assert result["reviewer"] == "alice"
    assert "customer must call" in result["error"]
    assert service.store.checksum() == before


def test_message_while_pending_is_refused(start_service):
    service = start_service(cancel_script())
    thread_id = service.new_thread()
    service.send(thread_id, CANCEL_MESSAGE)
    response = service.client(CUSTOMER_KEY).post(f"/v1/threads/{thread_id}/messages", json={"text": "hello?"})
    assert response.status_code == 409
    assert "waiting for approval" in response.json()["detail"]


def test_disconnect_mid_answer_stores_nothing(start_service):
    service = start_service(answer_script(LONG_ANSWER), token_delay_seconds=0.05)
    thread_id = service.new_thread()
    client = service.client(CUSTOMER_KEY)
    with client.stream("POST", f"/v1/threads/{thread_id}/messages", json={"text": "first question"}) as response:
        partial = read_events(response, limit=3)
    assert _names(partial) == ["token"] * 3

    # The run stops at its next token; wait until its state is readable and settled.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        snapshot = service.warden.graph.get_state({"configurable": {"thread_id": f"acme/{thread_id}"}})
        if snapshot.tasks and snapshot.tasks[0].error:
            break
        time.sleep(0.05)
    values = snapshot.values
    assert snapshot.next == ("respond",)
    assert "StreamCancelled" in snapshot.tasks[0].error
    assert values["answer"] == ""
    assert [m.type for m in values["messages"]] == ["human"]

    state = client.get(f"/v1/threads/{thread_id}").json()
    assert [m["type"] for m in state["messages"]] == ["human"]

    events = service.send(thread_id, "second question")
    assert events[-1][1]["status"] == "answered"
    assert "".join(d["text"] for n, d in events if n == "token") == LONG_ANSWER
    state = client.get(f"/v1/threads/{thread_id}").json()
    assert [(m["type"], m["content"]) for m in state["messages"]] == [
        ("human", "first question"), ("human", "second question"), ("ai", LONG_ANSWER),
    ]


def test_reviewer_disconnect_still_stores_answer(start_service):
    service = start_service(cancel_script(LONG_ANSWER), token_delay_seconds=0.05)
    thread_id = service.new_thread()
    [action] = service.send(thread_id, CANCEL_MESSAGE)[0][1]["actions"]
    with service.decide_stream(thread_id, {action["action_id"]: {"decision": "approve"}}, ALICE_KEY) as response:
        assert response.status_code == 200
        partial = read_events(response, limit=1)
    assert _names(partial) == ["token"]

    # The customer reads the answer later, so the run goes on after the reviewer has gone.
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        snapshot = service.warden.graph.get_state({"configurable": {"thread_id": f"acme/{thread_id}"}})
        if not snapshot.next or (snapshot.tasks and snapshot.tasks[0].error):
            break
        time.sleep(0.05)
    assert snapshot.next == ()
    assert not any(task.error for task in snapshot.tasks)
    assert _order(service)["status"] == "cancelled"

    client = service.client(CUSTOMER_KEY)
    state = client.get(f"/v1/threads/{thread_id}").json()
    assert state["status"] == "idle"
    assert state["answer"].startswith(LONG_ANSWER)
    assert "Done: " in state["answer"]
    assert state["messages"][0]["content"] == CANCEL_MESSAGE
    assert (state["messages"][-1]["type"], state["messages"][-1]["content"]) == ("ai", state["answer"])
    history = client.get(f"/v1/threads/{thread_id}/history").json()
    assert history["checkpoints"][-1]["next"] == []


def test_admin_sends_and_decides(start_service):
    service = start_service(cancel_script())
    thread_id = service.new_thread(ADMIN_KEY, thread_id="admin-thread")
    assert thread_id == "admin-thread"
    [action] = service.send(thread_id, CANCEL_MESSAGE, key=ADMIN_KEY)[0][1]["actions"]
    response = service.decide(thread_id, {action["action_id"]: {"decision": "approve"}}, ADMIN_KEY)
    assert response.status_code == 200
    assert response.json()["results"][0]["reviewer"] == "root"


def test_expired_approval_is_listed_then_closed(start_service):
    service = start_service(cancel_script(), approval_deadlines={"low": 0.5, "medium": 0.5, "high": 0.5})
    thread_id = service.new_thread()
    [action] = service.send(thread_id, CANCEL_MESSAGE)[0][1]["actions"]
    time.sleep(0.6)
    [listed] = service.client(ALICE_KEY).get("/v1/approvals").json()
    assert listed["expired"] is True
    response = service.decide(thread_id, {action["action_id"]: {"decision": "approve"}}, ALICE_KEY)
    assert response.status_code == 409
    assert "expired" in response.json()["detail"]
    assert _order(service)["status"] == "pending"
    assert service.client(ALICE_KEY).get("/v1/approvals").json() == []
    state = service.client(CUSTOMER_KEY).get(f"/v1/threads/{thread_id}").json()
    assert state["status"] == "idle"
    assert [r["status"] for r in state["results"]] == ["expired"]


def test_approval_list_filters(start_service):
    service = start_service(cancel_script())
    first = service.new_thread()
    service.send(first, CANCEL_MESSAGE)
    time.sleep(0.3)
    second = service.new_thread()
    service.send(second, CANCEL_MESSAGE)
    admin = service.client(ADMIN_KEY)

    def listed(**params):
        response = admin.get("/v1/approvals", params=params)
        assert response.status_code == 200, response.text
        return [item["thread_id"] for item in response.json()]

    assert listed() == [first, second]
    assert listed(risk="high") == [first, second]
    assert listed(risk="low") == []
    assert listed(role="supervisor") == [first, second]
    assert listed(role="agent") == []
    assert listed(min_age_seconds=0.25) == [first]
    assert listed(max_age_seconds=0.25) == [second]
    assert listed(min_age_seconds=3600) == []
    assert listed(tenant="acme") == [first, second]


def test_customer_withdraws_pending_actions(start_service):
    service = start_service(cancel_script("I have not cancelled anything."))
    thread_id = service.new_thread()
    service.send(thread_id, CANCEL_MESSAGE)
    customer = service.client(CUSTOMER_KEY)
    response = customer.post(f"/v1/threads/{thread_id}/cancel")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "answered"
    assert [r["status"] for r in response.json()["results"]] == ["cancelled"]
    assert _order(service)["status"] == "pending"
    assert service.client(ALICE_KEY).get("/v1/approvals").json() == []
    assert customer.post(f"/v1/threads/{thread_id}/cancel").status_code == 409
    assert service.client(ALICE_KEY).post(f"/v1/threads/{thread_id}/cancel").status_code == 403
