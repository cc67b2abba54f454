"""Keyset pagination cursors: opaque to clients, an id inside."""

from __future__ import annotations

import base64
import binascii

__all__ = ["InvalidCursor", "decode_cursor", "encode_cursor"]


class InvalidCursor(ValueError):
    pass


def encode_cursor(position: int) -> str:
    return base64.urlsafe_b64encode(f"v1:{position}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int | None:
    if cursor is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        version, _, value = raw.partition(":")
        if version != "v1":
            raise ValueError
        position = int(value)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidCursor(f"cursor {cursor!r} is not a cursor this service issued") from None
    if not 0 <= position < 2**63:
        raise InvalidCursor(f"cursor {cursor!r} is not a cursor this service issued")
    return position
