"""Field-level permissions: bank data is for OWNER, ADMIN and ACCOUNTANT only."""

from __future__ import annotations

from typing import Any

from strawberry.extensions import FieldExtension
from strawberry.permission import BasePermission, PermissionExtension
from strawberry.types import Info

from ..auth import CONNECTION_ADMIN_ROLES

__all__ = ["BANK_DATA", "MANAGES_CONNECTIONS", "ManagesConnections", "SeesBankData"]


class SeesBankData(BasePermission):
    message = (
        "bank data (transactions, connections, allocations' payments, sync runs, events) is "
        "visible to OWNER, ADMIN and ACCOUNTANT only"
    )
    error_extensions = {"code": "FORBIDDEN"}  # noqa: RUF012 - strawberry reads it as a class attribute

    async def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool:
        scope = await info.context.scope()  # raises UNAUTHENTICATED without a valid token
        return bool(scope.sees_bank_data)


def BANK_DATA() -> list[FieldExtension]:
    """A fresh extension list for each field that shows bank data."""
    return [PermissionExtension(permissions=[SeesBankData()])]


class ManagesConnections(SeesBankData):
    """Connecting, reconfiguring, disconnecting and renewing consent: OWNER and ADMIN."""

    message = "managing bank connections is for OWNER and ADMIN only"

    async def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool:
        scope = await info.context.scope()
        return scope.role in CONNECTION_ADMIN_ROLES


def MANAGES_CONNECTIONS() -> list[FieldExtension]:
    return [PermissionExtension(permissions=[ManagesConnections()])]
