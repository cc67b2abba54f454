"""Tokens, normalization and near-miss classification of payment references (no database)."""

from __future__ import annotations

from collections.abc import Collection

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from service.domain.references import (
    EditKind,
    deletes,
    describe_edit,
    edit_distance,
    glued_parts,
    is_glued_in,
    is_truncation_of,
    normalize_name,
    normalize_reference,
    normalize_symbol,
    one_edit,
    tokenize,
)

# Lengths enough for every part of any token here: no part is left out for its length.
EVERY_LENGTH = range(1, 100)


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        (None, []),
        ("", []),
        ("   ", []),
        ("E-2026-123", ["E-2026-123"]),
        ("Számla: E-ABC-2026-123.", ["SZÁMLA", "E-ABC-2026-123"]),
        # trailing dot is sentence punctuation; inner dots belong to the token
        ("fizetve E.2026.7.", ["FIZETVE", "E.2026.7"]),
        ("E-2026-123...", ["E-2026-123"]),
        # case-insensitive
        ("e-abc-2026-123", ["E-ABC-2026-123"]),
        # brackets, quotes, hash, exclamation, semicolon and comma split
        ("(E-1)[E-2]{E-3}", ["E-1", "E-2", "E-3"]),
        ("\"E-2026-5\" 'E-2026-6'", ["E-2026-5", "E-2026-6"]),
        ("#E-2026-7!", ["E-2026-7"]),
        ("E-1,E-2;E-3:E-4", ["E-1", "E-2", "E-3", "E-4"]),
        # `-`, `/` and `_` are part of a token
        ("FV2026/00123 ORD_77 a-b", ["FV2026/00123", "ORD_77", "A-B"]),
        # tabs, newlines and no-break spaces are whitespace
        ("E-1\tE-2\nE-3\u00a0E-4", ["E-1", "E-2", "E-3", "E-4"]),
        # a number glued to text stays one token (the seed's third failure cause)
        ("E-2026-123befizetes", ["E-2026-123BEFIZETES"]),
        # order is kept, duplicates too (the matcher de-duplicates)
        ("b a b", ["B", "A", "B"]),
        # a lone dot is no token
        ("E-1 . E-2", ["E-1", "E-2"]),
    ],
)
def test_tokenize(text: str | None, tokens: list[str]) -> None:
    assert tokenize(text) == tokens


@pytest.mark.parametrize(
    ("text", "number", "whole"),
    [
        ("E-2026-123", "E-2026-123", True),
        ("E-2026-123", "E-2026-12", False),  # a shorter number is not inside a longer one
        ("E-2026-12", "E-2026-123", False),  # nor the other way round
        ("szla E-2026-123.", "E-2026-123", True),
        ("(e-2026-123)", "E-2026-123", True),
        ('"E-2026-123"', "E-2026-123", True),
        ("E-2026-123befizetes", "E-2026-123", False),
        ("XE-2026-123", "E-2026-123", False),
        ("E-2026-123/1", "E-2026-123", False),
    ],
)
def test_whole_token_only(text: str, number: str, whole: bool) -> None:
    assert (normalize_reference(number) in tokenize(text)) is whole


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        (None, None),
        ("", None),
        ("  ", None),
        (".", None),
        ("e-2026-1", "E-2026-1"),
        ("  E-2026-1.  ", "E-2026-1"),
        ("E-2026-1 .", "E-2026-1"),
        ("E.2026.1", "E.2026.1"),
        ("ord 7", "ORD 7"),
    ],
)
def test_normalize_reference(raw: str | None, normalized: str | None) -> None:
    assert normalize_reference(raw) == normalized


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        (None, None),
        ("", None),
        ("  ", None),
        ("1234", "1234"),
        ("0001234", "1234"),
        ("0", "0"),
        ("000", "0"),
        ("12 34", "1234"),
        (" 0308 ", "308"),
        ("12a4", None),
        ("-12", None),
        ("1.5", None),
        ("²³", None),  # digits of other scripts are not symbols
        ("١٢٣", None),
    ],
)
def test_normalize_symbol(raw: str | None, normalized: str | None) -> None:
    assert normalize_symbol(raw) == normalized


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [(None, None), ("  ", None), ("Kovács  Kft.", "KOVÁCS KFT."), ("a\tb\n c", "A B C")],
)
def test_normalize_name(raw: str | None, normalized: str | None) -> None:
    assert normalize_name(raw) == normalized


@pytest.mark.parametrize(
    ("value", "neighbourhood"),
    [
        ("", set()),
        ("A", {""}),
        ("AB", {"A", "B"}),
        ("AAB", {"AB", "AA"}),
        ("E-12", {"-12", "E12", "E-2", "E-1"}),
    ],
)
def test_deletes(value: str, neighbourhood: set[str]) -> None:
    assert deletes(value) == neighbourhood


@pytest.mark.parametrize(
    ("a", "b", "distance"),
    [
        ("", "", 0),
        ("E-2026-123", "E-2026-123", 0),
        ("E-2026-123", "E-2026-124", 1),  # typo
        ("E-2026-123", "E-2026-132", 1),  # swapped: one edit in OSA, two in Levenshtein
        ("E-2026-123", "E-2026-12", 1),
        ("E-2026-12", "E-2026-123", 1),
        ("E-2026-123", "E-2026-321", 2),
        ("ABCD", "BADC", 2),
        ("CA", "ABC", 3),  # OSA may not edit a transposed pair again (true Damerau: 2)
        ("E-1", "X-99999", 3),  # above the limit: limit + 1
        ("", "ABC", 3),
        ("AB", "", 2),
    ],
)
def test_edit_distance(a: str, b: str, distance: int) -> None:
    assert edit_distance(a, b) == distance
    assert edit_distance(b, a) == distance


