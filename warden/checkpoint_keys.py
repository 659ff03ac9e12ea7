"""Redis key names and record encoding of the checkpoint saver.

Each thread owns eight keys that share the hash tag ``{<thread id>}``, so a
script or transaction that touches them stays on one Redis Cluster slot. The
keys start with the saver's prefix, ``warden:cp`` unless it is given another
one, so that savers with different prefixes share a server without sharing
threads.
"""

from __future__ import annotations

import re
from typing import Any

KEY_PREFIX = "warden:cp"
# Glob characters would change the saver's SCAN patterns, and braces its hash tag.
_PREFIX_PATTERN = re.compile(r"[A-Za-z0-9_.:/-]{1,100}")
KEY_SUFFIXES = ("idx", "cp", "meta", "refs", "blobs", "writes", "widx", "keep")

# Percent-escape only the characters that could end the hash tag early or clash
# with an escape. The empty id becomes "%00", which no other id can produce
# because every literal "%" is escaped to "%25".
_TAG_ESCAPES = str.maketrans({"%": "%25", "{": "%7B", "}": "%7D"})


def encode_thread_id(thread_id: Any) -> str:
    """Return the hash-tag body for ``thread_id``."""
    text = str(thread_id)
    if not text:
        return "%00"
    return text.translate(_TAG_ESCAPES)


def decode_thread_id(tag: str) -> str:
    """Invert ``encode_thread_id``."""
    if tag == "%00":
        return ""
    return tag.replace("%7B", "{").replace("%7D", "}").replace("%25", "%")


def check_key_prefix(prefix: Any) -> str:
    """Return ``prefix`` if it can start the saver's keys, else raise ValueError."""
    if not isinstance(prefix, str) or not _PREFIX_PATTERN.fullmatch(prefix):
        raise ValueError(
            f"invalid checkpoint key prefix {prefix!r}: use 1 to 100 letters, digits "
            "or the characters _ . : / -, for example 'warden:acme:cp'"
        )
    return prefix


def thread_keys(thread_id: Any, prefix: str = KEY_PREFIX) -> list[str]:
    """Return the eight keys of one thread in the order the Lua scripts expect."""
    tag = encode_thread_id(thread_id)
    return [f"{prefix}:{{{tag}}}:{suffix}" for suffix in KEY_SUFFIXES]


def thread_key_pattern(prefix: str = KEY_PREFIX) -> str:
    """Return a SCAN pattern that matches one key (``idx``) per stored thread."""
    return f"{prefix}:{{*}}:idx"


def thread_id_from_key(key: str) -> str:
    """Return the thread id of a key built by ``thread_keys``."""
    start = key.index("{") + 1
    return decode_thread_id(key[start : key.index("}", start)])


def check_part(name: str, value: str) -> str:
    """Reject a namespace or id that contains NUL, the separator inside members."""
    if "\x00" in value:
        raise ValueError(f"{name} must not contain a NUL character, got {value!r}")
    return value
