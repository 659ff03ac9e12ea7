"""Checkpoint serializer for the Redis saver: LangGraph's format, exact and strict.

Output stays readable by a stock ``JsonPlusSerializer`` (langgraph-checkpoint 4.3),
so data moves freely between savers. Two things differ from it:

- A datetime whose tzinfo is a ``ZoneInfo`` is stored as its fields plus the zone,
  not as an ISO string. It comes back with the same ``ZoneInfo`` instead of a fixed
  UTC offset, also inside dataclasses, Pydantic models and sets.
- Where ``JsonPlusSerializer`` returns the raw field dict of a class it cannot
  import or rebuild, this one raises ``CheckpointDecodeError`` naming the type,
  unless an alias maps the old class path to the new one.
"""

from __future__ import annotations

import dataclasses
import importlib
import threading
from collections import deque
from collections.abc import Mapping
from datetime import datetime
from enum import Enum
from typing import Any
from zoneinfo import ZoneInfo

import ormsgpack
from langgraph.checkpoint.serde import _msgpack as lg_msgpack
from langgraph.checkpoint.serde.jsonplus import (
    EXT_CONSTRUCTOR_KW_ARGS,
    EXT_CONSTRUCTOR_POS_ARGS,
    EXT_CONSTRUCTOR_SINGLE_ARG,
    EXT_DELTA_SNAPSHOT,
    EXT_METHOD_SINGLE_ARG,
    EXT_NUMPY_ARRAY,
    EXT_PYDANTIC_V1,
    EXT_PYDANTIC_V2,
    JsonPlusSerializer,
    _msgpack_default,
    _option,
)
from langgraph.checkpoint.serde.types import SendProtocol, _DeltaSnapshot

from warden.errors import CheckpointDecodeError

_CLASS_CODES = {
    EXT_CONSTRUCTOR_SINGLE_ARG,
    EXT_CONSTRUCTOR_POS_ARGS,
    EXT_CONSTRUCTOR_KW_ARGS,
    EXT_METHOD_SINGLE_ARG,
    EXT_PYDANTIC_V1,
    EXT_PYDANTIC_V2,
}


