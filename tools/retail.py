"""Retail tools: the customer, order and product actions an agent can take, over SQLite.

Each tool declares its argument schema, permission scope and risk next to
its code. `RetailStore.call` validates the arguments, runs the tool in one
SQLite transaction and records write effects under an idempotency key.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import json
import logging
import math
import operator
import reprlib
import sqlite3
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import pydantic
from pydantic import BaseModel, ConfigDict, Field

from tools.base import ToolError, ToolSpec
from tools.retail_db import (
    append_transaction,
    build_database,
    dump_database,
    open_database,
    read_orders,
    read_products,
    read_users,
    variant_from_row,
)

__all__ = ["RETAIL_TOOLS", "RetailStore", "build_database"]

logger = logging.getLogger(__name__)

CancelReason = Literal["no longer needed", "ordered by mistake"]
CANCEL_REASONS: tuple[str, ...] = get_args(CancelReason)
_MAX_EXPRESSION_LENGTH = 500
# Keeps a long rejected argument from flooding the error message.
_INPUT_REPR = reprlib.Repr()
_INPUT_REPR.maxstring = 80
_CALCULATOR_CHARACTERS = frozenset("0123456789+-*/(). ")
_BINARY_OPERATORS: dict[type[ast.operator], Callable[[float, float], float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}

Handler = Callable[[sqlite3.Connection | None, Any], Any]

RETAIL_TOOLS: dict[str, ToolSpec] = {}
"""Every retail tool by name: 7 reads, 7 writes, then `calculate` and the handoff."""
_HANDLERS: dict[str, Handler] = {}


def _tool(spec: ToolSpec) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        RETAIL_TOOLS[spec.name] = spec
        _HANDLERS[spec.name] = handler
        return handler

    return register


class _Arguments(BaseModel):
    model_config = ConfigDict(extra="forbid")


OrderId = Annotated[
    str,
    Field(
        min_length=1,
        description="Order id with its leading '#', such as '#W0000000'.",
    ),
]
UserId = Annotated[
    str, Field(min_length=1, description="User id, such as 'sara_doe_496'.")
]
ProductId = Annotated[
    str,
    Field(
        min_length=1,
        description="Product id, such as '6086499569'. It is not an item id.",
    ),
]
ItemId = Annotated[
    str,
    Field(
        min_length=1,
        description="Item id (one variant of a product), such as '1008292230'.",
    ),
]
PaymentMethodId = Annotated[
    str,
    Field(
        min_length=1,
        description=(
            "Id of one of the user's payment methods, such as 'credit_card_0000000', "
            "'paypal_0000000' or 'gift_card_0000000'."
        ),
    ),
]
ItemIds = Annotated[
    list[ItemId],
    Field(
        min_length=1,
        description=(
            "Item ids in the order; repeat an id to act on several units of it."
        ),
    ),
]
NewItemIds = Annotated[
    list[ItemId],
    Field(
        min_length=1,
        description=(
            "Replacement item ids, position by position: each is another option of "
            "the same product as the item at the same index of item_ids."
        ),
    ),
]


class _Address(_Arguments):
    address1: str = Field(
        min_length=1, description="First line, such as '123 Main St'."
    )
    address2: str = Field(description="Second line, such as 'Apt 1', or ''.")
    city: str = Field(min_length=1, description="City, such as 'San Francisco'.")
    state: str = Field(min_length=1, description="State, such as 'CA'.")
    country: str = Field(min_length=1, description="Country, such as 'USA'.")
    zip: str = Field(min_length=1, description="Zip code, such as '12345'.")

    def values(self) -> tuple[str, ...]:
        return (
            self.address1,
            self.address2,
            self.city,
            self.state,
            self.country,
            self.zip,
        )


def _cents(amount: float) -> float:
    # Adding 0.0 turns -0.0 into 0.0, so a zero difference never shows as "-0.0".
    return round(amount, 2) + 0.0


def _order_row(conn: sqlite3.Connection, order_id: str) -> sqlite3.Row:
    row = conn.execute(
        "SELECT * FROM orders WHERE order_id = ?", (order_id,)
    ).fetchone()
    if row is None:
        hint = "" if order_id.startswith("#") else " (order ids start with '#')"
        raise ToolError(
            f"order {order_id!r} not found{hint}; order ids look like '#W0000000' "
            "and are listed by get_user_details"
        )
    return row


def _require_user(conn: sqlite3.Connection, user_id: str) -> None:
    row = conn.execute("SELECT 1 FROM users WHERE user_id = ?", (user_id,)).fetchone()
    if row is None:
        raise ToolError(
            f"user {user_id!r} not found; get the user id from find_user_id_by_email "
            "or find_user_id_by_name_zip"
        )


def _payment_method(
    conn: sqlite3.Connection, user_id: str, payment_method_id: str
) -> sqlite3.Row:
    row = conn.execute(
        "SELECT * FROM payment_methods WHERE payment_method_id = ? AND user_id = ?",
        (payment_method_id, user_id),
    ).fetchone()
    if row is None:
        raise ToolError(
            f"payment method {payment_method_id!r} not found for user {user_id!r}; "
            "use one of the payment methods listed by get_user_details"
        )
    return row


def _payment_history(conn: sqlite3.Connection, order_id: str) -> list[sqlite3.Row]:
    return conn.execute(
        "SELECT * FROM payment_transactions WHERE order_id = ? ORDER BY position",
        (order_id,),
    ).fetchall()


def _add_to_gift_card(
    conn: sqlite3.Connection, method: sqlite3.Row, amount: float
) -> None:
    """Move a gift card's balance by `amount` (negative to charge it), in cents."""
    balance = conn.execute(
        "SELECT balance FROM payment_methods WHERE payment_method_id = ?",
        (method["payment_method_id"],),
    ).fetchone()[0]
    conn.execute(
        "UPDATE payment_methods SET balance = ? WHERE payment_method_id = ?",
        (_cents(balance + amount), method["payment_method_id"]),
    )


