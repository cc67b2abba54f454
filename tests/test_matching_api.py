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


async def test_split_payment_and_overpayment(
    gql: GQL, make_tenant: MakeTenant, push_connection: PushConnection
) -> None:
    t, c = await _setup(gql, make_tenant, push_connection, [inv("A-1", "100"), inv("A-2", "50")])
    [p] = await _pay(gql, t, c, tx("s", "170", remittanceInformation="A-1, A-2"))
    assert p["matchState"] == "MATCHED"
    assert [(a["document"]["number"], a["amount"]) for a in p["allocations"]] == [
        ("A-1", "100.00"),
        ("A-2", "70.00"),
    ]
    assert (await _doc(gql, t, "A-1"))["paymentState"] == "PAID"
    a2 = await _doc(gql, t, "A-2")
    assert (a2["paymentState"], a2["paidAmount"], a2["fullyPaid"]) == ("OVERPAID", "70.00", True)


async def test_ambiguous_reference_prefers_equal_outstanding_else_suggests(
    gql: GQL, make_tenant: MakeTenant, push_connection: PushConnection
) -> None:
    docs = [
        {
            "kind": "ORDER",
            "number": "O-1",
            "orderNumber": "R-77",
            "total": "300",
            "currency": "HUF",
        },
        {
            "kind": "ORDER",
            "number": "O-2",
            "orderNumber": "R-77",
            "total": "500",
            "currency": "HUF",
        },
    ]
    t, c = await _setup(gql, make_tenant, push_connection, docs)
    [p] = await _pay(gql, t, c, tx("x", "500", remittanceInformation="rendeles R-77"))
    assert p["matchState"] == "MATCHED" and p["allocations"][0]["document"]["number"] == "O-2"
    assert p["allocations"][0]["rule"] == "ORDER_NUMBER"
    docs3 = [
        {
            "kind": "ORDER",
            "number": "O-3",
            "orderNumber": "R-88",
            "total": "300",
            "currency": "HUF",
        },
        {
            "kind": "ORDER",
            "number": "O-4",
            "orderNumber": "R-88",
            "total": "500",
            "currency": "HUF",
        },
    ]
    await gql(DOCS, {"i": docs3}, t.token())
    [q] = await _pay(gql, t, c, tx("y", "999", remittanceInformation="R-88"))
    assert q["matchState"] == "SUGGESTED" and q["allocations"] == []
    assert {s["document"]["number"] for s in q["suggestions"]} == {"O-3", "O-4"}


async def test_recurring_order_number_pays_the_oldest_open(
    gql: GQL, make_tenant: MakeTenant, push_connection: PushConnection
) -> None:
    docs = [
        {
            "kind": "PROFORMA",
            "number": f"D-{i}",
            "orderNumber": "CARD-555",
            "recurringOrderNumber": True,
            "total": "1000",
            "currency": "HUF",
        }
        for i in range(1, 4)
    ]
    t, c = await _setup(gql, make_tenant, push_connection, docs)
    paid = await _pay(
        gql,
        t,
        c,
        tx("m1", "1000", remittanceInformation="tagdij CARD-555"),
        tx("m2", "1000", remittanceInformation="tagdij CARD-555"),
    )
    assert [p["allocations"][0]["document"]["number"] for p in paid] == ["D-1", "D-2"]


async def test_partner_identifier_symbols_and_payment_key(
    gql: GQL, make_tenant: MakeTenant, push_connection: PushConnection
) -> None:
    t = await make_tenant()
    await gql(
        'mutation { upsertPartners(input: [{externalId: "p", name: "Kovács", identifier: "TAG-1001"}]) { partners { id } } }',
        token=t.token(),
    )
    docs = [
        inv("P-1", "100", partnerExternalId="p"),
        inv("P-2", "200", partnerExternalId="p"),
        inv("CZ-1", "50", "CZK", variableSymbol="111", constantSymbol="0308"),
        {
            "kind": "ORDER",
            "number": "G-1",
            "total": "75",
            "currency": "CZK",
            "paymentKey": "AB12-CD34",
        },
    ]
    await gql(DOCS, {"i": docs}, t.token())
    c = await push_connection(t)
    paid = await _pay(
        gql,
        t,
        c,
        tx("k1", "200", remittanceInformation="TAG-1001 havidij"),
        tx("k2", "50", "CZK", variableSymbol="111", constantSymbol="0308"),
        tx("k3", "75", "CZK", paymentKey="ab12-cd34"),
    )
    assert [
        (p["allocations"][0]["document"]["number"], p["allocations"][0]["rule"]) for p in paid
    ] == [("P-2", "PARTNER_IDENTIFIER"), ("CZ-1", "VARIABLE_SYMBOL"), ("G-1", "PAYMENT_KEY")]


