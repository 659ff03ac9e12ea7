"""Authentication, roles, tenant isolation and input validation of the HTTP service."""

from __future__ import annotations

import logging

import pytest

from tests.graph.conftest import CANCEL_MESSAGE, cancel_script
from tests.service.conftest import (
    ALICE_KEY,
    CAROL_KEY,
    CUSTOMER_KEY,
    GLOBEX_CUSTOMER_KEY,
    GLOBEX_REVIEWER_KEY,
    TOKEN_SECRET,
    answer_script,
)
from warden.errors import ConfigurationError
from warden.service.app import create_app
from warden.service.auth import Authenticator, issue_token


@pytest.fixture
def service(start_service):
    return start_service(cancel_script())


def test_missing_credential_is_401(service):
    response = service.client().get("/v1/me")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert "missing credential" in response.json()["detail"]


@pytest.mark.parametrize("credential", ["not-a-key", "x" * 300, "a.b.c"])
def test_unknown_credential_is_401(service, credential, caplog):
    with caplog.at_level(logging.INFO, logger="warden.service"):
        response = service.client(credential).get("/v1/me")
    assert response.status_code == 401
    assert credential not in caplog.text


def test_signed_token_authenticates(service):
    token = issue_token(TOKEN_SECRET, subject="erin", role="supervisor", tenant="acme")
    response = service.client(token).get("/v1/me")
    assert response.status_code == 200
    assert response.json() == {"subject": "erin", "role": "supervisor", "tenant": "acme"}


@pytest.mark.parametrize(
    ("secret", "claims", "message"),
    [
        (TOKEN_SECRET, {"ttl_seconds": -10}, "token expired"),
        ("another-secret-" + "z" * 40, {}, "InvalidSignatureError"),
        (TOKEN_SECRET, {"role": "root"}, "role 'root' is unknown"),
        (TOKEN_SECRET, {"tenant": "Acme/../x"}, "tenant"),
    ],
)
def test_bad_token_is_401(service, secret, claims, message):
    fields = {"subject": "erin", "role": "supervisor", "tenant": "acme", **claims}
    response = service.client(issue_token(secret, **fields)).get("/v1/me")
    assert response.status_code == 401
    assert message in response.json()["detail"]


def test_customer_may_not_review(service):
    thread_id = service.new_thread()
    service.send(thread_id, CANCEL_MESSAGE)
    client = service.client(CUSTOMER_KEY)
    assert client.get("/v1/approvals").status_code == 403
    assert client.get(f"/v1/approvals/{thread_id}").status_code == 403
    response = client.post(f"/v1/approvals/{thread_id}/decisions", json={"decisions": {"x": {"decision": "approve"}}})
    assert response.status_code == 403


def test_reviewer_may_not_send_messages(service):
    thread_id = service.new_thread()
    assert service.client(ALICE_KEY).post("/v1/threads", json={}).status_code == 403
    response = service.client(ALICE_KEY).post(f"/v1/threads/{thread_id}/messages", json={"text": "hi"})
    assert response.status_code == 403


def test_agent_role_may_not_decide_high_risk(service):
    thread_id = service.new_thread()
    [action] = service.send(thread_id, CANCEL_MESSAGE)[0][1]["actions"]
    assert action["risk"] == "high"
    assert service.client(CAROL_KEY).get("/v1/approvals").json() == []
    detail = service.client(CAROL_KEY).get(f"/v1/approvals/{thread_id}").json()
    assert detail["actions"][0]["can_decide"] is False
    response = service.decide(thread_id, {action["action_id"]: {"decision": "approve"}}, CAROL_KEY)
    assert response.status_code == 403
    assert "high-risk" in response.json()["detail"]
    assert service.client(ALICE_KEY).get("/v1/approvals").json()[0]["thread_id"] == thread_id


def test_other_tenant_sees_not_found(service):
    thread_id = service.new_thread(thread_id="shared-name")
    service.send(thread_id, CANCEL_MESSAGE)
    globex = service.client(GLOBEX_CUSTOMER_KEY)
    theirs = globex.get(f"/v1/threads/{thread_id}")
    missing = globex.get("/v1/threads/never-created")
    assert theirs.status_code == 404
    assert missing.status_code == 404
    assert theirs.json()["detail"] == "thread 'shared-name' not found"
    assert missing.json()["detail"] == "thread 'never-created' not found"
    assert globex.get(f"/v1/threads/{thread_id}/history").status_code == 404

    reviewer = service.client(GLOBEX_REVIEWER_KEY)
    assert reviewer.get("/v1/approvals").json() == []
    assert reviewer.get(f"/v1/approvals/{thread_id}").status_code == 404
    assert reviewer.get("/v1/approvals", params={"tenant": "acme"}).status_code == 403

    # The same public id in another tenant is another thread.
    assert service.new_thread(GLOBEX_CUSTOMER_KEY, thread_id="shared-name") == "shared-name"
    assert globex.get("/v1/threads/shared-name").json()["status"] == "new"


