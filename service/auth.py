"""Bearer tokens, roles and plans.

A token carries `sub`, `tenant` (the tenant's slug) and `role`. Locally it is HS256-signed with
the data directory's secret; in production an identity provider signs RS256 and publishes its
keys at `RECON_JWKS_URL`.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import jwt

from .config import Settings
from .secrets import jwt_secret

__all__ = [
    "BANK_DATA_ROLES",
    "CONNECTION_ADMIN_ROLES",
    "AuthError",
    "Plan",
    "Principal",
    "Role",
    "TokenVerifier",
    "issue_token",
]


class Role(StrEnum):
    OWNER = "OWNER"
    ADMIN = "ADMIN"
    ACCOUNTANT = "ACCOUNTANT"
    INVOICER = "INVOICER"
    OPERATOR = "OPERATOR"


class Plan(StrEnum):
    FREE = "FREE"
    DIGITAL = "DIGITAL"
    PROFI = "PROFI"


# Who may see bank transactions, connections, allocations' transactions, sync runs and events.
BANK_DATA_ROLES = frozenset({Role.OWNER, Role.ADMIN, Role.ACCOUNTANT})
# Who may connect, reconfigure and disconnect bank sync and renew consent.
CONNECTION_ADMIN_ROLES = frozenset({Role.OWNER, Role.ADMIN})
# Plans that include bank sync.
BANK_SYNC_PLANS = frozenset({Plan.DIGITAL, Plan.PROFI})


class AuthError(Exception):
    """The request carries no valid token."""


@dataclass(frozen=True, slots=True)
class Principal:
    subject: str
    tenant_slug: str
    role: Role
    # Unix time the token stops being valid; a long-lived WebSocket checks it on every use.
    expires_at: float = float("inf")


def issue_token(settings: Settings, tenant: str, role: Role, subject: str) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": subject,
        "tenant": tenant,
        "role": role.value,
        "iat": now,
        "exp": now + settings.token_ttl_seconds,
    }
    if settings.jwt_issuer:
        claims["iss"] = settings.jwt_issuer
    if settings.jwt_audience:
        claims["aud"] = settings.jwt_audience
    return jwt.encode(claims, jwt_secret(settings), algorithm="HS256")


class TokenVerifier:
    """Verifies bearer tokens: signature, expiry and the three claims."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._secret = jwt_secret(settings)
        self._jwks = jwt.PyJWKClient(settings.jwks_url) if settings.jwks_url else None

    async def verify_header(self, header: object) -> Principal:
        if not isinstance(header, str | None):
            raise AuthError("the Authorization value must be a string: 'Bearer <token>'")
        if not header:
            raise AuthError("missing bearer token: send 'Authorization: Bearer <token>'")
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError("the Authorization header must be 'Bearer <token>'")
        return await self.verify(token.strip())

    async def verify(self, token: str) -> Principal:
        options = {"require": ["exp", "sub", "tenant", "role"]}
        common: dict[str, Any] = {
            "audience": self._settings.jwt_audience,
            "issuer": self._settings.jwt_issuer,
            "options": options,
            "leeway": 30,
        }
        try:
            header = jwt.get_unverified_header(token)
            if (
                self._jwks is not None
                and header.get("alg") != "RS256"
                and not self._settings.jwt_secret
            ):
                # With an identity provider configured, the generated local secret signs nothing.
                raise AuthError(
                    "invalid token: only RS256 tokens from the identity provider are accepted"
                )
            if header.get("alg") == "RS256" and self._jwks is not None:
                # PyJWKClient fetches synchronously (and caches); keep it off the event loop.
                key = await asyncio.to_thread(self._jwks.get_signing_key_from_jwt, token)
                claims = jwt.decode(token, key.key, algorithms=["RS256"], **common)
            else:
                claims = jwt.decode(token, self._secret, algorithms=["HS256"], **common)
        except jwt.ExpiredSignatureError:
            raise AuthError("the token has expired; ask for a new one") from None
        except jwt.PyJWTError as exc:
            raise AuthError(f"invalid token: {exc}") from None
        try:
            role = Role(claims["role"])
        except ValueError:
            raise AuthError(f"invalid token: unknown role {claims['role']!r}") from None
        if not isinstance(claims["tenant"], str) or not isinstance(claims["sub"], str):
            raise AuthError("invalid token: 'tenant' and 'sub' must be strings")
        return Principal(
            subject=claims["sub"],
            tenant_slug=claims["tenant"],
            role=role,
            expires_at=float(claims["exp"]),
        )