def _require_gift_card_covers(method: sqlite3.Row, amount: float) -> None:
    if method["source"] == "gift_card" and method["balance"] < amount:
        raise ToolError(
            f"gift card {method['payment_method_id']!r} has a balance of "
            f"{method['balance']:.2f}, less than the {amount:.2f} to pay; "
            "choose another payment method"
        )


def _require_status(
    order: sqlite3.Row, allowed: Callable[[str], bool], rule: str
) -> None:
    if not allowed(order["status"]):
        raise ToolError(
            f"order {order['order_id']!r} has status {order['status']!r}; {rule}"
        )


def _pair_items(
    conn: sqlite3.Connection,
    order_id: str,
    item_ids: list[str],
    new_item_ids: list[str],
) -> tuple[list[tuple[sqlite3.Row, sqlite3.Row]], float]:
    """Match each old item to a distinct order line and each new id to its variant.

    Returns the (order line, new variant) pairs and the price difference, new
    minus old, rounded to cents.
    """
    if len(item_ids) != len(new_item_ids):
        raise ToolError(
            f"item_ids has {len(item_ids)} entries but new_item_ids has "
            f"{len(new_item_ids)}; give exactly one new item for each old item"
        )
    lines = conn.execute(
        "SELECT * FROM order_items WHERE order_id = ? ORDER BY position", (order_id,)
    ).fetchall()
    _require_items_in_order(order_id, lines, item_ids)

    unclaimed = list(lines)
    pairs = []
    for old_id, new_id in zip(item_ids, new_item_ids):
        line = next(line for line in unclaimed if line["item_id"] == old_id)
        unclaimed.remove(line)
        if new_id == old_id:
            raise ToolError(
                f"new item {new_id!r} is the item already in the order; choose a "
                f"different option of product {line['product_id']!r} ({line['name']})"
            )
        variant = conn.execute(
            "SELECT * FROM variants WHERE item_id = ?", (new_id,)
        ).fetchone()
        if variant is None or variant["product_id"] != line["product_id"]:
            raise ToolError(
                f"new item {new_id!r} is not an option of product "
                f"{line['product_id']!r} ({line['name']}), which item {old_id!r} "
                "belongs to; an item can only change to another option of the same "
                "product, listed by get_product_details"
            )
        if not variant["available"]:
            raise ToolError(
                f"new item {new_id!r} is not available; choose an available option of "
                f"product {line['product_id']!r} from get_product_details"
            )
        pairs.append((line, variant))
    difference = _cents(
        sum(variant["price"] - line["price"] for line, variant in pairs)
    )
    return pairs, difference


def _require_items_in_order(
    order_id: str, lines: list[sqlite3.Row], item_ids: list[str]
) -> None:
    in_order = Counter(line["item_id"] for line in lines)
    for item_id, requested in Counter(item_ids).items():
        if requested > in_order[item_id]:
            raise ToolError(
                f"item {item_id!r} is listed {requested} time(s) but order "
                f"{order_id!r} contains it {in_order[item_id]} time(s); use the item "
                "ids shown by get_order_details"
            )


def _order_result(conn: sqlite3.Connection, order_id: str) -> dict[str, Any]:
    return read_orders(conn, order_id)[order_id]


# Reads


class FindUserIdByEmailArguments(_Arguments):
    email: str = Field(min_length=1, description="Email, such as 'name@example.com'.")


