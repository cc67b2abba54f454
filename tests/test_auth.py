"""Tokens: missing, malformed, forged, expired, unknown tenant or role are all UNAUTHENTICATED."""

from __future__ import annotations

import time

import jwt
import pytest

from service.auth import Role

from .conftest import GQL, MakeTenant, codes

VIEWER = "{ viewer { subject role tenant { slug name plan } } }"


async def test_viewer_reports_the_token(gql: GQL, make_tenant: MakeTenant) -> None:
    tenant = await make_tenant("DIGITAL")
    body = await gql(VIEWER, token=tenant.token(Role.ACCOUNTANT, "anna"))
    assert body["data"]["viewer"] == {
        "subject": "anna",
        "role": "ACCOUNTANT",
        "tenant": {"slug": tenant.slug, "name": f"Tenant {tenant.slug}", "plan": "DIGITAL"},
    }


def _forge(secret: str, **claims: object) -> str:
    base = {"sub": "x", "role": "OWNER", "exp": int(time.time()) + 600}
    base.update(claims)
    return jwt.encode(base, secret, algorithm="HS256")


@pytest.mark.parametrize(
    "make_token",
    [
        pytest.param(lambda t, s: None, id="missing"),
        pytest.param(lambda t, s: "not-a-jwt", id="garbage"),
        pytest.param(lambda t, s: _forge("wrong-secret-" + "y" * 40, tenant=t), id="forged"),
        pytest.param(lambda t, s: _forge(s, tenant=t, exp=int(time.time()) - 3600), id="expired"),
        pytest.param(lambda t, s: _forge(s, tenant="no-such-tenant"), id="unknown-tenant"),
        pytest.param(lambda t, s: _forge(s, tenant=t, role="GOD"), id="unknown-role"),
        pytest.param(lambda t, s: _forge(s, tenant=t, exp=None), id="no-expiry"),
        pytest.param(
            lambda t, s: jwt.encode(
                {"sub": "x", "role": "OWNER", "tenant": t, "exp": int(time.time()) + 600},
                key="",
                algorithm="none",
            ),
            id="alg-none",
        ),
    ],
)
async def test_bad_tokens_are_unauthenticated(
    gql: GQL, make_tenant: MakeTenant, make_token
) -> None:  # type: ignore[no-untyped-def]
    tenant = await make_tenant()
    token = make_token(tenant.slug, tenant.settings.jwt_secret)
    body = await gql(VIEWER, token=token)
    assert body.get("data") is None
    assert codes(body) == ["UNAUTHENTICATED"]
    # The other entry points answer the same way.
    body = await gql("{ documents { totalCount } }", token=token)
    assert codes(body) == ["UNAUTHENTICATED"]
    body = await gql("{ transactions { totalCount } }", token=token)
    assert codes(body) == ["UNAUTHENTICATED"]
