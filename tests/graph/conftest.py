"""Fixtures for the support graph: a database per test and a runtime on the test Redis."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tools.retail import RetailStore, build_database
from warden.models import ScriptedChatModel
from warden.runtime import Warden
from warden.settings import EXAMPLE_DOMAIN_DIR, Settings

EMMA = {"first_name": "Emma", "last_name": "Smith", "zip": "10192"}
EMMA_ORDER = "#W2417020"
# Reviewer directory of the tests: every name used as a reviewer may decide any risk tier.
REVIEWERS = {"alice": "supervisor", "bob": "supervisor", "carol": "supervisor"}
CANCEL_MESSAGE = (
    "Hi, this is Emma Smith, zip code 10192. I found a better deal on the laptop, "
    "so please cancel my order #W2417020, I no longer need it."
)


def cancel_script(answer: str = "Your order #W2417020 has been cancelled.") -> dict:
    """Script a model that authenticates Emma, reads her order and proposes the cancel."""
    return {
        "IntentOutput": [{"intent": "cancel_order", "entities": {"first_name": "Emma", "last_name": "Smith"}}],
        "PlanOutput": [
            {
                "steps": [
                    {"tool": "find_user_id_by_name_zip", "arguments": EMMA, "why": "authenticate"},
                    {"tool": "get_order_details", "arguments": {"order_id": EMMA_ORDER}, "why": "check status"},
                    {
                        "tool": "cancel_pending_order",
                        "arguments": {"order_id": EMMA_ORDER, "reason": "no longer needed"},
                        "why": "the customer no longer needs it",
                    },
                ]
            }
        ],
        "text": [answer],
    }


@pytest.fixture(scope="session")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "retail.sqlite"
    build_database(EXAMPLE_DOMAIN_DIR / "db.json", path)
    return path


@pytest.fixture
def settings(tmp_path: Path, redis_url: str, template_db: Path) -> Settings:
    db_path = tmp_path / "retail.sqlite"
    shutil.copy(template_db, db_path)
    return Settings.from_env(
        data_dir=tmp_path,
        redis_url=redis_url,
        db_path=db_path,
        index_dir=tmp_path / "index",
        chat_model="scripted",
        reviewers=REVIEWERS,
    )


@pytest.fixture
def store(settings: Settings) -> RetailStore:
    return RetailStore(settings.db_path)


@pytest.fixture
def open_warden(settings: Settings):
    """Return a function that opens a runtime on a scripted model, closed after the test."""
    opened = []

    def factory(script: dict, *, index=None, **overrides) -> Warden:
        manager = Warden.open(
            Settings.from_env(**{**settings.__dict__, **overrides}),
            chat_model=ScriptedChatModel(script=script),
            index=index,
        )
        opened.append(manager)
        return manager.__enter__()

    yield factory
    for manager in opened:
        manager.__exit__(None, None, None)
