"""Per-run context of the support graph: the live services its nodes use.

A host injects a ``SupportContext`` when it invokes the graph. When none is
injected (LangGraph Studio and ``langgraph dev`` pass only JSON), the nodes use
the process's default services, built once from the environment's settings.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from langchain_core.language_models import BaseChatModel

from tools.base import ToolSpec
from warden.policy import PolicyEngine


@dataclass
class SupportContext:
    """Services for one run: the store the tools act on, retrieval, model, policy."""

    store: Any = None
    """Runs tools: ``call(tool, arguments, *, idempotency_key=None)``."""
    tools: Mapping[str, ToolSpec] | None = None
    chat_model: BaseChatModel | None = None
    policy: PolicyEngine | None = None
    index: Any | None = None
    """A ``KnowledgeIndex``; ``None`` answers without retrieved chunks."""
    retrieval_k: int = 4
    intent_classifier: Any | None = None
    requester: str = "customer"
    """Identity of the channel that sends customer messages; it may not approve."""
    tenant: str = "default"
    channel: str = "chat"
    ledger: Any | None = None
    """``warden.ledger.ApprovalLedger``; with ``None`` approvals live only in the checkpoint."""
    journal: Any | None = None
    """``warden.journal.EffectJournal``; with ``None`` only the store's idempotency key guards re-runs."""
    approval_rules: Any | None = None
    """``warden.ledger.ApprovalRules``: reviewer roles and deadlines; ``None`` checks no roles."""
    audit: Any | None = None
    """``warden.audit.AuditLog``: the thread's tamper-evident event log; ``None`` records no events."""
    extra: dict[str, Any] = field(default_factory=dict)


_default_lock = threading.Lock()
_default_context: SupportContext | None = None


def resolve_context(context: Any) -> SupportContext:
    """Return ``context`` if a host injected one, else the process's default services.

    LangGraph builds an empty ``SupportContext`` when a run carries no context
    (``langgraph dev`` does this), so a context without a store counts as none.
    """
    if isinstance(context, SupportContext) and context.store is not None:
        return context
    global _default_context
    with _default_lock:
        if _default_context is None:
            from warden.runtime import build_default_context  # noqa: PLC0415 - heavy

            _default_context = build_default_context()
        return _default_context