@_tool(
    ToolSpec(
        name="find_user_id_by_email",
        description=(
            "Find a customer's user id from their email address (case-insensitive). "
            "Use this first to authenticate the customer; returns the user id."
        ),
        args_schema=FindUserIdByEmailArguments,
        access="read",
        scope="users:read",
        risk="low",
        irreversible=False,
    )
)
def _find_user_id_by_email(
    conn: sqlite3.Connection, args: FindUserIdByEmailArguments
) -> str:
    row = conn.execute(
        "SELECT user_id FROM users WHERE lower(email) = lower(?)"
        " ORDER BY rowid LIMIT 1",
        (args.email,),
    ).fetchone()
    if row is None:
        raise ToolError(
            f"no user has email {args.email!r}; check the spelling with the customer "
            "or use find_user_id_by_name_zip"
        )
    return row["user_id"]


class FindUserIdByNameZipArguments(_Arguments):
    first_name: str = Field(min_length=1, description="First name, such as 'John'.")
    last_name: str = Field(min_length=1, description="Last name, such as 'Doe'.")
    zip: str = Field(
        min_length=1,
        description="Zip code of the default address, such as '12345'.",
    )


@_tool(
    ToolSpec(
        name="find_user_id_by_name_zip",
        description=(
            "Find a customer's user id from first name, last name (both "
            "case-insensitive) and the zip code of their default address. Use it "
            "when the customer cannot give an email that find_user_id_by_email "
            "knows; returns the user id."
        ),
        args_schema=FindUserIdByNameZipArguments,
        access="read",
        scope="users:read",
        risk="low",
        irreversible=False,
    )
)
def _find_user_id_by_name_zip(
    conn: sqlite3.Connection, args: FindUserIdByNameZipArguments
) -> str:
    first, last = args.first_name.casefold(), args.last_name.casefold()
    for row in conn.execute(
        "SELECT user_id, first_name, last_name FROM users WHERE zip = ? ORDER BY rowid",
        (args.zip,),
    ):
        same_first = row["first_name"].casefold() == first
        if same_first and row["last_name"].casefold() == last:
            return row["user_id"]
    raise ToolError(
        f"no user named {args.first_name!r} {args.last_name!r} has zip {args.zip!r}; "
        "check the spelling and zip code with the customer, or use "
        "find_user_id_by_email"
    )


class GetUserDetailsArguments(_Arguments):
    user_id: UserId


@_tool(
    ToolSpec(
        name="get_user_details",
        description=(
            "Get a user's profile: name, email, default address, payment methods "
            "(with gift card balances) and the ids of their orders."
        ),
        args_schema=GetUserDetailsArguments,
        access="read",
        scope="users:read",
        risk="low",
        irreversible=False,
    )
)
def _get_user_details(conn: sqlite3.Connection, args: GetUserDetailsArguments) -> dict:
    _require_user(conn, args.user_id)
    return read_users(conn, args.user_id)[args.user_id]


class GetOrderDetailsArguments(_Arguments):
    order_id: OrderId


@_tool(
    ToolSpec(
        name="get_order_details",
        description=(
            "Get an order: its status, shipping address, items with prices and "
            "options, fulfillments and payment history. Check the status before "
            "any change to the order."
        ),
        args_schema=GetOrderDetailsArguments,
        access="read",
        scope="orders:read",
        risk="low",
        irreversible=False,
    )
)
def _get_order_details(
    conn: sqlite3.Connection, args: GetOrderDetailsArguments
) -> dict:
    _order_row(conn, args.order_id)
    return _order_result(conn, args.order_id)


class GetProductDetailsArguments(_Arguments):
    product_id: ProductId


@_tool(
    ToolSpec(
        name="get_product_details",
        description=(
            "Get a product type with all its items (variants): each item's options, "
            "price and availability. Takes a product id, not an item id."
        ),
        args_schema=GetProductDetailsArguments,
        access="read",
        scope="products:read",
        risk="low",
        irreversible=False,
    )
)
def _get_product_details(
    conn: sqlite3.Connection, args: GetProductDetailsArguments
) -> dict:
    products = read_products(conn, args.product_id)
    if args.product_id in products:
        return products[args.product_id]
    variant = conn.execute(
        "SELECT product_id FROM variants WHERE item_id = ?", (args.product_id,)
    ).fetchone()
    if variant is not None:
        raise ToolError(
            f"{args.product_id!r} is an item id, not a product id; its product id is "
            f"{variant['product_id']!r}"
        )
    raise ToolError(
        f"product {args.product_id!r} not found; list_all_product_types returns every "
        "product id"
    )


class GetItemDetailsArguments(_Arguments):
    item_id: ItemId


