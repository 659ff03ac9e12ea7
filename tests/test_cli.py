"""Command-line argument checks that need no model: empty messages and reviewer names."""

from __future__ import annotations

import argparse

import pytest

from warden.cli import _decisions_from_args, main
from warden.errors import WardenError


def test_chat_rejects_empty_message(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("WARDEN_DATA_DIR", str(tmp_path))
    assert main(["chat", "--thread", "t-empty", "   "]) == 2
    assert "message is empty" in capsys.readouterr().err


def test_decide_json_cannot_name_another_reviewer():
    args = argparse.Namespace(
        command="decide", reviewer="mallory", decisions='{"act_1": {"decision": "approve", "reviewer": "alice"}}'
    )
    with pytest.raises(WardenError, match="names reviewer 'alice' but --reviewer is 'mallory'"):
        _decisions_from_args(args, {"actions": []})


def test_decide_json_takes_reviewer_from_flag():
    args = argparse.Namespace(command="decide", reviewer="alice", decisions='{"act_1": {"decision": "approve"}}')
    assert _decisions_from_args(args, {"actions": []}) == {"act_1": {"decision": "approve", "reviewer": "alice"}}
