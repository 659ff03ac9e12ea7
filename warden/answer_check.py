"""Check of the customer answer against what the turn did, sentence by sentence.

The answer prompt tells the model to cite only the articles it was shown and
never to claim a change that was not done, but a prompt is not a control. This
check runs on the model's text before the customer sees it:

- a citation of a chunk that was not retrieved is removed;
- a sentence that claims a change is dropped when the turn tried that change
  and it was not done, or when the agent claims it in the first person ("I've
  cancelled") and the turn never tried it. A claim is a match of one of the
  tool's ``ToolSpec.claims`` patterns in a sentence without a negation. An
  order id in the sentence ties the claim to that order's change;
- a notice written by code ends the answer. It names every change that was
  not done, with the reason, and every change that was done but that the
  kept text does not mention.

The check sees the text as the model streams it and releases a sentence once
the next one has started, so the customer's stream never carries a dropped
sentence.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tools.base import ToolSpec
from warden.actions import ActionResult

# A sentence ends at ., ! or ? followed by white space; the space stays with it.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_CITATION = re.compile(r"\s?\[([^\[\]\s]{1,80})\]")
_NEGATION = re.compile(
    r"\b(?:not|no|never|cannot|unable|unfortunately|could\s?n[o']t|was\s?n[o']t|"
    r"were\s?n[o']t|is\s?n[o']t|has\s?n[o']t|have\s?n[o']t|did\s?n[o']t|wo\s?n[o']t|"
    r"ca\s?n[o']t|rejected|declined|denied|failed)\b|n't\b",
    re.IGNORECASE,
)
_ORDER_ID = re.compile(r"#?\bW\d{7}\b")

_NOT_DONE_REASONS = {
    "rejected": "a reviewer rejected it",
    "denied": "our policy does not allow it",
    "failed": "it failed when we tried it",
    "expired": "it was not approved in time",
    "cancelled": "it was withdrawn",
    "responded": "a reviewer asked for a different change",
    "unknown": "its outcome is not known yet, and a person will check it",
}


@dataclass
class DroppedSentence:
    """A sentence removed from the answer, with the change it claimed."""

    sentence: str
    tool: str
    action_ids: list[str]


@dataclass
class AnswerCheck:
    """Streaming check of one answer.

    Feed the model's text with ``feed`` and send what it returns to the
    customer, then call ``finish`` and send that too. ``text`` is the checked
    answer, the concatenation of everything returned.
    """

    chunk_ids: set[str]
    results: list[ActionResult]
    tools: Mapping[str, ToolSpec]
    text: str = ""
    dropped: list[DroppedSentence] = field(default_factory=list)
    removed_citations: list[str] = field(default_factory=list)
    _pending: str = ""
    _mentioned: set[str] = field(default_factory=set)

    def feed(self, piece: str) -> str:
        """Take more of the model's text; return the checked sentences it completes."""
        self._pending += piece
        ends = [match.end() for match in _SENTENCE_END.finditer(self._pending)]
        if not ends:
            return ""
        complete, self._pending = self._pending[: ends[-1]], self._pending[ends[-1]:]
        return self._release(complete)

    def finish(self) -> str:
        """Return the checked rest of the text, then the notice of the turn's changes."""
        released = self._release(self._pending)
        self._pending = ""
        notice = self._notice()
        if not notice:
            return released
        separator = "\n\n" if self.text.strip() else ""
        return released + self._account(separator + notice)

    def _account(self, released: str) -> str:
        self.text += released
        return released

    def _release(self, text: str) -> str:
        passed = []
        start = 0
        for end in [match.end() for match in _SENTENCE_END.finditer(text)] + [len(text)]:
            sentence, start = text[start:end], end
            if sentence:
                checked = self._check_sentence(sentence)
                if checked is not None:
                    passed.append(checked)
        return self._account("".join(passed))

    def _check_sentence(self, sentence: str) -> str | None:
        """Return the sentence with unknown citations removed, or None to drop it."""
        sentence = _CITATION.sub(self._keep_citation, sentence)
        body = sentence.strip()
        tools = [name for name, spec in self.tools.items() if spec.claims and _claims(spec, body)]
        if not tools:
            return sentence
        named = {_normal_order(order) for order in _ORDER_ID.findall(body)}
        # Without an order id the sentence may be about any change of these tools.
        about = [
            r for r in self.results if r.tool in tools and (not named or _order_of(r) in named)
        ]
        done = [r for r in about if r.status == "done"]
        not_done = [r for r in about if r.status != "done"]
        if _NEGATION.search(body):
            return sentence
        if done:
            self._mentioned.update(r.action_id for r in done)
            return sentence
        first_person = any(_first_person_claim(self.tools[name], body) for name in tools)
        if not_done or first_person:
            self.dropped.append(DroppedSentence(body, tools[0], [r.action_id for r in not_done]))
            return None
        return sentence

    def _keep_citation(self, match: re.Match[str]) -> str:
        cited = match.group(1)
        if cited in self.chunk_ids or not _looks_like_chunk_id(cited):
            return match.group(0)
        self.removed_citations.append(cited)
        return ""

    def _notice(self) -> str:
        lines = []
        for result in self.results:
            label = _label(result)
            if result.status == "done":
                if result.action_id not in self._mentioned:
                    lines.append(f"Done: {label}.")
            else:
                reason = _NOT_DONE_REASONS.get(result.status, f"its status is {result.status}")
                lines.append(f"Not done: {label}, because {reason}.")
        return "\n".join(lines)


def check_answer(
    pieces: Iterable[str],
    *,
    chunk_ids: Iterable[str],
    results: Iterable[ActionResult],
    tools: Mapping[str, ToolSpec],
) -> AnswerCheck:
    """Run the whole check over ``pieces`` at once and return it; ``.text`` is the answer."""
    check = AnswerCheck(set(chunk_ids), list(results), tools)
    for piece in pieces:
        check.feed(piece)
    check.finish()
    return check


def _claims(spec: ToolSpec, sentence: str) -> bool:
    return any(re.search(rf"\b(?:{pattern})\b", sentence, re.IGNORECASE) for pattern in spec.claims)


def _first_person_claim(spec: ToolSpec, sentence: str) -> bool:
    """Return whether the sentence claims that the agent made the change ("I've cancelled ...")."""
    return any(
        re.search(
            rf"\b(?:I|we)(?:'ve|\s+have)?\s+(?:just\s+|now\s+|successfully\s+|gone ahead and\s+)?(?:{pattern})\b",
            sentence,
            re.IGNORECASE,
        )
        for pattern in spec.claims
    )


def _looks_like_chunk_id(token: str) -> bool:
    """Return whether ``token`` is shaped like a chunk id: hex digits, optionally after a prefix."""
    return bool(re.fullmatch(r"(?:[a-z]+-)?[0-9a-f]{6,64}", token))


def _normal_order(order_id: str) -> str:
    return order_id if order_id.startswith("#") else f"#{order_id}"


def _order_of(result: ActionResult) -> str | None:
    order_id = result.arguments.get("order_id")
    return _normal_order(str(order_id)) if order_id else None


def _label(result: ActionResult) -> str:
    words = result.tool.replace("_", " ")
    target: Any = result.arguments.get("order_id") or result.arguments.get("user_id")
    return f"{words} {target}" if target else words