@_tool(
    ToolSpec(
        name="get_item_details",
        description=(
            "Get one item (a variant of a product): its options, price and whether "
            "it is available. Takes an item id, not a product id."
        ),
        args_schema=GetItemDetailsArguments,
        access="read",
        scope="products:read",
        risk="low",
        irreversible=False,
    )
)
def _get_item_details(conn: sqlite3.Connection, args: GetItemDetailsArguments) -> dict:
    row = conn.execute(
        "SELECT * FROM variants WHERE item_id = ?", (args.item_id,)
    ).fetchone()
    if row is not None:
        return variant_from_row(row)
    product = conn.execute(
        "SELECT 1 FROM products WHERE product_id = ?", (args.item_id,)
    ).fetchone()
    if product is not None:
        raise ToolError(
            f"{args.item_id!r} is a product id, not an item id; get_product_details "
            "lists its items"
        )
    raise ToolError(
        f"item {args.item_id!r} not found; item ids are listed by get_product_details "
        "and get_order_details"
    )


class ListAllProductTypesArguments(_Arguments):
    pass


@_tool(
    ToolSpec(
        name="list_all_product_types",
        description=(
            "List every product type in the store as a mapping from product name to "
            "product id, sorted by name."
        ),
        args_schema=ListAllProductTypesArguments,
        access="read",
        scope="products:read",
        risk="low",
        irreversible=False,
    )
)
def _list_all_product_types(
    conn: sqlite3.Connection, args: ListAllProductTypesArguments
) -> dict[str, str]:
    rows = conn.execute("SELECT name, product_id FROM products ORDER BY name")
    return {row["name"]: row["product_id"] for row in rows}


# Writes


class CancelPendingOrderArguments(_Arguments):
    order_id: OrderId
    reason: CancelReason = Field(
        description="Why the customer cancels; only these two reasons are accepted."
    )


@_tool(
    ToolSpec(
        name="cancel_pending_order",
        description=(
            "Cancel an order whose status is 'pending'. Every payment is refunded to "
            "the method it was paid with: at once for a gift card, in 5 to 7 "
            "business days otherwise. Needs the customer's explicit confirmation of "
            "the order id and reason first. Returns the cancelled order."
        ),
        args_schema=CancelPendingOrderArguments,
        access="write",
        scope="orders:cancel",
        risk="high",
        irreversible=True,
        claims=(
            "cancel+ed",
            r"cancel+ation (?:is |has been |was )?(?:complete|completed|confirmed|done|processed|successful)",
            r"refund(?:ed| (?:has been|was|is) (?:issued|processed|sent|initiated|on its way))",
        ),
    )
)
def _cancel_pending_order(
    conn: sqlite3.Connection, args: CancelPendingOrderArguments
) -> dict:
    order = _order_row(conn, args.order_id)
    _require_status(
        order,
        lambda status: status == "pending",
        "only a 'pending' order can be cancelled",
    )
    # NOTE: each method gets back its net amount (payments minus refunds). For
    # a single payment that is one refund of the same amount to the same method.
    # After a payment-method change, the first method was already refunded, so
    # it gets nothing again.
    net_by_method: dict[str, float] = {}
    for entry in _payment_history(conn, args.order_id):
        sign = 1 if entry["transaction_type"] == "payment" else -1
        method_id = entry["payment_method_id"]
        net_so_far = net_by_method.get(method_id, 0.0)
        net_by_method[method_id] = net_so_far + sign * entry["amount"]
    for method_id, net in net_by_method.items():
        amount = _cents(net)
        if amount <= 0:
            continue
        append_transaction(
            conn,
            args.order_id,
            transaction_type="refund",
            amount=amount,
            payment_method_id=method_id,
        )
        method = _payment_method(conn, order["user_id"], method_id)
        if method["source"] == "gift_card":
            _add_to_gift_card(conn, method, amount)
    conn.execute(
        "UPDATE orders SET status = 'cancelled', cancel_reason = ? WHERE order_id = ?",
        (args.reason, args.order_id),
    )
    return _order_result(conn, args.order_id)


class ModifyPendingOrderAddressArguments(_Address):
    order_id: OrderId


@_tool(
    ToolSpec(
        name="modify_pending_order_address",
        description=(
            "Replace the shipping address of an order whose status is 'pending' or "
            "'pending (item modified)'. Needs the customer's explicit confirmation of "
            "the new address first. Returns the updated order."
        ),
        args_schema=ModifyPendingOrderAddressArguments,
        access="write",
        scope="orders:modify",
        risk="medium",
        irreversible=False,
        claims=("updated", "changed", "modified"),
    )
)
def _modify_pending_order_address(
    conn: sqlite3.Connection, args: ModifyPendingOrderAddressArguments
) -> dict:
    order = _order_row(conn, args.order_id)
    _require_status(
        order,
        lambda status: status.startswith("pending"),
        "only a pending order's shipping address can be changed",
    )
    conn.execute(
        "UPDATE orders SET address1 = ?, address2 = ?, city = ?, state = ?,"
        " country = ?, zip = ? WHERE order_id = ?",
        (*args.values(), args.order_id),
    )
    return _order_result(conn, args.order_id)


