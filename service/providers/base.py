"""What every payment source provides, and the errors it may raise."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

__all__ = [
    "ConsentGrant",
    "ConsentStart",
    "DocumentHint",
    "FetchRequest",
    "FetchResult",
    "Provider",
    "ProviderError",
    "RateLimited",
]


class ProviderError(Exception):
    """The source failed; the message is shown to users in the sync log."""

    code = "PROVIDER_ERROR"

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RateLimited(ProviderError):
    code = "RATE_LIMITED"


@dataclass(frozen=True, slots=True)
class DocumentHint:
    """An open document, for sources that simulate payers (the sandbox bank)."""

    number: str
    total: Any
    currency: str
    variable_symbol: str | None = None
    order_number: str | None = None
    partner_name: str | None = None
    partner_identifier: str | None = None


@dataclass(frozen=True, slots=True)
class FetchRequest:
    connection_id: int
    settings: Mapping[str, Any]
    cursor: Mapping[str, Any] | None
    now: datetime
    open_documents: Sequence[DocumentHint] = ()


@dataclass(slots=True)
class FetchResult:
    """Raw records in the shape of TransactionInput (snake_case) and the cursor to store
    with them, in the same transaction."""

    records: list[dict[str, Any]] = field(default_factory=list)
    cursor: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class ConsentStart:
    reference: str
    redirect_url: str


@dataclass(frozen=True, slots=True)
class ConsentGrant:
    status: str  # VALID, REJECTED, PENDING, ...
    valid_until: datetime | None


class Provider(Protocol):
    name: str
    # The sandbox simulates payers of the tenant's open documents; real banks do not.
    wants_documents: bool

    def requires_consent(self, settings: Mapping[str, Any]) -> bool: ...

    def check_settings(self, settings: Mapping[str, Any]) -> None:
        """Raise ValueError, with a message for the user, for settings the source refuses."""
        ...

    async def fetch(self, request: FetchRequest) -> FetchResult: ...

    async def start_consent(
        self, settings: Mapping[str, Any], redirect_uri: str | None, now: datetime
    ) -> ConsentStart: ...

    async def check_consent(
        self, settings: Mapping[str, Any], reference: str, now: datetime
    ) -> ConsentGrant: ...

    async def revoke(self, settings: Mapping[str, Any], reference: str | None) -> None: ...
