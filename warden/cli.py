"""Command line: ingest, chat on a thread, review pending approvals, show history.

Every command is its own process, so a reviewer can approve from another shell
or machine than the one the customer's message arrived on.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from warden.errors import WardenError
from warden.settings import Settings

logger = logging.getLogger("warden")


def _print_pending(thread_id: str, request: dict[str, Any]) -> None:
    print(f"\nthread {thread_id} is waiting for approval (round {request.get('round')}):")
    if request.get("error"):
        print(f"  last resume was refused: {request['error']}")
    waiting = set(request.get("awaiting_second_approval") or [])
    for action in request["actions"]:
        if waiting and action["action_id"] not in waiting:
            continue
        verdict = action["verdict"]
        print(f"  {action['action_id']}  {action['tool']}({json.dumps(action['arguments'])})")
        print(f"      risk={action['risk']} scope={action['scope']} irreversible={action['irreversible']}")
        print(f"      policy: {verdict['verdict']} [{verdict['rule']}] {verdict['reason']}")
        if action["rationale"]:
            print(f"      why: {action['rationale']}")
        if action["citations"]:
            print(f"      cites: {', '.join(action['citations'])}")
        approved_by = (request.get("approved_by") or {}).get(action["action_id"])
        if approved_by:
            print(f"      approved so far by: {', '.join(approved_by)}")


def _print_outcome(warden: Any, thread_id: str, outcome: Any, streamed: bool) -> None:
    if outcome.status == "awaiting_approval":
        _print_pending(thread_id, outcome.interrupt)
        print(f"\nDecide with: warden approve {thread_id} [ACTION_ID] --reviewer NAME (or reject/edit/respond)")
        return
    if not streamed:
        print(outcome.answer)
    print()
    state = warden.graph.get_state(warden._config(thread_id)).values
    cited = [c for c in state.get("retrieved", []) if c.chunk_id in outcome.answer]
    for chunk in cited or state.get("retrieved", [])[:2]:
        marker = "cited" if cited else "retrieved"
        print(f"  [{chunk.chunk_id}] {marker}: {chunk.title} / {chunk.heading} ({chunk.source})")


def _stream_printer() -> Any:
    def on_token(token: str) -> None:
        sys.stdout.write(token)
        sys.stdout.flush()

    return on_token


def _open(args: argparse.Namespace) -> Any:
    from warden.runtime import Warden  # noqa: PLC0415 - loads torch and the model

    return Warden.open(Settings.from_env())


def cmd_ingest(args: argparse.Namespace) -> int:
    from ingestion.embedder import load_default_embedder  # noqa: PLC0415
    from ingestion.index import build_index  # noqa: PLC0415

    settings = Settings.from_env()
    sources = [Path(s) for s in args.source] or [settings.kb_dir]
    index_dir = Path(args.index) if args.index else settings.index_dir
    report = build_index(sources, index_dir, load_default_embedder(), progress=True)
    print(report.format())
    return 0


def cmd_chat(args: argparse.Namespace) -> int:
    with _open(args) as warden:
        messages = [args.message] if args.message else None
        if messages is None:
            print("Type a message (empty line to quit).")
        while True:
            text = messages.pop(0) if messages else (None if messages is not None else input("> "))
            if not text:
                return 0
            print("agent: ", end="", flush=True)
            outcome = warden.send(args.thread, text, on_token=_stream_printer())
            _print_outcome(warden, args.thread, outcome, streamed=True)
            if outcome.status == "awaiting_approval" or args.message:
                return 0


def cmd_pending(args: argparse.Namespace) -> int:
    with _open(args) as warden:
        threads = [args.thread] if args.thread else warden.pending_threads()
        if not threads:
            print("no pending approvals")
        for thread_id in threads:
            request = warden.current_interrupt(thread_id)
            if request is None:
                print(f"thread {thread_id}: nothing pending")
                continue
            _print_pending(thread_id, request)
    return 0


def _decisions_from_args(args: argparse.Namespace, request: dict[str, Any]) -> dict[str, Any]:
    if args.command == "decide":
        from warden.runtime import parse_decision_json  # noqa: PLC0415

        decisions = parse_decision_json(args.decisions)
        for decision in decisions.values():
            if isinstance(decision, dict):
                decision.setdefault("reviewer", args.reviewer)
        return decisions
    waiting = request.get("awaiting_second_approval") or [a["action_id"] for a in request["actions"]]
    targets = [args.action] if args.action else waiting
    decision: dict[str, Any] = {"decision": args.command, "reviewer": args.reviewer}
    if args.command == "reject":
        decision["reason"] = args.reason
    elif args.command == "respond":
        decision["message"] = args.message
    elif args.command == "edit":
        try:
            decision["arguments"] = json.loads(args.arguments)
        except json.JSONDecodeError as error:
            raise WardenError(f"--arguments is not valid JSON: {error}") from None
    return {action_id: dict(decision) for action_id in targets}


def cmd_decide(args: argparse.Namespace) -> int:
    with _open(args) as warden:
        request = warden.current_interrupt(args.thread)
        if request is None:
            print(f"thread {args.thread} has no pending approval", file=sys.stderr)
            return 2
        decisions = _decisions_from_args(args, request)
        print("agent: ", end="", flush=True)
        outcome = warden.decide(args.thread, decisions, on_token=_stream_printer())
        _print_outcome(warden, args.thread, outcome, streamed=True)
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    with _open(args) as warden:
        rows = warden.history(args.thread)
        if not rows:
            print(f"thread {args.thread} has no checkpoints")
            return 1
        print(f"checkpoints of thread {args.thread} (oldest first):")
        for row in rows:
            pause = f" paused for approval round {row['interrupts']}" if row["interrupts"] else ""
            print(f"  step {row['step']:>3}  {row['source']:<6} next={','.join(row['next']) or '-':<18}"
                  f" messages={row['messages']}{pause}  {row['checkpoint_id']}")
        print("\nconversation:")
        for message in warden.messages(args.thread):
            kind = message.type
            if kind == "ai" and message.tool_calls:
                for call in message.tool_calls:
                    print(f"  [tool call] {call['name']}({json.dumps(call['args'])})  id={call['id']}")
            elif kind == "tool":
                print(f"  [tool result] {message.content[:300]}")
            else:
                print(f"  [{kind}] {message.content}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn  # noqa: PLC0415 - only the service needs it

    from warden.service.app import create_app  # noqa: PLC0415

    # Builds the app once here so a missing credential setting fails before any worker starts.
    create_app(Settings.from_env())
    uvicorn.run(
        "warden.service.app:app_from_env",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level="info" if args.verbose else "warning",
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="warden", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    commands = parser.add_subparsers(dest="command", required=True)

    ingest = commands.add_parser("ingest", help="ingest a knowledge base into the index")
    ingest.add_argument("--source", action="append", default=[], help="file or folder; repeatable (default: WARDEN_KB_DIR)")
    ingest.add_argument("--index", help="index folder (default: WARDEN_INDEX_DIR)")
    ingest.set_defaults(func=cmd_ingest)

    chat = commands.add_parser("chat", help="send customer messages on a thread")
    chat.add_argument("--thread", required=True, help="conversation thread id")
    chat.add_argument("message", nargs="?", help="one message; omit for an interactive session")
    chat.set_defaults(func=cmd_chat)

    pending = commands.add_parser("pending", help="list actions waiting for a reviewer")
    pending.add_argument("--thread", help="only this thread")
    pending.set_defaults(func=cmd_pending)

    for name, help_text in [
        ("approve", "approve pending actions"),
        ("reject", "reject pending actions; they never run"),
        ("edit", "approve with new arguments, validated again"),
        ("respond", "send the reviewer's message back to the agent instead of running"),
    ]:
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("thread", help="conversation thread id")
        sub.add_argument("action", nargs="?", help="action id (default: every pending action)")
        sub.add_argument("--reviewer", required=True, help="reviewer identity, recorded with the decision")
        if name == "reject":
            sub.add_argument("--reason", required=True)
        if name == "respond":
            sub.add_argument("--message", required=True)
        if name == "edit":
            sub.add_argument("--arguments", required=True, help="new arguments as a JSON object")
        sub.set_defaults(func=cmd_decide)

    decide = commands.add_parser("decide", help="decide several actions at once from a JSON object keyed by action id")
    decide.add_argument("thread")
    decide.add_argument("decisions", help='JSON, e.g. {"act_1": {"decision": "approve"}}')
    decide.add_argument("--reviewer", required=True)
    decide.set_defaults(func=cmd_decide)

    history = commands.add_parser("history", help="show a thread's checkpoints and conversation")
    history.add_argument("thread")
    history.set_defaults(func=cmd_history)

    serve = commands.add_parser("serve", help="run the HTTP service (see docs/service.md)")
    serve.add_argument("--host", default="127.0.0.1", help="interface to bind (default: 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="TCP port (default: 8000)")
    serve.add_argument("--workers", type=int, default=1, help="worker processes sharing Redis and SQLite (default: 1)")
    serve.set_defaults(func=cmd_serve)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    try:
        return args.func(args)
    except WardenError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
