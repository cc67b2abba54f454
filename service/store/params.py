"""Long lists as query parameters, in the form cheapest to send.

asyncpg encodes a list parameter element by element, and checks each element against the
`collections.abc` classes in Python on the way (about 0.3 µs a string): a batch's candidate
queries send thousands of keys. One JSON or comma-separated text is built in C instead, and
PostgreSQL splits it as fast as it reads an array.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

__all__ = ["id_list", "text_list"]


def text_list(values: Iterable[str]) -> str:
    """Strings as one JSON array; in SQL: `json_array_elements_text($n::text::json)`.

    The parameter is typed text, not json: a json codec set on the connection would encode
    the string again.
    """
    return json.dumps(values if isinstance(values, list) else list(values), ensure_ascii=False)


def id_list(values: Iterable[int]) -> str:
    """Integers as one comma-separated text; in SQL: `string_to_array($n, ',')::bigint[]`."""
    return ",".join(map(str, values))