class ModifyPendingOrderItemsArguments(_Arguments):
    order_id: OrderId
    item_ids: ItemIds
    new_item_ids: NewItemIds
    payment_method_id: PaymentMethodId = Field(
        description=(
            "Payment method of the user that pays a positive price difference or "
            "receives a negative one; a gift card must cover a positive difference."
        )
    )


@_tool(
    ToolSpec(
        name="modify_pending_order_items",
        description=(
            "Change items of an order whose status is exactly 'pending' to other "
            "available options of the same products. The price difference is "
            "charged to or refunded on the given payment method. Works once per "
            "order: the status becomes 'pending (item modified)', so collect every "
            "item to change and get explicit confirmation first. Returns the order."
        ),
        args_schema=ModifyPendingOrderItemsArguments,
        access="write",
        scope="orders:modify",
        risk="high",
        irreversible=True,
        claims=("updated", "changed", "modified", "swapped"),
    )
)
def _modify_pending_order_items(
    conn: sqlite3.Connection, args: ModifyPendingOrderItemsArguments
) -> dict:
    order = _order_row(conn, args.order_id)
    _require_status(
        order,
        lambda status: status == "pending",
        "items can be changed only while the status is exactly 'pending', and so "
        "only once per order",
    )
    pairs, difference = _pair_items(
        conn, args.order_id, args.item_ids, args.new_item_ids
    )
    method = _payment_method(conn, order["user_id"], args.payment_method_id)
    _require_gift_card_covers(method, difference)

    append_transaction(
        conn,
        args.order_id,
        transaction_type="payment" if difference > 0 else "refund",
        amount=abs(difference),
        payment_method_id=args.payment_method_id,
    )
    if method["source"] == "gift_card":
        _add_to_gift_card(conn, method, -difference)
    for line, variant in pairs:
        conn.execute(
            "UPDATE order_items SET item_id = ?, price = ?, options = ?"
            " WHERE order_id = ? AND position = ?",
            (
                variant["item_id"],
                variant["price"],
                variant["options"],
                args.order_id,
                line["position"],
            ),
        )
    conn.execute(
        "UPDATE orders SET status = 'pending (item modified)' WHERE order_id = ?",
        (args.order_id,),
    )
    return _order_result(conn, args.order_id)


class ModifyPendingOrderPaymentArguments(_Arguments):
    order_id: OrderId
    payment_method_id: PaymentMethodId = Field(
        description=(
            "The user's payment method to pay the order with instead; it must differ "
            "from the current one, and a gift card must cover the whole amount."
        )
    )


@_tool(
    ToolSpec(
        name="modify_pending_order_payment",
        description=(
            "Pay a pending order with another payment method of the same user. The "
            "full amount is charged to the new method and refunded to the old one "
            "(at once for a gift card, in 5 to 7 business days otherwise). Only for "
            "an order paid by a single payment; needs explicit confirmation first. "
            "Returns the updated order."
        ),
        args_schema=ModifyPendingOrderPaymentArguments,
        access="write",
        scope="orders:modify",
        risk="high",
        irreversible=True,
        claims=("updated", "changed", "modified", "switched"),
    )
)
def _modify_pending_order_payment(
    conn: sqlite3.Connection, args: ModifyPendingOrderPaymentArguments
) -> dict:
    order = _order_row(conn, args.order_id)
    _require_status(
        order,
        lambda status: status.startswith("pending"),
        "only a pending order's payment method can be changed",
    )
    method = _payment_method(conn, order["user_id"], args.payment_method_id)
    history = _payment_history(conn, args.order_id)
    if len(history) != 1 or history[0]["transaction_type"] != "payment":
        raise ToolError(
            f"order {args.order_id!r} has {len(history)} payment history entries; the "
            "payment method can be changed only for an order paid by exactly one "
            "payment, so transfer this request to a human agent"
        )
    original = history[0]
    if original["payment_method_id"] == args.payment_method_id:
        raise ToolError(
            f"order {args.order_id!r} is already paid with {args.payment_method_id!r}; "
            "choose a different payment method"
        )
    amount = original["amount"]
    _require_gift_card_covers(method, amount)

    for transaction_type, method_id in (
        ("payment", args.payment_method_id),
        ("refund", original["payment_method_id"]),
    ):
        append_transaction(
            conn,
            args.order_id,
            transaction_type=transaction_type,
            amount=amount,
            payment_method_id=method_id,
        )
    if method["source"] == "gift_card":
        _add_to_gift_card(conn, method, -amount)
    old_method = _payment_method(conn, order["user_id"], original["payment_method_id"])
    if old_method["source"] == "gift_card":
        _add_to_gift_card(conn, old_method, amount)
    return _order_result(conn, args.order_id)


