"""GraphQL input types, as the contract names them."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import strawberry
from strawberry.scalars import JSON

from .enums import DocumentKind, MatchKey, MatchState, PaymentState, Provider

__all__ = [
    "AllocationInput",
    "ConnectBankSyncInput",
    "DocumentFilter",
    "DocumentInput",
    "PartnerInput",
    "TransactionFilter",
    "TransactionInput",
    "UpdateConnectionInput",
    "as_record",
]


def as_record(value: Any) -> dict[str, Any]:
    """An input object as a plain dict with snake_case keys and enum values as strings."""
    out: dict[str, Any] = {}
    for name, item in vars(value).items():
        if item is strawberry.UNSET:
            continue
        if hasattr(item, "value") and not isinstance(item, Decimal):
            item = item.value
        elif isinstance(item, list):
            item = [getattr(v, "value", v) for v in item]
        out[name] = item
    return out


@strawberry.input
class DocumentFilter:
    kind: DocumentKind | None = None
    payment_state: PaymentState | None = None
    number: str | None = None
    partner_id: strawberry.ID | None = None


@strawberry.input
class TransactionFilter:
    connection_id: strawberry.ID | None = None
    match_state: MatchState | None = None
    booked_from: date | None = None
    booked_to: date | None = None
    search: str | None = None


@strawberry.input
class PartnerInput:
    external_id: str
    name: str
    identifier: str | None = None
    tax_number: str | None = None


@strawberry.input(description="Upsert key: (kind, number) within the tenant.")
class DocumentInput:
    kind: DocumentKind
    number: str
    total: Decimal
    currency: str
    order_number: str | None = None
    recurring_order_number: bool | None = False
    variable_symbol: str | None = None
    specific_symbol: str | None = None
    constant_symbol: str | None = None
    payment_key: str | None = None
    partner_external_id: str | None = None
    issue_date: date | None = None
    due_date: date | None = None
    external_id: str | None = None


@strawberry.input
class TransactionInput:
    provider_transaction_id: str
    booking_date: date
    amount: Decimal
    currency: str
    value_date: date | None = None
    counterparty_name: str | None = None
    counterparty_account: str | None = None
    variable_symbol: str | None = None
    specific_symbol: str | None = None
    constant_symbol: str | None = None
    remittance_information: str | None = None
    payment_key: str | None = None


@strawberry.input
class ConnectBankSyncInput:
    provider: Provider
    name: str | None = None
    settings: JSON = strawberry.field(
        default_factory=dict,
        description=(
            "Provider-specific settings (tokens, merchant ids, API base URL for sandboxes). "
            "Stored encrypted, never returned."
        ),
    )
    poll_interval_seconds: int | None = None
    match_against: list[DocumentKind] | None = None
    match_keys: list[MatchKey] | None = None
    redirect_uri: str | None = strawberry.field(
        default=None,
        description="Where the bank sends the user back after strong customer authentication.",
    )


@strawberry.input
class UpdateConnectionInput:
    name: str | None = None
    poll_interval_seconds: int | None = None
    match_against: list[DocumentKind] | None = None
    match_keys: list[MatchKey] | None = None


@strawberry.input
class AllocationInput:
    document_id: strawberry.ID
    amount: Decimal | None = strawberry.field(
        default=None, description="Defaults to what is left of the payment."
    )
