"""Redaction: secrets and card numbers never reach Redis or the logs."""

from __future__ import annotations

import logging

import pytest

from tests.graph.conftest import CANCEL_MESSAGE, cancel_script
from warden.redaction import luhn_valid, redact, redact_text

CARD = "4111 1111 1111 1111"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJlbW1hIn0.c2lnbmF0dXJlLXZhbHVl"
API_KEY = "sk-live-abcdefghijklmnopqrstuv"


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        (f"my card is {CARD} thanks", "4111 1111 1111 1111"),
        ("card 4111-1111-1111-1111", "4111-1111-1111-1111"),
        ("card 5500005555555559", "5500005555555559"),
        ("Authorization: Bearer abc.def-123_token", "abc.def-123_token"),
        (f"token {JWT}", JWT),
        (f"use {API_KEY} for the API", API_KEY),
        ("my password: hunter2!", "hunter2!"),
        ("password is CorrectHorse", "CorrectHorse"),
        ("the CVV is 123", "123"),
        ("security code: 9876", "9876"),
    ],
)
def test_redact_text_removes_secret(text, secret):
    redacted = redact_text(text)
    assert secret not in redacted
    assert "[REDACTED:" in redacted


@pytest.mark.parametrize(
    "text",
    [
        "order #W2417020 please",
        "item 1234567890 and zip 10192",
        "number 4111111111111112 fails the Luhn check",
        "call 555-123-4567",
    ],
)
def test_redact_text_keeps_ordinary_numbers(text):
    assert redact_text(text) == text


def test_luhn_check():
    assert luhn_valid("4111111111111111")
    assert not luhn_valid("4111111111111112")


def test_redact_secret_fields_and_nesting():
    value = {
        "password": "x",
        "api_key": "y",
        "cvv": 123,
        "card_number": 4111111111111111,
        "nested": [{"Authorization": "Bearer z"}, {"note": f"card {CARD}"}],
        "amount": 1234567890123,
        "order_id": "#W2417020",
    }
    redacted = redact(value)
    assert redacted["password"] == "[REDACTED]"
    assert redacted["api_key"] == "[REDACTED]"
    assert redacted["cvv"] == "[REDACTED]"
    assert redacted["card_number"] == "[REDACTED]"
    assert redacted["nested"][0]["Authorization"] == "[REDACTED]"
    assert CARD not in redacted["nested"][1]["note"]
    assert redacted["amount"] == 1234567890123
    assert redacted["order_id"] == "#W2417020"
    assert redact(4111111111111111) == "[REDACTED:card]"


def _key_bytes(client, key: bytes) -> bytes:
    kind = client.type(key)
    if kind == b"string":
        return client.get(key) or b""
    if kind == b"hash":
        return b"\n".join(k + b"=" + v for k, v in client.hgetall(key).items())
    if kind == b"set":
        return b"\n".join(client.smembers(key))
    if kind == b"zset":
        return b"\n".join(client.zrange(key, 0, -1))
    if kind == b"list":
        return b"\n".join(client.lrange(key, 0, -1))
    if kind == b"stream":
        return b"\n".join(
            k + b"=" + v for _, fields in client.xrange(key) for k, v in fields.items()
        )
    raise AssertionError(f"unexpected Redis type {kind!r} for {key!r}")


def test_conversation_secrets_never_stored_or_logged(open_warden, redis_client, caplog):
    caplog.set_level(logging.DEBUG)
    message = f"{CANCEL_MESSAGE} My card is {CARD}, CVV 123, password: hunter2, key {API_KEY}, token {JWT}."
    warden = open_warden(cancel_script())
    [action] = warden.send("t-secret", message).pending
    warden.decide("t-secret", {action.action_id: {"decision": "reject", "reason": "call us", "reviewer": "alice"}})

    stored = [item.data for item in warden.audit.read("t-secret") if item.entry["kind"] == "message_received"]
    assert "[REDACTED:card]" in stored[0]["text"]
    secrets = [CARD, CARD.replace(" ", ""), "hunter2", API_KEY, JWT]
    # Every key, checkpoints included: the runtime redacts the message before
    # it enters the graph's state. Values are read by type, because DUMP may
    # compress a long string and hide a secret from a byte search.
    keys = list(redis_client.scan_iter())
    assert any(key.startswith(b"warden:audit:") for key in keys)
    assert any(key.startswith(b"warden:cp:") for key in keys)
    assert any(b":approval:" in key for key in keys)
    for key in keys:
        content = _key_bytes(redis_client, key)
        for secret in secrets:
            assert secret.encode() not in content, (key, secret)
    for secret in secrets:
        assert secret not in caplog.text