class ModifyUserAddressArguments(_Address):
    user_id: UserId


@_tool(
    ToolSpec(
        name="modify_user_address",
        description=(
            "Replace a user's default address. Existing orders keep their shipping "
            "address. Needs explicit confirmation first. Returns the updated user."
        ),
        args_schema=ModifyUserAddressArguments,
        access="write",
        scope="users:write",
        risk="medium",
        irreversible=False,
        claims=("updated", "changed", "modified"),
    )
)
def _modify_user_address(
    conn: sqlite3.Connection, args: ModifyUserAddressArguments
) -> dict:
    _require_user(conn, args.user_id)
    conn.execute(
        "UPDATE users SET address1 = ?, address2 = ?, city = ?, state = ?,"
        " country = ?, zip = ? WHERE user_id = ?",
        (*args.values(), args.user_id),
    )
    return read_users(conn, args.user_id)[args.user_id]


class ReturnDeliveredOrderItemsArguments(_Arguments):
    order_id: OrderId
    item_ids: ItemIds
    payment_method_id: PaymentMethodId = Field(
        description=(
            "Where the refund goes: the order's original payment method or a gift "
            "card of the user."
        )
    )


@_tool(
    ToolSpec(
        name="return_delivered_order_items",
        description=(
            "Request the return of items of an order whose status is 'delivered'. "
            "The refund goes to the original payment method or a gift card of the "
            "user. The status becomes 'return requested' and the customer gets return "
            "instructions by email. Works once per order; needs explicit confirmation "
            "of the order and items first. Returns the updated order."
        ),
        args_schema=ReturnDeliveredOrderItemsArguments,
        access="write",
        scope="orders:return",
        risk="high",
        irreversible=True,
        claims=("returned", r"refund(?:ed| (?:has been|was|is) (?:issued|processed|sent|initiated|on its way))"),
    )
)
def _return_delivered_order_items(
    conn: sqlite3.Connection, args: ReturnDeliveredOrderItemsArguments
) -> dict:
    order = _order_row(conn, args.order_id)
    _require_status(
        order,
        lambda status: status == "delivered",
        "only a 'delivered' order can be returned",
    )
    method = _payment_method(conn, order["user_id"], args.payment_method_id)
    history = _payment_history(conn, args.order_id)
    original_id = history[0]["payment_method_id"] if history else None
    if method["source"] != "gift_card" and args.payment_method_id != original_id:
        raise ToolError(
            f"refund method {args.payment_method_id!r} is neither the original "
            f"payment method {original_id!r} of order {args.order_id!r} nor a gift "
            "card; refund to the original method or to one of the user's gift cards"
        )
    lines = conn.execute(
        "SELECT item_id FROM order_items WHERE order_id = ?", (args.order_id,)
    ).fetchall()
    _require_items_in_order(args.order_id, lines, args.item_ids)
    conn.execute(
        "UPDATE orders SET status = 'return requested', return_items = ?,"
        " return_payment_method_id = ? WHERE order_id = ?",
        (json.dumps(sorted(args.item_ids)), args.payment_method_id, args.order_id),
    )
    return _order_result(conn, args.order_id)


class ExchangeDeliveredOrderItemsArguments(_Arguments):
    order_id: OrderId
    item_ids: ItemIds
    new_item_ids: NewItemIds
    payment_method_id: PaymentMethodId = Field(
        description=(
            "Payment method of the user that pays a positive price difference or "
            "receives a negative one; a gift card must cover a positive difference."
        )
    )


