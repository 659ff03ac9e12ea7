"""Runtime settings: the one place that reads the environment.

Nodes and tools never read environment variables; they get a ``Settings``
through the graph's runtime context or their constructor.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from warden.checkpoint_keys import KEY_PREFIX
from warden.errors import ConfigurationError
from warden.ledger import DEFAULT_DEADLINES, DEFAULT_REVIEW_ROLES

PROJECT_ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_DOMAIN_DIR = PROJECT_ROOT / "examples" / "retail"
# Maximum length of a customer message in characters, enforced by the HTTP API,
# `warden chat` and `Warden.send`. The CLI checks it before anything imports
# onnxruntime, because onnxruntime 1.30 crashes with SIGSEGV on import when an
# argv entry has about 32,540 characters or more.
MAX_CUSTOMER_MESSAGE_CHARS = 8000
# A tenant name is part of Redis keys, so it may not contain glob characters,
# braces, colons or white space.
_TENANT = re.compile(r"[A-Za-z0-9_./-]{1,80}")


def message_length_error(text: str) -> str | None:
    """Return the error for a customer message over ``MAX_CUSTOMER_MESSAGE_CHARS``, or None."""
    if len(text) <= MAX_CUSTOMER_MESSAGE_CHARS:
        return None
    return (
        f"customer message has {len(text)} characters, more than the limit of "
        f"{MAX_CUSTOMER_MESSAGE_CHARS}; shorten it or split it into several messages"
    )


def _check_tenant(tenant: str) -> str:
    if not isinstance(tenant, str) or not _TENANT.fullmatch(tenant):
        raise ConfigurationError(
            f"invalid tenant {tenant!r} (WARDEN_TENANT): use 1 to 80 letters, digits "
            "or the characters _ . / -, for example 'acme'"
        )
    return tenant


def _env_path(name: str, default: Path | None) -> Path | None:
    value = os.environ.get(name)
    return Path(value).expanduser() if value else default


def _env_number(name: str, default: float, cast: type = float) -> float:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return cast(value)
    except ValueError:
        raise ConfigurationError(
            f"{name}={value!r} is not a valid {cast.__name__}; "
            f"unset it to use the default {default!r}."
        ) from None


def _env_reviewers(name: str) -> dict[str, str]:
    # Format: "alice:supervisor,bob:agent".
    value = os.environ.get(name, "").strip()
    reviewers = {}
    for entry in filter(None, (part.strip() for part in value.split(","))):
        reviewer, _, role = entry.partition(":")
        if not reviewer.strip() or not role.strip():
            raise ConfigurationError(f"{name} entry {entry!r} is invalid; expected name:role, such as alice:supervisor")
        reviewers[reviewer.strip()] = role.strip()
    return reviewers


def _env_json_object(name: str, default: Mapping) -> Mapping:
    value = os.environ.get(name)
    if not value:
        return default
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as error:
        raise ConfigurationError(f"{name} is not valid JSON ({error}); unset it to use the default") from None
    if not isinstance(parsed, dict):
        raise ConfigurationError(f"{name} must be a JSON object, got {type(parsed).__name__}")
    return parsed


@dataclass(frozen=True)
class Settings:
    """Deployment settings; see the README's configuration table."""

    data_dir: Path
    """Directory for the embedded Redis files, the SQLite database and the index."""
    redis_url: str | None
    """Redis to use; ``None`` starts the embedded server in ``data_dir/redis``."""
    chat_model: str
    """``local`` for the bundled GGUF model, or ``provider:model`` such as
    ``openai:gpt-4o-mini``."""
    model_path: Path | None
    """A GGUF file to load instead of assembling the bundled one."""
    db_path: Path
    """SQLite database the retail tools act on."""
    domain_dir: Path
    """Example domain: ``db.json``, ``policy.md`` and the ``kb/`` articles."""
    kb_dir: Path
    """Knowledge base to ingest."""
    index_dir: Path
    """Where the retrieval index is written and read."""
    tenant: str = "default"
    """Tenant whose threads, approvals and audit this process serves (``WARDEN_TENANT``)."""
    checkpoint_ttl_seconds: int | None = None
    audit_ttl_seconds: int | None = None
    """Seconds a thread's audit log is kept after its last event, independent of the
    checkpoints; ``None`` keeps it until ``forget_thread``/``forget_customer`` erase it."""
    approval_threshold: float = 500.0
    """Refund or charge amount, in dollars, above which two reviewers must approve."""
    llama_threads: int = field(default_factory=lambda: os.cpu_count() or 2)
    retrieval_k: int = 4
    reranker_dir: Path | None = None
    """A sentence-transformers cross-encoder folder that reorders retrieved chunks; None for none."""
    channel: str = "chat"
    """Channel the customer messages arrive on; scope grants are per tenant and channel."""
    scope_grants: Mapping[str, frozenset[str]] = field(default_factory=dict)
    """Permission scopes granted per ``tenant/channel``; a pair missing here gets
    every retail scope (``warden.policy.DEFAULT_SCOPES``)."""
    reviewers: Mapping[str, str] = field(default_factory=dict)
    """Reviewer directory, identity to role; only listed reviewers may decide."""
    review_roles: Mapping[str, frozenset[str]] = field(default_factory=lambda: dict(DEFAULT_REVIEW_ROLES))
    """Roles that may decide an action of each risk tier (``low``, ``medium``, ``high``)."""
    approval_deadlines: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_DEADLINES))
    """Seconds an approval request of each risk tier stays open before it expires."""
    run_lock_seconds: float = 600.0
    """Lease of the per-thread run lock; a process that dies holding it blocks the
    thread for at most this long."""
    api_keys: Mapping[str, Mapping[str, str]] = field(default_factory=dict, repr=False)
    """HTTP service API keys, each mapped to its principal: ``subject``, ``role``, ``tenant``."""
    token_secret: str | None = field(default=None, repr=False)
    """HMAC secret (at least 32 bytes) that signs the HTTP service's HS256 bearer tokens."""

    @property
    def model_cache_dir(self) -> Path:
        """Directory of the built models reused across processes: the chat model and the int8 embedder."""
        return self.data_dir / "models"

    @property
    def checkpoint_key_prefix(self) -> str:
        """Start of this tenant's checkpoint keys in Redis.

        The default tenant keeps the saver's own prefix, ``warden:cp``, which is
        where its threads were stored before tenants had a prefix of their own.
        """
        tenant = _check_tenant(self.tenant)
        return KEY_PREFIX if tenant == "default" else f"warden:{tenant}:cp"

    def granted_scopes(self) -> frozenset[str] | None:
        """Return the scopes granted to this tenant and channel, or None for the default grant."""
        scopes = self.scope_grants.get(f"{self.tenant}/{self.channel}")
        return frozenset(scopes) if scopes is not None else None

    @classmethod
    def from_env(cls, **overrides: object) -> "Settings":
        data_dir = _env_path("WARDEN_DATA_DIR", Path.cwd() / "var")
        domain_dir = _env_path("WARDEN_DOMAIN_DIR", EXAMPLE_DOMAIN_DIR)
        ttl = os.environ.get("WARDEN_CHECKPOINT_TTL_SECONDS")
        model_path = os.environ.get("WARDEN_MODEL_PATH")
        settings = cls(
            data_dir=data_dir,
            redis_url=os.environ.get("REDIS_URL") or None,
            chat_model=os.environ.get("WARDEN_CHAT_MODEL", "local"),
            model_path=Path(model_path).expanduser() if model_path else None,
            db_path=_env_path("WARDEN_DB_PATH", data_dir / "retail.sqlite"),
            domain_dir=domain_dir,
            kb_dir=_env_path("WARDEN_KB_DIR", domain_dir / "kb"),
            index_dir=_env_path("WARDEN_INDEX_DIR", data_dir / "index"),
            tenant=os.environ.get("WARDEN_TENANT", "default"),
            checkpoint_ttl_seconds=int(_env_number("WARDEN_CHECKPOINT_TTL_SECONDS", 0, int))
            or None
            if ttl
            else None,
            audit_ttl_seconds=int(_env_number("WARDEN_AUDIT_TTL_SECONDS", 0, int)) or None,
            approval_threshold=_env_number("WARDEN_APPROVAL_THRESHOLD", 500.0),
            llama_threads=int(
                _env_number("WARDEN_LLAMA_THREADS", os.cpu_count() or 2, int)
            ),
            retrieval_k=int(_env_number("WARDEN_RETRIEVAL_K", 4, int)),
            reranker_dir=_env_path("WARDEN_RERANKER_DIR", None),
            channel=os.environ.get("WARDEN_CHANNEL", "chat"),
            scope_grants={
                pair: frozenset(scopes)
                for pair, scopes in _env_json_object("WARDEN_SCOPE_GRANTS", {}).items()
            },
            reviewers=_env_reviewers("WARDEN_REVIEWERS"),
            review_roles={
                tier: frozenset(roles)
                for tier, roles in _env_json_object("WARDEN_REVIEW_ROLES", DEFAULT_REVIEW_ROLES).items()
            },
            run_lock_seconds=_env_number("WARDEN_RUN_LOCK_SECONDS", 600.0),
            approval_deadlines={
                tier: float(seconds)
                for tier, seconds in _env_json_object("WARDEN_APPROVAL_DEADLINES", DEFAULT_DEADLINES).items()
            },
            api_keys=_env_json_object("WARDEN_API_KEYS", {}),
            token_secret=os.environ.get("WARDEN_TOKEN_SECRET") or None,
        )
        settings = replace(settings, **overrides) if overrides else settings
        # Fail at start, before any store is opened, on a tenant that cannot name keys.
        _check_tenant(settings.tenant)
        return settings
