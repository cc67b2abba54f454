"""Value objects the matcher works on, independent of storage and API."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from enum import StrEnum

__all__ = [
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


@dataclass(frozen=True, slots=True)
class Payment:
    """A bank or gateway transaction as the matcher sees it."""

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

    @property
    def outstanding(self) -> Decimal:
        return self.total - self.paid
