"""Payment references: tokenizing remittance text, normalizing numbers and symbols, near misses.

Pure string work, no I/O. Everything here is deterministic and case-insensitive: references are
compared upper-cased.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from enum import StrEnum

__all__ = [
    "EditKind",
    "cut_allowed",
    "deletes",
    "describe_edit",
    "edit_distance",
    "glued_cuts",
    "glued_parts",
    "has_digit",
    "is_glued_in",
    "is_truncation_of",
    "normalize_name",
    "normalize_reference",
    "normalize_symbol",
    "one_edit",
    "tokenize",
]

# Separators from the design: whitespace and , ; : ( ) [ ] { } " ' # !
# `-`, `/`, `_` and `.` are part of a token (document numbers use them).
_TOKEN = re.compile(r"""[^\s,;:()\[\]{}"'#!]+""")
_DIGITS = frozenset("0123456789")
_DIGIT = re.compile("[0-9]")


def tokenize(text: str | None) -> list[str]:
    """Split remittance text into upper-cased tokens, in order, empty ones dropped.

    A trailing `.` (end of a sentence) is not part of a token; an inner one is (`E.2026.1`).
    """
    if not text:
        return []
    tokens: list[str] = _TOKEN.findall(text.upper())
    if "." in text:
        # Rare enough to pay for a second pass only when a dot is there at all.
        tokens = [t for t in (raw.rstrip(".") for raw in tokens) if t]
    return tokens


def normalize_reference(s: str | None) -> str | None:
    """Canonical form of a document number, order number, partner identifier or payment key."""
    if s is None:
        return None
    normalized = s.strip().upper().rstrip(".").rstrip()
    return normalized or None


def normalize_symbol(s: str | None) -> str | None:
    """Canonical form of a Czech VS/SS/KS: digits only, leading zeros dropped ("0" stays).

    Spaces inside are ignored ("123 456"); anything else that is not a digit means the value is
    not a symbol at all, so None.
    """
    if s is None:
        return None
    digits = "".join(s.split())
    # isdigit() alone accepts superscripts and other scripts' digits; symbols are ASCII.
    if not digits or not digits.isascii() or not digits.isdigit():
        return None
    return digits.lstrip("0") or "0"


def normalize_name(s: str | None) -> str | None:
    """A partner or counterparty name for equality: upper-cased, whitespace collapsed."""
    if s is None:
        return None
    normalized = " ".join(s.upper().split())
    return normalized or None


def has_digit(s: str) -> bool:
    """Whether the string contains an ASCII digit (document numbers do, words do not)."""
    return not _DIGITS.isdisjoint(s)


def deletes(s: str) -> set[str]:
    """Every string obtained by removing exactly one character (symmetric-delete neighbourhood).

    Two strings within one edit share a member of their neighbourhoods (or one is a member of
    the other's), which turns fuzzy search into exact lookups.
    """
    return {s[:i] + s[i + 1 :] for i in range(len(s))}


def edit_distance(a: str, b: str, limit: int = 2) -> int:
    """Optimal-string-alignment distance; adjacent transposition costs 1.

    Returns `limit + 1` as soon as the distance is known to exceed `limit`, so callers can
    compare against the limit without paying for the full table.
    """
    if a == b:
        return 0
    la, lb = len(a), len(b)
    if abs(la - lb) > limit:
        return limit + 1
    if la == 0 or lb == 0:
        return max(la, lb) if max(la, lb) <= limit else limit + 1
    previous2: list[int] = []
    previous = list(range(lb + 1))
    for i in range(1, la + 1):
        current = [i] + [0] * lb
        ca = a[i - 1]
        row_min = i
        for j in range(1, lb + 1):
            cb = b[j - 1]
            cost = 0 if ca == cb else 1
            value = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                value = min(value, previous2[j - 2] + 1)
            current[j] = value
            row_min = min(row_min, value)
        if row_min > limit:
            return limit + 1
        previous2, previous = previous, current
    distance = previous[lb]
    return distance if distance <= limit else limit + 1


