"""Message bytes in a text column: as they are when they are clean UTF-8 (readable by people),
else base64 behind a marker. A NUL byte or invalid UTF-8 in a hostile message must not make the
write itself fail (PostgreSQL's text refuses NUL)."""

from __future__ import annotations

import base64

_BASE64 = "base64:"


def bytes_to_text(data: bytes) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = ""
    if text and "\x00" not in text and not text.startswith(_BASE64):
        return text
    return _BASE64 + base64.b64encode(data).decode("ascii")


def text_to_bytes(text: str) -> bytes:
    if text.startswith(_BASE64):
        return base64.b64decode(text.removeprefix(_BASE64))
    return text.encode("utf-8")