def test_reviewer_comes_from_token_not_body(service):
    thread_id = service.new_thread()
    [action] = service.send(thread_id, CANCEL_MESSAGE)[0][1]["actions"]
    response = service.decide(
        thread_id, {action["action_id"]: {"decision": "approve", "reviewer": "mallory"}}, ALICE_KEY
    )
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"][-1] == "reviewer"
    assert error["type"] == "extra_forbidden"


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/threads", {"thread_id": "bad id/with slash"}, "thread_id"),
        ("/v1/threads", {"thread_id": "ok", "extra": 1}, "extra"),
        ("/v1/threads/{thread}/messages", {"text": "   "}, "text"),
        ("/v1/threads/{thread}/messages", {}, "text"),
        ("/v1/threads/{thread}/messages", {"text": "x" * 8001}, "text"),
    ],
)
def test_invalid_body_names_field(service, path, body, field):
    thread_id = service.new_thread()
    response = service.client(CUSTOMER_KEY).post(path.format(thread=thread_id), json=body)
    assert response.status_code == 422
    assert field in [str(part) for part in response.json()["detail"][0]["loc"]]


@pytest.mark.parametrize(
    ("decision", "message"),
    [
        ({"decision": "reject"}, "needs a non-empty 'reason'"),
        ({"decision": "edit"}, "needs 'arguments'"),
        ({"decision": "edit", "arguments": {"order_id": "#W2417020", "reason": "bogus"}}, "invalid"),
        ({"decision": "respond"}, "needs a non-empty 'message'"),
    ],
)
def test_invalid_decision_is_422_and_thread_stays_paused(service, decision, message):
    thread_id = service.new_thread()
    [action] = service.send(thread_id, CANCEL_MESSAGE)[0][1]["actions"]
    response = service.decide(thread_id, {action["action_id"]: decision}, ALICE_KEY)
    assert response.status_code == 422
    assert message in response.json()["detail"]
    assert service.client(ALICE_KEY).get(f"/v1/approvals/{thread_id}").status_code == 200


def test_unknown_action_id_is_422(service):
    thread_id = service.new_thread()
    service.send(thread_id, CANCEL_MESSAGE)
    response = service.decide(thread_id, {"act_unknown": {"decision": "approve"}}, ALICE_KEY)
    assert response.status_code == 422
    assert "unknown action id" in response.json()["detail"]


def test_invalid_path_and_query_are_422(service):
    client = service.client(ALICE_KEY)
    assert client.get("/v1/threads/" + "x" * 101).status_code == 422
    response = client.get("/v1/approvals", params={"min_age_seconds": "-1"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "min_age_seconds"]
    response = client.get("/v1/approvals", params={"role": "wizard"})
    assert response.status_code == 422
    assert "'role'" in response.json()["detail"]


def test_thread_id_taken_is_409(service):
    service.new_thread(thread_id="dup")
    response = service.client(CUSTOMER_KEY).post("/v1/threads", json={"thread_id": "dup"})
    assert response.status_code == 409


def test_decide_without_pending_is_409(start_service):
    service = start_service(answer_script("hi"))
    thread_id = service.new_thread()
    service.send(thread_id, "hello")
    response = service.decide(thread_id, {"act_1": {"decision": "approve"}}, ALICE_KEY)
    assert response.status_code == 409


def test_app_requires_credentials(service_settings):
    with pytest.raises(ConfigurationError, match="no credentials configured"):
        create_app(service_settings.__class__(**{**service_settings.__dict__, "api_keys": {}, "token_secret": None}))


def test_short_secret_is_rejected():
    with pytest.raises(ConfigurationError, match="at least 32"):
        Authenticator({}, "short", ["supervisor"])


def test_key_errors_never_name_the_key():
    with pytest.raises(ConfigurationError) as raised:
        Authenticator({"secret-key-value-123": {"subject": "a", "role": "nobody", "tenant": "acme"}}, None, [])
    assert "secret-key-value-123" not in str(raised.value)
    assert "entry 1" in str(raised.value)
