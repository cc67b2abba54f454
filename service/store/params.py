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

__all__ = ["decimal_list", "decimals_of", "id_list", "ids_of", "text_list", "texts_of"]


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


def id_list(values: Iterable[int]) -> str:
    """Integers as one comma-separated text, read in SQL by `ids_of`."""
    return ",".join(map(str, values))


def ids_of(param: str) -> str:
    """SQL: the bigint[] of an `id_list` parameter such as `$2`."""
    return f"string_to_array({param}, ',')::bigint[]"


def decimal_list(values: Iterable[Decimal]) -> str:
    """Exact amounts as one comma-separated text, read in SQL by `decimals_of`."""
    return ",".join(map(str, values))


def decimals_of(param: str) -> str:
    """SQL: the numeric[] of a `decimal_list` parameter such as `$3`."""
    return f"string_to_array({param}, ',')::numeric[]"
