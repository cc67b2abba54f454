"""Errors a caller can act on, each with the code the API puts into `extensions.code`."""

from __future__ import annotations

from typing import Any

__all__ = [
    "BadUserInput",
    "Conflict",
    "Forbidden",
    "NotAvailable",
    "NotFound",
    "PlanRequired",
    "ServiceError",
    "Unauthenticated",
]


class ServiceError(Exception):
    code = "INTERNAL"

    def __init__(self, message: str, **extensions: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extensions = extensions


class Unauthenticated(ServiceError):
    code = "UNAUTHENTICATED"


class Forbidden(ServiceError):
    code = "FORBIDDEN"


class NotFound(ServiceError):
    code = "NOT_FOUND"


class BadUserInput(ServiceError):
    code = "BAD_USER_INPUT"


class PlanRequired(ServiceError):
    code = "PLAN_REQUIRED"


class Conflict(ServiceError):
    code = "CONFLICT"


class NotAvailable(ServiceError):
    """Something this version does not do yet (a source, statement import); the request
    itself is well formed, but there is nothing the caller can change to make it work here."""

    code = "BAD_USER_INPUT"
