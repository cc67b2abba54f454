"""Long lists as query parameters, in the form cheapest to send.

asyncpg encodes a list parameter element by element, and checks each element against the
`collections.abc` classes in Python on the way (about 0.3 µs a string): a batch's candidate
queries send thousands of keys. One JSON or comma-separated text is built in C instead, and
PostgreSQL splits it as fast as it reads an array. Each encoder has its SQL reader beside it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from decimal import Decimal

__all__ = ["bigints_of", "number_list", "numerics_of", "text_list", "texts_of"]


def text_list(values: Iterable[str]) -> str:
    """Strings as one JSON array, read in SQL by `texts_of`."""
    values = values if isinstance(values, list) else list(values)
    return json.dumps(values, ensure_ascii=False, separators=(",", ":"))


def texts_of(param: str) -> str:
    """SQL: the rows (one text column) of a `text_list` parameter such as `$2`.

    The parameter is typed text, not json: a json codec set on the connection would encode
    the string again.
    """
    return f"json_array_elements_text({param}::text::json)"


def number_list(values: Iterable[int | Decimal]) -> str:
    """Integers or exact amounts as one comma-separated text, read in SQL by `bigints_of` or
    `numerics_of`."""
    return ",".join(map(str, values))


def bigints_of(param: str) -> str:
    """SQL: the bigint[] of a `number_list` parameter such as `$2`."""
    return _array_of(param, "bigint")


def numerics_of(param: str) -> str:
    """SQL: the numeric[] of a `number_list` parameter such as `$3`."""
    return _array_of(param, "numeric")


def _array_of(param: str, element: str) -> str:
    return f"string_to_array({param}, ',')::{element}[]"
