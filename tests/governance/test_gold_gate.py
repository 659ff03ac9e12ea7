"""Gold actions of the retail training tasks pass the gate; their policy-breaking mutants do not."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import redis

from bench.governance_gate import MUTATIONS, GateReport, render_markdown, replay_all
from tests.tools.test_gold_replay import EXPECTED_FAILURES, replay_task
from tools.retail import RetailStore, build_database

DOCS = Path(__file__).resolve().parents[2] / "docs" / "governance.md"


@pytest.fixture(scope="module")
def tasks(shared_data: Path) -> list[dict]:
    return json.loads((shared_data / "tau2" / "retail" / "tasks_train.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def gold_template(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("gold_template") / "retail.sqlite"
    build_database(shared_data / "tau2" / "retail" / "db.json", path)
    return path


@pytest.fixture(scope="module")
def gate_run(tasks, gold_template, redis_server, tmp_path_factory) -> tuple[GateReport, Path]:
    """The replay of every task, run once for the module; its databases stay in the returned folder."""
    workdir = tmp_path_factory.mktemp("gate")
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    try:
        return replay_all(tasks, gold_template, workdir, client), workdir
    finally:
        client.close()


def test_gold_actions_pass_the_gate(gate_run, tasks, gold_template, tmp_path_factory):
    report, workdir = gate_run
    failures = {(row.task_id, row.index): row.tool for row in report.gold if row.status != "done"}
    assert failures == EXPECTED_FAILURES
    for row in report.gold:
        if (row.task_id, row.index) in EXPECTED_FAILURES:
            continue
        if row.access == "write":
            assert row.verdict == "needs_approval", row
        else:
            assert row.verdict == "allow", row
    assert sum(row.access == "write" and row.status == "done" for row in report.gold) == 119

    # Going through the gate leaves each database as the plain gold replay does.
    for task in tasks:
        plain = tmp_path_factory.mktemp(f"plain_{task['id']}") / "retail.sqlite"
        shutil.copy(gold_template, plain)
        expected = replay_task(task, plain).final_state
        assert RetailStore(workdir / f"task_{task['id']}.sqlite").dump() == expected, f"task {task['id']}"


def test_every_mutant_is_denied_at_each_point(gate_run):
    report, _ = gate_run
    by_mutation = {mutation: [m for m in report.mutants if m.mutation == mutation] for mutation in MUTATIONS}
    for mutation, rows in by_mutation.items():
        assert rows, f"no mutant of kind {mutation}"
    for mutant in report.mutants:
        assert mutant.plan_verdict == "deny", mutant
        assert mutant.edit_refused, mutant
        assert mutant.execution_status == "denied", mutant
        assert mutant.execution_rule == mutant.plan_rule, mutant
    assert {m.plan_rule for m in by_mutation["missing_authentication"]} == {"auth.required"}
    assert {m.plan_rule for m in by_mutation["scope_not_granted"]} == {"scope.not_granted"}
    assert {m.plan_rule for m in by_mutation["changed_product"]} == {"items.same_product"}


def test_docs_table_matches_run(gate_run, tasks):
    report, _ = gate_run
    documented = DOCS.read_text(encoding="utf-8")
    for line in render_markdown(report, len(tasks)).splitlines():
        if line.startswith("| ") or line.startswith("All mutants"):
            assert line in documented, f"docs/governance.md is stale; rerun bench/governance_gate.py: {line}"
