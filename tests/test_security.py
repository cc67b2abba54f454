"""Tenant isolation and field-level roles, tested as attacks."""

from __future__ import annotations

from typing import Any

import pytest

from service.api.schema import schema

from .conftest import GQL, MakeTenant, TenantHandle, codes
from .test_ingest import INGEST, PushConnection, tx

BANK_TYPES = {"Transaction", "BankConnection", "SyncRun", "PaymentEvent"}
# Types that only wrap bank data: the field leading to them must be guarded; their own
# fields are then reachable only through that guard.
BANK_WRAPPERS = {
    "TransactionConnection",
    "TransactionEdge",
    "SyncRunConnection",
    "SyncRunEdge",
    "PaymentEventConnection",
    "PaymentEventEdge",
    "IngestPayload",
    "ConnectBankSyncPayload",
}


async def _seed(gql: GQL, t: TenantHandle, push_connection: PushConnection) -> dict[str, Any]:
    body = await gql(
        'mutation { upsertDocuments(input: [{kind: INVOICE, number: "S-1", total: "100", currency: "HUF"}]) { documents { id } } }',
        token=t.token(),
    )
    doc_id = body["data"]["upsertDocuments"]["documents"][0]["id"]
    conn_id = await push_connection(t)
    body = await gql(
        INGEST, {"c": conn_id, "i": [tx("s-1", "100", remittanceInformation="S-1")]}, t.token()
    )
    tx_id = body["data"]["ingestTransactions"]["transactions"][0]["id"]
    return {"doc": doc_id, "conn": conn_id, "tx": tx_id}


async def test_a_token_of_one_tenant_never_reaches_another(
    gql: GQL, make_tenant: MakeTenant, push_connection: PushConnection
) -> None:
    a, b = await make_tenant(), await make_tenant()
    b_ids = await _seed(gql, b, push_connection)
    await _seed(gql, a, push_connection)
    token = a.token()
    # Reads by guessed id find nothing.
    body = await gql(
        "query($d: ID!, $t: ID!, $c: ID!) { document(id: $d) { id } transaction(id: $t) { id } connection(id: $c) { id } }",
        {"d": b_ids["doc"], "t": b_ids["tx"], "c": b_ids["conn"]},
        token,
    )
    assert body["data"] == {"document": None, "transaction": None, "connection": None}
    # Lists show only A's rows.
    body = await gql(
        "{ documents { totalCount } transactions { totalCount } connections { id } }", token=token
    )
    assert body["data"]["documents"]["totalCount"] == 1
    assert body["data"]["transactions"]["totalCount"] == 1
    assert b_ids["conn"] not in [c["id"] for c in body["data"]["connections"]]
    body = await gql(
        "query($c: ID!) { transactions(filter: {connectionId: $c}) { totalCount } }",
        {"c": b_ids["conn"]},
        token,
    )
    assert body["data"]["transactions"]["totalCount"] == 0
    # Writes by guessed id are refused and change nothing.
    body = await gql(INGEST, {"c": b_ids["conn"], "i": [tx("evil", "5")]}, token)
    assert codes(body) == ["NOT_FOUND"]
    for mutation in (
        "mutation($c: ID!) { disconnectBankSync(connectionId: $c) { id } }",
        'mutation($c: ID!) { updateConnection(connectionId: $c, input: {name: "pwned"}) { id } }',
    ):
        body = await gql(mutation, {"c": b_ids["conn"]}, token)
        assert codes(body) == ["NOT_FOUND"], mutation
    body = await gql("{ connections { name status } transactions { totalCount } }", token=b.token())
    assert body["data"]["connections"] == [{"name": "push", "status": "ACTIVE"}]
    assert body["data"]["transactions"]["totalCount"] == 1
    # A document upsert with B's number lands in A, never touching B.
    await gql(
        'mutation { upsertDocuments(input: [{kind: INVOICE, number: "S-1", total: "999", currency: "HUF"}]) { documents { id } } }',
        token=token,
    )
    body = await gql(
        "query($d: ID!) { document(id: $d) { total } }", {"d": b_ids["doc"]}, b.token()
    )
    assert body["data"]["document"]["total"] == "100.00"


BANK_QUERIES = {
    "transactions": "{ transactions { totalCount } }",
    "transaction": "query($t: ID!) { transaction(id: $t) { id } }",
    "connections": "{ connections { id } }",
    "connection": "query($c: ID!) { connection(id: $c) { id } }",
    "syncRuns": "{ syncRuns { edges { node { id } } } }",
    "events": "{ events { edges { node { type } } } }",
    "allocation.transaction": "query($d: ID!) { document(id: $d) { allocations { transaction { id amount } } } }",
    "ingest": "mutation($c: ID!) { ingestTransactions(connectionId: $c, input: []) { inserted } }",
}


@pytest.mark.parametrize("role", ["OWNER", "ADMIN", "ACCOUNTANT", "INVOICER", "OPERATOR"])
async def test_every_role_against_every_bank_field(
    gql: GQL, make_tenant: MakeTenant, push_connection: PushConnection, role: str
) -> None:
    t = await make_tenant()
    ids = await _seed(gql, t, push_connection)
    variables = {"t": ids["tx"], "c": ids["conn"], "d": ids["doc"]}
    sees = role in ("OWNER", "ADMIN", "ACCOUNTANT")
    for name, query in BANK_QUERIES.items():
        used = {k: v for k, v in variables.items() if f"${k}" in query}
        body = await gql(query, used, t.token(role))
        if sees:
            assert not body.get("errors"), (name, body)
        else:
            assert "FORBIDDEN" in codes(body), (role, name, body)
            assert ids["tx"] not in str(body.get("data")), (name, body)
    # Documents and their paid state stay visible to everyone.
    body = await gql(
        "query($d: ID!) { document(id: $d) { number paidAmount paymentState allocations { amount } } }",
        {"d": ids["doc"]},
        t.token(role),
    )
    assert body["data"]["document"]["number"] == "S-1"


def test_every_field_that_returns_bank_data_carries_the_permission() -> None:
    """However a query reaches a bank type, the field it comes through is guarded."""
    from strawberry.permission import PermissionExtension

    from service.api.permissions import SeesBankData

    unguarded = []
    for type_def in schema.schema_converter.type_map.values():
        definition = getattr(type_def, "definition", None)
        for field in getattr(definition, "fields", []) or []:
            target = field.type
            while hasattr(target, "of_type"):
                target = target.of_type
            name = getattr(getattr(target, "__strawberry_definition__", None), "name", None)
            if name not in BANK_TYPES | BANK_WRAPPERS or definition.name in BANK_WRAPPERS:
                continue
            guarded = any(
                isinstance(ext, PermissionExtension)
                and any(isinstance(p, SeesBankData) for p in ext.permissions)
                for ext in field.extensions
            )
            if not guarded:
                unguarded.append(f"{definition.name}.{field.python_name}")
    assert unguarded == []


async def test_query_depth_and_aliases_are_limited(gql: GQL, make_tenant: MakeTenant) -> None:
    t = await make_tenant()
    deep = (
        "{ documents { edges { node { "
        + "allocations { document { " * 6
        + "id"
        + " } }" * 6
        + " } } } }"
    )
    body = await gql(deep, token=t.token())
    assert body.get("errors") and body.get("data") is None
    many = "{ " + " ".join(f"a{i}: viewer {{ subject }}" for i in range(40)) + " }"
    body = await gql(many, token=t.token())
    assert body.get("errors") and body.get("data") is None
