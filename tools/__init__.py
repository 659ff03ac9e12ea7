"""Tools the agent acts through: one module per system, with governance facts."""

from tools.base import Access, RiskTier, ToolError, ToolSpec
from tools.retail import RETAIL_TOOLS, RetailStore, build_database

__all__ = [
    "Access",
    "RETAIL_TOOLS",
    "RetailStore",
    "RiskTier",
    "ToolError",
    "ToolSpec",
    "build_database",
]
