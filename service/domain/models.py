"""Value objects the matcher works on, independent of storage and API."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from enum import StrEnum
from itertools import repeat
from operator import call
from typing import Any, NamedTuple

from .references import normalize_name, normalize_reference, normalize_symbol

__all__ = [
    "OPEN_DOCUMENT_FIELDS",
    "DocumentKind",
    "MatchKey",
    "MatchMethod",
    "MatchState",
    "OpenDocument",
    "Payment",
    "PaymentState",
    "payment_state",
]


class DocumentKind(StrEnum):
    INVOICE = "INVOICE"
    PROFORMA = "PROFORMA"
    ORDER = "ORDER"


class MatchKey(StrEnum):
    DOCUMENT_NUMBER = "DOCUMENT_NUMBER"
    ORDER_NUMBER = "ORDER_NUMBER"
    PARTNER_IDENTIFIER = "PARTNER_IDENTIFIER"
    VARIABLE_SYMBOL = "VARIABLE_SYMBOL"
    SPECIFIC_SYMBOL = "SPECIFIC_SYMBOL"
    CONSTANT_SYMBOL = "CONSTANT_SYMBOL"
    PAYMENT_KEY = "PAYMENT_KEY"


class MatchState(StrEnum):
    UNMATCHED = "UNMATCHED"
    SUGGESTED = "SUGGESTED"
    MATCHED = "MATCHED"
    IGNORED = "IGNORED"


class MatchMethod(StrEnum):
    AUTO = "AUTO"
    MANUAL = "MANUAL"


class PaymentState(StrEnum):
    UNPAID = "UNPAID"
    PARTIALLY_PAID = "PARTIALLY_PAID"
    PAID = "PAID"
    OVERPAID = "OVERPAID"


def payment_state(total: Decimal, paid: Decimal) -> PaymentState:
    """The paid state of a document from its total and the sum of its allocations."""
    if paid <= 0:
        # Nothing is owed on a zero total: it is paid, consistent with fullyPaid.
        return PaymentState.UNPAID if total > 0 else PaymentState.PAID
    if paid < total:
        return PaymentState.PARTIALLY_PAID
    if paid == total:
        return PaymentState.PAID
    return PaymentState.OVERPAID


class Payment(NamedTuple):
    """A bank or gateway transaction as the matcher sees it.

    A named tuple rather than a frozen dataclass, as `Lookup` is: one is built for every
    payment taken in, and a frozen dataclass sets each field through `object.__setattr__`
    (3.5 against 0.6 us a payment built from its row).
    """

    amount: Decimal
    currency: str
    remittance_information: str | None = None
    variable_symbol: str | None = None
    specific_symbol: str | None = None
    constant_symbol: str | None = None
    payment_key: str | None = None
    counterparty_name: str | None = None
    counterparty_account: str | None = None


@dataclass(frozen=True, slots=True)
class OpenDocument:
    """A document that is not fully paid yet, with the references it can be found by.

    References are stored as issued; the matcher normalizes them. `seq` orders documents
    oldest first (the database id), so "oldest open document" is well defined.
    """

    id: int
    seq: int
    kind: DocumentKind
    number: str
    total: Decimal
    paid: Decimal
    currency: str
    order_number: str | None = None
    recurring_order_number: bool = False
    variable_symbol: str | None = None
    specific_symbol: str | None = None
    constant_symbol: str | None = None
    payment_key: str | None = None
    partner_id: int | None = None
    partner_identifier: str | None = None
    partner_name: str | None = None
    issue_date: date | None = None
    # The references normalized once, as the matcher and the index compare them; derived
    # from the fields above (not part of the constructor or of equality).
    number_norm: str | None = field(init=False, repr=False, compare=False)
    order_number_norm: str | None = field(init=False, repr=False, compare=False)
    variable_symbol_norm: str | None = field(init=False, repr=False, compare=False)
    specific_symbol_norm: str | None = field(init=False, repr=False, compare=False)
    constant_symbol_norm: str | None = field(init=False, repr=False, compare=False)
    payment_key_norm: str | None = field(init=False, repr=False, compare=False)
    partner_identifier_norm: str | None = field(init=False, repr=False, compare=False)
    partner_name_norm: str | None = field(init=False, repr=False, compare=False)
    outstanding: Decimal = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        derive = object.__setattr__  # the class is frozen
        derive(self, "number_norm", _same(self.number, normalize_reference(self.number)))
        derive(self, "order_number_norm", _reference(self.order_number))
        derive(self, "variable_symbol_norm", _symbol(self.variable_symbol))
        derive(self, "specific_symbol_norm", _symbol(self.specific_symbol))
        derive(self, "constant_symbol_norm", _symbol(self.constant_symbol))
        derive(self, "payment_key_norm", _reference(self.payment_key))
        derive(self, "partner_identifier_norm", _reference(self.partner_identifier))
        name = self.partner_name
        derive(self, "partner_name_norm", None if name is None else normalize_name(name))
        derive(self, "outstanding", self.total - self.paid)

    @classmethod
    def restore(cls, stored: Sequence[Any]) -> OpenDocument:
        """A document as a store keeps it, without normalizing its references again.

        `stored` holds the values of the fields `OPEN_DOCUMENT_FIELDS` names, in that order: the
        references' normalized forms as this module's functions made them when the document
        was stored, `kind` as its value. By position rather than by name: looking up two
        dozen names in a database row was 40% of the cost (7.8 against 4.6 us a document).
        """
        if len(stored) != _FIELD_COUNT:
            raise ValueError(f"a stored document has {_FIELD_COUNT} values, not {len(stored)}")
        doc = _blank(cls)
        # Every field through its slot's setter, the loop in C; `map` stops at the shorter
        # setters, before `kind`.
        deque(map(call, _RESTORED_SETTERS, repeat(doc), stored), 0)
        _set(doc, "kind", _KINDS[stored[-1]])
        _set(doc, "constant_symbol_norm", _symbol(doc.constant_symbol))
        _set(doc, "outstanding", doc.total - doc.paid)
        return doc

    def with_paid(self, paid: Decimal) -> OpenDocument:
        """This document with another paid amount (its references are not normalized again)."""
        copy = _blank(OpenDocument)
        for get, put in _SLOTS:
            put(copy, get(self))
        _set(copy, "paid", paid)
        _set(copy, "outstanding", self.total - paid)
        return copy


# Each slot's own getter and setter: copying through them skips attribute lookup by name.
_SLOTS = tuple(
    (OpenDocument.__dict__[name].__get__, OpenDocument.__dict__[name].__set__)
    for name in OpenDocument.__slots__
)
# What `restore` takes as stored: everything but what it converts or derives.
_RESTORED = tuple(
    name
    for name in OpenDocument.__slots__
    if name not in ("kind", "constant_symbol_norm", "outstanding")
)
_RESTORED_SETTERS = tuple(OpenDocument.__dict__[name].__set__ for name in _RESTORED)
#: The fields `OpenDocument.restore` takes, in the order it takes them.
OPEN_DOCUMENT_FIELDS: tuple[str, ...] = (*_RESTORED, "kind")
_FIELD_COUNT = len(OPEN_DOCUMENT_FIELDS)
_KINDS = {k.value: k for k in DocumentKind}
_blank = object.__new__
_set = object.__setattr__  # the class is frozen


def _same(raw: str | None, normalized: str | None) -> str | None:
    # Reuse the document's own string when it is already normalized: a million open
    # documents should not hold every number twice.
    return raw if normalized == raw else normalized


def _reference(raw: str | None) -> str | None:
    return None if raw is None else _same(raw, normalize_reference(raw))


def _symbol(raw: str | None) -> str | None:
    return None if raw is None else _same(raw, normalize_symbol(raw))
