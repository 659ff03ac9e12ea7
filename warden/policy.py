"""Policy engine: the retail rules, evaluated in code on concrete arguments.

The model proposes; this module decides. Every verdict names the rule that
produced it. Rules read the live database through the read tools, so a check
run again just before execution sees what changed while an approval waited.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tools.base import ToolError, ToolSpec
from warden.actions import PlanStep, PolicyVerdict

POLICY_VERSION = "retail-1"

# Scopes a support chat channel gets by default: every retail tool.
DEFAULT_SCOPES = frozenset(
    {
        "users:read",
        "users:write",
        "orders:read",
        "orders:cancel",
        "orders:modify",
        "orders:return",
        "orders:exchange",
        "products:read",
        "handoff",
        "calc",
    }
)

# Reads of the catalogue carry no customer data and need no authentication.
_PUBLIC_READS = frozenset(
    {"get_product_details", "get_item_details", "list_all_product_types", "calculate"}
)
AUTH_LOOKUPS = frozenset({"find_user_id_by_email", "find_user_id_by_name_zip"})


@dataclass(frozen=True)
class PolicyConfig:
    """Scopes a deployment grants and the amount above which two approvers are required."""

    granted_scopes: frozenset[str] = DEFAULT_SCOPES
    approval_threshold: float = 500.0
    version: str = POLICY_VERSION


def _allow(rule: str, reason: str) -> PolicyVerdict:
    return PolicyVerdict(verdict="allow", rule=rule, reason=reason)


def _deny(rule: str, reason: str) -> PolicyVerdict:
    return PolicyVerdict(verdict="deny", rule=rule, reason=reason)


@dataclass
class PolicyEngine:
    """Evaluates plan steps for one conversation against the live store.

    ``store`` is anything with ``call(tool, arguments)`` that runs read tools,
    such as ``tools.retail.RetailStore``.
    """

    store: Any
    tools: Mapping[str, ToolSpec]
    config: PolicyConfig = field(default_factory=PolicyConfig)

    @property
    def version(self) -> str:
        return self.config.version

    def check(self, step: PlanStep, customer_id: str | None, conversation: str | None = None) -> PolicyVerdict:
        """Return the verdict on ``step`` for the authenticated ``customer_id``.

        ``conversation`` is the customer's own text so far; when given, an
        authentication lookup may use only identifiers that appear in it.
        """
        spec = self.tools.get(step.tool)
        if spec is None:
            return _deny("tool.unknown", f"no tool is named {step.tool!r}")
        if spec.scope not in self.config.granted_scopes:
            return _deny(
                "scope.not_granted",
                f"tool {spec.name!r} needs scope {spec.scope!r}, which this deployment does not grant",
            )
        if spec.access != "write":
            if spec.name in AUTH_LOOKUPS and conversation is not None:
                lowered = conversation.lower()
                unseen = [v for v in step.arguments.values() if str(v).lower() not in lowered]
                if unseen:
                    return _deny(
                        "auth.identity_not_given",
                        f"authentication must use identifiers the customer wrote; {unseen!r} do not appear",
                    )
            return self._check_read(spec, step.arguments, customer_id)
        if customer_id is None:
            return _deny(
                "auth.required",
                "the customer must be authenticated by email, or by name and zip code, before any change",
            )
        try:
            return self._check_write(spec, step.arguments, customer_id)
        except ToolError as error:
            return _deny("record.not_found", str(error))

    def _check_read(self, spec: ToolSpec, arguments: dict, customer_id: str | None) -> PolicyVerdict:
        if spec.name in AUTH_LOOKUPS or spec.name in _PUBLIC_READS or spec.access == "none":
            return _allow("read.open", f"{spec.name} reveals no customer data")
        if customer_id is None:
            return _deny(
                "auth.required",
                "the customer must be authenticated before their account or orders are read",
            )
        if spec.name == "get_user_details" and arguments.get("user_id") != customer_id:
            return _deny("ownership.user", "only the authenticated customer's own account may be read")
        if spec.name == "get_order_details":
            try:
                order = self.store.call("get_order_details", {"order_id": arguments.get("order_id")})
            except ToolError as error:
                return _deny("record.not_found", str(error))
            if order["user_id"] != customer_id:
                return _deny("ownership.order", f"order {order['order_id']} belongs to another customer")
        return _allow("read.own_data", "the customer reads their own data")

    def _check_write(self, spec: ToolSpec, arguments: dict, customer_id: str) -> PolicyVerdict:
        user = self.store.call("get_user_details", {"user_id": customer_id})
        if spec.name == "modify_user_address":
            if arguments.get("user_id") != customer_id:
                return _deny("ownership.user", "only the authenticated customer's own address may change")
            return self._needs_approval(spec, 0.0)

        order = self.store.call("get_order_details", {"order_id": arguments.get("order_id")})
        if order["user_id"] != customer_id:
            return _deny("ownership.order", f"order {order['order_id']} belongs to another customer")
        status = order["status"]
        rule = _STATUS_RULES[spec.name]
        if not rule[1](status):
            return _deny(rule[0], f"{spec.name} needs {rule[2]}, but order {order['order_id']} is {status!r}")

        method_id = arguments.get("payment_method_id")
        if method_id is not None and method_id not in user["payment_methods"]:
            return _deny("ownership.payment_method", f"payment method {method_id!r} is not the customer's")

        amount = 0.0
        if spec.name == "cancel_pending_order":
            amount = sum(p["amount"] for p in order["payment_history"] if p["transaction_type"] == "payment")
        elif spec.name == "modify_pending_order_payment":
            amount = sum(item["price"] for item in order["items"])
        elif spec.name in ("modify_pending_order_items", "exchange_delivered_order_items", "return_delivered_order_items"):
            verdict, amount = self._check_items(spec.name, order, arguments)
            if verdict is not None:
                return verdict
        if spec.name == "return_delivered_order_items":
            original = {p["payment_method_id"] for p in order["payment_history"] if p["transaction_type"] == "payment"}
            source = user["payment_methods"].get(method_id, {}).get("source")
            if method_id not in original and source != "gift_card":
                return _deny(
                    "refund.original_or_gift_card",
                    f"refunds go to the original payment method or a gift card, not {method_id!r}",
                )
        return self._needs_approval(spec, amount)

    def _check_items(self, tool: str, order: dict, arguments: dict) -> tuple[PolicyVerdict | None, float]:
        in_order = [item["item_id"] for item in order["items"]]
        prices = {item["item_id"]: item["price"] for item in order["items"]}
        products = {item["item_id"]: item["product_id"] for item in order["items"]}
        old_ids = list(arguments.get("item_ids") or [])
        for item_id in old_ids:
            if item_id not in in_order:
                return _deny("items.not_in_order", f"item {item_id!r} is not in order {order['order_id']}"), 0.0
            in_order.remove(item_id)
        if tool == "return_delivered_order_items":
            return None, sum(prices[item_id] for item_id in old_ids)

        new_ids = list(arguments.get("new_item_ids") or [])
        if len(new_ids) != len(old_ids):
            return _deny("items.count_mismatch", "item_ids and new_item_ids must have the same length"), 0.0
        difference = 0.0
        for old_id, new_id in zip(old_ids, new_ids):
            product = self.store.call("get_product_details", {"product_id": products[old_id]})
            variant = product["variants"].get(new_id)
            if variant is None:
                return _deny(
                    "items.same_product",
                    f"new item {new_id!r} is not a variant of product {product['name']!r}",
                ), 0.0
            if new_id == old_id or not variant["available"]:
                return _deny("items.unavailable", f"new item {new_id!r} is the same item or not available"), 0.0
            difference += variant["price"] - prices[old_id]
        return None, abs(difference)

    def _needs_approval(self, spec: ToolSpec, amount: float) -> PolicyVerdict:
        if amount > self.config.approval_threshold:
            return PolicyVerdict(
                verdict="needs_approval",
                rule="approval.two_person",
                reason=(
                    f"moves ${amount:.2f}, above the ${self.config.approval_threshold:.2f} "
                    "threshold: two different reviewers must approve"
                ),
                approvals_required=2,
            )
        reason = "changes the customer's data"
        if spec.irreversible:
            reason = "irreversible change to the customer's data"
        if amount:
            reason += f"; moves ${amount:.2f}"
        return PolicyVerdict(
            verdict="needs_approval", rule="approval.write", reason=reason, approvals_required=1
        )


_STATUS_RULES = {
    "cancel_pending_order": ("status.pending_required", lambda s: s == "pending", "a pending order"),
    "modify_pending_order_items": ("status.pending_required", lambda s: s == "pending", "a pending order whose items were not modified yet"),
    "modify_pending_order_address": ("status.pending_required", lambda s: s.startswith("pending"), "a pending order"),
    "modify_pending_order_payment": ("status.pending_required", lambda s: s.startswith("pending"), "a pending order"),
    "return_delivered_order_items": ("status.delivered_required", lambda s: s == "delivered", "a delivered order"),
    "exchange_delivered_order_items": ("status.delivered_required", lambda s: s == "delivered", "a delivered order"),
}


def status_allows(tool: str, status: str) -> bool:
    """Return whether order tool ``tool`` may act on an order whose status is ``status``."""
    return _STATUS_RULES[tool][1](status)
