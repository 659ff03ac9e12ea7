"""Command-line argument checks that need no model: empty or long messages, reviewer names."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import pytest

from warden.cli import _decisions_from_args, main
from warden.errors import WardenError
from warden.settings import MAX_CUSTOMER_MESSAGE_CHARS, PROJECT_ROOT


def test_chat_rejects_empty_message(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("WARDEN_DATA_DIR", str(tmp_path))
    assert main(["chat", "--thread", "t-empty", "   "]) == 2
    assert "message is empty" in capsys.readouterr().err


def test_chat_rejects_over_long_message(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("WARDEN_DATA_DIR", str(tmp_path))
    length = MAX_CUSTOMER_MESSAGE_CHARS + 1
    assert main(["chat", "--thread", "t-long", "x" * length]) == 2
    error = capsys.readouterr().err
    assert f"has {length} characters" in error
    assert f"limit of {MAX_CUSTOMER_MESSAGE_CHARS}" in error
    assert "shorten it" in error


def test_chat_long_argv_exits_before_runtime(tmp_path):
    # onnxruntime 1.30 crashes with SIGSEGV on import once an argv entry has
    # about 32,540 characters, so the CLI must reject this before loading it.
    completed = subprocess.run(
        [sys.executable, "-m", "warden.cli", "chat", "--thread", "t-long", "x" * 40_000],
        capture_output=True, text=True, timeout=120, cwd=PROJECT_ROOT,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "WARDEN_DATA_DIR": str(tmp_path)},
    )
    assert completed.returncode == 2, completed.stderr[-3000:]
    assert f"limit of {MAX_CUSTOMER_MESSAGE_CHARS}" in completed.stderr
    assert not (tmp_path / "redis").exists()


def test_decide_json_cannot_name_another_reviewer():
    args = argparse.Namespace(
        command="decide", reviewer="mallory", decisions='{"act_1": {"decision": "approve", "reviewer": "alice"}}'
    )
    with pytest.raises(WardenError, match="names reviewer 'alice' but --reviewer is 'mallory'"):
        _decisions_from_args(args, {"actions": []})


def test_decide_json_takes_reviewer_from_flag():
    args = argparse.Namespace(command="decide", reviewer="alice", decisions='{"act_1": {"decision": "approve"}}')
    assert _decisions_from_args(args, {"actions": []}) == {"act_1": {"decision": "approve", "reviewer": "alice"}}
