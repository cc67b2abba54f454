"""The matcher end to end: payments in through GraphQL, documents paid, explanations out."""

from __future__ import annotations

from typing import Any

from .conftest import GQL, MakeTenant, TenantHandle
from .test_ingest import INGEST, PushConnection, tx

DOCS = """
mutation($i: [DocumentInput!]!) { upsertDocuments(input: $i) { documents { id number } errors { message } } }
"""
TX = """
query($id: ID!) { transaction(id: $id) {
  matchState explanation
  allocations { amount rule method document { number } }
  suggestions { confidence reason document { number } }
} }
"""
DOC = """
query($n: String!) { documents(filter: {number: $n}) { edges { node {
  number paidAmount paymentCount fullyPaid paymentState allocations { amount transaction { providerTransactionId } }
} } } }
"""


async def _setup(
    gql: GQL,
    make_tenant: MakeTenant,
    push_connection: PushConnection,
    docs: list[dict[str, Any]],
    **conn: Any,
) -> tuple[TenantHandle, str]:
    t = await make_tenant()
    body = await gql(DOCS, {"i": docs}, t.token())
    assert not body.get("errors"), body
    return t, await push_connection(t, **conn)


async def _pay(gql: GQL, t: TenantHandle, c: str, *records: dict[str, Any]) -> list[dict[str, Any]]:
    body = await gql(INGEST, {"c": c, "i": list(records)}, t.token())
    assert not body.get("errors"), body
    out = []
    for row in body["data"]["ingestTransactions"]["transactions"]:
        detail = await gql(TX, {"id": row["id"]}, t.token())
        out.append(detail["data"]["transaction"])
    return out


async def _doc(gql: GQL, t: TenantHandle, number: str) -> dict[str, Any]:
    body = await gql(DOC, {"n": number}, t.token())
    node: dict[str, Any] = body["data"]["documents"]["edges"][0]["node"]
    return node


def inv(number: str, total: str = "1000", currency: str = "HUF", **extra: Any) -> dict[str, Any]:
    return {"kind": "INVOICE", "number": number, "total": total, "currency": currency, **extra}


async def test_exact_number_pays_the_invoice(
    gql: GQL, make_tenant: MakeTenant, push_connection: PushConnection
) -> None:
    t, c = await _setup(gql, make_tenant, push_connection, [inv("E-2026-0123", "12500")])
    [paid] = await _pay(
        gql, t, c, tx("p1", "12500", remittanceInformation="Számla: E-2026-0123, köszönöm")
    )
    assert paid["matchState"] == "MATCHED"
    assert paid["allocations"] == [
        {
            "amount": "12500.00",
            "rule": "DOCUMENT_NUMBER",
            "method": "AUTO",
            "document": {"number": "E-2026-0123"},
        }
    ]
    assert "E-2026-0123" in paid["explanation"]
    doc = await _doc(gql, t, "E-2026-0123")
    assert (doc["paidAmount"], doc["paymentCount"], doc["fullyPaid"], doc["paymentState"]) == (
        "12500.00",
        1,
        True,
        "PAID",
    )


async def test_partial_then_rest_then_overpaid(
    gql: GQL, make_tenant: MakeTenant, push_connection: PushConnection
) -> None:
    t, c = await _setup(
        gql, make_tenant, push_connection, [inv("FV1", "100.50", "CZK", variableSymbol="2026001")]
    )
    await _pay(gql, t, c, tx("a", "40.25", "CZK", variableSymbol="0002026001"))
    doc = await _doc(gql, t, "FV1")
    assert (doc["paidAmount"], doc["paymentState"], doc["fullyPaid"]) == (
        "40.25",
        "PARTIALLY_PAID",
        False,
    )
    await _pay(gql, t, c, tx("b", "60.25", "CZK", variableSymbol="2026001"))
    doc = await _doc(gql, t, "FV1")
    assert (doc["paidAmount"], doc["paymentCount"], doc["paymentState"]) == ("100.50", 2, "PAID")
    # Fully paid documents are no longer open: a third payment does not match it.
    [third] = await _pay(gql, t, c, tx("c", "10", "CZK", variableSymbol="2026001"))
    assert third["matchState"] != "MATCHED"


async def test_typo_is_only_suggested_with_a_reason(
    gql: GQL, make_tenant: MakeTenant, push_connection: PushConnection
) -> None:
    t, c = await _setup(gql, make_tenant, push_connection, [inv("E-2026-0132", "5000")])
    [p] = await _pay(gql, t, c, tx("t", "5000", remittanceInformation="E-2026-0123"))
    assert p["matchState"] == "SUGGESTED" and p["allocations"] == []
    assert p["suggestions"][0]["document"]["number"] == "E-2026-0132"
    assert 0 < p["suggestions"][0]["confidence"] < 1
    assert "swapped" in p["explanation"] or "swapped" in p["suggestions"][0]["reason"]
    doc = await _doc(gql, t, "E-2026-0132")
    assert doc["paymentState"] == "UNPAID"