def test_edit_distance_limit_exits_early() -> None:
    assert edit_distance("AAAAAAAAAA", "BBBBBBBBBB", limit=1) == 2
    assert edit_distance("AAAAAAAAAA", "BBBBBBBBBB", limit=20) == 10


@pytest.mark.parametrize(
    ("written", "expected", "kind", "words"),
    [
        ("E-2026-0124", "E-2026-0123", EditKind.TYPO, "a typo (one character differs)"),
        ("E-2026-0132", "E-2026-0123", EditKind.SWAPPED, "two swapped characters"),
        ("E-2026-013", "E-2026-0123", EditKind.MISSING, "one character missing"),
        ("E-2026-01233", "E-2026-0123", EditKind.EXTRA, "one character too many"),
        ("XE-2026-0123", "E-2026-0123", EditKind.EXTRA, "one character too many"),
        ("-2026-0123", "E-2026-0123", EditKind.MISSING, "one character missing"),
        ("E-2026-0123", "E-2026-0123", None, None),
        ("E-2026-0321", "E-2026-0123", None, None),
        ("E-2026-01", "E-2026-0123", None, None),
        ("E-2026-0142", "E-2026-0123", None, None),  # two typos
    ],
)
def test_one_edit(written: str, expected: str, kind: EditKind | None, words: str | None) -> None:
    assert one_edit(written, expected) is kind
    assert describe_edit(written, expected) == words
    # one_edit agrees with the full distance
    assert (kind is not None) == (edit_distance(written, expected) == 1)


def test_describe_edit_in_digits() -> None:
    assert describe_edit("20260132", "20260123", unit="digit") == "two swapped digits"
    assert describe_edit("2026012", "20260123", unit="digit") == "one digit missing"


@pytest.mark.parametrize(
    ("token", "number", "glued"),
    [
        ("E-2026-123BEFIZETES", "E-2026-123", True),  # the seed's "not separated by a space"
        ("BEFIZETESE-2026-123", "E-2026-123", True),
        ("SZLA/E-2026-123", "E-2026-123", True),
        ("E-2026-1234", "E-2026-123", False),  # cut between digits: a different number
        ("E-2026-123", "E-2026-12", False),
        ("12E-2026-123", "2E-2026-123", False),
        ("E-2026-123", "E-2026-123", False),  # equal is an exact hit, not glued
    ],
)
def test_is_glued_in(token: str, number: str, glued: bool) -> None:
    assert is_glued_in(number, token) is glued
    assert (number in glued_parts(token, EVERY_LENGTH)) is glued


@pytest.mark.parametrize(
    ("token", "number", "truncated"),
    [
        ("2026-123", "E-ABC-2026-123", True),  # the seed's "not the whole number"
        ("E-ABC-2026", "E-ABC-2026-123", True),
        ("26-123", "E-ABC-2026-123", False),  # cut inside a run of digits
        ("E-ABC-2026-12", "E-ABC-2026-123", False),
        ("E-ABC-2026-123", "E-ABC-2026-123", False),
    ],
)
def test_is_truncation_of(token: str, number: str, truncated: bool) -> None:
    assert is_truncation_of(token, number) is truncated


def test_glued_parts_need_a_digit_and_four_characters() -> None:
    parts = glued_parts("E-2026-7KOSZI", EVERY_LENGTH)
    assert "E-2026-7" in parts
    assert "KOSZI" not in parts  # no digit: a word, not a number
    assert all(len(p) >= 4 for p in parts)
    assert glued_parts("AB12", EVERY_LENGTH) == []  # nothing proper of length 4


@settings(max_examples=300, deadline=None)
@given(
    # Runs of letters and digits, as references glued to words are made of.
    token=st.lists(
        st.sampled_from(["E", "-", "/", "AB", "SZLA", "É", "٣", "7", "12", "2026", "0001"]),
        max_size=10,
    ).map("".join),
    lengths=st.sets(st.integers(1, 26), max_size=8),
)
@example(token="SZLA1", lengths={4})  # a part without a digit is no number
def test_glued_parts_are_those_the_definition_gives_at_those_lengths(
    token: str, lengths: set[int]
) -> None:
    assert sorted(glued_parts(token, sorted(lengths))) == sorted(
        glued_by_definition(token, lengths)
    )


def glued_by_definition(token: str, lengths: Collection[int], min_length: int = 4) -> list[str]:
    """Every proper prefix and suffix of `token` of one of `lengths`, at least `min_length`
    long, holding an ASCII digit, cut elsewhere than between two digits: by the letter of
    `glued_parts`' docstring, without its index arithmetic."""

    def digit(c: str) -> bool:
        return c in "0123456789"

    parts = []
    for k in range(1, len(token)):
        cut_allowed = not (digit(token[k - 1]) and digit(token[k]))
        for part in (token[:k], token[k:]):
            long_enough = len(part) in lengths and len(part) >= min_length
            if long_enough and any(map(digit, part)) and cut_allowed:
                parts.append(part)
    return parts
