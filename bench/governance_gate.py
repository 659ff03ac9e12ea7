"""Replay the retail training tasks' gold actions through the policy and approval gate, then mutate them.

For each of the 74 training tasks, a fresh database copy receives the task's
gold actions in order, as the graph would run them: reads through the policy check
and the store, writes through the policy check, the ledger request, reviewer
approval (``validate_decisions``), the execution-time check and the effect
journal. Before each gold write, every applicable policy violation derived
from it (another customer's order, wrong status, foreign payment method,
changed product, refund to a new method, missing authentication, scope not
granted) is checked at the three points where policy runs: plan time, a
reviewer's edit and just before execution.

Run: .venv/bin/python bench/governance_gate.py [--output bench/results/governance.md]

It starts its own Redis server on a free 127.0.0.1 port and reads the tasks
and database from ../shared/data/tau2/retail.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from graphs.context import SupportContext  # noqa: E402
from tools.base import ToolError  # noqa: E402
from tools.retail import RETAIL_TOOLS, RetailStore, build_database  # noqa: E402
from warden.actions import Decision, PendingAction, PlanStep, action_digest, action_id_for  # noqa: E402
from warden.approvals import validate_decisions  # noqa: E402
from warden.errors import ResumeError  # noqa: E402
from warden.governance import clear_for_execution, register_requests, run_action  # noqa: E402
from warden.journal import EffectJournal  # noqa: E402
from warden.ledger import ApprovalLedger, ApprovalRules  # noqa: E402
from warden.policy import AUTH_LOOKUPS, DEFAULT_SCOPES, PolicyConfig, PolicyEngine, status_allows  # noqa: E402
from warden.redis_server import RedisServer  # noqa: E402

RETAIL_DATA = ROOT.parent / "shared" / "data" / "tau2" / "retail"
REVIEWERS = {"rev-a": "supervisor", "rev-b": "supervisor"}
MUTATIONS = (
    "other_customer",
    "wrong_status",
    "foreign_payment_method",
    "changed_product",
    "refund_to_new_method",
    "missing_authentication",
    "scope_not_granted",
)


@dataclass
class GoldOutcome:
    """Outcome of one gold action at the gate."""

    task_id: str
    index: int
    tool: str
    access: str
    verdict: str
    rule: str
    status: str
    """``done``, ``failed`` (the tool raised) or ``denied`` (policy)."""
    error: str | None = None


@dataclass
class MutantOutcome:
    """Verdicts of the three policy points on one mutated gold write."""

    task_id: str
    index: int
    tool: str
    mutation: str
    plan_verdict: str
    plan_rule: str
    edit_refused: bool
    edit_error: str
    execution_status: str
    execution_rule: str


@dataclass
class GateReport:
    gold: list[GoldOutcome] = field(default_factory=list)
    mutants: list[MutantOutcome] = field(default_factory=list)


def _other_orders(db: dict, customer_id: str) -> list[dict]:
    return [order for order in db["orders"].values() if order["user_id"] != customer_id]


def _mutations(tool: str, arguments: dict, customer_id: str, db: dict) -> Iterator[tuple[str, dict]]:
    """Yield (mutation, arguments) for the violations that apply to one gold write."""
    user = db["users"][customer_id]
    yield "missing_authentication", arguments
    yield "scope_not_granted", arguments
    if tool == "modify_user_address":
        other = next(uid for uid in db["users"] if uid != customer_id)
        yield "other_customer", {**arguments, "user_id": other}
        return

    order = db["orders"][arguments["order_id"]]
    same_status = [o for o in _other_orders(db, customer_id) if o["status"] == order["status"]]
    if same_status:
        yield "other_customer", {**arguments, "order_id": same_status[0]["order_id"]}
    wrong = [db["orders"][oid] for oid in user["orders"] if not status_allows(tool, db["orders"][oid]["status"])]
    if wrong and "item_ids" not in arguments:
        yield "wrong_status", {**arguments, "order_id": wrong[0]["order_id"]}
    elif wrong:
        # Items must stay in the order, so the wrong-status order's own items are used.
        items = [item["item_id"] for item in wrong[0]["items"]][: len(arguments["item_ids"])]
        mutated = {**arguments, "order_id": wrong[0]["order_id"], "item_ids": items}
        if "new_item_ids" in arguments:
            mutated["new_item_ids"] = arguments["new_item_ids"][: len(items)]
        yield "wrong_status", mutated

    if "payment_method_id" in arguments:
        others = db["users"][next(uid for uid in db["users"] if uid != customer_id)]["payment_methods"]
        yield "foreign_payment_method", {**arguments, "payment_method_id": next(iter(others))}
    if "new_item_ids" in arguments:
        old_product = next(item["product_id"] for item in order["items"] if item["item_id"] == arguments["item_ids"][0])
        foreign_item = next(
            item_id
            for product in db["products"].values()
            if product["product_id"] != old_product
            for item_id, variant in product["variants"].items()
            if variant["available"]
        )
        yield "changed_product", {**arguments, "new_item_ids": [foreign_item, *arguments["new_item_ids"][1:]]}
    if tool == "return_delivered_order_items":
        original = {p["payment_method_id"] for p in order["payment_history"] if p["transaction_type"] == "payment"}
        new_methods = [
            method_id for method_id, method in user["payment_methods"].items()
            if method_id not in original and method["source"] != "gift_card"
        ]
        if new_methods:
            yield "refund_to_new_method", {**arguments, "payment_method_id": new_methods[0]}


def _task_customer(actions: list[dict], store: RetailStore) -> str | None:
    """Return the user a task acts for: a gold ``user_id`` argument, else the owner of a gold order."""
    for action in actions:
        if "user_id" in action["arguments"]:
            return action["arguments"]["user_id"]
    for action in actions:
        if "order_id" in action["arguments"]:
            try:
                return store.call("get_order_details", {"order_id": action["arguments"]["order_id"]})["user_id"]
            except ToolError:
                continue
    return None


class _Gate:
    """The graph's governance services for one task's database."""

    def __init__(self, db_path: Path, client: redis.Redis, tenant: str) -> None:
        self.store = RetailStore(db_path)
        self.policy = PolicyEngine(self.store, RETAIL_TOOLS, PolicyConfig())
        self.context = SupportContext(
            store=self.store, tools=RETAIL_TOOLS, chat_model=None, policy=self.policy, tenant=tenant,
            ledger=ApprovalLedger(client, tenant), journal=EffectJournal(client, tenant),
            approval_rules=ApprovalRules(reviewers=REVIEWERS),
        )

    def narrowed(self, scope: str) -> SupportContext:
        config = PolicyConfig(granted_scopes=DEFAULT_SCOPES - {scope})
        return dataclasses.replace(self.context, policy=PolicyEngine(self.store, RETAIL_TOOLS, config))


def _pending(context: SupportContext, thread_id: str, index: int, step: PlanStep) -> PendingAction:
    spec = RETAIL_TOOLS[step.tool]
    verdict = context.policy.check(step, None)
    return PendingAction(
        action_id=action_id_for(thread_id, 1, index, step.tool, step.arguments),
        tool=step.tool, arguments=step.arguments, step_index=index, risk=spec.risk, scope=spec.scope,
        irreversible=spec.irreversible, rationale="gold action", verdict=verdict,
        digest=action_digest(step.tool, step.arguments, index, context.policy.version),
    )


def _approve(context: SupportContext, action: PendingAction, customer_id: str) -> Decision:
    """Approve ``action`` through the reviewer checks and the ledger, with as many reviewers as it needs."""
    collected: dict[str, list[Decision]] = {}
    decision = None
    for reviewer in list(REVIEWERS)[: max(action.verdict.approvals_required, 1)]:
        value = {action.action_id: {"decision": "approve", "reviewer": reviewer}}
        decision = validate_decisions(value, [action], context, customer_id, collected)[action.action_id]
        context.ledger.decide({action.action_id: decision})
        collected.setdefault(action.action_id, []).append(decision)
    return decision


def _check_mutant(gate: _Gate, thread_id: str, index: int, gold: PendingAction, customer_id: str, mutation: str, arguments: dict, task_id: str) -> MutantOutcome:
    context = gate.narrowed(RETAIL_TOOLS[gold.tool].scope) if mutation == "scope_not_granted" else gate.context
    customer = None if mutation == "missing_authentication" else customer_id
    step = PlanStep(tool=gold.tool, arguments=arguments)
    plan = context.policy.check(step, customer)

    # A reviewer edits the gold action into the mutant.
    edit_error = ""
    try:
        value = {gold.action_id: {"decision": "edit", "arguments": arguments, "reviewer": "rev-a"}}
        validate_decisions(value, [gold], context, customer)
    except ResumeError as error:
        edit_error = str(error)

    # The mutant reaches execution with a forged approval and no ledger record.
    forged = Decision(decision="edit", arguments=arguments, reviewer="rev-a")
    action = gold.model_copy(update={"action_id": f"{gold.action_id}-{mutation}"})
    clearance = clear_for_execution(dataclasses.replace(context, ledger=None), action, forged, customer)
    execution_rule = (clearance.error or "").split(":")[0]
    return MutantOutcome(
        task_id=task_id, index=index, tool=gold.tool, mutation=mutation,
        plan_verdict=plan.verdict, plan_rule=plan.rule,
        edit_refused=bool(edit_error), edit_error=edit_error,
        execution_status=clearance.status or "would_run", execution_rule=execution_rule,
    )


def replay_task(task: dict, db_path: Path, client: redis.Redis) -> GateReport:
    """Run one task's gold actions through the gate and check the mutants of each gold write."""
    report = GateReport()
    task_id = str(task["id"])
    thread_id = f"gold-{task_id}"
    gate = _Gate(db_path, client, tenant=f"gold{task_id}")
    customer_id: str | None = None
    actions = task["evaluation_criteria"]["actions"]
    # The simulated customer writes the identifiers the gold lookups use.
    conversation = " ".join(str(v) for a in actions if a["name"] in AUTH_LOOKUPS for v in a["arguments"].values())
    owner = _task_customer(actions, gate.store)
    if owner is not None and not any(a["name"] in AUTH_LOOKUPS for a in actions):
        # Some gold lists leave out the lookup that authenticated the customer;
        # the simulated customer then gives the email on file first.
        conversation = gate.store.call("get_user_details", {"user_id": owner})["email"]
        customer_id = gate.store.call("find_user_id_by_email", {"email": conversation})

    for index, gold in enumerate(actions):
        tool, arguments = gold["name"], gold["arguments"]
        spec = RETAIL_TOOLS[tool]
        step = PlanStep(tool=tool, arguments=arguments)
        verdict = gate.policy.check(step, customer_id, conversation)
        outcome = GoldOutcome(task_id, index, tool, spec.access, verdict.verdict, verdict.rule, "denied")
        report.gold.append(outcome)
        if verdict.verdict == "deny":
            outcome.error = verdict.reason
            continue
        if spec.access != "write":
            try:
                output = gate.store.call(tool, arguments)
            except ToolError as error:
                outcome.status, outcome.error = "failed", str(error)
                continue
            outcome.status = "done"
            if tool in AUTH_LOOKUPS and customer_id is None:
                customer_id = output
            continue

        action = _pending(gate.context, thread_id, index, step)
        action = action.model_copy(update={"verdict": verdict})
        db = gate.store.dump()
        for mutation, mutated in _mutations(tool, arguments, customer_id, db):
            report.mutants.append(_check_mutant(gate, thread_id, index, action, customer_id, mutation, mutated, task_id))

        register_requests(gate.context, [action], thread_id=thread_id, round_number=1, customer_id=customer_id, request_context={})
        decision = _approve(gate.context, action, customer_id)
        clearance = clear_for_execution(gate.context, action, decision, customer_id)
        if clearance.status is not None:
            outcome.status, outcome.error = clearance.status, clearance.error
            continue
        result = run_action(gate.context, thread_id, action, clearance.arguments, decision.reviewer)
        outcome.status, outcome.error = result.status, result.error
    return report


