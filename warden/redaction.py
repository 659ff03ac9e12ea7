"""Redaction of secrets and payment details before anything reaches the audit log.

``redact`` walks JSON-like values. A field whose name marks a secret (password,
token, CVV, card number...) loses its whole value. In every other string, card
numbers that pass the Luhn check, bearer tokens, JWTs, ``sk-`` API keys and
``password=...`` pairs are replaced by a ``[REDACTED:<kind>]`` marker.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

REDACTED = "[REDACTED]"

_SECRET_FIELD = re.compile(
    r"pass(word|wd|phrase)?$|secret|token|api[_-]?key|authorization|cvv|cvc|cvn|"
    r"security[_-]?code|card[_-]?(number|no)|^pan$|^pin$",
    re.IGNORECASE,
)
# 13 to 19 digits, optionally grouped by single spaces, dashes or dots.
_CARD_CANDIDATE = re.compile(r"(?<![\d.-])\d(?:[ .-]?\d){12,18}(?![\d-])")
_PATTERNS = (
    ("jwt", re.compile(r"\beyJ[\w-]{5,}\.[\w-]{5,}\.[\w-]*")),
    ("bearer", re.compile(r"\bBearer\s+[\w.~+/-]+=*", re.IGNORECASE)),
    ("api_key", re.compile(r"\b(?:sk|pk|rk)-[\w-]{16,}")),
    ("password", re.compile(r"\b(pass(?:word|wd)?|pwd)\b(\s*(?:is|[:=])\s*)\S+", re.IGNORECASE)),
    ("cvv", re.compile(r"\b(cvv2?|cvc2?|security code)\b(\s*(?:is|[:=#])?\s*)\d{3,4}\b", re.IGNORECASE)),
)


def luhn_valid(digits: str) -> bool:
    """Return whether ``digits`` (only 0-9) passes the Luhn checksum of payment cards."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def _redact_card(match: re.Match[str]) -> str:
    digits = re.sub(r"[ .-]", "", match.group(0))
    return "[REDACTED:card]" if luhn_valid(digits) else match.group(0)


def redact_text(text: str) -> str:
    """Return ``text`` with card numbers, tokens, keys and passwords replaced by markers."""
    text = _CARD_CANDIDATE.sub(_redact_card, text)
    for kind, pattern in _PATTERNS:
        if kind in ("password", "cvv"):
            text = pattern.sub(lambda m, kind=kind: f"{m.group(1)}{m.group(2)}[REDACTED:{kind}]", text)
        else:
            text = pattern.sub(f"[REDACTED:{kind}]", text)
    return text


def is_secret_field(name: str) -> bool:
    """Return whether a field called ``name`` contains a secret whatever its value."""
    return bool(_SECRET_FIELD.search(name))


def redact(value: Any) -> Any:
    """Return a copy of ``value`` with secrets removed; mappings, lists and strings are walked.

    An integer of 13 to 19 digits that passes the Luhn check counts as a card
    number. Other numbers, booleans and ``None`` pass unchanged unless their
    field name marks a secret.
    """
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, int) and not isinstance(value, bool) and 13 <= len(str(abs(value))) <= 19:
        return "[REDACTED:card]" if luhn_valid(str(abs(value))) else value
    if isinstance(value, Mapping):
        return {
            str(key): REDACTED if is_secret_field(str(key)) and item not in (None, "") else redact(item)
            for key, item in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [redact(item) for item in value]
    return value