async def test_constant_symbol_only_narrows(
    gql: GQL, make_tenant: MakeTenant, push_connection: PushConnection
) -> None:
    t, c = await _setup(
        gql,
        make_tenant,
        push_connection,
        [inv("K-1", "50", "CZK", variableSymbol="222", constantSymbol="0308")],
    )
    [p] = await _pay(gql, t, c, tx("ks", "50", "CZK", variableSymbol="222", constantSymbol="0558"))
    assert p["matchState"] != "MATCHED"
    [q] = await _pay(gql, t, c, tx("ks2", "50", "CZK", constantSymbol="0308"))
    assert q["matchState"] == "UNMATCHED"


async def test_wrong_currency_and_outgoing_are_never_allocated(
    gql: GQL, make_tenant: MakeTenant, push_connection: PushConnection
) -> None:
    t, c = await _setup(gql, make_tenant, push_connection, [inv("W-1", "100", "EUR")])
    wrong, out = await _pay(
        gql,
        t,
        c,
        tx("w", "100", "HUF", remittanceInformation="W-1"),
        tx("o", "-100", "EUR", remittanceInformation="W-1"),
    )
    assert wrong["matchState"] == "SUGGESTED" and wrong["allocations"] == []
    assert "EUR" in (wrong["suggestions"][0]["reason"] + wrong["explanation"])
    assert out["matchState"] == "UNMATCHED" and "outgoing" in out["explanation"]
    assert (await _doc(gql, t, "W-1"))["paymentState"] == "UNPAID"


async def test_connection_keys_and_kinds_limit_matching(
    gql: GQL, make_tenant: MakeTenant, push_connection: PushConnection
) -> None:
    t = await make_tenant()
    await gql(
        DOCS,
        {
            "i": [
                inv("L-1", "10", variableSymbol="4242"),
                {"kind": "ORDER", "number": "L-2", "total": "20", "currency": "HUF"},
            ]
        },
        t.token(),
    )
    vs_only = await push_connection(t, matchKeys=["VARIABLE_SYMBOL"], matchAgainst=["INVOICE"])
    a, b = await _pay(
        gql,
        t,
        vs_only,
        tx("l1", "10", remittanceInformation="L-1"),
        tx("l2", "20", remittanceInformation="L-2"),
    )
    assert a["matchState"] != "MATCHED" and b["matchState"] != "MATCHED"
    [v] = await _pay(gql, t, vs_only, tx("l3", "10", variableSymbol="4242"))
    assert v["matchState"] == "MATCHED"


async def test_late_document_picks_up_the_waiting_payment(
    gql: GQL, make_tenant: MakeTenant, push_connection: PushConnection
) -> None:
    t = await make_tenant()
    c = await push_connection(t)
    [early] = await _pay(
        gql, t, c, tx("early", "700", remittanceInformation="E-2026-0999 elore utalas")
    )
    assert early["matchState"] == "UNMATCHED"
    assert "E-2026-0999" in early["explanation"]
    body = await gql(DOCS + "", {"i": [inv("E-2026-0999", "700")]}, t.token())
    assert not body.get("errors")
    doc = await _doc(gql, t, "E-2026-0999")
    assert (doc["paymentState"], doc["allocations"][0]["transaction"]["providerTransactionId"]) == (
        "PAID",
        "early",
    )


