"""Byte-to-text decoding for source files: strict codecs, explicit fallbacks, no guessing.

Nothing here consults the platform's preferred encoding, and no decode uses
``errors="replace"``, so a character is either decoded exactly or the file is
rejected with a reason.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass

from ingestion.errors import UnreadableFileError

_BOMS = (
    # UTF-32 before UTF-16: the UTF-32-LE BOM starts with the UTF-16-LE one.
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
# Control bytes other than tab, newline, vertical tab, form feed and carriage
# return. Text files practically never contain them, binary files nearly always do.
_CONTROL_BYTES = (
    frozenset(range(0x00, 0x09)) | {0x0E, 0x0F} | frozenset(range(0x10, 0x20))
)
_MAX_CONTROL_RATIO = 0.01


@dataclass(frozen=True)
class DecodedText:
    text: str
    encoding: str
    """Codec that decoded the bytes, such as ``utf-8`` or ``latin-1``."""
    note: str | None = None
    """Set when a fallback codec was used, to be shown in the ingest report."""


def decode_bytes(data: bytes) -> DecodedText:
    """Decode file bytes by BOM, then strict UTF-8, then cp1252 or Latin-1.

    Raises:
        UnreadableFileError: the bytes look binary, or a BOM-declared codec
            fails on them.
    """
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                return DecodedText(data.decode(encoding), encoding)
            except UnicodeDecodeError as exc:
                raise UnreadableFileError(
                    f"starts with a {encoding} byte-order mark but is not valid "
                    f"{encoding} at byte {exc.start}"
                ) from None
    if not data:
        return DecodedText("", "utf-8")
    control = sum(1 for byte in data if byte in _CONTROL_BYTES)
    if b"\x00" in data or control / len(data) > _MAX_CONTROL_RATIO:
        raise UnreadableFileError(
            f"looks binary ({control} control bytes in {len(data)}), not text; "
            "remove it from the source or give it the right extension"
        )
    try:
        return DecodedText(data.decode("utf-8"), "utf-8")
    except UnicodeDecodeError as exc:
        first_bad = exc.start
    # Bytes 0x80-0x9F are C1 controls in Latin-1 but curly quotes and dashes in
    # cp1252, so their presence points to the Windows code page.
    if any(0x80 <= byte <= 0x9F for byte in data):
        try:
            text = data.decode("cp1252")
        except UnicodeDecodeError as exc:
            raise UnreadableFileError(
                f"not valid UTF-8 (byte {first_bad}) and not valid cp1252 "
                f"(byte {exc.start}); convert it to UTF-8"
            ) from None
        return DecodedText(
            text, "cp1252", f"not valid UTF-8 at byte {first_bad}; decoded as cp1252"
        )
    return DecodedText(
        data.decode("latin-1"),
        "latin-1",
        f"not valid UTF-8 at byte {first_bad}; decoded as Latin-1",
    )
