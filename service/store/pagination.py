"""Keyset pagination cursors: opaque to clients, an id inside."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from asyncpg import Connection, Record

__all__ = [
    "InvalidCursor",
    "count_rows",
    "decode_cursor",
    "encode_cursor",
    "fetch_page",
    "like_escape",
]


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


def like_escape(text: str) -> str:
    """Text for a LIKE pattern, matched literally (wildcards in user input are escaped)."""
    return text.replace("\\", "\\\\").replace("%", r"\%").replace("_", r"\_")


async def fetch_page(
    conn: Connection, table: str, where: str, args: list[Any], first: int, after: int | None
) -> list[Record]:
    """Keyset page of `table` (aliased `x` in `where`), newest first; one row more than
    asked tells the caller whether there is a next page."""
    args = [*args]
    if after is not None:
        args.append(after)
        where += f" and x.id < ${len(args)}"
    args.append(first + 1)
    return list(
        await conn.fetch(
            f"select x.* from {table} x where {where} order by x.id desc limit ${len(args)}", *args
        )
    )


async def count_rows(conn: Connection, table: str, where: str, args: list[Any]) -> int:
    return int(await conn.fetchval(f"select count(*) from {table} x where {where}", *args))
