"""Partners and documents: upsert, per-record errors, filters, pagination."""

from __future__ import annotations

from typing import Any

from .conftest import GQL, MakeTenant, codes

UPSERT_DOCS = """
mutation($i: [DocumentInput!]!) {
  upsertDocuments(input: $i) {
    documents { id kind number total currency paidAmount paymentCount fullyPaid paymentState
                variableSymbol partner { name identifier } }
    errors { index key field message }
  }
}
"""
UPSERT_PARTNERS = """
mutation($i: [PartnerInput!]!) {
  upsertPartners(input: $i) { partners { id externalId name identifier } errors { index field message } }
}
"""
LIST = """
query($f: DocumentFilter, $first: Int, $after: String) {
  documents(filter: $f, first: $first, after: $after) {
    totalCount pageInfo { hasNextPage endCursor } edges { cursor node { number } }
  }
}
"""


def doc(number: str, **extra: Any) -> dict[str, Any]:
    return {"kind": "INVOICE", "number": number, "total": "1000", "currency": "HUF", **extra}


async def test_upsert_documents_and_partners(gql: GQL, make_tenant: MakeTenant) -> None:
    t = await make_tenant()
    body = await gql(
        UPSERT_PARTNERS,
        {"i": [{"externalId": "P1", "name": "Kovács Kft.", "identifier": "TAG-9"}]},
        t.token(),
    )
    assert body["data"]["upsertPartners"]["partners"][0]["identifier"] == "TAG-9"
    body = await gql(
        UPSERT_DOCS,
        {
            "i": [
                doc("E-2026-1", partnerExternalId="P1", variableSymbol="0001234"),
                doc("FV1", total="12100.50", currency="CZK"),
            ]
        },
        t.token(),
    )
    assert "errors" not in body, body
    docs = body["data"]["upsertDocuments"]["documents"]
    assert docs[0]["partner"] == {"name": "Kovács Kft.", "identifier": "TAG-9"}
    assert docs[0]["total"] == "1000.00" and docs[0]["paidAmount"] == "0.00"
    assert docs[0]["paymentState"] == "UNPAID" and docs[0]["fullyPaid"] is False
    assert docs[0]["variableSymbol"] == "0001234"
    assert docs[1]["total"] == "12100.50" and docs[1]["currency"] == "CZK"
    # Upsert by (kind, number): same id, new total.
    again = await gql(UPSERT_DOCS, {"i": [doc("E-2026-1", total="1500")]}, t.token())
    assert again["data"]["upsertDocuments"]["documents"][0]["id"] == docs[0]["id"]
    assert again["data"]["upsertDocuments"]["documents"][0]["total"] == "1500.00"


async def test_bad_records_are_reported_and_the_rest_lands(
    gql: GQL, make_tenant: MakeTenant
) -> None:
    t = await make_tenant()
    body = await gql(
        UPSERT_DOCS,
        {
            "i": [
                doc("OK-1"),
                doc("BAD-1", currency="XYZ"),
                doc("BAD-2", total="10.001"),
                doc("BAD-3", variableSymbol="12AB"),
                doc("BAD-4", partnerExternalId="nobody"),
                doc("OK-2", total="5", currency="EUR"),
            ]
        },
        t.token(),
    )
    payload = body["data"]["upsertDocuments"]
    assert [d["number"] for d in payload["documents"]] == ["OK-1", "OK-2"]
    assert {(e["index"], e["field"]) for e in payload["errors"]} == {
        (1, "currency"),
        (2, "total"),
        (3, "variableSymbol"),
        (4, "partnerExternalId"),
    }
    assert codes(body) == ["BAD_USER_INPUT"] * 4
    messages = " ".join(e["message"] for e in body["errors"])
    assert "BAD-1" in messages and "XYZ" in messages and "BAD-4" in messages


async def test_filters_and_pagination_edges(gql: GQL, make_tenant: MakeTenant) -> None:
    t = await make_tenant()
    await gql(
        UPSERT_DOCS,
        {"i": [doc(f"N-{i:02d}") for i in range(7)] + [doc("P-1", kind="PROFORMA")]},
        t.token(),
    )
    seen: list[str] = []
    after = None
    while True:
        body = await gql(LIST, {"f": {"kind": "INVOICE"}, "first": 3, "after": after}, t.token())
        conn = body["data"]["documents"]
        assert conn["totalCount"] == 7
        seen += [e["node"]["number"] for e in conn["edges"]]
        if not conn["pageInfo"]["hasNextPage"]:
            break
        after = conn["pageInfo"]["endCursor"]
    assert seen == [f"N-{i:02d}" for i in reversed(range(7))]
    # Exactly a full last page: no phantom next page.
    body = await gql(LIST, {"f": {"kind": "INVOICE"}, "first": 7}, t.token())
    assert body["data"]["documents"]["pageInfo"]["hasNextPage"] is False
    # first: 0 gives no edges; over the cap and negative are refused; a forged cursor too.
    body = await gql(LIST, {"first": 0}, t.token())
    assert body["data"]["documents"]["edges"] == []
    for bad in ({"first": 101}, {"first": -1}, {"after": "bm9wZQ"}, {"after": "!!"}):
        body = await gql(LIST, bad, t.token())
        assert codes(body) == ["BAD_USER_INPUT"], body
    body = await gql(LIST, {"f": {"number": "p-"}}, t.token())
    assert [e["node"]["number"] for e in body["data"]["documents"]["edges"]] == ["P-1"]
    body = await gql(LIST, {"f": {"paymentState": "PAID"}}, t.token())
    assert body["data"]["documents"]["totalCount"] == 0


async def test_all_roles_see_documents(gql: GQL, make_tenant: MakeTenant) -> None:
    t = await make_tenant()
    await gql(UPSERT_DOCS, {"i": [doc("R-1")]}, t.token())
    for role in ("OWNER", "ADMIN", "ACCOUNTANT", "INVOICER", "OPERATOR"):
        body = await gql(
            "{ documents { totalCount edges { node { paidAmount paymentState fullyPaid } } } }",
            token=t.token(role),
        )
        assert body["data"]["documents"]["totalCount"] == 1, (role, body)
