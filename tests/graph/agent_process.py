"""Run one step of a conversation in its own process, for the two-process tests.

Usage: python agent_process.py send|decide SETTINGS_JSON THREAD [PAYLOAD_JSON]
Prints one JSON line with the outcome.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tests.graph.conftest import CANCEL_MESSAGE, REVIEWERS, cancel_script
from warden.models import ScriptedChatModel
from warden.runtime import Warden
from warden.settings import Settings


def main() -> None:
    command, settings_json, thread_id = sys.argv[1:4]
    raw = json.loads(settings_json)
    settings = Settings.from_env(
        data_dir=Path(raw["data_dir"]),
        redis_url=raw["redis_url"],
        db_path=Path(raw["db_path"]),
        approval_threshold=float(raw["approval_threshold"]),
        chat_model="scripted",
        reviewers=REVIEWERS,
    )
    model = ScriptedChatModel(script=cancel_script())
    with Warden.open(settings, chat_model=model, index=None) as warden:
        if command == "send":
            outcome = warden.send(thread_id, CANCEL_MESSAGE)
        else:
            outcome = warden.decide(thread_id, json.loads(sys.argv[4]))
    print(json.dumps({
        "status": outcome.status,
        "answer": outcome.answer,
        "pending": [action.model_dump(mode="json") for action in outcome.pending],
    }))


if __name__ == "__main__":
    main()