class EditKind(StrEnum):
    """How a written reference differs from the real one by a single edit."""

    TYPO = "TYPO"
    SWAPPED = "SWAPPED"
    MISSING = "MISSING"
    EXTRA = "EXTRA"

    def describe(self, unit: str = "character") -> str:
        """The difference in plain words, e.g. "two swapped characters"."""
        if self is EditKind.TYPO:
            return f"a typo (one {unit} differs)"
        if self is EditKind.SWAPPED:
            return f"two swapped {unit}s"
        if self is EditKind.MISSING:
            return f"one {unit} missing"
        return f"one {unit} too many"


def _common_prefix_length(a: str, b: str) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def one_edit(written: str, expected: str) -> EditKind | None:
    """Classify `written` as one edit away from `expected`, or None (equal or further apart).

    Equivalent to `edit_distance(written, expected, 1) == 1` but linear and allocation-light,
    because the matcher runs it against every near candidate.
    """
    lw, le = len(written), len(expected)
    if lw == le:
        if written == expected:
            return None
        i = _common_prefix_length(written, expected)
        if written[i + 1 :] == expected[i + 1 :]:
            return EditKind.TYPO
        if (
            i + 1 < lw
            and written[i] == expected[i + 1]
            and written[i + 1] == expected[i]
            and written[i + 2 :] == expected[i + 2 :]
        ):
            return EditKind.SWAPPED
        return None
    if lw + 1 == le:
        i = _common_prefix_length(written, expected)
        return EditKind.MISSING if written[i:] == expected[i + 1 :] else None
    if lw == le + 1:
        i = _common_prefix_length(written, expected)
        return EditKind.EXTRA if written[i + 1 :] == expected[i:] else None
    return None


def describe_edit(written: str, expected: str, unit: str = "character") -> str | None:
    """The one-edit difference in words ("two swapped characters"), or None if not one edit."""
    kind = one_edit(written, expected)
    return kind.describe(unit) if kind is not None else None


def cut_allowed(left: str, right: str) -> bool:
    """A number may end where a token is cut unless the cut falls between two digits.

    That is what keeps `E-2026-12` from being found inside `E-2026-123` while `E-2026-123`
    is still found inside `E-2026-123BEFIZETES`.
    """
    return not (left in _DIGITS and right in _DIGITS)


def glued_parts(token: str, lengths: Iterable[int], min_length: int = 4) -> list[str]:
    """Prefixes and suffixes of a token that may be a number glued to other text, of the
    given `lengths` (ascending): the only ones that can be a number when every number has
    one of them.

    Only parts of at least `min_length` characters that contain a digit, cut where the cut is
    allowed (not between two digits). Proper parts only: the whole token is an exact lookup.
    By length, shortest first, each length's prefix before its suffix.
    """
    return [token[start:end] for start, end in glued_cuts(token, lengths, min_length)]


def glued_cuts(token: str, lengths: Iterable[int], min_length: int = 4) -> list[tuple[int, int]]:
    """Where `glued_parts` cuts the token: (start, end) of each part, in the same order.

    Which cuts are allowed depends only on where the token has ASCII digits, so tokens that
    agree there (and in length) are cut alike.
    """
    n = len(token)
    if token.isascii() and token.isdigit():
        return []  # every cut would fall between two digits
    found = _DIGIT.search(token)
    if found is None:
        return []
    first = found.start()
    last = n - 1 - _DIGIT.search(token[::-1]).start()  # type: ignore[union-attr]
    cuts: list[tuple[int, int]] = []
    for length in lengths:
        if length >= n:
            break
        if length < min_length:
            continue
        # A part must hold a digit, and the cut may not fall between two digits.
        if first < length and cut_allowed(token[length - 1], token[length]):
            cuts.append((0, length))
        k = n - length
        if last >= k and cut_allowed(token[k - 1], token[k]):
            cuts.append((k, n))
    return cuts


def is_glued_in(number: str, token: str) -> bool:
    """Whether `number` is a proper prefix or suffix of `token` at an allowed cut."""
    n, t = len(number), len(token)
    if n >= t:
        return False
    if token.startswith(number) and cut_allowed(token[n - 1], token[n]):
        return True
    return token.endswith(number) and cut_allowed(token[t - n - 1], token[t - n])


def is_truncation_of(token: str, number: str) -> bool:
    """Whether `token` is `number` with its beginning or end left off, at an allowed cut."""
    return is_glued_in(token, number)
