"""Retail tools against a real SQLite database built from the shared db.json."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pydantic
import pytest

from tools.base import ToolError, ToolSpec
from tools.retail import RETAIL_TOOLS, RetailStore, build_database

PROJECT_ROOT = Path(__file__).resolve().parents[2]

# Orders of db.json chosen for what the tests need.
# Pending, paid 6307.49 by credit card; the user also has PayPal and an 8.00 gift card.
YARA_ORDER = "#W4538969"
YARA_CARD, YARA_PAYPAL, YARA_GIFT_CARD = (
    "credit_card_1006622",
    "paypal_9012851",
    "gift_card_3902147",
)
# Pending, one T-shirt paid 53.43 by credit card; the user has a 91.00 gift card.
OMAR_ORDER = "#W1080318"
OMAR_CARD, OMAR_GIFT_CARD = "credit_card_3577130", "gift_card_3749819"
OMAR_SHIRT = "8349118980"
# Pending, paid 4079.45 by a gift card holding 49.00; the user also has a credit card.
ETHAN_ORDER = "#W6779827"
ETHAN_GIFT_CARD, ETHAN_CARD = "gift_card_7219486", "credit_card_9789590"
# Delivered, paid by credit card; the user also has a second card, PayPal and a
# 10.00 gift card.
SOPHIA_ORDER = "#W4250821"
SOPHIA_CARD, SOPHIA_OTHER_CARD, SOPHIA_PAYPAL, SOPHIA_GIFT_CARD = (
    "credit_card_8041020",
    "credit_card_6547060",
    "paypal_7425862",
    "gift_card_6052478",
)
SOPHIA_KEYBOARD, SOPHIA_VACUUM = "5222576926", "9970989750"
# Delivered, paid by PayPal, with two units of the same fleece jacket.
HARPER_ORDER = "#W1840144"
HARPER_PAYPAL, HARPER_JACKET = "paypal_2306935", "8590708195"
# Delivered, two identical kettles; the user's only method is a 17.00 gift card.
AARAV_ORDER = "#W4316152"
AARAV_GIFT_CARD, AARAV_KETTLE = "gift_card_7245904", "7292993796"
PROCESSED_ORDER = "#W2611340"
CANCELLED_ORDER = "#W3220387"
OTHER_USERS_CARD = "credit_card_9513926"

REASON = "no longer needed"
ADDRESS = {
    "address1": "1 Test Street",
    "address2": "Unit 2",
    "city": "Springfield",
    "state": "IL",
    "country": "USA",
    "zip": "62701",
}


def assert_rejected(
    store: RetailStore, tool: str, arguments: dict, message: str
) -> None:
    """Assert the call raises ToolError containing `message` and changes nothing."""
    before = store.checksum()
    with pytest.raises(ToolError, match=re.escape(message)):
        store.call(tool, arguments, idempotency_key="rejected-call")
    assert store.checksum() == before
    assert store.effect_count("rejected-call") == 0


def transaction(kind: str, amount: float, payment_method_id: str) -> dict:
    return {
        "transaction_type": kind,
        "amount": amount,
        "payment_method_id": payment_method_id,
    }


def variant(initial: dict, item_id: str) -> dict:
    for product in initial["products"].values():
        if item_id in product["variants"]:
            return product["variants"][item_id]
    raise AssertionError(f"item {item_id!r} is not in db.json")


def gift_card_balance(store: RetailStore, user_id: str, method_id: str) -> float:
    return store.call("get_user_details", {"user_id": user_id})["payment_methods"][
        method_id
    ]["balance"]


# Registry


def test_registry_lists_tools_in_contract_order():
    assert list(RETAIL_TOOLS) == [
        "find_user_id_by_email",
        "find_user_id_by_name_zip",
        "get_user_details",
        "get_order_details",
        "get_product_details",
        "get_item_details",
        "list_all_product_types",
        "cancel_pending_order",
        "modify_pending_order_address",
        "modify_pending_order_items",
        "modify_pending_order_payment",
        "modify_user_address",
        "return_delivered_order_items",
        "exchange_delivered_order_items",
        "calculate",
        "transfer_to_human_agents",
    ]


def test_registry_access_and_scopes():
    by_access = {
        access: {name for name, spec in RETAIL_TOOLS.items() if spec.access == access}
        for access in ("read", "write", "none")
    }
    assert len(by_access["read"]) == 7
    assert len(by_access["write"]) == 7
    assert by_access["none"] == {"calculate", "transfer_to_human_agents"}
    assert all(RETAIL_TOOLS[name].risk == "low" for name in by_access["read"])
    assert all(RETAIL_TOOLS[name].risk != "low" for name in by_access["write"])
    assert RETAIL_TOOLS["cancel_pending_order"].scope == "orders:cancel"
    assert RETAIL_TOOLS["cancel_pending_order"].irreversible
    assert RETAIL_TOOLS["modify_user_address"].scope == "users:write"
    assert not RETAIL_TOOLS["modify_user_address"].irreversible
    assert RETAIL_TOOLS["exchange_delivered_order_items"].scope == "orders:exchange"
    assert RETAIL_TOOLS["return_delivered_order_items"].scope == "orders:return"
    assert RETAIL_TOOLS["transfer_to_human_agents"].scope == "handoff"
    assert RETAIL_TOOLS["calculate"].scope == "calc"


@pytest.mark.parametrize("name", list(RETAIL_TOOLS))
def test_spec_schema_forbids_extra_fields(name):
    spec = RETAIL_TOOLS[name]
    assert spec.name == name
    assert spec.description
    schema = spec.json_schema()
    assert schema["additionalProperties"] is False


def test_spec_rejects_schema_allowing_extra():
    class Lenient(pydantic.BaseModel):
        value: int

    with pytest.raises(ValueError, match="extra='forbid'"):
        ToolSpec(
            name="lenient",
            description="x",
            args_schema=Lenient,
            access="read",
            scope="x:read",
            risk="low",
            irreversible=False,
        )


# Argument validation


def test_call_unknown_tool(store):
    with pytest.raises(ToolError, match="unknown tool 'delete_everything'"):
        store.call("delete_everything", {})


def test_call_arguments_not_object(store):
    with pytest.raises(ToolError, match="must be a JSON object, got list"):
        store.call("get_order_details", ["#W2611340"])


def test_call_extra_argument_named(store):
    assert_rejected(
        store,
        "cancel_pending_order",
        {"order_id": YARA_ORDER, "reason": "no longer needed", "force": True},
        "force: Extra inputs are not permitted",
    )


def test_call_missing_argument_named(store):
    assert_rejected(
        store,
        "cancel_pending_order",
        {"order_id": YARA_ORDER},
        "reason: Field required",
    )


def test_call_wrong_type_named(store):
    assert_rejected(
        store,
        "return_delivered_order_items",
        {
            "order_id": SOPHIA_ORDER,
            "item_ids": SOPHIA_KEYBOARD,
            "payment_method_id": SOPHIA_CARD,
        },
        "item_ids: Input should be a valid list",
    )


def test_call_empty_item_list_rejected(store):
    assert_rejected(
        store,
        "return_delivered_order_items",
        {"order_id": SOPHIA_ORDER, "item_ids": [], "payment_method_id": SOPHIA_CARD},
        "item_ids: List should have at least 1 item",
    )


# Reads


def test_find_user_id_by_email(store):
    arguments = {"email": "noah.brown7922@example.com"}
    user_id = store.call("find_user_id_by_email", arguments)
    assert user_id == "noah_brown_6181"


def test_find_user_id_by_email_ignores_case(store):
    arguments = {"email": "Noah.Brown7922@EXAMPLE.com"}
    user_id = store.call("find_user_id_by_email", arguments)
    assert user_id == "noah_brown_6181"


def test_find_user_id_by_email_unknown(store):
    with pytest.raises(ToolError, match="no user has email 'nobody@example.com'"):
        store.call("find_user_id_by_email", {"email": "nobody@example.com"})


def test_find_user_id_by_name_zip(store):
    arguments = {"first_name": "yusuf", "last_name": "ROSSI", "zip": "19122"}
    assert store.call("find_user_id_by_name_zip", arguments) == "yusuf_rossi_9620"


@pytest.mark.parametrize(
    "arguments",
    [
        {"first_name": "Yusuf", "last_name": "Rossi", "zip": "19123"},
        {"first_name": "Yusef", "last_name": "Rossi", "zip": "19122"},
        {"first_name": "Yusuf", "last_name": "Ross", "zip": "19122"},
    ],
)
def test_find_user_id_by_name_zip_unknown(store, arguments):
    with pytest.raises(ToolError, match="has zip"):
        store.call("find_user_id_by_name_zip", arguments)


def test_get_user_details(store, retail_initial):
    user = store.call("get_user_details", {"user_id": "noah_brown_6181"})
    assert user == retail_initial["users"]["noah_brown_6181"]


def test_get_user_details_unknown(store):
    with pytest.raises(ToolError, match="user 'noah_brown_0000' not found"):
        store.call("get_user_details", {"user_id": "noah_brown_0000"})


def test_get_order_details(store, retail_initial):
    order = store.call("get_order_details", {"order_id": HARPER_ORDER})
    assert order == retail_initial["orders"][HARPER_ORDER]


def test_get_order_details_unknown(store):
    with pytest.raises(ToolError, match="order '#W0000000' not found;"):
        store.call("get_order_details", {"order_id": "#W0000000"})


def test_get_order_details_without_hash_hints(store):
    with pytest.raises(ToolError, match="order ids start with '#'"):
        store.call("get_order_details", {"order_id": "W2611340"})


def test_get_product_details(store, retail_initial):
    product = store.call("get_product_details", {"product_id": "9523456873"})
    assert product == retail_initial["products"]["9523456873"]


def test_get_product_details_unknown(store):
    with pytest.raises(ToolError, match="product '6086499569' not found"):
        store.call("get_product_details", {"product_id": "6086499569"})


def test_get_product_details_item_id_hints(store):
    message = "is an item id, not a product id; its product id is '9523456873'"
    with pytest.raises(ToolError, match=re.escape(message)):
        store.call("get_product_details", {"product_id": "9612497925"})


def test_get_item_details(store, retail_initial):
    item = store.call("get_item_details", {"item_id": "9612497925"})
    assert item == retail_initial["products"]["9523456873"]["variants"]["9612497925"]


def test_get_item_details_unknown(store):
    with pytest.raises(ToolError, match="item '0000000000' not found"):
        store.call("get_item_details", {"item_id": "0000000000"})


def test_get_item_details_product_id_hints(store):
    with pytest.raises(ToolError, match="is a product id, not an item id"):
        store.call("get_item_details", {"item_id": "9523456873"})


def test_list_all_product_types(store, retail_initial):
    products = store.call("list_all_product_types", {})
    expected = {p["name"]: p["product_id"] for p in retail_initial["products"].values()}
    assert products == expected
    assert len(products) == 50
    assert list(products) == sorted(products)


def test_reads_ignore_idempotency_key(store):
    store.call(
        "get_order_details", {"order_id": YARA_ORDER}, idempotency_key="read-key"
    )
    assert store.effect_count("read-key") == 0


# cancel_pending_order


def test_cancel_refunds_credit_card(store, retail_initial):
    order = store.call(
        "cancel_pending_order", {"order_id": YARA_ORDER, "reason": "no longer needed"}
    )
    original = retail_initial["orders"][YARA_ORDER]
    assert order["status"] == "cancelled"
    assert order["cancel_reason"] == "no longer needed"
    assert order["payment_history"] == [
        *original["payment_history"],
        {
            "transaction_type": "refund",
            "amount": 6307.49,
            "payment_method_id": YARA_CARD,
        },
    ]
    assert store.call("get_order_details", {"order_id": YARA_ORDER}) == order
    assert gift_card_balance(store, "yara_martin_9470", YARA_GIFT_CARD) == 8.0


def test_cancel_credits_gift_card_at_once(store):
    order = store.call(
        "cancel_pending_order",
        {"order_id": ETHAN_ORDER, "reason": "ordered by mistake"},
    )
    assert order["payment_history"][-1] == {
        "transaction_type": "refund",
        "amount": 4079.45,
        "payment_method_id": ETHAN_GIFT_CARD,
    }
    assert gift_card_balance(store, "ethan_lopez_6291", ETHAN_GIFT_CARD) == 4128.45


def test_cancel_after_payment_change_refunds_new_method_only(store):
    store.call(
        "modify_pending_order_payment",
        {"order_id": OMAR_ORDER, "payment_method_id": OMAR_GIFT_CARD},
    )
    order = store.call(
        "cancel_pending_order", {"order_id": OMAR_ORDER, "reason": "no longer needed"}
    )
    assert order["payment_history"] == [
        transaction("payment", 53.43, OMAR_CARD),
        transaction("payment", 53.43, OMAR_GIFT_CARD),
        transaction("refund", 53.43, OMAR_CARD),
        transaction("refund", 53.43, OMAR_GIFT_CARD),
    ]
    assert gift_card_balance(store, "omar_kim_3528", OMAR_GIFT_CARD) == 91.0


@pytest.mark.parametrize(
    ("order_id", "status"),
    [
        (PROCESSED_ORDER, "processed"),
        (SOPHIA_ORDER, "delivered"),
        (CANCELLED_ORDER, "cancelled"),
    ],
)
def test_cancel_rejects_non_pending(store, order_id, status):
    assert_rejected(
        store,
        "cancel_pending_order",
        {"order_id": order_id, "reason": "no longer needed"},
        f"has status {status!r}; only a 'pending' order can be cancelled",
    )


def test_cancel_rejects_item_modified_order(store):
    store.call(
        "modify_pending_order_items",
        {
            "order_id": OMAR_ORDER,
            "item_ids": [OMAR_SHIRT],
            "new_item_ids": ["1176194968"],
            "payment_method_id": OMAR_CARD,
        },
    )
    assert_rejected(
        store,
        "cancel_pending_order",
        {"order_id": OMAR_ORDER, "reason": "no longer needed"},
        "has status 'pending (item modified)'",
    )


def test_cancel_rejects_other_reason(store):
    assert_rejected(
        store,
        "cancel_pending_order",
        {"order_id": YARA_ORDER, "reason": "found it cheaper"},
        "reason: Input should be 'no longer needed' or 'ordered by mistake'",
    )


def test_cancel_rejects_unknown_order(store):
    assert_rejected(
        store,
        "cancel_pending_order",
        {"order_id": "#W0000000", "reason": "no longer needed"},
        "order '#W0000000' not found",
    )


# modify_pending_order_address


def test_modify_order_address(store, retail_initial):
    order = store.call(
        "modify_pending_order_address", {"order_id": YARA_ORDER, **ADDRESS}
    )
    assert order["address"] == ADDRESS
    assert order["status"] == "pending"
    user = store.call("get_user_details", {"user_id": "yara_martin_9470"})
    assert user["address"] == retail_initial["users"]["yara_martin_9470"]["address"]


def test_modify_order_address_after_item_change(store):
    store.call(
        "modify_pending_order_items",
        {
            "order_id": OMAR_ORDER,
            "item_ids": [OMAR_SHIRT],
            "new_item_ids": ["1176194968"],
            "payment_method_id": OMAR_CARD,
        },
    )
    order = store.call(
        "modify_pending_order_address", {"order_id": OMAR_ORDER, **ADDRESS}
    )
    assert order["address"] == ADDRESS
    assert order["status"] == "pending (item modified)"


@pytest.mark.parametrize(
    ("order_id", "status"),
    [
        (PROCESSED_ORDER, "processed"),
        (SOPHIA_ORDER, "delivered"),
        (CANCELLED_ORDER, "cancelled"),
    ],
)
def test_modify_order_address_rejects_non_pending(store, order_id, status):
    assert_rejected(
        store,
        "modify_pending_order_address",
        {"order_id": order_id, **ADDRESS},
        f"has status {status!r}; only a pending order's shipping address",
    )


def test_modify_order_address_rejects_unknown_order(store):
    assert_rejected(
        store,
        "modify_pending_order_address",
        {"order_id": "#W0000000", **ADDRESS},
        "order '#W0000000' not found",
    )


def test_modify_order_address_rejects_missing_zip(store):
    arguments = {"order_id": YARA_ORDER, **ADDRESS}
    del arguments["zip"]
    assert_rejected(
        store, "modify_pending_order_address", arguments, "zip: Field required"
    )


# modify_pending_order_items


def test_modify_items_pays_difference_by_gift_card(store, retail_initial):
    order = store.call(
        "modify_pending_order_items",
        {
            "order_id": OMAR_ORDER,
            "item_ids": [OMAR_SHIRT],
            "new_item_ids": ["9647292434"],
            "payment_method_id": OMAR_GIFT_CARD,
        },
    )
    new_variant = variant(retail_initial, "9647292434")
    assert order["status"] == "pending (item modified)"
    assert order["items"][0]["item_id"] == "9647292434"
    assert order["items"][0]["price"] == new_variant["price"]
    assert order["items"][0]["options"] == new_variant["options"]
    assert order["payment_history"][-1] == {
        "transaction_type": "payment",
        "amount": 0.05,
        "payment_method_id": OMAR_GIFT_CARD,
    }
    assert gift_card_balance(store, "omar_kim_3528", OMAR_GIFT_CARD) == 90.95


def test_modify_items_refunds_difference(store):
    order = store.call(
        "modify_pending_order_items",
        {
            "order_id": OMAR_ORDER,
            "item_ids": [OMAR_SHIRT],
            "new_item_ids": ["1176194968"],
            "payment_method_id": OMAR_CARD,
        },
    )
    assert order["payment_history"][-1] == {
        "transaction_type": "refund",
        "amount": 0.55,
        "payment_method_id": OMAR_CARD,
    }
    assert gift_card_balance(store, "omar_kim_3528", OMAR_GIFT_CARD) == 91.0


def test_modify_items_each_takes_own_variant(store, retail_initial):
    order = store.call(
        "modify_pending_order_items",
        {
            "order_id": YARA_ORDER,
            "item_ids": ["4875647558", "9580569596"],
            "new_item_ids": ["3709608322", "1646531091"],
            "payment_method_id": YARA_PAYPAL,
        },
    )
    item_ids = [item["item_id"] for item in order["items"]]
    assert item_ids == ["3709608322", "3104857380", "7441167885", "1646531091"]
    for position in (0, 3):
        new_variant = variant(retail_initial, item_ids[position])
        assert order["items"][position]["price"] == new_variant["price"]
        assert order["items"][position]["options"] == new_variant["options"]
    # (2744.70 - 2805.77) + (232.49 - 257.38) = -85.96
    assert order["payment_history"][-1] == {
        "transaction_type": "refund",
        "amount": 85.96,
        "payment_method_id": YARA_PAYPAL,
    }


def test_modify_items_rejects_second_change(store):
    arguments = {
        "order_id": OMAR_ORDER,
        "item_ids": [OMAR_SHIRT],
        "new_item_ids": ["1176194968"],
        "payment_method_id": OMAR_CARD,
    }
    store.call("modify_pending_order_items", arguments)
    assert_rejected(
        store,
        "modify_pending_order_items",
        {**arguments, "item_ids": ["1176194968"], "new_item_ids": ["9612497925"]},
        "has status 'pending (item modified)'; items can be changed only",
    )


@pytest.mark.parametrize(
    ("order_id", "item_id", "new_item_id", "status"),
    [
        (PROCESSED_ORDER, "6469567736", "4579334072", "processed"),
        (SOPHIA_ORDER, SOPHIA_KEYBOARD, "7706410293", "delivered"),
    ],
)
def test_modify_items_rejects_non_pending(
    store, order_id, item_id, new_item_id, status
):
    assert_rejected(
        store,
        "modify_pending_order_items",
        {
            "order_id": order_id,
            "item_ids": [item_id],
            "new_item_ids": [new_item_id],
            "payment_method_id": SOPHIA_CARD,
        },
        f"has status {status!r}",
    )


@pytest.mark.parametrize(
    ("item_ids", "new_item_ids", "payment_method_id", "message"),
    [
        pytest.param(
            [OMAR_SHIRT],
            ["1176194968", "9612497925"],
            OMAR_CARD,
            "item_ids has 1 entries but new_item_ids has 2",
            id="length-mismatch",
        ),
        pytest.param(
            ["9612497925"],
            ["1176194968"],
            OMAR_CARD,
            "item '9612497925' is listed 1 time(s) but order '#W1080318' contains it 0",
            id="item-not-in-order",
        ),
        pytest.param(
            [OMAR_SHIRT, OMAR_SHIRT],
            ["1176194968", "9612497925"],
            OMAR_CARD,
            "item '8349118980' is listed 2 time(s) but order '#W1080318' contains it 1",
            id="more-units-than-ordered",
        ),
        pytest.param(
            [OMAR_SHIRT],
            [OMAR_SHIRT],
            OMAR_CARD,
            "new item '8349118980' is the item already in the order",
            id="same-item",
        ),
        pytest.param(
            [OMAR_SHIRT],
            ["3709608322"],
            OMAR_CARD,
            "new item '3709608322' is not an option of product '9523456873'",
            id="other-product",
        ),
        pytest.param(
            [OMAR_SHIRT],
            ["0000000000"],
            OMAR_CARD,
            "new item '0000000000' is not an option of product",
            id="unknown-item",
        ),
        pytest.param(
            [OMAR_SHIRT],
            ["5047954489"],
            OMAR_CARD,
            "new item '5047954489' is not available",
            id="unavailable",
        ),
        pytest.param(
            [OMAR_SHIRT],
            ["1176194968"],
            OTHER_USERS_CARD,
            "payment method 'credit_card_9513926' not found for user 'omar_kim_3528'",
            id="other-users-method",
        ),
    ],
)
def test_modify_items_rejects(
    store, item_ids, new_item_ids, payment_method_id, message
):
    assert_rejected(
        store,
        "modify_pending_order_items",
        {
            "order_id": OMAR_ORDER,
            "item_ids": item_ids,
            "new_item_ids": new_item_ids,
            "payment_method_id": payment_method_id,
        },
        message,
    )


def test_modify_items_rejects_short_gift_card(store):
    assert_rejected(
        store,
        "modify_pending_order_items",
        {
            "order_id": YARA_ORDER,
            "item_ids": ["4875647558"],
            "new_item_ids": ["7407838442"],
            "payment_method_id": YARA_GIFT_CARD,
        },
        "gift card 'gift_card_3902147' has a balance of 8.00, less than the 276.14",
    )


def test_modify_items_rejects_unknown_order(store):
    assert_rejected(
        store,
        "modify_pending_order_items",
        {
            "order_id": "#W0000000",
            "item_ids": [OMAR_SHIRT],
            "new_item_ids": ["1176194968"],
            "payment_method_id": OMAR_CARD,
        },
        "order '#W0000000' not found",
    )


# modify_pending_order_payment


def test_modify_payment_to_gift_card(store):
    order = store.call(
        "modify_pending_order_payment",
        {"order_id": OMAR_ORDER, "payment_method_id": OMAR_GIFT_CARD},
    )
    assert order["status"] == "pending"
    assert order["payment_history"] == [
        transaction("payment", 53.43, OMAR_CARD),
        transaction("payment", 53.43, OMAR_GIFT_CARD),
        transaction("refund", 53.43, OMAR_CARD),
    ]
    assert gift_card_balance(store, "omar_kim_3528", OMAR_GIFT_CARD) == 37.57


def test_modify_payment_refunds_old_gift_card(store):
    store.call(
        "modify_pending_order_payment",
        {"order_id": ETHAN_ORDER, "payment_method_id": ETHAN_CARD},
    )
    assert gift_card_balance(store, "ethan_lopez_6291", ETHAN_GIFT_CARD) == 4128.45


@pytest.mark.parametrize(
    ("order_id", "payment_method_id", "message"),
    [
        pytest.param(
            SOPHIA_ORDER,
            SOPHIA_PAYPAL,
            "has status 'delivered'; only a pending order's payment method",
            id="delivered",
        ),
        pytest.param(
            PROCESSED_ORDER,
            "credit_card_4466831",
            "has status 'processed'",
            id="processed",
        ),
        pytest.param(
            OMAR_ORDER,
            OTHER_USERS_CARD,
            "payment method 'credit_card_9513926' not found for user 'omar_kim_3528'",
            id="other-users-method",
        ),
        pytest.param(
            OMAR_ORDER,
            OMAR_CARD,
            "is already paid with 'credit_card_3577130'",
            id="same-method",
        ),
        pytest.param(
            YARA_ORDER,
            YARA_GIFT_CARD,
            "has a balance of 8.00, less than the 6307.49 to pay",
            id="short-gift-card",
        ),
        pytest.param(
            "#W0000000",
            OMAR_CARD,
            "order '#W0000000' not found",
            id="unknown-order",
        ),
    ],
)
def test_modify_payment_rejects(store, order_id, payment_method_id, message):
    assert_rejected(
        store,
        "modify_pending_order_payment",
        {"order_id": order_id, "payment_method_id": payment_method_id},
        message,
    )


def test_modify_payment_rejects_several_payments(store):
    store.call(
        "modify_pending_order_items",
        {
            "order_id": OMAR_ORDER,
            "item_ids": [OMAR_SHIRT],
            "new_item_ids": ["1176194968"],
            "payment_method_id": OMAR_CARD,
        },
    )
    assert_rejected(
        store,
        "modify_pending_order_payment",
        {"order_id": OMAR_ORDER, "payment_method_id": OMAR_GIFT_CARD},
        "has 2 payment history entries",
    )


# modify_user_address


def test_modify_user_address(store, retail_initial):
    user = store.call("modify_user_address", {"user_id": "yara_martin_9470", **ADDRESS})
    assert user["address"] == ADDRESS
    order = store.call("get_order_details", {"order_id": YARA_ORDER})
    assert order["address"] == retail_initial["orders"][YARA_ORDER]["address"]


def test_modify_user_address_rejects_unknown_user(store):
    assert_rejected(
        store,
        "modify_user_address",
        {"user_id": "nobody_0000", **ADDRESS},
        "user 'nobody_0000' not found",
    )


def test_modify_user_address_rejects_empty_city(store):
    assert_rejected(
        store,
        "modify_user_address",
        {"user_id": "yara_martin_9470", **ADDRESS, "city": ""},
        "city: String should have at least 1 character",
    )


# return_delivered_order_items


def test_return_to_original_method(store, retail_initial):
    order = store.call(
        "return_delivered_order_items",
        {
            "order_id": SOPHIA_ORDER,
            "item_ids": [SOPHIA_VACUUM, SOPHIA_KEYBOARD],
            "payment_method_id": SOPHIA_CARD,
        },
    )
    original = retail_initial["orders"][SOPHIA_ORDER]
    assert order["status"] == "return requested"
    assert order["return_items"] == [SOPHIA_KEYBOARD, SOPHIA_VACUUM]
    assert order["return_payment_method_id"] == SOPHIA_CARD
    assert order["payment_history"] == original["payment_history"]
    assert order["items"] == original["items"]


def test_return_to_gift_card(store):
    order = store.call(
        "return_delivered_order_items",
        {
            "order_id": SOPHIA_ORDER,
            "item_ids": [SOPHIA_KEYBOARD],
            "payment_method_id": SOPHIA_GIFT_CARD,
        },
    )
    assert order["return_payment_method_id"] == SOPHIA_GIFT_CARD
    assert gift_card_balance(store, "sophia_jackson_6355", SOPHIA_GIFT_CARD) == 10.0


def test_return_duplicate_units(store):
    order = store.call(
        "return_delivered_order_items",
        {
            "order_id": HARPER_ORDER,
            "item_ids": [HARPER_JACKET, HARPER_JACKET],
            "payment_method_id": HARPER_PAYPAL,
        },
    )
    assert order["return_items"] == [HARPER_JACKET, HARPER_JACKET]


@pytest.mark.parametrize(
    ("order_id", "item_ids", "payment_method_id", "message"),
    [
        pytest.param(
            YARA_ORDER,
            ["4875647558"],
            YARA_CARD,
            "has status 'pending'; only a 'delivered' order can be returned",
            id="pending",
        ),
        pytest.param(
            PROCESSED_ORDER,
            ["6469567736"],
            "gift_card_1725971",
            "has status 'processed'",
            id="processed",
        ),
        pytest.param(
            CANCELLED_ORDER,
            ["0000000000"],
            "credit_card_0000000",
            "has status 'cancelled'",
            id="cancelled",
        ),
        pytest.param(
            SOPHIA_ORDER,
            [SOPHIA_KEYBOARD],
            SOPHIA_OTHER_CARD,
            "refund method 'credit_card_6547060' is neither the original payment "
            "method 'credit_card_8041020'",
            id="other-card",
        ),
        pytest.param(
            SOPHIA_ORDER,
            [SOPHIA_KEYBOARD],
            SOPHIA_PAYPAL,
            "refund method 'paypal_7425862' is neither",
            id="paypal-not-original",
        ),
        pytest.param(
            SOPHIA_ORDER,
            [SOPHIA_KEYBOARD],
            OTHER_USERS_CARD,
            "payment method 'credit_card_9513926' not found for user",
            id="other-users-method",
        ),
        pytest.param(
            SOPHIA_ORDER,
            ["7706410293"],
            SOPHIA_CARD,
            "item '7706410293' is listed 1 time(s) but order '#W4250821' contains it 0",
            id="item-not-in-order",
        ),
        pytest.param(
            HARPER_ORDER,
            [HARPER_JACKET] * 3,
            HARPER_PAYPAL,
            "item '8590708195' is listed 3 time(s) but order '#W1840144' contains it 2",
            id="more-units-than-ordered",
        ),
        pytest.param(
            "#W0000000",
            [SOPHIA_KEYBOARD],
            SOPHIA_CARD,
            "order '#W0000000' not found",
            id="unknown-order",
        ),
    ],
)
def test_return_rejects(store, order_id, item_ids, payment_method_id, message):
    assert_rejected(
        store,
        "return_delivered_order_items",
        {
            "order_id": order_id,
            "item_ids": item_ids,
            "payment_method_id": payment_method_id,
        },
        message,
    )


def test_return_rejects_second_request(store):
    arguments = {
        "order_id": SOPHIA_ORDER,
        "item_ids": [SOPHIA_KEYBOARD],
        "payment_method_id": SOPHIA_CARD,
    }
    store.call("return_delivered_order_items", arguments)
    assert_rejected(
        store,
        "return_delivered_order_items",
        {**arguments, "item_ids": [SOPHIA_VACUUM]},
        "has status 'return requested'",
    )


# exchange_delivered_order_items


def test_exchange_records_request(store, retail_initial):
    order = store.call(
        "exchange_delivered_order_items",
        {
            "order_id": SOPHIA_ORDER,
            "item_ids": [SOPHIA_VACUUM, SOPHIA_KEYBOARD],
            "new_item_ids": ["4602305039", "7706410293"],
            "payment_method_id": SOPHIA_CARD,
        },
    )
    original = retail_initial["orders"][SOPHIA_ORDER]
    assert order["status"] == "exchange requested"
    assert order["exchange_items"] == [SOPHIA_KEYBOARD, SOPHIA_VACUUM]
    assert order["exchange_new_items"] == ["4602305039", "7706410293"]
    assert order["exchange_payment_method_id"] == SOPHIA_CARD
    assert order["exchange_price_difference"] == 10.83
    assert order["items"] == original["items"]
    assert order["payment_history"] == original["payment_history"]


def test_exchange_moves_no_gift_card_balance(store):
    order = store.call(
        "exchange_delivered_order_items",
        {
            "order_id": SOPHIA_ORDER,
            "item_ids": [SOPHIA_VACUUM],
            "new_item_ids": ["4602305039"],
            "payment_method_id": SOPHIA_GIFT_CARD,
        },
    )
    assert order["exchange_price_difference"] == -8.38
    assert gift_card_balance(store, "sophia_jackson_6355", SOPHIA_GIFT_CARD) == 10.0


def test_exchange_duplicate_units(store):
    order = store.call(
        "exchange_delivered_order_items",
        {
            "order_id": HARPER_ORDER,
            "item_ids": [HARPER_JACKET, HARPER_JACKET],
            "new_item_ids": ["9385662952", "5992316252"],
            "payment_method_id": HARPER_PAYPAL,
        },
    )
    assert order["exchange_items"] == [HARPER_JACKET, HARPER_JACKET]
    assert order["exchange_new_items"] == ["5992316252", "9385662952"]
    assert order["exchange_price_difference"] == round(159.92 + 141.29 - 2 * 157.61, 2)


@pytest.mark.parametrize(
    ("order_id", "item_ids", "new_item_ids", "payment_method_id", "message"),
    [
        pytest.param(
            YARA_ORDER,
            ["4875647558"],
            ["3709608322"],
            YARA_CARD,
            "has status 'pending'; only a 'delivered' order can be exchanged",
            id="pending",
        ),
        pytest.param(
            PROCESSED_ORDER,
            ["6469567736"],
            ["4579334072"],
            "gift_card_1725971",
            "has status 'processed'",
            id="processed",
        ),
        pytest.param(
            SOPHIA_ORDER,
            [SOPHIA_KEYBOARD],
            ["7706410293", "3616838507"],
            SOPHIA_CARD,
            "item_ids has 1 entries but new_item_ids has 2",
            id="length-mismatch",
        ),
        pytest.param(
            SOPHIA_ORDER,
            ["3616838507"],
            ["7706410293"],
            SOPHIA_CARD,
            "item '3616838507' is listed 1 time(s) but order '#W4250821' contains it 0",
            id="item-not-in-order",
        ),
        pytest.param(
            HARPER_ORDER,
            [HARPER_JACKET] * 3,
            ["9385662952"] * 3,
            HARPER_PAYPAL,
            "item '8590708195' is listed 3 time(s)",
            id="more-units-than-ordered",
        ),
        pytest.param(
            SOPHIA_ORDER,
            [SOPHIA_KEYBOARD],
            [SOPHIA_KEYBOARD],
            SOPHIA_CARD,
            "new item '5222576926' is the item already in the order",
            id="same-item",
        ),
        pytest.param(
            SOPHIA_ORDER,
            [SOPHIA_KEYBOARD],
            ["4602305039"],
            SOPHIA_CARD,
            "new item '4602305039' is not an option of product '1656367028'",
            id="other-product",
        ),
        pytest.param(
            SOPHIA_ORDER,
            [SOPHIA_KEYBOARD],
            ["9690244451"],
            SOPHIA_CARD,
            "new item '9690244451' is not available",
            id="unavailable",
        ),
        pytest.param(
            SOPHIA_ORDER,
            [SOPHIA_KEYBOARD],
            ["7706410293"],
            OTHER_USERS_CARD,
            "payment method 'credit_card_9513926' not found for user",
            id="other-users-method",
        ),
        pytest.param(
            SOPHIA_ORDER,
            [SOPHIA_VACUUM, SOPHIA_KEYBOARD],
            ["4602305039", "7706410293"],
            SOPHIA_GIFT_CARD,
            "has a balance of 10.00, less than the 10.83 to pay",
            id="short-gift-card",
        ),
        pytest.param(
            AARAV_ORDER,
            [AARAV_KETTLE, AARAV_KETTLE],
            ["3761330360", "9647374798"],
            AARAV_GIFT_CARD,
            "has a balance of 17.00, less than the 21.10 to pay",
            id="short-only-gift-card",
        ),
        pytest.param(
            "#W0000000",
            [SOPHIA_KEYBOARD],
            ["7706410293"],
            SOPHIA_CARD,
            "order '#W0000000' not found",
            id="unknown-order",
        ),
    ],
)
def test_exchange_rejects(
    store, order_id, item_ids, new_item_ids, payment_method_id, message
):
    assert_rejected(
        store,
        "exchange_delivered_order_items",
        {
            "order_id": order_id,
            "item_ids": item_ids,
            "new_item_ids": new_item_ids,
            "payment_method_id": payment_method_id,
        },
        message,
    )


@pytest.mark.parametrize(
    ("first_tool", "first_arguments", "status"),
    [
        (
            "exchange_delivered_order_items",
            {"item_ids": [SOPHIA_KEYBOARD], "new_item_ids": ["7706410293"]},
            "exchange requested",
        ),
        (
            "return_delivered_order_items",
            {"item_ids": [SOPHIA_KEYBOARD]},
            "return requested",
        ),
    ],
)
def test_exchange_rejects_after_request(store, first_tool, first_arguments, status):
    store.call(
        first_tool,
        {"order_id": SOPHIA_ORDER, "payment_method_id": SOPHIA_CARD, **first_arguments},
    )
    assert_rejected(
        store,
        "exchange_delivered_order_items",
        {
            "order_id": SOPHIA_ORDER,
            "item_ids": [SOPHIA_VACUUM],
            "new_item_ids": ["4602305039"],
            "payment_method_id": SOPHIA_CARD,
        },
        f"has status {status!r}",
    )


# calculate and transfer_to_human_agents


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("3131.1 + 4777.75 + 367.38", 8276.23),
        ("135.24 - 153.23", -17.99),
        ("(49.99 - 12.5) * 2", 74.98),
        ("10 / 3", 3.33),
        ("-(2 + 3) * -1", 5.0),
        (".5 + .25", 0.75),
        ("0.001 - 0.002", 0.0),
    ],
)
def test_calculate(store, expression, expected):
    result = store.call("calculate", {"expression": expression})
    assert result == expected
    assert isinstance(result, float)


def test_calculate_never_negative_zero(store):
    result = store.call("calculate", {"expression": "0.001 - 0.002"})
    assert str(result) == "0.0"


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("__import__('os')", "contains"),
        ("2 ** 10", "'2 ** 10', which is not plain arithmetic"),
        ("7 // 2", "which is not plain arithmetic"),
        ("(1)(2)", "which is not plain arithmetic"),
        ("1 / 0", "divides by zero"),
        ("1 +", "is not valid arithmetic"),
        ("1.2.3", "is not valid arithmetic"),
        ("1e5", "contains 'e'"),
        ("9" * 400 + " * 1", "overflows a float"),
        ("(" * 210 + "1" + ")" * 210, "is not valid arithmetic"),
    ],
)
def test_calculate_rejects(store, expression, message):
    with pytest.raises(ToolError, match=re.escape(message)):
        store.call("calculate", {"expression": expression})


def test_calculate_rejects_long_expression(store):
    with pytest.raises(ToolError, match="expression: String should have at most 500"):
        store.call("calculate", {"expression": "1+" * 300 + "1"})


def test_transfer_to_human_agents(store):
    before = store.checksum()
    result = store.call(
        "transfer_to_human_agents",
        {"summary": "Customer wants a refund to a card not on the order."},
        idempotency_key="handoff",
    )
    assert result == "Transfer successful"
    assert store.checksum() == before
    assert store.effect_count("handoff") == 0


# Idempotency


def test_idempotent_write_runs_once(store):
    arguments = {"order_id": ETHAN_ORDER, "reason": "no longer needed"}
    first = store.call("cancel_pending_order", arguments, idempotency_key="cancel-1")
    after_first = store.checksum()
    second = store.call(
        "cancel_pending_order",
        dict(reversed(arguments.items())),
        idempotency_key="cancel-1",
    )
    assert second == first
    assert store.checksum() == after_first
    assert store.effect_count("cancel-1") == 1
    assert gift_card_balance(store, "ethan_lopez_6291", ETHAN_GIFT_CARD) == 4128.45
    types = [entry["transaction_type"] for entry in second["payment_history"]]
    assert types == ["payment", "refund"]


def test_idempotency_key_with_other_arguments(store):
    store.call(
        "cancel_pending_order",
        {"order_id": ETHAN_ORDER, "reason": "no longer needed"},
        idempotency_key="key-1",
    )
    conflicting_calls = (
        ("cancel_pending_order", {"order_id": YARA_ORDER, "reason": REASON}),
        (
            "cancel_pending_order",
            {"order_id": ETHAN_ORDER, "reason": "ordered by mistake"},
        ),
        ("modify_pending_order_address", {"order_id": YARA_ORDER, **ADDRESS}),
    )
    for tool, arguments in conflicting_calls:
        before = store.checksum()
        with pytest.raises(ToolError, match="idempotency key 'key-1' was already used"):
            store.call(tool, arguments, idempotency_key="key-1")
        assert store.checksum() == before
    assert store.effect_count("key-1") == 1


def test_idempotency_key_free_after_failure(store):
    with pytest.raises(ToolError):
        store.call(
            "cancel_pending_order",
            {"order_id": PROCESSED_ORDER, "reason": "no longer needed"},
            idempotency_key="retry-key",
        )
    assert store.effect_count("retry-key") == 0
    order = store.call(
        "cancel_pending_order",
        {"order_id": YARA_ORDER, "reason": "no longer needed"},
        idempotency_key="retry-key",
    )
    assert order["status"] == "cancelled"
    assert store.effect_count("retry-key") == 1


def test_write_without_key_stores_no_effect(store):
    store.call("cancel_pending_order", {"order_id": YARA_ORDER, "reason": REASON})
    conn = sqlite3.connect(store.sqlite_path)
    try:
        assert conn.execute("SELECT count(*) FROM effects").fetchone()[0] == 0
    finally:
        conn.close()


# Several stores on one file


def test_two_stores_see_each_others_writes(fresh_retail_db):
    path = fresh_retail_db()
    first, second = RetailStore(path), RetailStore(path)
    first.call("modify_user_address", {"user_id": "yara_martin_9470", **ADDRESS})
    user = second.call("get_user_details", {"user_id": "yara_martin_9470"})
    assert user["address"] == ADDRESS
    second.call("cancel_pending_order", {"order_id": YARA_ORDER, "reason": REASON})
    order = first.call("get_order_details", {"order_id": YARA_ORDER})
    assert order["status"] == "cancelled"
    assert first.checksum() == second.checksum()


def test_write_from_other_process_is_visible(fresh_retail_db):
    path = fresh_retail_db()
    store = RetailStore(path)
    script = (
        "import sys; from tools.retail import RetailStore; "
        "RetailStore(sys.argv[1]).call('cancel_pending_order', "
        f"{{'order_id': {YARA_ORDER!r}, 'reason': 'ordered by mistake'}}, "
        "idempotency_key='from-child')"
    )
    subprocess.run(
        [sys.executable, "-c", script, str(path)],
        cwd=PROJECT_ROOT,
        check=True,
        timeout=60,
    )
    order = store.call("get_order_details", {"order_id": YARA_ORDER})
    assert order["cancel_reason"] == "ordered by mistake"
    assert store.effect_count("from-child") == 1


def test_concurrent_cancels_apply_once(fresh_retail_db):
    path = fresh_retail_db()
    outcomes: list[object] = []
    lock = threading.Lock()

    def cancel(index: int) -> None:
        try:
            result: object = RetailStore(path).call(
                "cancel_pending_order",
                {"order_id": ETHAN_ORDER, "reason": "no longer needed"},
                idempotency_key=f"thread-{index}",
            )
        except ToolError as error:
            result = error
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=cancel, args=(index,)) for index in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    successes = [outcome for outcome in outcomes if isinstance(outcome, dict)]
    failures = [outcome for outcome in outcomes if isinstance(outcome, ToolError)]
    assert len(successes) == 1
    assert len(failures) == 7
    assert all("has status 'cancelled'" in str(failure) for failure in failures)
    store = RetailStore(path)
    assert gift_card_balance(store, "ethan_lopez_6291", ETHAN_GIFT_CARD) == 4128.45


def test_concurrent_same_key_applies_once(fresh_retail_db):
    path = fresh_retail_db()
    results: list[object] = []
    lock = threading.Lock()

    def cancel() -> None:
        result = RetailStore(path).call(
            "cancel_pending_order",
            {"order_id": ETHAN_ORDER, "reason": "no longer needed"},
            idempotency_key="shared-key",
        )
        with lock:
            results.append(result)

    threads = [threading.Thread(target=cancel) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(results) == 8
    assert all(result == results[0] for result in results)
    store = RetailStore(path)
    assert store.effect_count("shared-key") == 1
    assert gift_card_balance(store, "ethan_lopez_6291", ETHAN_GIFT_CARD) == 4128.45


# Building and opening


def test_dump_of_fresh_database_equals_db_json(store, retail_initial):
    assert store.dump() == retail_initial


def test_checksum_stable_until_write(store, fresh_retail_db):
    other = RetailStore(fresh_retail_db())
    assert store.checksum() == other.checksum()
    store.call("modify_user_address", {"user_id": "yara_martin_9470", **ADDRESS})
    assert store.checksum() != other.checksum()


def test_built_database_uses_wal_and_foreign_keys(store):
    conn = sqlite3.connect(store.sqlite_path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        conn.execute("PRAGMA foreign_keys = ON")
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
            conn.execute(
                "INSERT INTO payment_transactions VALUES"
                " ('#W0000000', 0, 'payment', 1.0, 'credit_card_0000000')"
            )
    finally:
        conn.close()


def test_build_refuses_existing_file(retail_db_json, tmp_path):
    target = tmp_path / "retail.sqlite"
    target.write_bytes(b"keep me")
    with pytest.raises(FileExistsError, match="pass overwrite=True"):
        build_database(retail_db_json, target)
    assert target.read_bytes() == b"keep me"


def test_build_overwrite_replaces_file(retail_db_json, retail_initial, fresh_retail_db):
    path = fresh_retail_db()
    RetailStore(path).call(
        "modify_user_address", {"user_id": "yara_martin_9470", **ADDRESS}
    )
    build_database(retail_db_json, path, overwrite=True)
    assert RetailStore(path).dump() == retail_initial


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        pytest.param(
            lambda data: data.pop("orders"), "has no 'orders' object", id="no-orders"
        ),
        pytest.param(
            lambda data: data["users"]["noah_brown_6181"].update(nickname="NB"),
            "contains fields the retail schema does not store",
            id="unknown-field",
        ),
        pytest.param(
            lambda data: data["users"]["noah_brown_6181"]["orders"].clear(),
            "at order '#W7678072': ValueError: missing from the 'orders' list",
            id="order-not-listed",
        ),
        pytest.param(
            lambda data: data["orders"]["#W2611340"]["items"][0].update(item_id="0"),
            "at order '#W2611340': IntegrityError",
            id="unknown-item",
        ),
        pytest.param(
            lambda data: data["users"]["noah_brown_6181"].pop("email"),
            "at user 'noah_brown_6181': KeyError",
            id="missing-email",
        ),
    ],
)
def test_build_rejects_invalid_data(retail_initial, tmp_path, mutate, message):
    data = json.loads(json.dumps(retail_initial))
    mutate(data)
    source = tmp_path / "db.json"
    source.write_text(json.dumps(data), encoding="utf-8")
    target = tmp_path / "out" / "retail.sqlite"
    target.parent.mkdir()
    with pytest.raises(ValueError, match=re.escape(message)):
        build_database(source, target)
    assert list(target.parent.iterdir()) == []


def test_store_rejects_missing_file(tmp_path):
    path = tmp_path / "absent.sqlite"
    with pytest.raises(FileNotFoundError, match="create it with build_database"):
        RetailStore(path)
    assert not path.exists()


def test_store_rejects_other_sqlite_file(tmp_path):
    path = tmp_path / "other.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (x)")
    conn.close()
    with pytest.raises(ValueError, match="has schema version 0, expected 1"):
        RetailStore(path)
