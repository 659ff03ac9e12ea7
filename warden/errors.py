"""Errors raised by the Warden runtime, grouped by who can fix them."""

from __future__ import annotations


class WardenError(Exception):
    """Base class for every error the runtime raises on purpose."""


class ConfigurationError(WardenError, ValueError):
    """A setting, file or binary the operator controls is missing or invalid."""


class ModelIntegrityError(ConfigurationError):
    """The bundled model file does not match its pinned checksum."""


class ResumeError(WardenError, ValueError):
    """A resume value was rejected; the thread stays paused and unchanged."""


class ThreadStateError(WardenError, RuntimeError):
    """The thread is not in a state that allows the requested operation."""


class CheckpointDecodeError(WardenError, ValueError):
    """A stored checkpoint value could not be rebuilt into its original type.

    ``key`` is the Redis key, ``channel`` the state key or write channel and
    ``type_name`` the dotted name of the stored type, when known.
    """

    def __init__(
        self,
        message: str,
        *,
        key: str | None = None,
        channel: str | None = None,
        type_name: str | None = None,
    ) -> None:
        super().__init__(message)
        self.key = key
        self.channel = channel
        self.type_name = type_name


class CheckpointConnectionError(WardenError, ConnectionError):
    """The checkpoint store could not be reached after the bounded retries."""


class ApprovalConflictError(ResumeError, ThreadStateError):
    """A decision lost a race: the action was already decided by another reviewer.

    It is a ``ThreadStateError`` too, because the action's state, not the
    decision's content, makes it fail.

    ``action_id`` names the action, ``state`` its recorded state and
    ``reviewers`` who decided it.
    """

    def __init__(self, message: str, *, action_id: str, state: str, reviewers: list[str]) -> None:
        super().__init__(message)
        self.action_id = action_id
        self.state = state
        self.reviewers = reviewers


class ApprovalExpiredError(ResumeError):
    """The action's approval deadline passed; it was closed as expired and will not run."""


class ReviewerNotAllowedError(ResumeError):
    """The reviewer's role, or their part in the request, does not allow this decision."""


class AuditAppendError(WardenError, RuntimeError):
    """An audit event could not be appended because concurrent appends kept moving the chain's head."""


class ReplayError(WardenError, RuntimeError):
    """A dry-run replay needed a tool result or model output that the records do not contain."""
