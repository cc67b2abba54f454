"""Relay connections over keyset-paged store queries."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from ..errors import BadUserInput
from ..store.pagination import InvalidCursor, decode_cursor, encode_cursor

__all__ = ["check_page", "page", "parse_id"]

T = TypeVar("T")


def check_page(first: int | None, after: str | None, max_page_size: int) -> tuple[int, int | None]:
    """The page size and the position to continue after, both checked."""
    if first is None:
        raise BadUserInput("first must be a number (or left out)", field="first")
    if first < 0:
        raise BadUserInput("first must not be negative", field="first")
    if first > max_page_size:
        raise BadUserInput(
            f"first may be at most {max_page_size}; page through with `after`", field="first"
        )
    try:
        return first, decode_cursor(after)
    except InvalidCursor as exc:
        raise BadUserInput(str(exc), field="after") from None


def page(
    rows: Sequence[Any], first: int, build: Callable[[Any], T]
) -> tuple[list[tuple[str, T]], bool, str | None]:
    """Cut the extra row the store fetched and build (cursor, node) pairs."""
    has_next = len(rows) > first
    kept = rows[:first]
    edges = [(encode_cursor(r["id"]), build(r)) for r in kept]
    return edges, has_next, edges[-1][0] if edges else None


def parse_id(value: str | None, what: str = "id") -> int | None:
    """Ids are decimal strings; anything else cannot name a row, so it finds none."""
    if value is None:
        return None
    text = str(value).strip()
    if not text.isdigit() or not text.isascii() or len(text) > 18:
        return None
    return int(text)
