"""Check of the customer answer against what the turn did, sentence by sentence.

The answer prompt tells the model to cite only the articles it was shown and
never to claim a change that was not done, but a prompt is not a control. This
check runs on the model's text before the customer sees it:

- a citation of a chunk that was not retrieved is removed;
- a sentence that claims a change is dropped when the turn tried that change
  and it was not done, or when the agent claims it in the first person ("I've
  cancelled") and the turn never tried it. A claim is a match of one of the
  tool's ``ToolSpec.claims`` patterns without a negation among the four words
  before it. An order id in the sentence ties the claim to that order's
  changes;
- a notice written by code ends the answer. It names every change that was
  not done, with the reason, and every change that was done but that the
  kept text does not mention.

The check sees the text as the model streams it and releases a sentence once
its end has arrived, so the customer's stream never carries a dropped
sentence.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from tools.base import ToolSpec
from warden.actions import ActionResult

# A sentence ends at a run of ., ! or ? (then any closing quotes or brackets)
# followed by white space, at full-width 。！？, or at a line break. The
# white space stays with the sentence before it.
_SENTENCE_END = re.compile(r"[.!?]+[\"'”’)\]]*\s+|[。！？]+\s*|\n+")
# A bracketed or parenthesised group, which is a citation when every item in it
# is shaped like a chunk id.
_CITATION = re.compile(r"\s?[\[(]([^\[\]()]{1,200})[\])]")
_CITATION_SEPARATOR = re.compile(r"[,;\s]+")
# A negation counts only among the few words before a claim word: "was not
# cancelled" is no claim, "Don't worry, it has been cancelled" is one.
_NEGATION = re.compile(r"\b(?:not|never|cannot|unable)\b|n't\b", re.IGNORECASE)
_NEGATION_WORDS = 4
_ORDER_ID = re.compile(r"#?\b[Ww]\d{7}\b")
# Words that may stand between "I"/"we" and the claim word: "I've now
# successfully cancelled", "we went ahead and cancelled".
_FIRST_PERSON = r"\b(?:I|we)(?:'ve|'ll|\s+have|\s+had|\s+will)?\s+(?:(?:\w+ly|just|now|already|(?:gone|went) ahead and)\s+)*"
_ID_SHAPE = re.compile(r"(?:[a-z]+-)?[0-9a-f]{6,64}", re.IGNORECASE)

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

    def __post_init__(self) -> None:
        # Chunk ids are hex digits, and a model may write them in upper case.
        self.chunk_ids = {chunk_id.lower() for chunk_id in self.chunk_ids}

    def feed(self, piece: str) -> str:
        """Take more of the model's text and return the checked sentences it completes."""
        # Search only the new text, and a few characters before it where a
        # separator may have begun, so a long answer costs linear time.
        start = max(0, len(self._pending) - 8)
        self._pending += piece
        ends = [match.end() for match in _SENTENCE_END.finditer(self._pending, start)]
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
        # Curly apostrophes ("wasn’t", "I’ve") match the patterns as straight ones.
        body = sentence.strip().replace("’", "'")
        claimed = [name for name, spec in self.tools.items() if _claims(spec, body)]
        if not claimed:
            return sentence
        related = [r for r in self.results if r.tool in claimed]
        named = {_normal_order(order) for order in _ORDER_ID.findall(body)}
        # With order ids, each named order that has results must have one done.
        # Without, any done result of the claimed tools supports the sentence.
        groups = [[r for r in related if _order_of(r) == order] for order in sorted(named)] or [related]
        unsupported = [
            r for group in groups if not any(r.status == "done" for r in group) for r in group
        ]
        any_done = any(r.status == "done" for r in related)
        first_person = any(_first_person_claim(self.tools[name], body) for name in claimed)
        if unsupported or (first_person and not any_done):
            self.dropped.append(
                DroppedSentence(body, claimed[0], [r.action_id for r in unsupported])
            )
            return None
        self._mentioned.update(
            r.action_id for r in related
            if r.status == "done" and (not named or _order_of(r) in named)
        )
        return sentence

    def _keep_citation(self, match: re.Match[str]) -> str:
        items = [item for item in _CITATION_SEPARATOR.split(match.group(1)) if item]
        if not items or not all(_ID_SHAPE.fullmatch(item) for item in items):
            return match.group(0)
        known = [item for item in items if item.lower() in self.chunk_ids]
        self.removed_citations.extend(item for item in items if item.lower() not in self.chunk_ids)
        if len(known) == len(items):
            return match.group(0)
        if not known:
            return ""
        opening = match.group(0)[: match.start(1) - match.start(0)]
        closing = "]" if opening.endswith("[") else ")"
        return f"{opening}{', '.join(known)}{closing}"

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
    """Run the whole check over ``pieces`` and return it, with the checked text in ``.text``."""
    check = AnswerCheck(set(chunk_ids), list(results), tools)
    for piece in pieces:
        check.feed(piece)
    check.finish()
    return check


def _claims(spec: ToolSpec, sentence: str) -> bool:
    """Return whether the sentence uses one of the tool's claim words without a negation just before it."""
    for pattern in spec.claims:
        for match in re.finditer(rf"\b(?:{pattern})\b", sentence, re.IGNORECASE):
            before = sentence[: match.start()].split()[-_NEGATION_WORDS:]
            if not _NEGATION.search(" ".join(before)):
                return True
    return False


def _first_person_claim(spec: ToolSpec, sentence: str) -> bool:
    """Return whether the sentence claims that the agent made the change ("I've cancelled ...")."""
    return any(
        re.search(_FIRST_PERSON + rf"(?:{pattern})\b", sentence, re.IGNORECASE)
        for pattern in spec.claims
    )


def _normal_order(order_id: str) -> str:
    order_id = order_id.upper()
    return order_id if order_id.startswith("#") else f"#{order_id}"


def _order_of(result: ActionResult) -> str | None:
    order_id = result.arguments.get("order_id")
    return _normal_order(str(order_id)) if order_id else None


def _label(result: ActionResult) -> str:
    words = result.tool.replace("_", " ")
    target = result.arguments.get("order_id") or result.arguments.get("user_id")
    return f"{words} {target}" if target else words
