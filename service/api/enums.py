"""GraphQL enums, shared with the domain where the domain has them."""

from __future__ import annotations

from enum import Enum

import strawberry

from ..auth import Plan, Role
from ..domain.models import DocumentKind, MatchKey, MatchMethod, MatchState, PaymentState

__all__ = [
    "ConnectionStatus",
    "ConsentStatus",
    "DocumentKind",
    "MatchKey",
    "MatchMethod",
    "MatchState",
    "PaymentEventType",
    "PaymentState",
    "Plan",
    "Provider",
    "Role",
    "StatementFormat",
    "SyncStatus",
]

# The domain's own enums are the GraphQL enums; registering them names them in the schema.
for _enum in (Role, Plan, DocumentKind, PaymentState, MatchState, MatchMethod):
    strawberry.enum(_enum)
strawberry.enum(MatchKey, description="Which reference on a payment may identify a document.")


@strawberry.enum
class Provider(Enum):
    FIO = "FIO"
    CESKA_SPORITELNA = "CESKA_SPORITELNA"
    CSOB_BBF = "CSOB_BBF"
    COMGATE = "COMGATE"
    GOPAY = "GOPAY"
    GPWEBPAY = "GPWEBPAY"
    KH_BANK = "KH_BANK"
    BYZNYS_WEB = "BYZNYS_WEB"
    STATEMENT_FILE = "STATEMENT_FILE"
    PUSH = "PUSH"
    SANDBOX = "SANDBOX"


@strawberry.enum
class ConnectionStatus(Enum):
    PENDING_CONSENT = "PENDING_CONSENT"
    ACTIVE = "ACTIVE"
    CONSENT_EXPIRED = "CONSENT_EXPIRED"
    DISCONNECTED = "DISCONNECTED"
    ERROR = "ERROR"


@strawberry.enum
class ConsentStatus(Enum):
    PENDING = "PENDING"
    VALID = "VALID"
    EXPIRED = "EXPIRED"
    REVOKED = "REVOKED"
    REJECTED = "REJECTED"


@strawberry.enum
class SyncStatus(Enum):
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"


@strawberry.enum
class StatementFormat(Enum):
    CAMT053 = "CAMT053"
    CAMT054 = "CAMT054"
    MT940 = "MT940"
    GPC = "GPC"
    BBF = "BBF"


@strawberry.enum
class PaymentEventType(Enum):
    PAYMENT_RECEIVED = "PAYMENT_RECEIVED"
    PAYMENT_MATCHED = "PAYMENT_MATCHED"
    PAYMENT_UNMATCHED = "PAYMENT_UNMATCHED"
    DOCUMENT_PAID = "DOCUMENT_PAID"
    DOCUMENT_PARTIALLY_PAID = "DOCUMENT_PARTIALLY_PAID"
    DOCUMENT_OVERPAID = "DOCUMENT_OVERPAID"
    CONSENT_EXPIRING = "CONSENT_EXPIRING"
    CONSENT_EXPIRED = "CONSENT_EXPIRED"
    CONNECTION_DISCONNECTED = "CONNECTION_DISCONNECTED"
    SYNC_FAILED = "SYNC_FAILED"
