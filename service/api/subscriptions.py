"""The live event subscription."""

from __future__ import annotations

from collections.abc import AsyncGenerator

from strawberry.types import Info

from ..errors import ServiceError
from .enums import PaymentEventType
from .events import PaymentEvent

__all__ = ["payment_events"]


class NotAvailableYet(ServiceError):
    code = "BAD_USER_INPUT"


async def payment_events(
    info: Info, after: str | None, types: list[PaymentEventType] | None
) -> AsyncGenerator[PaymentEvent, None]:
    scope = await info.context.scope()
    scope.require_bank_data()
    raise NotAvailableYet("the live event stream is not available yet; page through `events`")
    yield  # pragma: no cover - makes this an async generator
