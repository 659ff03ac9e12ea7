"""Command line: ingest, chat on a thread, review pending approvals, show history, audit and replay.

Every command is its own process, so a reviewer can approve from another shell
or machine than the one the customer's message arrived on.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from warden.errors import WardenError
from warden.settings import Settings, message_length_error

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
        edit = (request.get("edits") or {}).get(action["action_id"])
        arguments = edit["arguments"] if edit else action["arguments"]
        print(f"  {action['action_id']}  {action['tool']}({json.dumps(arguments)})")
        if edit:
            print(f"      edited by {edit['reviewer']}; proposed: {json.dumps(action['arguments'])}")
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
    started = False

    def on_token(token: str) -> None:
        nonlocal started
        if not started:
            sys.stdout.write("agent: ")
            started = True
        sys.stdout.write(token)
        sys.stdout.flush()

    return on_token


def _open(args: argparse.Namespace) -> Any:
    from warden.runtime import Warden  # noqa: PLC0415 - loads torch and the model
    from warden.service.chat import chat_model_from_settings  # noqa: PLC0415

    settings = Settings.from_env()
    # WARDEN_CHAT_MODEL=scripted:<file> selects a scripted model, as in the service.
    scripted = settings.chat_model.startswith("scripted:")
    chat_model = chat_model_from_settings(settings) if scripted else None
    return Warden.open(settings, chat_model=chat_model)


def cmd_ingest(args: argparse.Namespace) -> int:
    from ingestion.embedder import load_default_embedder  # noqa: PLC0415
    from ingestion.index import build_index  # noqa: PLC0415

    settings = Settings.from_env()
    sources = [Path(s) for s in args.source] or [settings.kb_dir]
    index_dir = Path(args.index) if args.index else settings.index_dir
    report = build_index(sources, index_dir, load_default_embedder(settings.model_cache_dir), progress=True)
    print(report.format())
    return 0


def cmd_chat(args: argparse.Namespace) -> int:
    # Checked before the runtime loads, which takes seconds. The length check
    # must also come before onnxruntime is imported, which crashes on a long argv.
    if args.message is not None and not args.message.strip():
        print("error: the message is empty; write the customer's message in quotes", file=sys.stderr)
        return 2
    error = message_length_error(args.message) if args.message is not None else None
    if error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    with _open(args) as warden:
        messages = [args.message] if args.message else None
        if messages is None:
            print("Type a message (empty line to quit).")
        while True:
            if messages is None:
                text = input("> ")
            elif messages:
                text = messages.pop(0)
            else:
                text = None
            if not text:
                return 0
            error = message_length_error(text)
            if error:
                print(f"error: {error}", file=sys.stderr)
                continue
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
                # A thread whose run died after its decision stays listed until
                # it is resumed; only a thread named with --thread is reported.
                if args.thread:
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
                # The reviewer is the one named by --reviewer, never a name in the JSON.
                if decision.get("reviewer", args.reviewer) != args.reviewer:
                    raise WardenError(
                        f"decision names reviewer {decision['reviewer']!r} but --reviewer is "
                        f"{args.reviewer!r}; remove 'reviewer' from the JSON"
                    )
                decision["reviewer"] = args.reviewer
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


def _no_pending_message(warden: Any, args: argparse.Namespace) -> str:
    """Return why ``args.thread`` has nothing to decide, naming who closed the action."""
    record = warden.ledger.get(args.action) if getattr(args, "action", None) else None
    if record is not None and record.thread_id != args.thread:
        return f"error: action {record.action_id} belongs to thread {record.thread_id}, not {args.thread}"
    if record is None or record.state == "pending":
        return f"error: thread {args.thread} has no pending approval; list waiting threads with `warden pending`"
    reviewers = ", ".join(record.reviewers) or "nobody"
    return f"error: action {record.action_id} is already {record.state} (by {reviewers}); nothing is left to decide"


def cmd_decide(args: argparse.Namespace) -> int:
    with _open(args) as warden:
        request = warden.current_interrupt(args.thread)
        if request is None:
            print(_no_pending_message(warden, args), file=sys.stderr)
            return 2
        decisions = _decisions_from_args(args, request)
        outcome = warden.decide(args.thread, decisions, on_token=_stream_printer())
        _print_outcome(warden, args.thread, outcome, streamed=True)
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    with _open(args) as warden:
        outcome = warden.resume(args.thread)
        _print_outcome(warden, args.thread, outcome, streamed=False)
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
        _print_reviews(warden.ledger.events(args.thread))
    return 0


def _print_reviews(events: list[dict[str, Any]]) -> None:
    """Print the approval requests and reviewer decisions of a thread, oldest first."""
    if not events:
        return
    print("\napprovals:")
    for event in events:
        kind = event["event"]
        action = f"{event.get('action_id', '?')} {event.get('tool', '')}".rstrip()
        if kind == "approval_requested":
            line = f"requested  {action}"
        elif kind.startswith("decision_"):
            line = f"{kind.removeprefix('decision_'):<10} {action} by {event.get('reviewer')} ({event.get('role')})"
            if event.get("reason"):
                line += f": {event['reason']}"
            if event.get("message"):
                line += f": {event['message']}"
        else:
            line = f"{kind:<10} {action} {event.get('status', '')}".rstrip()
        print(f"  {event['at']}  {line}")


def _open_recorded(args: argparse.Namespace) -> Any:
    """Open the runtime without the chat model or the index: audit and replay use only records."""
    from warden.replay import RecordedChatModel  # noqa: PLC0415 - imports the graph
    from warden.runtime import Warden  # noqa: PLC0415

    return Warden.open(Settings.from_env(), chat_model=RecordedChatModel(script={}), index=None)


def _parse_time(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid ISO 8601 time {text!r}; use e.g. 2026-01-31T12:00:00+00:00") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def cmd_audit_verify(args: argparse.Namespace) -> int:
    with _open_recorded(args) as warden:
        if args.anchors:
            anchors = {head["thread_id"]: head for head in map(json.loads, Path(args.anchors).read_text().splitlines())}
            threads = [args.thread] if args.thread else sorted(set(warden.audit.thread_ids()) | set(anchors))
            reports = warden.audit.verify_many(threads, anchors=anchors)
        else:
            reports = warden.verify_audit(None if args.all else args.thread)
    broken = [report for report in reports if not report.ok]
    if args.thread and not broken and all(report.count == 0 for report in reports):
        # An empty chain verifies trivially, which would pass a mistyped id.
        print(
            f"error: thread {args.thread} has no audit entries in tenant {warden.settings.tenant!r}; "
            "check the thread id and WARDEN_TENANT (`warden audit verify --all` lists every thread)",
            file=sys.stderr,
        )
        return 2
    for report in reports:
        if args.json:
            print(json.dumps(report.as_dict()))
        elif not report.ok or not args.all:
            status = "ok" if report.ok else f"BROKEN at entry {report.broken_at}: {report.error}"
            print(f"{report.thread_id}: {report.count} entries, {status}")
    if not args.json:
        print(f"verified {len(reports)} thread(s), {len(broken)} broken")
    return 1 if broken else 0


def cmd_audit_export(args: argparse.Namespace) -> int:
    from warden.audit import AuditLog  # noqa: PLC0415
    from warden.runtime import open_redis  # noqa: PLC0415

    import redis  # noqa: PLC0415

    settings = Settings.from_env(**({"tenant": args.tenant} if args.tenant else {}))
    with open_redis(settings) as url:
        client = redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5)
        try:
            audit = AuditLog(client, settings.tenant)
            lines = audit.export_heads() if args.heads else audit.export(thread_id=args.thread, since=args.since, until=args.until)
            output = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout  # noqa: SIM115
            try:
                for line in lines:
                    output.write(json.dumps(line, sort_keys=True, ensure_ascii=False) + "\n")
            finally:
                if args.output:
                    output.close()
        finally:
            client.close()
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from warden.policy import PolicyConfig  # noqa: PLC0415
    from warden.replay import dry_run, render_timeline, timeline  # noqa: PLC0415

    with _open_recorded(args) as warden:
        if not (args.dry_run or args.fork):
            rows = timeline(warden, args.thread)
            print(json.dumps(rows, default=str, indent=2) if args.json else render_timeline(rows))
            return 0 if rows else 1
        config = warden.context.policy.config
        changes: dict[str, Any] = {}
        if args.policy_version:
            changes["version"] = args.policy_version
        if args.approval_threshold is not None:
            changes["approval_threshold"] = args.approval_threshold
        if args.withdraw_scope:
            changes["granted_scopes"] = frozenset(config.granted_scopes) - set(args.withdraw_scope)
        report = dry_run(
            warden, args.thread, policy_config=dataclasses.replace(config, **changes), fork_checkpoint_id=args.fork
        )
    if args.json:
        print(json.dumps(report.as_dict(), default=str, indent=2))
    else:
        print(f"dry run of {args.thread} under policy {report.policy_version}"
              + (f", forked at {args.fork}" if args.fork else ""))
        for divergence in report.divergences:
            print(f"  diverges: {divergence.message}")
        if not report.divergences:
            print("  no divergence from the recorded run")
        for call in report.unrecorded_calls:
            print(f"  refused unrecorded call: {call['tool']} {json.dumps(call['arguments'])}")
        if report.stopped:
            print(f"  stopped: {report.stopped}")
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

    resume = commands.add_parser(
        "resume",
        help="finish a run whose process stopped between steps; executed actions are not repeated",
    )
    resume.add_argument("thread", help="conversation thread id")
    resume.set_defaults(func=cmd_resume)

    history = commands.add_parser("history", help="show a thread's checkpoints and conversation")
    history.add_argument("thread")
    history.set_defaults(func=cmd_history)

    audit = commands.add_parser("audit", help="verify or export the tamper-evident audit log (see docs/audit.md)")
    audit_commands = audit.add_subparsers(dest="audit_command", required=True)
    verify = audit_commands.add_parser("verify", help="walk hash chains and report the first broken entry")
    target = verify.add_mutually_exclusive_group(required=True)
    target.add_argument("thread", nargs="?", help="conversation thread id")
    target.add_argument("--all", action="store_true", help="verify every thread of WARDEN_TENANT")
    verify.add_argument("--anchors", help="JSONL file from `audit export --heads`; each thread must still carry its anchored hash")
    verify.add_argument("--json", action="store_true", help="print one JSON report per thread")
    verify.set_defaults(func=cmd_audit_verify)
    export = audit_commands.add_parser("export", help="write audit entries as JSONL (schema: docs/audit.schema.json)")
    export.add_argument("--thread", help="only this thread (default: every thread of the tenant)")
    export.add_argument("--tenant", help="tenant to export (default: WARDEN_TENANT)")
    export.add_argument("--since", type=_parse_time, help="keep entries at or after this ISO 8601 time (UTC if no offset)")
    export.add_argument("--until", type=_parse_time, help="keep entries before this ISO 8601 time (UTC if no offset)")
    export.add_argument("--heads", action="store_true", help="export each thread's head (count, last hash) to keep as an external anchor")
    export.add_argument("--output", help="file to write (default: standard output)")
    export.set_defaults(func=cmd_audit_export)

    replay = commands.add_parser("replay", help="show a thread's timeline, or re-run it without side effects")
    replay.add_argument("thread")
    replay.add_argument("--json", action="store_true", help="print JSON instead of text")
    replay.add_argument("--dry-run", action="store_true", help="re-run the graph on recorded tool results, model outputs and decisions")
    replay.add_argument("--fork", metavar="CHECKPOINT_ID", help="dry-run from this checkpoint (ids from `warden history`)")
    replay.add_argument("--policy-version", help="version label of the policy the dry run evaluates")
    replay.add_argument("--approval-threshold", type=float, help="dollar amount above which two approvals are needed, for the dry run")
    replay.add_argument("--withdraw-scope", action="append", default=[], help="scope the dry run's policy no longer grants; repeatable")
    replay.set_defaults(func=cmd_replay)

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