class CheckpointSerializer(JsonPlusSerializer):
    """``JsonPlusSerializer`` that never hands back a half-decoded value.

    Args:
        aliases: Maps an old dotted class path (``"billing.models.Plan"``) to the
            path it moved to (``"billing.plans.Plan"``). Use it when a class that
            stored threads still reference moves between releases.
        **kwargs: Passed to ``JsonPlusSerializer``; the msgpack allowlist keeps its
            meaning, except that a blocked type raises instead of decoding to a dict.

    Raises (from ``loads_typed``):
        CheckpointDecodeError: a stored type cannot be imported, is not allowed,
            or its constructor rejects the stored fields.
    """

    def __init__(self, *, aliases: Mapping[str, str] | None = None, **kwargs: Any):
        kwargs.pop("__unpack_ext_hook__", None)
        super().__init__(__unpack_ext_hook__=self._ext_hook, **kwargs)
        self.aliases: dict[tuple[str, str], tuple[str, str]] = {
            _split_path(old): _split_path(new) for old, new in (aliases or {}).items()
        }
        # ormsgpack replaces an exception raised in an ext hook with a bare
        # ValueError("ext_hook failed"), so the hook parks the real error here.
        self._local = threading.local()

    def with_msgpack_allowlist(self, extra_allowlist: Any) -> JsonPlusSerializer:
        clone = super().with_msgpack_allowlist(extra_allowlist)
        if clone is not self and isinstance(clone, CheckpointSerializer):
            clone._unpack_ext_hook = clone._ext_hook
            clone._local = threading.local()
        return clone

    def dumps_typed(self, obj: Any) -> tuple[str, bytes]:
        if obj is None or isinstance(obj, (bytes, bytearray)):
            return super().dumps_typed(obj)
        try:
            return "msgpack", self._pack(obj)
        except ormsgpack.MsgpackEncodeError:
            # The parent applies pickle_fallback or raises the same error.
            return super().dumps_typed(obj)

    def _pack(self, obj: Any) -> bytes:
        return ormsgpack.packb(obj, default=self._default, option=_option)

    def _default(self, obj: Any) -> Any:
        """Encode like LangGraph's ``_msgpack_default``, in the same branch order.

        Containers are re-encoded here so that a zoned datetime nested inside them
        still reaches the ZoneInfo branch; every other type is left to LangGraph.
        """
        cls = type(obj)
        if isinstance(obj, _DeltaSnapshot):
            return ormsgpack.Ext(EXT_DELTA_SNAPSHOT, self._pack(obj.value))
        if callable(getattr(obj, "model_dump", None)):
            payload = (
                cls.__module__,
                cls.__name__,
                obj.model_dump(),
                "model_validate_json",
            )
            return ormsgpack.Ext(EXT_PYDANTIC_V2, self._pack(payload))
        if callable(getattr(obj, "get_secret_value", None)) or callable(
            getattr(obj, "dict", None)
        ):
            return _msgpack_default(obj)
        if callable(getattr(obj, "_asdict", None)):
            payload = (cls.__module__, cls.__name__, obj._asdict())
            return ormsgpack.Ext(EXT_CONSTRUCTOR_KW_ARGS, self._pack(payload))
        if isinstance(obj, (set, frozenset, deque)):
            payload = (cls.__module__, cls.__name__, tuple(obj))
            return ormsgpack.Ext(EXT_CONSTRUCTOR_SINGLE_ARG, self._pack(payload))
        if isinstance(obj, datetime) and isinstance(obj.tzinfo, ZoneInfo):
            # A ZoneInfo loaded from a file has no key and cannot be rebuilt by name.
            if obj.tzinfo.key:
                return ormsgpack.Ext(EXT_CONSTRUCTOR_KW_ARGS, self._pack(_zoned(obj)))
        if isinstance(obj, Enum):
            return _msgpack_default(obj)
        if isinstance(obj, SendProtocol):
            args: tuple[Any, ...] = (obj.node, obj.arg)
            if (timeout := getattr(obj, "timeout", None)) is not None:
                args = (*args, timeout)
            payload = (cls.__module__, cls.__name__, args)
            return ormsgpack.Ext(EXT_CONSTRUCTOR_POS_ARGS, self._pack(payload))
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            fields = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
            payload = (cls.__module__, cls.__name__, fields)
            return ormsgpack.Ext(EXT_CONSTRUCTOR_KW_ARGS, self._pack(payload))
        return _msgpack_default(obj)

    def loads_typed(self, data: tuple[str, bytes]) -> Any:
        self._local.error = None
        try:
            return super().loads_typed(data)
        except ValueError:
            error = getattr(self._local, "error", None)
            if error is not None:
                raise error from error.__cause__
            raise
        finally:
            self._local.error = None

    def _unpack(self, data: bytes) -> Any:
        return ormsgpack.unpackb(
            data, ext_hook=self._ext_hook, option=ormsgpack.OPT_NON_STR_KEYS
        )

    def _fail(self, message: str, type_name: str, cause: BaseException | None):
        error = CheckpointDecodeError(message, type_name=type_name)
        error.__cause__ = cause
        if getattr(self._local, "error", None) is None:
            self._local.error = error
        raise error

    def _ext_hook(self, code: int, data: bytes) -> Any:
        if code == EXT_DELTA_SNAPSHOT:
            return _DeltaSnapshot(self._unpack(data))
        if code == EXT_NUMPY_ARRAY:
            return self._load_numpy(data)
        if code not in _CLASS_CODES:
            self._fail(f"unknown msgpack extension code {code}", "?", None)
        parts = self._unpack(data)
        module, name = self.aliases.get((parts[0], parts[1]), (parts[0], parts[1]))
        type_name = f"{module}.{name}"
        self._check_allowed(code, module, name, parts)
        try:
            target = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError) as exc:
            self._fail(
                f"type {type_name} cannot be imported ({exc}); restore it or map "
                "its old path to the new one with CheckpointSerializer(aliases=...)",
                type_name,
                exc,
            )
        try:
            return _construct(code, target, module, name, parts)
        except Exception as exc:  # noqa: BLE001 - any constructor error is reported
            self._fail(
                f"type {type_name} rejected its stored fields "
                f"({type(exc).__name__}: {exc})",
                type_name,
                exc,
            )

    def _check_allowed(self, code: int, module: str, name: str, parts: Any) -> None:
        if code == EXT_METHOD_SINGLE_ARG:
            if (module, name, parts[3]) in lg_msgpack.SAFE_MSGPACK_METHODS:
                return
            self._fail(
                f"method {module}.{name}.{parts[3]} is not allowed in checkpoints",
                f"{module}.{name}",
                None,
            )
        allowed = self._allowed_msgpack_modules
        if (
            (module, name) in lg_msgpack.SAFE_MSGPACK_TYPES
            or allowed is True
            or (allowed and (module, name) in allowed)
        ):
            return
        self._fail(
            f"type {module}.{name} is not in the msgpack allowlist; add "
            f"({module!r}, {name!r}) to allowed_msgpack_modules",
            f"{module}.{name}",
            None,
        )

    def _load_numpy(self, data: bytes) -> Any:
        try:
            import numpy  # noqa: PLC0415 - only when a stored array needs it

            dtype, shape, order, buffer = self._unpack(data)
            array = numpy.frombuffer(buffer, dtype=numpy.dtype(dtype))
            return array.reshape(shape, order=order)
        except (ImportError, ValueError, TypeError) as exc:
            self._fail(
                f"numpy array could not be rebuilt ({exc})", "numpy.ndarray", exc
            )


