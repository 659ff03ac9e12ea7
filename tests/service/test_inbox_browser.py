"""The reviewer inbox in headless Chromium: log in, approve one action, reject another.

Uses Debian's ``/usr/bin/chromium`` (``scripts/install-browser.sh`` installs it)
through Python Playwright, with a fresh profile and background networking off.
The screenshot of the loaded inbox goes to the test's temporary directory, and
replaces the tracked ``docs/inbox.png`` only when ``WARDEN_REFRESH_SCREENSHOTS=1``.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from ingestion.embedder import load_default_embedder
from ingestion.index import KnowledgeIndex, build_index
from tests.graph.conftest import CANCEL_MESSAGE, EMMA_ORDER, cancel_script
from tests.service.conftest import ALICE_KEY, CUSTOMER_KEY
from warden.settings import EXAMPLE_DOMAIN_DIR

playwright_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = Path("/usr/bin/chromium")
DOCS_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "inbox.png"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


@pytest.fixture(scope="session")
def example_index(tmp_path_factory: pytest.TempPathFactory) -> KnowledgeIndex:
    index_dir = tmp_path_factory.mktemp("index")
    embedder = load_default_embedder()
    build_index(EXAMPLE_DOMAIN_DIR / "kb", index_dir, embedder, progress=False)
    return KnowledgeIndex.load(index_dir, embedder)


@pytest.fixture
def page(tmp_path: Path):
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing; run scripts/install-browser.sh")
    with playwright_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1100, "height": 1400},
        )
        try:
            yield context.new_page()
        finally:
            context.close()


def _log_in(page, url: str, key: str) -> None:
    page.goto(f"{url}/inbox")
    page.fill("#token", key)
    page.click("form#login button[type=submit]")
    page.wait_for_selector("body[data-loaded]")


def _file_version(path: Path) -> tuple[int, bytes] | None:
    """Return the file's modification time in nanoseconds and its content, or None when missing."""
    if not path.exists():
        return None
    return path.stat().st_mtime_ns, path.read_bytes()


def _order(service):
    return service.store.call("get_order_details", {"order_id": EMMA_ORDER})


def test_reviewer_approves_and_rejects_in_browser(start_service, example_index, page, tmp_path):
    refresh_screenshot = os.environ.get("WARDEN_REFRESH_SCREENSHOTS") == "1"
    docs_before = _file_version(DOCS_SCREENSHOT)
    service = start_service(cancel_script("Your order #W2417020 is cancelled."), index=example_index)
    first = service.new_thread(thread_id="emma-first")
    second = service.new_thread(thread_id="emma-second")
    service.send(first, CANCEL_MESSAGE)
    service.send(second, CANCEL_MESSAGE)

    _log_in(page, service.url, ALICE_KEY)
    assert page.inner_text("[data-testid=who]") == "alice (supervisor, tenant acme)"
    items = page.locator("li.approval")
    assert items.count() == 2
    # Oldest first: the first thread paused first.
    assert items.nth(0).get_attribute("data-thread-id") == first
    item = items.nth(0)
    assert CANCEL_MESSAGE in item.locator(".customer-message").inner_text()
    assert "cancel_pending_order" in item.locator(".plan").inner_text()
    assert "needs_approval" in item.locator(".verdict").inner_text()
    item.locator(".citations-details summary").click()
    passages = item.locator("dl.citations dd")
    assert passages.count() > 0
    assert passages.first.inner_text().strip()
    arguments = item.locator("textarea.arguments")
    assert '"order_id": "#W2417020"' in arguments.input_value()
    assert arguments.get_attribute("readonly") is not None
    screenshot = tmp_path / "inbox.png"
    page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.read_bytes().startswith(PNG_SIGNATURE)
    assert screenshot.stat().st_size > len(PNG_SIGNATURE)
    if refresh_screenshot:
        shutil.copyfile(screenshot, DOCS_SCREENSHOT)
    else:
        assert _file_version(DOCS_SCREENSHOT) == docs_before, "docs/inbox.png changed without WARDEN_REFRESH_SCREENSHOTS=1"

    item.locator(".submit").click()
    page.wait_for_function("document.querySelectorAll('li.approval').length === 1")
    assert re.search(rf"{first}: answered", page.inner_text("#status"))
    assert _order(service)["status"] == "cancelled"

    remaining = page.locator("li.approval").first
    assert remaining.get_attribute("data-thread-id") == second
    remaining.locator("input[type=radio][value=reject]").check()
    remaining.locator("input.text").fill("order already cancelled on the first request")
    remaining.locator(".submit").click()
    page.wait_for_function("document.querySelectorAll('li.approval').length === 0")
    assert page.locator("#empty").is_visible()

    order = _order(service)
    assert order["status"] == "cancelled"
    assert len([p for p in order["payment_history"] if p["transaction_type"] == "refund"]) == 1

    customer = service.client(CUSTOMER_KEY)
    approved = customer.get(f"/v1/threads/{first}").json()
    assert approved["status"] == "idle"
    assert [(r["status"], r["reviewer"]) for r in approved["results"]] == [("done", "alice")]
    rejected = customer.get(f"/v1/threads/{second}").json()
    [result] = rejected["results"]
    assert (result["status"], result["reviewer"]) == ("rejected", "alice")
    assert "order already cancelled on the first request" in result["error"]

    audit = customer.get(f"/v1/threads/{second}/history").json()["audit"]
    decisions = [event for event in audit if event["event"].startswith("decision_")]
    assert [(e["event"], e["reviewers"]) for e in decisions] == [("decision_reject", ["alice"])]


def test_expired_request_shows_as_expired(start_service, page):
    service = start_service(cancel_script(), approval_deadlines={"low": 0.0, "medium": 0.0, "high": 0.0})
    thread_id = service.new_thread()
    service.send(thread_id, CANCEL_MESSAGE)
    _log_in(page, service.url, ALICE_KEY)
    item = page.locator("li.approval").first
    assert item.get_attribute("data-thread-id") == thread_id
    assert "expired" in (item.get_attribute("class") or "")
    assert item.locator(".expired-badge").is_visible()
    assert item.locator("input[type=radio][value=approve]").is_disabled()
    assert item.locator(".submit").inner_text() == "Close as expired"

    item.locator(".submit").click()
    page.wait_for_function("document.querySelectorAll('li.approval').length === 0")
    assert "expired" in page.inner_text("#status")
    assert _order(service)["status"] == "pending"
