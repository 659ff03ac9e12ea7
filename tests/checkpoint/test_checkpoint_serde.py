"""Values that must come back from Redis exactly, and values that must fail loudly."""

from __future__ import annotations

import enum
import sys
import types
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from checkpoint_support import Receipt, sample_plan
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langgraph.checkpoint.conformance.test_utils import generate_checkpoint
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.types import Send

from warden.checkpoint import RedisSaver
from warden.checkpoint_serde import CheckpointSerializer
from warden.errors import CheckpointDecodeError


class Tier(enum.Enum):
    GOLD = "gold"


@dataclass
class Address:
    city: str
    moved_in: date


def _values() -> dict:
    return {
        "messages": [
            HumanMessage(id="h1", content="hi"),
            AIMessage(
                id="a1",
                content="",
                tool_calls=[{"name": "lookup", "args": {"id": 1}, "id": "c1"}],
            ),
            ToolMessage(id="t1", content="ok", tool_call_id="c1"),
        ],
        "plan": sample_plan(),
        "receipt": Receipt(
            "#W1", 500, datetime(2026, 5, 1, tzinfo=ZoneInfo("Europe/Paris"))
        ),
        "address": Address("Lyon", date(2020, 2, 29)),
        "when_utc": datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc),
        "when_offset": datetime(
            2026, 1, 1, 12, 0, tzinfo=timezone(timedelta(hours=-3, minutes=-30))
        ),
        "raw": b"\x00\xffbytes",
        "raw_mutable": bytearray(b"abc"),
        "tags": {"vip", "returning"},
        "frozen": frozenset({1, 2}),
        "amount": Decimal("12.30"),
        "request_id": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "tier": Tier.GOLD,
        "nested": {
            "deep": [{"at": datetime(2026, 2, 2, tzinfo=ZoneInfo("Asia/Tokyo"))}]
        },
        "send": Send("execute_actions", {"step": 1}),
        "nothing": None,
    }


def _round_trip(checkpointer, values: dict) -> dict:
    config = {"configurable": {"thread_id": "serde", "checkpoint_ns": ""}}
    versions = {key: "1" for key in values}
    checkpoint = generate_checkpoint(channel_values=values, channel_versions=versions)
    stored = checkpointer.put(
        config, checkpoint, {"source": "loop", "step": 1}, versions
    )
    checkpointer.put_writes(
        stored, [("plan", values["plan"]), ("tags", values["tags"])], "task"
    )
    restored = checkpointer.get_tuple(stored)
    assert [w[2] for w in restored.pending_writes] == [values["plan"], values["tags"]]
    return restored.checkpoint["channel_values"]


def test_values_round_trip_exactly(saver: RedisSaver) -> None:
    values = _values()
    restored = _round_trip(saver, values)
    assert restored == values
    for key, value in values.items():
        assert type(restored[key]) is type(value), key
    assert restored["when_offset"].utcoffset() == timedelta(hours=-3, minutes=-30)
    assert restored["receipt"].issued_at.tzinfo == ZoneInfo("Europe/Paris")
    assert restored["nested"]["deep"][0]["at"].tzinfo == ZoneInfo("Asia/Tokyo")
    assert restored["messages"][1].tool_calls == values["messages"][1].tool_calls


def test_stock_serializer_reads_output() -> None:
    values = _values()
    typed = CheckpointSerializer().dumps_typed(values)
    for reader in (
        JsonPlusSerializer(),
        JsonPlusSerializer(allowed_msgpack_modules=None),
    ):
        restored = reader.loads_typed(typed)
        assert restored["when_offset"] == values["when_offset"]
        assert restored["nested"]["deep"][0]["at"].tzinfo == ZoneInfo("Asia/Tokyo")
    restored = JsonPlusSerializer().loads_typed(typed)
    assert restored == values


def test_zoned_datetime_keeps_zone() -> None:
    serializer = CheckpointSerializer()
    before_dst = datetime(2026, 3, 28, 12, 0, tzinfo=ZoneInfo("Europe/Paris"))
    restored = serializer.loads_typed(serializer.dumps_typed(before_dst))
    assert restored.tzinfo is ZoneInfo("Europe/Paris")
    # With the zone kept, local-time arithmetic crosses the DST change correctly.
    assert (restored + timedelta(days=1)).utcoffset() == timedelta(hours=2)
    ambiguous = datetime(2026, 10, 25, 2, 30, fold=1, tzinfo=ZoneInfo("Europe/Paris"))
    restored = serializer.loads_typed(serializer.dumps_typed(ambiguous))
    assert restored.fold == 1
    assert restored.utcoffset() == timedelta(hours=1)


def test_values_match_in_memory(saver: RedisSaver) -> None:
    assert _round_trip(saver, _values()) == _round_trip(InMemorySaver(), _values())


