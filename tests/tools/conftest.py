"""Fixtures for the retail tools: one database built per session, copied per test."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tools.retail import RetailStore, build_database


@pytest.fixture(scope="session")
def retail_db_json(shared_data: Path) -> Path:
    """The retail db.json of the shared data."""
    return shared_data / "tau2" / "retail" / "db.json"


@pytest.fixture(scope="session")
def retail_initial(retail_db_json: Path) -> dict:
    """db.json as loaded by `json`, the state every fresh database must dump to."""
    return json.loads(retail_db_json.read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def retail_template(
    retail_db_json: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A database built once from db.json, which tests copy and never open."""
    path = tmp_path_factory.mktemp("retail_template") / "retail.sqlite"
    build_database(retail_db_json, path)
    return path


@pytest.fixture
def fresh_retail_db(retail_template: Path, tmp_path_factory: pytest.TempPathFactory):
    """Return a function that copies the template to a new file and returns its path."""

    def copy() -> Path:
        target = tmp_path_factory.mktemp("retail") / "retail.sqlite"
        shutil.copyfile(retail_template, target)
        return target

    return copy


@pytest.fixture
def store(fresh_retail_db) -> RetailStore:
    """A store over a private copy of the freshly built database."""
    return RetailStore(fresh_retail_db())