async def test_manual_match_unmatch_ignore(
    gql: GQL, make_tenant: MakeTenant, push_connection: PushConnection
) -> None:
    t, c = await _setup(
        gql,
        make_tenant,
        push_connection,
        [inv("M-1", "60"), inv("M-2", "60"), inv("M-3", "10", "EUR")],
    )
    [p] = await _pay(gql, t, c, tx("man", "100", remittanceInformation="no reference at all"))
    assert p["matchState"] == "UNMATCHED"
    body = await gql("{ documents { edges { node { id number } } } }", token=t.token())
    ids = {e["node"]["number"]: e["node"]["id"] for e in body["data"]["documents"]["edges"]}
    txid = (await gql("{ transactions { edges { node { id } } } }", token=t.token()))["data"][
        "transactions"
    ]["edges"][0]["node"]["id"]
    MATCH = "mutation($t: ID!, $a: [AllocationInput!]!) { matchTransaction(transactionId: $t, allocations: $a) { matchState decidedBy explanation allocations { amount method createdBy document { number } } } }"
    # Over-allocation, wrong currency, unknown document and bad amounts are refused, nothing changes.
    for bad, code in (
        (
            [
                {"documentId": ids["M-1"], "amount": "60"},
                {"documentId": ids["M-2"], "amount": "41"},
            ],
            "BAD_USER_INPUT",
        ),
        ([{"documentId": ids["M-3"]}], "BAD_USER_INPUT"),
        ([{"documentId": "999999999"}], "NOT_FOUND"),
        ([{"documentId": ids["M-1"], "amount": "-5"}], "BAD_USER_INPUT"),
        ([{"documentId": ids["M-1"], "amount": "1.001"}], "BAD_USER_INPUT"),
        ([{"documentId": ids["M-1"]}, {"documentId": ids["M-1"]}], "BAD_USER_INPUT"),
    ):
        body = await gql(MATCH, {"t": txid, "a": bad}, t.token("ACCOUNTANT"))
        assert [e["extensions"]["code"] for e in body["errors"]] == [code], (bad, body)
    assert (await _doc(gql, t, "M-1"))["paidAmount"] == "0.00"
    body = await gql(
        MATCH,
        {"t": txid, "a": [{"documentId": ids["M-1"], "amount": "60"}, {"documentId": ids["M-2"]}]},
        t.token("ACCOUNTANT", "anna"),
    )
    m = body["data"]["matchTransaction"]
    assert m["matchState"] == "MATCHED" and m["decidedBy"] == "anna"
    assert [
        (a["document"]["number"], a["amount"], a["method"], a["createdBy"])
        for a in m["allocations"]
    ] == [("M-1", "60.00", "MANUAL", "anna"), ("M-2", "40.00", "MANUAL", "anna")]
    assert (await _doc(gql, t, "M-2"))["paymentState"] == "PARTIALLY_PAID"
    body = await gql(MATCH, {"t": txid, "a": [{"documentId": ids["M-1"]}]}, t.token())
    assert body["errors"][0]["extensions"]["code"] == "CONFLICT"
    # Unmatch reverses the paid state and keeps the history.
    body = await gql(
        "mutation($t: ID!) { unmatchTransaction(transactionId: $t) { matchState allocations { id } allocationHistory { reversedAt reversedBy } } }",
        {"t": txid},
        t.token("ACCOUNTANT", "bob"),
    )
    u = body["data"]["unmatchTransaction"]
    assert u["matchState"] == "UNMATCHED" and u["allocations"] == []
    assert [h["reversedBy"] for h in u["allocationHistory"]] == ["bob", "bob"]
    m1 = await _doc(gql, t, "M-1")
    assert (m1["paidAmount"], m1["paymentCount"], m1["paymentState"]) == ("0.00", 0, "UNPAID")
    # A document upsert does not re-match what a person unmatched.
    await gql(DOCS, {"i": [inv("M-1", "60")]}, t.token())
    assert (await _doc(gql, t, "M-1"))["paymentState"] == "UNPAID"
    body = await gql(
        'mutation($t: ID!) { ignoreTransaction(transactionId: $t, reason: "refund") { matchState ignoredReason explanation } }',
        {"t": txid},
        t.token(),
    )
    assert body["data"]["ignoreTransaction"] == {
        "matchState": "IGNORED",
        "ignoredReason": "refund",
        "explanation": "ignored by owner@" + t.slug + ": refund",
    }
    body = await gql(
        "mutation($t: ID!) { ignoreTransaction(transactionId: $t) { id } }",
        {"t": txid},
        t.token("INVOICER"),
    )
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