@pytest.fixture
def vanishing_module():
    """A module that exists while a value is stored and is gone when it is read."""
    module = types.ModuleType("billing_release_one")
    sys.modules["billing_release_one"] = module
    exec(  # noqa: S102 - defines a throwaway class for the test
        "from dataclasses import dataclass\n"
        "@dataclass\n"
        "class Invoice:\n"
        "    number: str\n"
        "    cents: int\n",
        module.__dict__,
    )
    yield module
    sys.modules.pop("billing_release_one", None)


def _store_then_forget(saver: RedisSaver, module) -> dict:
    config = {"configurable": {"thread_id": "moved", "checkpoint_ns": ""}}
    values = {"invoice": module.Invoice("INV-1", 990)}
    checkpoint = generate_checkpoint(
        channel_values=values, channel_versions={"invoice": "1"}
    )
    stored = saver.put(config, checkpoint, {}, {"invoice": "1"})
    sys.modules.pop("billing_release_one")
    return stored


def test_moved_dataclass_raises_with_key(saver: RedisSaver, vanishing_module) -> None:
    stored = _store_then_forget(saver, vanishing_module)
    with pytest.raises(CheckpointDecodeError) as raised:
        saver.get_tuple(stored)
    error = raised.value
    assert error.type_name == "billing_release_one.Invoice"
    assert error.channel == "invoice"
    assert error.key == "warden:cp:{moved}:blobs"
    assert "billing_release_one.Invoice" in str(error)
    assert "aliases" in str(error)


def test_moved_dataclass_alias_rebuilds(saver: RedisSaver, vanishing_module) -> None:
    stored = _store_then_forget(saver, vanishing_module)
    new_home = types.ModuleType("billing_release_two")
    new_home.Invoice = vanishing_module.Invoice
    sys.modules["billing_release_two"] = new_home
    try:
        aliased = RedisSaver(
            saver.client,
            serde=CheckpointSerializer(
                aliases={"billing_release_one.Invoice": "billing_release_two.Invoice"}
            ),
        )
        restored = aliased.get_tuple(stored).checkpoint["channel_values"]["invoice"]
    finally:
        sys.modules.pop("billing_release_two")
    assert restored == vanishing_module.Invoice("INV-1", 990)


def test_plain_serializer_loses_type(vanishing_module) -> None:
    # Why the saver does not use JsonPlusSerializer as is: it hands back a dict.
    typed = JsonPlusSerializer().dumps_typed(vanishing_module.Invoice("INV-1", 990))
    sys.modules.pop("billing_release_one")
    assert JsonPlusSerializer().loads_typed(typed) == {"number": "INV-1", "cents": 990}
    with pytest.raises(CheckpointDecodeError, match="billing_release_one.Invoice"):
        CheckpointSerializer().loads_typed(typed)


def test_changed_constructor_raises(vanishing_module) -> None:
    typed = CheckpointSerializer().dumps_typed(vanishing_module.Invoice("INV-1", 990))
    exec(  # noqa: S102
        "from dataclasses import dataclass\n"
        "@dataclass\n"
        "class Invoice:\n"
        "    number: str\n",
        vanishing_module.__dict__,
    )
    with pytest.raises(CheckpointDecodeError, match="rejected its stored fields"):
        CheckpointSerializer().loads_typed(typed)


def test_nested_moved_value_raises(vanishing_module) -> None:
    value = {
        "history": [
            Address("Paris", date(2021, 1, 1)),
            vanishing_module.Invoice("I", 1),
        ]
    }
    typed = CheckpointSerializer().dumps_typed(value)
    sys.modules.pop("billing_release_one")
    with pytest.raises(CheckpointDecodeError, match="billing_release_one.Invoice"):
        CheckpointSerializer().loads_typed(typed)


def test_blocked_type_raises_in_strict_mode() -> None:
    serializer = CheckpointSerializer(allowed_msgpack_modules=None)
    typed = serializer.dumps_typed(Address("Lyon", date(2020, 1, 1)))
    with pytest.raises(CheckpointDecodeError, match="allowlist"):
        serializer.loads_typed(typed)
    allowed = serializer.with_msgpack_allowlist([Address])
    assert allowed.loads_typed(typed) == Address("Lyon", date(2020, 1, 1))
    assert serializer.loads_typed(serializer.dumps_typed({"x": {1, 2}})) == {
        "x": {1, 2}
    }


def test_custom_serde_error_names_key(saver: RedisSaver) -> None:
    class BrokenSerde(JsonPlusSerializer):
        def loads_typed(self, data):
            if data[0] == "bytes":
                raise RuntimeError("cipher key rotated")
            return super().loads_typed(data)

    config = {"configurable": {"thread_id": "custom", "checkpoint_ns": ""}}
    checkpoint = generate_checkpoint(
        channel_values={"secret": b"x"}, channel_versions={"secret": "1"}
    )
    stored = saver.put(config, checkpoint, {}, {"secret": "1"})
    broken = RedisSaver(saver.client, serde=BrokenSerde())
    with pytest.raises(CheckpointDecodeError, match="cipher key rotated") as raised:
        broken.get_tuple(stored)
    assert raised.value.channel == "secret"
    assert raised.value.key == "warden:cp:{custom}:blobs"