@_tool(
    ToolSpec(
        name="exchange_delivered_order_items",
        description=(
            "Request an exchange of items of an order whose status is 'delivered' "
            "for other available options of the same products. The status becomes "
            "'exchange requested' and the price difference is settled on the given "
            "payment method when the exchange is processed. Works once per order, "
            "so collect every item first; needs explicit confirmation. Returns the "
            "updated order."
        ),
        args_schema=ExchangeDeliveredOrderItemsArguments,
        access="write",
        scope="orders:exchange",
        risk="high",
        irreversible=True,
        claims=("exchanged", "swapped"),
    )
)
def _exchange_delivered_order_items(
    conn: sqlite3.Connection, args: ExchangeDeliveredOrderItemsArguments
) -> dict:
    order = _order_row(conn, args.order_id)
    _require_status(
        order,
        lambda status: status == "delivered",
        "only a 'delivered' order can be exchanged",
    )
    _, difference = _pair_items(conn, args.order_id, args.item_ids, args.new_item_ids)
    method = _payment_method(conn, order["user_id"], args.payment_method_id)
    _require_gift_card_covers(method, difference)
    conn.execute(
        "UPDATE orders SET status = 'exchange requested', exchange_items = ?,"
        " exchange_new_items = ?, exchange_payment_method_id = ?,"
        " exchange_price_difference = ? WHERE order_id = ?",
        (
            json.dumps(sorted(args.item_ids)),
            json.dumps(sorted(args.new_item_ids)),
            args.payment_method_id,
            difference,
            args.order_id,
        ),
    )
    return _order_result(conn, args.order_id)


# Tools that touch no record


class CalculateArguments(_Arguments):
    expression: str = Field(
        min_length=1,
        max_length=_MAX_EXPRESSION_LENGTH,
        description=(
            "Arithmetic on decimal numbers with + - * / and parentheses, such as "
            "'(49.99 - 12.5) * 2'."
        ),
    )


@_tool(
    ToolSpec(
        name="calculate",
        description=(
            "Evaluate an arithmetic expression (numbers, + - * /, parentheses, "
            "spaces) and return the result rounded to 2 decimals. Use it for sums "
            "and price differences instead of computing them yourself."
        ),
        args_schema=CalculateArguments,
        access="none",
        scope="calc",
        risk="low",
        irreversible=False,
    )
)
def _calculate(conn: None, args: CalculateArguments) -> float:
    expression = args.expression
    invalid = sorted(set(expression) - _CALCULATOR_CHARACTERS)
    if invalid:
        raise ToolError(
            f"expression {expression!r} contains {''.join(invalid)!r}; only digits, "
            "'.', '+', '-', '*', '/', parentheses and spaces are allowed"
        )
    # ast.parse only builds a syntax tree; nothing in the expression runs.
    try:
        tree = ast.parse(expression, mode="eval")
    except SyntaxError as error:
        raise ToolError(
            f"expression {expression!r} is not valid arithmetic ({error.msg}); "
            "check the numbers, operators and parentheses"
        ) from error
    try:
        result = _evaluate(tree.body, expression)
    except ZeroDivisionError as error:
        raise ToolError(f"expression {expression!r} divides by zero") from error
    except OverflowError as error:
        raise ToolError(f"expression {expression!r} overflows a float") from error
    if not math.isfinite(result):
        raise ToolError(f"expression {expression!r} has no finite result")
    return _cents(result)


def _evaluate(node: ast.expr, expression: str) -> float:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return float(node.value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.UAdd, ast.USub)):
        operand = _evaluate(node.operand, expression)
        return -operand if isinstance(node.op, ast.USub) else operand
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY_OPERATORS:
        apply = _BINARY_OPERATORS[type(node.op)]
        left = _evaluate(node.left, expression)
        return apply(left, _evaluate(node.right, expression))
    raise ToolError(
        f"expression {expression!r} uses {ast.unparse(node)!r}, which is not plain "
        "arithmetic; use only + - * / between numbers ('**' and '//' are not allowed)"
    )


class TransferToHumanAgentsArguments(_Arguments):
    summary: str = Field(
        min_length=1,
        description=(
            "What the customer needs and why it cannot be done with these tools."
        ),
    )


@_tool(
    ToolSpec(
        name="transfer_to_human_agents",
        description=(
            "Hand the conversation to a human agent, with a summary of the customer's "
            "issue. Use it only when the customer asks for a person or the request is "
            "outside what these tools and the policy allow. Stop acting afterwards."
        ),
        args_schema=TransferToHumanAgentsArguments,
        access="none",
        scope="handoff",
        risk="low",
        irreversible=False,
    )
)
def _transfer_to_human_agents(conn: None, args: TransferToHumanAgentsArguments) -> str:
    return "Transfer successful"


def _validate(spec: ToolSpec, arguments: Any) -> BaseModel:
    if not isinstance(arguments, dict):
        raise ToolError(
            f"arguments for {spec.name!r} must be a JSON object, got "
            f"{type(arguments).__name__}"
        )
    try:
        return spec.args_schema.model_validate(arguments)
    except pydantic.ValidationError as error:
        problems = []
        for detail in error.errors(include_url=False):
            field = ".".join(str(part) for part in detail["loc"]) or "(arguments)"
            problem = f"{field}: {detail['msg']}"
            if detail["type"] not in ("missing", "extra_forbidden"):
                problem += f" (got {_INPUT_REPR.repr(detail['input'])})"
            problems.append(problem)
        expected = ", ".join(spec.args_schema.model_fields) or "no arguments"
        raise ToolError(
            f"invalid arguments for {spec.name!r}: {'; '.join(problems)}; "
            f"expected: {expected}"
        ) from error