def replay_all(tasks: list[dict], template: Path, workdir: Path, client: redis.Redis, progress: Callable[[str], None] | None = None) -> GateReport:
    """Replay every task on its own copy of ``template`` and return the combined report."""
    report = GateReport()
    for task in tasks:
        path = workdir / f"task_{task['id']}.sqlite"
        shutil.copy(template, path)
        one = replay_task(task, path, client)
        report.gold.extend(one.gold)
        report.mutants.extend(one.mutants)
        if progress:
            progress(str(task["id"]))
    return report


def render_markdown(report: GateReport, tasks: int) -> str:
    """Return the report's tables: gold outcomes, then mutants per violation and policy point."""
    gold = Counter((row.access, row.status) for row in report.gold)
    writes = [row for row in report.gold if row.access == "write"]
    lines = [
        f"Gold actions of {tasks} training tasks: {len(report.gold)} "
        f"({len(writes)} writes, {len(report.gold) - len(writes)} reads and others).",
        "",
        "| access | done | failed (tool) | denied (policy) |",
        "| --- | ---: | ---: | ---: |",
    ]
    for access in ("read", "write", "none"):
        lines.append(
            f"| {access} | {gold[(access, 'done')]} | {gold[(access, 'failed')]} | {gold[(access, 'denied')]} |"
        )
    lines += [
        "",
        "| mutation | mutants | denied at plan time | edit refused | denied before execution | rules at plan time |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for mutation in MUTATIONS:
        rows = [row for row in report.mutants if row.mutation == mutation]
        rules = Counter(row.plan_rule for row in rows if row.plan_verdict == "deny")
        rule_text = ", ".join(f"`{rule}` {count}" for rule, count in sorted(rules.items()))
        lines.append(
            f"| {mutation} | {len(rows)} | {sum(r.plan_verdict == 'deny' for r in rows)} | "
            f"{sum(r.edit_refused for r in rows)} | {sum(r.execution_status == 'denied' for r in rows)} | {rule_text} |"
        )
    total = len(report.mutants)
    lines += ["", f"All mutants: {total}; allowed at any point: "
              f"{sum(r.plan_verdict != 'deny' or not r.edit_refused or r.execution_status != 'denied' for r in report.mutants)}."]
    return "\n".join(lines) + "\n"


@contextmanager
def _redis() -> Iterator[redis.Redis]:
    with tempfile.TemporaryDirectory() as directory:
        server = RedisServer(Path(directory), appendonly=False).start()
        client = redis.Redis.from_url(server.url)
        try:
            yield client
        finally:
            client.close()
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=RETAIL_DATA, help="folder with tasks_train.json and db.json")
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results" / "governance.md")
    args = parser.parse_args()
    tasks = json.loads((args.data / "tasks_train.json").read_text(encoding="utf-8"))
    with tempfile.TemporaryDirectory() as directory, _redis() as client:
        workdir = Path(directory)
        template = workdir / "template.sqlite"
        build_database(args.data / "db.json", template)
        report = replay_all(tasks, template, workdir, client)
    text = "# Governance gate replay\n\nGenerated by `.venv/bin/python bench/governance_gate.py`.\n\n"
    text += render_markdown(report, len(tasks))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
