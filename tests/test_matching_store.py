"""The store's candidate queries: through PostgreSQL, decisions equal the pure matcher's
over every open document (the queries may fetch more, never less)."""

from __future__ import annotations

from decimal import Decimal

import asyncpg
import pytest

from service.actions.lane import Lane
from service.actions.matching import decide_batch, open_document
from service.domain.matcher import MAX_TOKEN_LENGTH, MatchConfig, decide, default_config, lookup_for
from service.domain.models import OPEN_DOCUMENT_FIELDS, DocumentKind, OpenDocument, Payment
from service.domain.records import check_document, check_partner
from service.store import documents as documents_store
from service.store import matching as matching_store
from service.store import params
from service.store import partners as partners_store

from .conftest import MakeTenant

# Every length a reference can have: near-miss keys at all of these are every key.
EVERY_LENGTH = range(1, MAX_TOKEN_LENGTH + 2)

# Numbers, order numbers and symbols of many lengths, so that near misses of each kind
# (typo, swap, missing or extra character, glued, truncated) meet lengths that exist and
# lengths that do not.
_DOCUMENTS = [
    ("INVOICE", "E-2026-0123", "1000", {}),
    ("INVOICE", "E-2026-0132", "1000", {}),
    ("INVOICE", "INV7731", "250", {"variable_symbol": "20260042"}),
    ("PROFORMA", "2026/PROFORMA/00012", "999", {"specific_symbol": "7788"}),
    ("ORDER", "OBJ-55", "120", {"order_number": "WEB-100234"}),
    ("INVOICE", "FA2026000451", "300", {"partner": "ACME"}),
    ("INVOICE", "FA2026000452", "300", {"partner": "ACME"}),
    ("INVOICE", "X1", "10", {}),
    # The longest number: a truncation two characters short is no edit of it.
    ("PROFORMA", "PROFORMA-2026-000777-K", "777", {}),
    # Stored as given, normalized for matching: lower case, a trailing dot, padding.
    (
        "INVOICE",
        "inv-2026/77.",
        "45",
        {"payment_key": " pk-9 ", "constant_symbol": "0308", "variable_symbol": "000777"},
    ),
]
_TEXTS = [
    "E-2026-0123",
    "E-2026-0213 koszonom",  # swapped digits
    "E-2026-012",  # truncated
    "E-2026-01 es 2026-0132",  # truncated by more: the start, the end
    "FA20260004",
    "E-2026-01234",  # one extra
    "szamla E-2026-0132befizetes",  # glued
    "INV7713",  # swapped
    "INV773",  # one missing
    "platba 2026/PROFORMA/00021",
    "WEB-100243 objednavka",
    "WEB100234",
    "FA202600045",  # truncated, two candidates
    "FA2026000415",
    "payment for X2",
    "telefon 36301234567 datum 2026.11.20",
    "nothing here",
    "zaloha PROFORMA-2026-000777",  # truncated, two characters short of the longest
]


