"""The `warden audit` commands in a separate process: export, anchors and verify exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema

from tests.graph.conftest import CANCEL_MESSAGE, REVIEWERS, cancel_script
from warden.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "docs" / "audit.schema.json").read_text())


def _cli(settings, *arguments: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "REDIS_URL": settings.redis_url,
        "WARDEN_DATA_DIR": str(settings.data_dir),
        "WARDEN_DB_PATH": str(settings.db_path),
        "WARDEN_INDEX_DIR": str(settings.index_dir),
        "WARDEN_CHAT_MODEL": "scripted",
        "WARDEN_REVIEWERS": ",".join(f"{name}:{role}" for name, role in REVIEWERS.items()),
    }
    return subprocess.run(
        [sys.executable, "-m", "warden.cli", *arguments],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )


def test_audit_commands_end_to_end(open_warden, settings, tmp_path, redis_client):
    warden = open_warden(cancel_script())
    [action] = warden.send("t-cli", CANCEL_MESSAGE).pending
    warden.decide("t-cli", {action.action_id: {"decision": "reject", "reason": "call us", "reviewer": "alice"}})

    exported = _cli(settings, "audit", "export", "--thread", "t-cli")
    assert exported.returncode == 0, exported.stderr
    lines = [json.loads(line) for line in exported.stdout.splitlines()]
    assert [line["seq"] for line in lines] == list(range(1, len(lines) + 1))
    for line in lines:
        jsonschema.validate(line, SCHEMA)

    anchors = tmp_path / "heads.jsonl"
    heads = _cli(settings, "audit", "export", "--heads", "--output", str(anchors))
    assert heads.returncode == 0, heads.stderr
    assert json.loads(anchors.read_text().splitlines()[0])["count"] == len(lines)
    assert _cli(settings, "audit", "verify", "--all", "--anchors", str(anchors)).returncode == 0

    redis_client.hset(warden.audit.keys("t-cli")[3], "1", json.dumps({"text": "forged"}))
    broken = _cli(settings, "audit", "verify", "t-cli")
    assert broken.returncode == 1
    assert "BROKEN at entry 1" in broken.stdout
    as_json = _cli(settings, "audit", "verify", "--all", "--json")
    assert as_json.returncode == 1
    assert json.loads(as_json.stdout.splitlines()[0])["broken_at"] == 1


def test_audit_ttl_setting_from_environment(monkeypatch):
    monkeypatch.setenv("WARDEN_AUDIT_TTL_SECONDS", "86400")
    assert Settings.from_env().audit_ttl_seconds == 86400
    monkeypatch.delenv("WARDEN_AUDIT_TTL_SECONDS")
    assert Settings.from_env().audit_ttl_seconds is None


def test_audit_verify_unknown_thread_fails(open_warden, settings):
    warden = open_warden(cancel_script())
    warden.send("t-known", CANCEL_MESSAGE)

    assert _cli(settings, "audit", "verify", "t-known").returncode == 0
    unknown = _cli(settings, "audit", "verify", "t-typo")

    assert unknown.returncode == 2
    assert "thread t-typo has no audit entries in tenant 'default'" in unknown.stderr