def _zoned(value: datetime) -> tuple[str, str, dict[str, Any]]:
    # datetime(**fields) rebuilds it; ("datetime", "datetime") is on LangGraph's
    # safe list, so a stock reader in strict mode accepts it as well.
    fields = {
        "year": value.year,
        "month": value.month,
        "day": value.day,
        "hour": value.hour,
        "minute": value.minute,
        "second": value.second,
        "microsecond": value.microsecond,
        "tzinfo": value.tzinfo,
        "fold": value.fold,
    }
    return ("datetime", "datetime", fields)


def _split_path(path: str) -> tuple[str, str]:
    module, _, name = path.rpartition(".")
    if not module or not name:
        raise ValueError(
            f"expected a dotted class path like 'pkg.mod.Class', got {path!r}"
        )
    return module, name


def _construct(code: int, target: Any, module: str, name: str, parts: Any) -> Any:
    if code == EXT_CONSTRUCTOR_SINGLE_ARG:
        return target(parts[2])
    if code == EXT_CONSTRUCTOR_POS_ARGS:
        if (module, name) == ("langgraph.types", "Send"):
            # Send keeps its optional timeout as a keyword-only argument.
            node, arg, *rest = parts[2]
            return target(node, arg, timeout=rest[0]) if rest else target(node, arg)
        return target(*parts[2])
    if code == EXT_CONSTRUCTOR_KW_ARGS:
        return target(**parts[2])
    if code == EXT_METHOD_SINGLE_ARG:
        return getattr(target, parts[3])(parts[2])
    if code == EXT_PYDANTIC_V2:
        try:
            return target(**parts[2])
        except Exception:  # noqa: BLE001
            # A model with field aliases rejects its own model_dump() output, so
            # LangGraph falls back to model_construct; the type is still exact.
            return target.model_construct(**parts[2])
    # EXT_PYDANTIC_V1
    try:
        return target(**parts[2])
    except Exception:  # noqa: BLE001
        return target.construct(**parts[2])