async def test_database_candidates_decide_as_every_open_document(
    pool: asyncpg.Pool, make_tenant: MakeTenant
) -> None:
    tenant = await make_tenant()
    async with pool.acquire() as conn:
        partner = check_partner(
            0, {"external_id": "acme", "name": "Acme Kft.", "identifier": "ACME"}
        )
        assert isinstance(partner, dict)
        [stored_partner] = await partners_store.upsert_many(conn, tenant.id, [partner])
        rows = []
        for i, (kind, number, total, extra) in enumerate(_DOCUMENTS):
            checked = check_document(
                i,
                {"kind": kind, "number": number, "total": total, "currency": "HUF"}
                | {k: v for k, v in extra.items() if k != "partner"},
            )
            assert isinstance(checked, dict)
            checked.pop("partner_external_id")
            checked["partner_id"] = stored_partner["id"] if "partner" in extra else None
            rows.append(checked)
        await documents_store.upsert_many(conn, tenant.id, rows)
        # Built here with the normalizing constructor; the store's rows are restored with
        # their stored normalized references (and must compare equal, derived fields too).
        every = [
            OpenDocument(
                id=r["id"],
                seq=r["id"],
                kind=DocumentKind(r["kind"]),
                number=r["number"],
                total=r["total"],
                paid=r["paid_amount"],
                currency=r["currency"],
                order_number=r["order_number"],
                recurring_order_number=r["recurring_order_number"],
                variable_symbol=r["variable_symbol"],
                specific_symbol=r["specific_symbol"],
                constant_symbol=r["constant_symbol"],
                payment_key=r["payment_key"],
                partner_id=r["partner_id"],
                partner_identifier=r["identifier"],
                partner_name=r["name"],
                issue_date=r["issue_date"],
            )
            for r in await conn.fetch(
                "select d.*, p.identifier, p.name"
                " from documents d left join partners p on p.id = d.partner_id"
                " where d.tenant_id = $1 order by d.id",
                tenant.id,
            )
        ]
        restored = [
            open_document(r)
            for r in await matching_store.open_documents(conn, tenant.id, [d.id for d in every])
        ]
        assert sorted(restored, key=lambda d: d.id) == every
        for mine, theirs in zip(sorted(restored, key=lambda d: d.id), every, strict=True):
            for name in OpenDocument.__slots__:
                assert getattr(mine, name) == getattr(theirs, name), name
        payments = [
            Payment(amount=Decimal(amount), currency="HUF", remittance_information=text)
            for text in _TEXTS
            for amount in ("1000", "300", "7")
        ]
        payments += [
            Payment(amount=Decimal("250"), currency="HUF", variable_symbol=vs)
            for vs in ("20260042", "20260024", "2026004", "202600421", "42")
        ]
        payments += [
            Payment(amount=Decimal("999"), currency="HUF", specific_symbol="7878"),
            Payment(amount=Decimal("300"), currency="HUF", counterparty_name="ACME KFT."),
        ]
        configs: list[MatchConfig] = [MatchConfig(), default_config("FIO")]
        for config in configs:
            for payment in payments:
                # One payment per batch: nothing earlier in the batch changes what is open.
                [through_database] = await decide_batch(conn, tenant.id, [(payment, config)])
                assert through_database == decide(payment, every, config), payment
                # On a lane, as ingest runs it: near-miss keys only at the tenant's lengths.
                lane = Lane()
                [on_lane] = await decide_batch(conn, tenant.id, [(payment, config)], lane=lane)
                await lane.drain()
                assert on_lane == through_database, payment
        # Near-miss keys worked out only at the lengths references have fetch the same
        # documents as the keys of every length do.
        lengths = await matching_store.reference_lengths(conn, tenant.id)
        assert lengths == sorted({len(v) for d in every for v in _references(d) if v is not None})
        fetched = 0
        for config in configs:
            for payment in payments:
                lookup = [lookup_for(payment, config)]
                every_key = await matching_store.near_candidates(
                    conn, tenant.id, lookup, EVERY_LENGTH
                )
                at_lengths = await matching_store.near_candidates(conn, tenant.id, lookup, lengths)
                assert sorted(r["id"] for r in at_lengths) == sorted(r["id"] for r in every_key), (
                    payment
                )
                fetched += len(every_key)
        assert fetched > len(payments)  # near misses were found, not only nothing


def test_a_stored_document_is_restored_from_its_values_in_field_order() -> None:
    doc = OpenDocument(
        id=7,
        seq=7,
        kind=DocumentKind.PROFORMA,
        number="E-2026-0123",
        total=Decimal("1500.50"),
        paid=Decimal("500"),
        currency="HUF",
        constant_symbol="0308",
        partner_name="Kovács Kft.",
    )
    values = [getattr(doc, name) for name in OPEN_DOCUMENT_FIELDS]
    values[-1] = doc.kind.value  # stored as its value
    restored = OpenDocument.restore(values)
    for name in OpenDocument.__slots__:
        assert getattr(restored, name) == getattr(doc, name), name
    # A row of another shape is refused rather than read into the wrong fields.
    with pytest.raises(ValueError, match="values"):
        OpenDocument.restore(values[1:])


def _references(doc: OpenDocument) -> tuple[str | None, ...]:
    return (
        doc.number_norm,
        doc.order_number_norm,
        doc.variable_symbol_norm,
        doc.specific_symbol_norm,
    )


async def test_paid_state_is_recomputed_and_added_to_through_the_primary_key(
    pool: asyncpg.Pool, make_tenant: MakeTenant
) -> None:
    """A batch touches a few hundred of a tenant's documents: each is reached by its key, not
    by a scan of them all (a join with the ids was planned as a hash over such a scan)."""
    tenant = await make_tenant()
    async with pool.acquire() as conn:
        ids = await conn.fetch(
            "insert into documents (tenant_id, kind, number, number_norm, total, currency)"
            " select $1, 'INVOICE', 'S-' || i, 'S-' || i, 100, 'HUF'"
            " from generate_series(1, 20000) i returning id",
            tenant.id,
        )
        await conn.execute("analyze documents")
        touched = sorted(r["id"] for r in ids[::50])  # 400 documents
        plans = [
            "\n".join(r[0] for r in await conn.fetch("explain " + sql, tenant.id, *args))
            for sql, args in (
                (matching_store._RECOMPUTE + "returning d.id", [params.number_list(touched)]),
                (
                    matching_store._ADD_PAID + "returning d.id",
                    [
                        params.number_list(touched),
                        params.number_list(Decimal("12.5") for _ in touched),
                        params.number_list(1 for _ in touched),
                    ],
                ),
            )
        ]
    for plan in plans:
        assert "documents_pkey" in plan, plan
        assert "Seq Scan on documents" not in plan, plan
