"""The answer check: claims of changes that were not done, citations, the notice."""

from __future__ import annotations

import pytest

from tools.retail import RETAIL_TOOLS
from warden.actions import ActionResult
from warden.answer_check import AnswerCheck, check_answer

CHUNK = "0f3a9c1d2e4b5a6c7d8e"


def result(status: str, order_id: str = "#W2417020", tool: str = "cancel_pending_order") -> ActionResult:
    return ActionResult(
        action_id=f"{tool}-{order_id}-{status}", tool=tool, arguments={"order_id": order_id}, status=status
    )


def run(text: str, *results: ActionResult, chunk_ids=(CHUNK,)) -> AnswerCheck:
    # Feed the text in small pieces, as a model streams it.
    pieces = [text[i:i + 7] for i in range(0, len(text), 7)]
    return check_answer(pieces, chunk_ids=chunk_ids, results=results, tools=RETAIL_TOOLS)


def test_rejected_cancel_claim_is_dropped():
    check = run("Your order #W2417020 has been cancelled. Anything else?", result("rejected"))
    assert "has been cancelled" not in check.text
    assert "Anything else?" in check.text
    assert "Not done: cancel pending order #W2417020, because a reviewer rejected it." in check.text
    assert [d.tool for d in check.dropped] == ["cancel_pending_order"]


def test_done_cancel_claim_is_kept_without_notice():
    check = run("Your order #W2417020 has been cancelled.", result("done"))
    assert check.text == "Your order #W2417020 has been cancelled."
    assert check.dropped == []


def test_claim_about_done_order_kept_beside_rejected_one():
    done, rejected = result("done", "#W1111111"), result("rejected", "#W2222222")
    check = run("Order #W1111111 has been cancelled. Order #W2222222 has been cancelled.", done, rejected)
    assert "#W1111111 has been cancelled." in check.text
    assert "Order #W2222222 has been cancelled." not in check.text
    assert "Not done: cancel pending order #W2222222" in check.text
    assert "Done:" not in check.text


def test_first_person_claim_without_action_is_dropped():
    check = run("I've cancelled your order. Please confirm the reason.")
    assert check.text == "Please confirm the reason."
    assert len(check.dropped) == 1


def test_status_fact_without_action_is_kept():
    text = "Your order #W2417020 has been cancelled since May."
    check = run(text)
    assert check.text == text


def test_done_change_not_mentioned_gets_notice():
    check = run("Thanks for waiting.", result("done"))
    assert check.text == "Thanks for waiting.\n\nDone: cancel pending order #W2417020."


def test_unknown_citation_removed_known_kept():
    check = run(f"Refunds take 5 days [{CHUNK}]. Returns are free [abcdef0123456789].")
    assert f"[{CHUNK}]" in check.text
    assert "abcdef0123456789" not in check.text
    assert check.removed_citations == ["abcdef0123456789"]


def test_stream_releases_only_checked_sentences():
    check = AnswerCheck({CHUNK}, [result("rejected")], RETAIL_TOOLS)
    released = check.feed("Your order #W2417020 has been cancel")
    assert released == ""
    released += check.feed("led. We are sorry")
    assert released == ""
    released += check.finish()
    assert "cancelled" not in released.split("\n")[0]
    assert released == check.text


@pytest.mark.parametrize("status", ["denied", "failed", "expired", "unknown"])
def test_every_not_done_status_has_reason(status):
    check = run("", result(status))
    assert check.text.startswith("Not done: cancel pending order #W2417020, because ")
    assert "its status is" not in check.text


@pytest.mark.parametrize(
    "sentence",
    [
        "Don't worry, your order #W2417020 has been cancelled.",
        "I've cancelled your order, so you will not be charged.",
        "Unfortunately it took a while, but I have cancelled order #W2417020.",
        "Order #W2417020 was cancelled since you no longer need it.",
        "Cancellation complete for #W2417020.",
        "You have been refunded.",
        "Your refund has been issued.",
        "Order w2417020 has been cancelled.",
        "I’ve cancelled your order #W2417020.",
        "We have now successfully cancelled your order.",
    ],
)
def test_false_claim_dropped_in_any_wording(sentence):
    check = run(f"{sentence} Thanks for waiting.", result("rejected"))
    assert check.text.startswith("Thanks for waiting.")
    assert len(check.dropped) == 1


@pytest.mark.parametrize(
    "sentence",
    [
        "Your order #W2417020 was not cancelled.",
        "Your order #W2417020 wasn’t cancelled because a reviewer said so.",
        "Order #W2417020 has not been cancelled yet.",
        "I could not cancel order #W2417020 because a reviewer said no.",
    ],
)
def test_negated_claim_near_the_verb_kept(sentence):
    check = run(sentence, result("rejected"))
    assert check.text.startswith(sentence)
    assert check.dropped == []


def test_claim_naming_rejected_and_done_orders_dropped():
    done, rejected = result("done", "#W1111111"), result("rejected", "#W2222222")
    check = run("Both orders #W1111111 and #W2222222 are cancelled.", done, rejected)
    assert "Both orders" not in check.text
    assert "Done: cancel pending order #W1111111." in check.text


def test_claim_of_two_changes_dropped_when_one_rejected():
    address = ActionResult(
        action_id="a2", tool="modify_user_address", arguments={"user_id": "emma_smith_8564"}, status="done"
    )
    check = run("I've updated your address and cancelled order #W2417020.", result("rejected"), address)
    assert "cancelled order" not in check.text


def test_sentences_split_at_quotes_and_line_breaks():
    check = run('Status: "cancelled." Anything else?\n- Order #W2417020 has been cancelled\n- Thanks', result("rejected"))
    assert "Anything else?" in check.text
    assert "- Thanks" in check.text
    assert "- Order #W2417020 has been cancelled" not in check.text


@pytest.mark.parametrize(
    ("cited", "kept", "removed"),
    [
        (f"[abcdef0123456789, {CHUNK}]", f"[{CHUNK}]", ["abcdef0123456789"]),
        ("[ABCDEF0123456789]", "", ["ABCDEF0123456789"]),
        ("(abcdef0123456789)", "", ["abcdef0123456789"]),
        (f"[{CHUNK.upper()}]", f"[{CHUNK.upper()}]", []),
    ],
)
def test_unknown_citation_removed_in_any_form(cited, kept, removed):
    check = run(f"Refunds take 5 days {cited}.")
    assert check.text == f"Refunds take 5 days{' ' + kept if kept else ''}."
    assert check.removed_citations == removed


def test_long_unpunctuated_answer_checked_once():
    check = AnswerCheck({CHUNK}, [], RETAIL_TOOLS)
    for _ in range(20000):
        check.feed("word ")
    assert check.finish() == "word " * 20000
