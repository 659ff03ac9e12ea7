"""Property-based requests from the published OpenAPI schema: no input may produce a 5xx.

Schemathesis generates valid and invalid requests for every operation and
sends them with an admin key to a live service. Examples per operation and
mode are bounded so the module runs in well under two minutes.
"""

from __future__ import annotations

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from tests.graph.conftest import CANCEL_MESSAGE, cancel_script
from tests.service.conftest import ADMIN_KEY, CUSTOMER_KEY

MAX_EXAMPLES = 50


@pytest.fixture
def live_service(start_service):
    service = start_service(cancel_script())
    # Known threads, one paused for approval, so generated ids sometimes hit real ones.
    service.new_thread(ADMIN_KEY, thread_id="a")
    service.new_thread(ADMIN_KEY, thread_id="b")
    service.send("b", CANCEL_MESSAGE, key=ADMIN_KEY)
    service.new_thread(CUSTOMER_KEY, thread_id="c")
    return service


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_server_errors(live_service, mode):
    schema = schemathesis.openapi.from_url(f"{live_service.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}

    with requests.Session() as session:
        # No proxy variable may route a generated request off loopback.
        session.trust_env = False
        for operation in operations:
            has_input = bool(len(operation.path_parameters) or len(operation.query) or len(operation.body))
            if mode == GenerationMode.NEGATIVE and not has_input:
                # Nothing to make invalid; the positive run covers it.
                continue

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=MAX_EXAMPLES,
                deadline=None,
                database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            )
            def check(case):
                case.call_and_validate(
                    session=session, headers=headers, checks=[not_a_server_error], timeout=30
                )

            check()
