"""Checking incoming records (payments, documents, partners) field by field.

One bad record is reported with its position and field; it never stops the others.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from .matcher import MIN_NEAR_LENGTH
from .money import MoneyError, parse_amount, validate_currency
from .references import deletes, has_digit, normalize_name, normalize_reference, normalize_symbol

__all__ = [
    "RecordProblem",
    "check_document",
    "check_partner",
    "check_transaction",
    "fuzzy_keys",
    "normalize_name",
]

_SYMBOL = {"variable_symbol": 10, "specific_symbol": 10, "constant_symbol": 4}
_TEXT_LIMITS = {
    "provider_transaction_id": 200,
    "counterparty_name": 200,
    "counterparty_account": 64,
    "remittance_information": 1000,
    "payment_key": 128,
    "number": 64,
    "order_number": 64,
    "external_id": 200,
    "name": 200,
    "identifier": 64,
    "tax_number": 32,
    "partner_external_id": 200,
}
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class RecordProblem:
    index: int
    field: str
    message: str
    key: str | None = None

    def describe(self) -> str:
        which = f"record {self.index}" + (f" ({self.key})" if self.key else "")
        return f"{which}: {self.field}: {self.message}"


class _Checker:
    def __init__(self, index: int, raw: Mapping[str, Any], key_field: str) -> None:
        self.index = index
        self.raw = raw
        self.key = raw.get(key_field) if isinstance(raw.get(key_field), str) else None
        self.problems: list[RecordProblem] = []

    def fail(self, field: str, message: str) -> None:
        self.problems.append(RecordProblem(self.index, _camel(field), message, self.key))

    def text(self, field: str, *, required: bool = False) -> str | None:
        value = self.raw.get(field)
        if value is None or (isinstance(value, str) and not value.strip()):
            if required:
                self.fail(field, "is required")
            return None
        if not isinstance(value, str):
            self.fail(field, "must be a string")
            return None
        value = value.strip()
        if "\x00" in value:
            self.fail(field, "contains a NUL character")
            return None
        limit = _TEXT_LIMITS.get(field, 1000)
        if len(value) > limit:
            self.fail(field, f"is longer than {limit} characters")
            return None
        return value

    def symbol(self, field: str) -> str | None:
        value = self.text(field)
        if value is None:
            return None
        digits = _SPACES.sub("", value)
        if not digits.isdigit() or not digits.isascii():
            self.fail(field, f"{value!r} is not a number (only digits are allowed)")
            return None
        if len(digits) > _SYMBOL[field]:
            self.fail(field, f"has more than {_SYMBOL[field]} digits")
            return None
        return digits

    def day(self, field: str, *, required: bool = False) -> date | None:
        value = self.raw.get(field)
        if value is None:
            if required:
                self.fail(field, "is required")
            return None
        if isinstance(value, date):
            return value
        try:
            return date.fromisoformat(str(value))
        except ValueError:
            self.fail(field, f"{value!r} is not a date (YYYY-MM-DD)")
            return None

    def money(self, field: str, currency: str | None) -> Decimal | None:
        value = self.raw.get(field)
        if value is None:
            self.fail(field, "is required")
            return None
        if currency is None:
            return None
        try:
            return parse_amount(value, currency)
        except MoneyError as exc:
            self.fail(field, str(exc))
            return None

    def currency(self) -> str | None:
        value = self.text("currency", required=True)
        if value is None:
            return None
        try:
            return validate_currency(value)
        except MoneyError as exc:
            self.fail("currency", str(exc))
            return None


def _camel(field: str) -> str:
    head, *rest = field.split("_")
    return head + "".join(p.title() for p in rest)


def check_transaction(index: int, raw: Mapping[str, Any]) -> dict[str, Any] | list[RecordProblem]:
    """A payment record with clean fields, or the list of what is wrong with it."""
    c = _Checker(index, raw, "provider_transaction_id")
    currency = c.currency()
    out: dict[str, Any] = {
        "provider_transaction_id": c.text("provider_transaction_id", required=True),
        "booking_date": c.day("booking_date", required=True),
        "value_date": c.day("value_date"),
        "amount": c.money("amount", currency),
        "currency": currency,
        "counterparty_name": c.text("counterparty_name"),
        "counterparty_account": c.text("counterparty_account"),
        "variable_symbol": c.symbol("variable_symbol"),
        "specific_symbol": c.symbol("specific_symbol"),
        "constant_symbol": c.symbol("constant_symbol"),
        "remittance_information": c.text("remittance_information"),
        "payment_key": c.text("payment_key"),
    }
    if out["amount"] is not None and out["amount"] == 0:
        c.fail("amount", "must not be zero")
    return c.problems or out


def check_partner(index: int, raw: Mapping[str, Any]) -> dict[str, Any] | list[RecordProblem]:
    c = _Checker(index, raw, "external_id")
    name = c.text("name", required=True)
    identifier = c.text("identifier")
    out = {
        "external_id": c.text("external_id", required=True),
        "name": name,
        "name_norm": normalize_name(name),
        "identifier": identifier,
        "identifier_norm": normalize_reference(identifier),
        "tax_number": c.text("tax_number"),
    }
    return c.problems or out


def check_document(index: int, raw: Mapping[str, Any]) -> dict[str, Any] | list[RecordProblem]:
    c = _Checker(index, raw, "number")
    currency = c.currency()
    number = c.text("number", required=True)
    order_number = c.text("order_number")
    total = c.money("total", currency)
    if total is not None and total < 0:
        c.fail("total", "must not be negative")
    kind = raw.get("kind")
    vs = c.symbol("variable_symbol")
    ss = c.symbol("specific_symbol")
    payment_key = c.text("payment_key")
    out: dict[str, Any] = {
        "kind": str(kind) if kind is not None else None,
        "number": number,
        "number_norm": normalize_reference(number),
        "order_number": order_number,
        "order_number_norm": normalize_reference(order_number),
        "recurring_order_number": bool(raw.get("recurring_order_number") or False),
        "variable_symbol": vs,
        "specific_symbol": ss,
        "constant_symbol": c.symbol("constant_symbol"),
        "variable_symbol_norm": normalize_symbol(vs),
        "specific_symbol_norm": normalize_symbol(ss),
        "payment_key": payment_key,
        "payment_key_norm": normalize_reference(payment_key),
        "partner_external_id": c.text("partner_external_id"),
        "issue_date": c.day("issue_date"),
        "due_date": c.day("due_date"),
        "total": total,
        "currency": currency,
        "external_id": c.text("external_id"),
    }
    out["fuzzy_keys"] = fuzzy_keys(
        out["number_norm"],
        out["order_number_norm"],
        out["variable_symbol_norm"],
        out["specific_symbol_norm"],
    )
    if out["recurring_order_number"] and not order_number:
        c.fail("recurring_order_number", "needs an orderNumber to watch")
    return c.problems or out


def fuzzy_keys(*references: str | None) -> list[str]:
    """A document's one-edit-away lookup keys: each reference with a digit itself, plus its
    deletion neighbourhood. A payment's reference and its own deletions meet these when the
    two differ by one typo, a missing or extra character, or two swapped characters."""
    keys: set[str] = set()
    for ref in references:
        if ref and has_digit(ref):
            keys.add(ref)
            # Shorter references are found from the payment's side (see matcher.lookup_for).
            if len(ref) >= MIN_NEAR_LENGTH:
                keys |= deletes(ref)
    return sorted(keys)