def _arguments_digest(arguments: BaseModel) -> str:
    canonical = json.dumps(
        arguments.model_dump(mode="json"), sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


class RetailStore:
    """The retail system of record in one SQLite file, safe to share across processes.

    Every call opens its own connection, so one instance can serve many
    threads, and instances in separate processes can share the file. WAL mode
    lets reads run beside a writer. Writers wait for SQLite's write lock for
    up to `busy_timeout_s` each.
    """

    def __init__(self, sqlite_path: Path | str, *, busy_timeout_s: float = 5.0):
        """Attach to a database made by `build_database`.

        Raises:
            FileNotFoundError: the file does not exist.
            ValueError: the file is not a retail database of the current schema.
        """
        self.sqlite_path = Path(sqlite_path)
        self.busy_timeout_s = busy_timeout_s
        with self._open():
            pass

    def _open(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        return open_database(self.sqlite_path, busy_timeout_s=self.busy_timeout_s)

    def call(
        self, tool: str, arguments: dict, *, idempotency_key: str | None = None
    ) -> Any:
        """Run one tool call and return its JSON-compatible result.

        A read runs in one read transaction; a write runs in one `BEGIN
        IMMEDIATE` transaction that either commits completely or changes
        nothing. With an `idempotency_key`, a write stores its result under
        the key in the same transaction, and a later call with that key
        returns the stored result without running again. Reads and tools
        that touch no record ignore the key.

        Raises:
            ToolError: unknown tool, invalid arguments, a tool contract
                failure, or an idempotency key reused with a different tool
                or different arguments.
            sqlite3.OperationalError: the database stayed locked for longer
                than `busy_timeout_s`.
        """
        spec = RETAIL_TOOLS.get(tool)
        if spec is None:
            raise ToolError(
                f"unknown tool {tool!r}; available tools: {', '.join(RETAIL_TOOLS)}"
            )
        arguments_model = _validate(spec, arguments)
        handler = _HANDLERS[tool]
        if spec.access == "none":
            return handler(None, arguments_model)

        with self._open() as conn:
            if spec.access == "read":
                conn.execute("BEGIN")
                try:
                    return handler(conn, arguments_model)
                finally:
                    conn.execute("ROLLBACK")

            conn.execute("BEGIN IMMEDIATE")
            try:
                digest = _arguments_digest(arguments_model)
                if idempotency_key is not None:
                    stored = self._stored_result(conn, idempotency_key, tool, digest)
                    if stored is not None:
                        conn.execute("ROLLBACK")
                        logger.info(
                            "returned stored result tool=%s idempotency_key=%s",
                            tool,
                            idempotency_key,
                        )
                        return stored[0]
                result = handler(conn, arguments_model)
                if idempotency_key is not None:
                    conn.execute(
                        "INSERT INTO effects (idempotency_key, tool, arguments_digest,"
                        " result) VALUES (?, ?, ?, ?)",
                        (idempotency_key, tool, digest, json.dumps(result)),
                    )
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return result

    @staticmethod
    def _stored_result(
        conn: sqlite3.Connection, key: str, tool: str, digest: str
    ) -> tuple[Any] | None:
        row = conn.execute(
            "SELECT tool, arguments_digest, result FROM effects"
            " WHERE idempotency_key = ?",
            (key,),
        ).fetchone()
        if row is None:
            return None
        if row["tool"] != tool or row["arguments_digest"] != digest:
            raise ToolError(
                f"idempotency key {key!r} was already used for a {row['tool']!r} call "
                f"with other arguments; use a new key for a new action"
            )
        return (json.loads(row["result"]),)

    def dump(self) -> dict[str, dict]:
        """Return the whole database in db.json's shape: users, orders, products."""
        with self._open() as conn:
            return dump_database(conn)

    def checksum(self) -> str:
        """Return the SHA-256 hex digest of the canonical JSON of `dump()`.

        The `effects` table is not part of the dump, so storing an idempotency
        record alone does not change the checksum.
        """
        canonical = json.dumps(self.dump(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def effect_count(self, idempotency_key: str) -> int:
        """Return how many write effects are stored under `idempotency_key` (0 or 1)."""
        with self._open() as conn:
            return conn.execute(
                "SELECT count(*) FROM effects WHERE idempotency_key = ?",
                (idempotency_key,),
            ).fetchone()[0]
