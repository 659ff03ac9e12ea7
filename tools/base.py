"""Tool declarations shared by every system the agent acts on.

A `ToolSpec` carries what the governance layer needs to decide on a call
(access, permission scope, risk) next to the schema the model fills in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pydantic

Access = Literal["read", "write", "none"]
RiskTier = Literal["low", "medium", "high"]


class ToolError(Exception):
    """A failure the caller or the model can fix.

    The message states what was wrong, with the offending value, and what to
    change. A call that raises it has changed nothing.
    """


class RetryableToolError(ToolError):
    """A transient failure, such as a timeout or a lost connection, that a retry may fix.

    Unlike other ``ToolError``s, a write that raises it may already have taken
    effect, so a caller retries a write only with the same idempotency key on
    a store that de-duplicates by that key, and otherwise reports the outcome
    as unknown.
    """


@dataclass(frozen=True)
class ToolSpec:
    """Declaration of one tool: its contract for the model and its governance facts."""

    name: str
    """Name the model calls the tool by."""
    description: str
    """Text for the model: what the tool does, when to use it, what it returns."""
    args_schema: type[pydantic.BaseModel]
    """Model that validates the arguments and rejects unknown fields."""
    access: Access
    """Whether the tool reads, writes or does not touch the system of record."""
    scope: str
    """Permission the caller needs, as `resource:verb` (for example `orders:cancel`)."""
    risk: RiskTier
    """How much harm a wrong call can do, as input to the approval policy."""
    irreversible: bool
    """Whether the tool's effect cannot be undone by another tool."""
    claims: tuple[str, ...] = ()
    """Regular expressions for the words that claim this tool's change was made
    (for example `cancel+ed`). The answer check drops a sentence that uses them
    for a change that was not done."""

    def __post_init__(self) -> None:
        extra = self.args_schema.model_config.get("extra")
        if extra != "forbid":
            raise ValueError(
                f"args_schema {self.args_schema.__name__} of tool {self.name!r} has "
                f"extra={extra!r}; set model_config = ConfigDict(extra='forbid')"
            )

    def json_schema(self) -> dict:
        """Return the JSON Schema of the arguments for a model's tool calling."""
        return self.args_schema.model_json_schema()
