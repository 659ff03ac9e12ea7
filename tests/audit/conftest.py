"""Fixtures for the audit tests: the graph fixtures on the test Redis and SQLite."""

from __future__ import annotations

from tests.graph.conftest import (  # noqa: F401 - fixtures are used by name
    open_warden,
    settings,
    store,
    template_db,
)
