"""The fast ingest paths: copied rows, queued statements, the fallbacks behind them."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg
import pytest

from service import db
from service.actions import ingest as ingest_module
from service.actions.ingest import check_records, store_transactions
from service.actions.lane import Lane
from service.actions.matching import (
    config_of,
    decide_batch,
    payment_of,
    rematch_for_documents,
    verdict,
)
from service.domain.matcher import lookup_for
from service.domain.records import check_document
from service.store import allocations as allocations_store
from service.store import connections as connections_store
from service.store import documents as documents_store
from service.store import events as events_store
from service.store import matching as matching_store
from service.store import params
from service.store import transactions as transactions_store

from .conftest import GQL, MakeTenant
from .test_ingest import INGEST, PushConnection, tx
from .test_matching_api import DOCS, _doc, inv

Setup = Callable[..., Awaitable[tuple[int, asyncpg.Record]]]


@pytest.fixture
def setup(pool: asyncpg.Pool, make_tenant: MakeTenant) -> Setup:
    """A tenant with open invoices (number -> total) and a PUSH connection to it."""

    async def make(documents: dict[str, str]) -> tuple[int, asyncpg.Record]:
        t = await make_tenant()
        docs = [_document(number, total) for number, total in documents.items()]
        async with pool.acquire() as conn:
            if docs:
                await documents_store.upsert_many(conn, t.id, docs)
            connection = await connections_store.create(
                conn,
                t.id,
                {
                    "provider": "PUSH",
                    "name": "push",
                    "status": "ACTIVE",
                    "poll_interval_seconds": 3600,
                    "match_against": ["INVOICE", "PROFORMA", "ORDER"],
                    "match_keys": ["DOCUMENT_NUMBER", "VARIABLE_SYMBOL", "PAYMENT_KEY"],
                    "settings_encrypted": b"x",
                },
            )
        return t.id, connection

    return make


def _document(number: str, total: str) -> dict[str, Any]:
    """An invoice in forints, checked as the API checks it, without a partner."""
    checked = check_document(
        0, {"kind": "INVOICE", "number": number, "total": total, "currency": "HUF"}
    )
    assert isinstance(checked, dict)
    checked.pop("partner_external_id")
    checked["partner_id"] = None
    return checked


def _records(*raw: dict[str, Any]) -> list[dict[str, Any]]:
    records, problems = check_records(
        [{"booking_date": "2026-11-20", "currency": "HUF", **r} for r in raw]
    )
    assert not problems
    return records


async def _ingest(
    pool: asyncpg.Pool, tenant_id: int, connection: asyncpg.Record, records: list[dict[str, Any]]
) -> tuple[list[Any], Any]:
    async with pool.acquire() as conn, conn.transaction():
        new, _, outcome = await store_transactions(conn, tenant_id, connection, records)
    return new, outcome


async def _events(pool: asyncpg.Pool, tenant_id: int) -> list[tuple[str, int | None]]:
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "select type, transaction_id from events where tenant_id = $1 order by id", tenant_id
        )
    return [(r["type"], r["transaction_id"]) for r in rows]


async def test_a_document_paid_in_full_earlier_in_the_batch_is_not_paid_again(
    gql: GQL, make_tenant: MakeTenant, push_connection: PushConnection
) -> None:
    t = await make_tenant()
    assert not (await gql(DOCS, {"i": [inv("E-ONCE-1", "100")]}, t.token())).get("errors")
    c = await push_connection(t)
    body = await gql(
        INGEST,
        {
            "c": c,
            "i": [
                tx("first", "100", remittanceInformation="E-ONCE-1"),
                tx("second", "100", remittanceInformation="E-ONCE-1"),
            ],
        },
        t.token(),
    )
    states = [r["matchState"] for r in body["data"]["ingestTransactions"]["transactions"]]
    assert states[0] == "MATCHED" and states[1] != "MATCHED"
    doc = await _doc(gql, t, "E-ONCE-1")
    assert (doc["paidAmount"], doc["paymentCount"], doc["paymentState"]) == ("100.00", 1, "PAID")


async def test_returned_rows_are_the_stored_rows(pool: asyncpg.Pool, setup: Setup) -> None:
    tenant_id, connection = await setup({"R-100": "100", "R-200": "200", "R-2026-0132": "5"})
    records = _records(
        {"provider_transaction_id": "m", "amount": "100", "remittance_information": "R-100"},
        # Suggested (a typo): its suggestions (jsonb) go in with the same binary copy.
        {"provider_transaction_id": "s", "amount": "5", "remittance_information": "R-2026-0123"},
        {
            "provider_transaction_id": "u",
            "amount": "12.5",
            "currency": "CZK",
            "value_date": "2026-11-21",
            "variable_symbol": "0042",
            "counterparty_name": "Kovács Kft.",
            "counterparty_account": "HU12",
            "payment_key": "k-1",
        },
        {"provider_transaction_id": "out", "amount": "-30"},
        {"provider_transaction_id": "part", "amount": "50.25", "remittance_information": "R-200"},
    )
    new, outcome = await _ingest(pool, tenant_id, connection, records)
    assert [r["provider_transaction_id"] for r in new] == ["m", "s", "u", "out", "part"]
    async with pool.acquire() as conn:
        stored = {
            r["id"]: dict(r)
            for r in await conn.fetch("select * from transactions where tenant_id = $1", tenant_id)
        }
    assert [dict(r) for r in new] == [stored[r["id"]] for r in new]
    assert [r["match_state"] for r in new] == [
        "MATCHED",
        "SUGGESTED",
        "UNMATCHED",
        "UNMATCHED",
        "MATCHED",
    ]
    assert new[1]["suggestions"] and new[1]["suggestions"][0]["confidence"] > 0
    assert outcome.matched == 2
    async with pool.acquire() as conn:
        numbers = {
            r["id"]: r["number"]
            for r in await conn.fetch(
                "select id, number from documents where tenant_id = $1", tenant_id
            )
        }
    assert {numbers[d["id"]]: d["paid_amount"] for d in outcome.documents} == {
        "R-100": 100,
        "R-200": Decimal("50.25"),
    }
    ids = [r["id"] for r in new]
    assert await _events(pool, tenant_id) == [
        *[("PAYMENT_RECEIVED", i) for i in ids],
        ("PAYMENT_MATCHED", ids[0]),
        ("PAYMENT_MATCHED", ids[4]),
        ("DOCUMENT_PAID", ids[0]),
        ("DOCUMENT_PARTIALLY_PAID", ids[4]),
    ]


async def test_a_payment_stored_behind_the_lock_is_neither_stored_nor_booked_twice(
    pool: asyncpg.Pool, setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant_id, connection = await setup({"D-1": "1000"})
    first = _records(
        {"provider_transaction_id": "a", "amount": "100", "remittance_information": "D-1"}
    )
    [a], _ = await _ingest(pool, tenant_id, connection, first)

    reserve = transactions_store.reserve_new
    reservations: list[set[str]] = []

    async def nothing_known_at_first(
        conn: Any, tenant_id: int, connection_id: int, provider_ids: list[str]
    ) -> transactions_store.Reservation:
        # As if "a" had been stored by a writer that skipped the tenant lock, right after
        # the first look: nothing known, an id for every payment. The next look finds it.
        found = await reserve(conn, tenant_id, connection_id, provider_ids)
        if not reservations:
            found = await reserve(conn, tenant_id, connection_id, [f"?{p}" for p in provider_ids])
        reservations.append(found.known)
        return found

    monkeypatch.setattr(transactions_store, "reserve_new", nothing_known_at_first)
    again = _records(
        {"provider_transaction_id": "a", "amount": "100", "remittance_information": "D-1"},
        {"provider_transaction_id": "b", "amount": "300", "remittance_information": "D-1"},
        {"provider_transaction_id": "c", "amount": "7"},
    )
    new, outcome = await _ingest(pool, tenant_id, connection, again)
    assert reservations == [set(), {"a"}]  # the clash rolled the first attempt back
    assert [r["provider_transaction_id"] for r in new] == ["b", "c"]
    assert outcome.matched == 1
    async with pool.acquire() as conn:
        count = await conn.fetchval(
            "select count(*) from transactions where connection_id = $1", connection["id"]
        )
        doc = await conn.fetchrow(
            "select paid_amount, payment_count from documents where tenant_id = $1", tenant_id
        )
        allocations = await conn.fetch(
            "select transaction_id, amount from allocations where tenant_id = $1 order by id",
            tenant_id,
        )
    assert count == 3
    assert (doc["paid_amount"], doc["payment_count"]) == (400, 2)
    assert [(r["transaction_id"], r["amount"]) for r in allocations] == [
        (a["id"], 100),
        (new[0]["id"], 300),
    ]
    b, c = (r["id"] for r in new)
    assert await _events(pool, tenant_id) == [
        ("PAYMENT_RECEIVED", a["id"]),
        ("PAYMENT_MATCHED", a["id"]),
        ("DOCUMENT_PARTIALLY_PAID", a["id"]),
        # The first attempt of the second batch announced "a" too; its rollback took it back.
        ("PAYMENT_RECEIVED", b),
        ("PAYMENT_RECEIVED", c),
        ("PAYMENT_MATCHED", b),
        ("DOCUMENT_PARTIALLY_PAID", b),
    ]


async def test_a_batch_that_keeps_clashing_fails_after_three_attempts(
    pool: asyncpg.Pool, setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant_id, connection = await setup({"D-1": "1000"})
    one = {"provider_transaction_id": "a", "amount": "100", "remittance_information": "D-1"}
    await _ingest(pool, tenant_id, connection, _records(one))
    reserve = transactions_store.reserve_new
    attempts = 0

    async def never_known(
        conn: Any, tenant_id: int, connection_id: int, provider_ids: list[str]
    ) -> transactions_store.Reservation:
        nonlocal attempts
        attempts += 1
        return await reserve(conn, tenant_id, connection_id, [f"?{p}" for p in provider_ids])

    monkeypatch.setattr(transactions_store, "reserve_new", never_known)
    with pytest.raises(asyncpg.UniqueViolationError):
        await _ingest(
            pool, tenant_id, connection, _records(one, {**one, "provider_transaction_id": "b"})
        )
    assert attempts == 3
    async with pool.acquire() as conn:
        assert (
            await conn.fetchval(
                "select count(*) from transactions where connection_id = $1", connection["id"]
            )
            == 1
        )
    assert [t for t, _ in await _events(pool, tenant_id)] == [
        "PAYMENT_RECEIVED",
        "PAYMENT_MATCHED",
        "DOCUMENT_PARTIALLY_PAID",
    ]


async def test_a_failed_write_leaves_nothing_behind(
    pool: asyncpg.Pool, setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant_id, connection = await setup({"F-1": "100"})

    async def broken(*args: Any) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(allocations_store, "copy_many", broken)
    records = _records(
        *[
            {"provider_transaction_id": f"f{i}", "amount": "100", "remittance_information": "F-1"}
            for i in range(3)
        ]
    )
    async with pool.acquire() as conn:
        with pytest.raises(RuntimeError, match="disk on fire"):
            async with conn.transaction():
                await store_transactions(conn, tenant_id, connection, records)
        # Nothing left running on the connection; the transaction was rolled back.
        assert (
            await conn.fetchval("select count(*) from transactions where tenant_id = $1", tenant_id)
            == 0
        )
        assert (
            await conn.fetchval("select count(*) from events where tenant_id = $1", tenant_id) == 0
        )


async def test_the_lane_changes_no_decision(pool: asyncpg.Pool, setup: Setup) -> None:
    tenant_id, connection = await setup(
        {"L-1": "100", "L-2": "200", "L-2026-0132": "50", "L-3": "300", "L-3B": "300"}
    )
    records = _records(
        {"provider_transaction_id": "1", "amount": "100", "remittance_information": "L-1"},
        {"provider_transaction_id": "2", "amount": "100", "remittance_information": "L-1"},
        {"provider_transaction_id": "3", "amount": "50", "remittance_information": "L-2026-0123"},
        {"provider_transaction_id": "4", "amount": "20", "remittance_information": "L-2 L-3"},
        {"provider_transaction_id": "5", "amount": "200", "remittance_information": "L-2xyz"},
        {"provider_transaction_id": "6", "amount": "9", "remittance_information": "nothing"},
        {"provider_transaction_id": "7", "amount": "-9", "remittance_information": "L-3"},
        {"provider_transaction_id": "8", "amount": "300", "remittance_information": "L-3"},
    )
    plain, queued, chunks = await _with_and_without_lane(pool, tenant_id, connection, records)
    assert queued == plain
    assert sorted(p for chunk in chunks for p in chunk) == list(range(len(records)))
    assert plain[0].state.value == "MATCHED" and plain[1].state.value != "MATCHED"


async def _with_and_without_lane(
    pool: asyncpg.Pool,
    tenant_id: int,
    connection: asyncpg.Record,
    records: list[dict[str, Any]],
) -> tuple[list[Any], list[Any], list[list[int]]]:
    """The batch's decisions without a lane and with one, and the positions of each chunk
    the lane's run handed over."""
    config = config_of(connection)
    payments = [(payment_of(r), config) for r in records]
    chunks: list[list[int]] = []
    async with pool.acquire() as conn, conn.transaction():
        plain = await decide_batch(conn, tenant_id, payments)
        lane = Lane()
        try:
            queued = await decide_batch(
                conn,
                tenant_id,
                payments,
                lane=lane,
                on_decided=lambda final: chunks.append([p for p, _ in final]),
            )
        finally:
            await lane.settle()
    return plain, queued, chunks


async def test_the_lane_changes_no_decision_in_a_batch_long_enough_to_hand_over_chunks(
    pool: asyncpg.Pool, setup: Setup
) -> None:
    # Enough decisions for chunks to be handed over (and the near-miss fetch to go out
    # behind the first) before the batch is through.
    tenant_id, connection = await setup({f"K-2026-{i:04d}": str(100 + i) for i in range(300)})
    rows = []
    for i in range(400):
        n = i % 300
        kind = i % 10
        if kind < 7:
            text = f"K-2026-{n:04d}"  # exact; a second payment finds it paid
        elif kind == 7:
            text = f"K-2026-{n:04d}befizetes"  # glued
        elif kind == 8:
            text = f"K-2026-{n:04d}"[:-2] + f"{n:04d}"[::-1][:2]  # two digits swapped
        else:
            text = f"ref {i}"
        rows.append(
            {
                "provider_transaction_id": f"k{i}",
                "amount": str(100 + n),
                "remittance_information": text,
            }
        )
    records = _records(*rows)
    plain, queued, chunks = await _with_and_without_lane(pool, tenant_id, connection, records)
    assert queued == plain
    assert sum(map(len, chunks)) == len(records) and len(chunks) > 2, list(map(len, chunks))
    states = {d.state.value for d in plain}
    assert states == {"MATCHED", "SUGGESTED", "UNMATCHED"}


async def test_the_first_chunk_is_queued_while_the_connection_is_still_busy(
    pool: asyncpg.Pool, setup: Setup
) -> None:
    """The first decisions go to the lane as soon as there are a few, behind what it is
    still running, so the database starts on them the moment that is done."""
    tenant_id, connection = await setup({f"Q-{i:04d}": "100" for i in range(100)})
    records = _records(
        *[
            {
                "provider_transaction_id": f"q{i}",
                "amount": "100",
                "remittance_information": f"Q-{i:04d}",
            }
            for i in range(100)
        ]
    )
    config = config_of(connection)
    payments = [(payment_of(r), config) for r in records]
    lookups = [lookup_for(p, config, near_misses=False) for p, _ in payments]
    release = asyncio.Event()
    handed: list[tuple[int, bool]] = []  # (size, whether the lane was busy)
    lane = Lane()

    def decided(final: list[Any]) -> None:
        handed.append((len(final), not lane.idle))
        release.set()

    async with pool.acquire() as conn, conn.transaction():
        rows = await matching_store.exact_candidates(conn, tenant_id, lookups)
        fetched: asyncio.Future[list[asyncpg.Record]] = asyncio.get_running_loop().create_future()
        fetched.set_result(rows)
        lane.run(release.wait)  # an earlier statement, still running
        try:
            decisions = await decide_batch(
                conn,
                tenant_id,
                payments,
                exact=lookups,
                exact_fetched=[(len(payments), fetched)],
                lane=lane,
                on_decided=decided,
            )
        finally:
            await lane.settle()
    assert {d.state.value for d in decisions} == {"MATCHED"}
    size, busy = handed[0]
    assert busy and 16 <= size < 64, handed
    assert sum(size for size, _ in handed) == len(records)


async def test_the_events_are_worked_out_while_payments_that_hit_nothing_are_written(
    pool: asyncpg.Pool, setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The documents' final state is known once the last write with allocations is back:
    the batch's events are worked out then, while the last chunk (payments that matched
    nothing, decided after the near-miss read) is still being copied in."""
    tenant_id, connection = await setup({f"W-2026-{i:04d}": "100" for i in range(3)})
    records = _records(
        *[
            {"provider_transaction_id": f"w{i}", "amount": "100", "remittance_information": text}
            for i, text in enumerate(
                [f"W-2026-{i:04d}" for i in range(3)] + ["nothing 12345", "nothing 67890"]
            )
        ]
    )
    log: list[str] = []
    insert_new = transactions_store.insert_new
    events = ingest_module.MatchOutcome.events

    async def slow_insert(conn: asyncpg.Connection, rows: list[dict[str, Any]]) -> None:
        await asyncio.sleep(0.05)  # a copy that takes a while
        await insert_new(conn, rows)
        log.append(f"stored {sorted(r['match_state'] for r in rows)}")

    def logged_events(outcome: Any) -> list[dict[str, Any]]:
        log.append("events")
        return events(outcome)

    monkeypatch.setattr(transactions_store, "insert_new", slow_insert)
    monkeypatch.setattr(ingest_module.MatchOutcome, "events", logged_events)
    new, _ = await _ingest(pool, tenant_id, connection, records)
    assert log == [
        "stored ['MATCHED', 'MATCHED', 'MATCHED']",
        "events",
        "stored ['UNMATCHED', 'UNMATCHED']",
    ]
    # The same events as ever, in order, once everything is in.
    assert [t for t, _ in await _events(pool, tenant_id)] == ["PAYMENT_RECEIVED"] * 5 + [
        "PAYMENT_MATCHED"
    ] * 3 + ["DOCUMENT_PAID"] * 3
    assert [r["match_state"] for r in new] == ["MATCHED"] * 3 + ["UNMATCHED"] * 2


async def test_a_batch_booked_in_several_writes_announces_every_document(
    pool: asyncpg.Pool, setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The events wait for the last write with allocations, not the first: every document
    a batch pays has its event, with its final state, however many writes booked them."""
    count = 600
    tenant_id, connection = await setup({f"M-2026-{i:04d}": "100" for i in range(count)})
    records = _records(
        *[
            {
                "provider_transaction_id": f"m{i}",
                "amount": "100",
                "remittance_information": f"M-2026-{i:04d}",
            }
            for i in range(count)
        ]
    )
    writes = 0
    copy_many = allocations_store.copy_many

    async def counted(*args: Any) -> None:
        nonlocal writes
        writes += 1
        await copy_many(*args)

    monkeypatch.setattr(allocations_store, "copy_many", counted)
    new, _ = await _ingest(pool, tenant_id, connection, records)
    assert writes >= 3  # booked chunk by chunk
    events = await _events(pool, tenant_id)
    ids = [r["id"] for r in new]
    assert events == [("PAYMENT_RECEIVED", i) for i in ids] + [
        ("PAYMENT_MATCHED", i) for i in ids
    ] + [("DOCUMENT_PAID", i) for i in ids]


async def test_an_ingest_waits_for_a_locked_connection_before_the_event_lock(
    pool: asyncpg.Pool, setup: Setup, database_url: str
) -> None:
    """A connection writer (disconnect, lease holder) locks the row, then appends events:
    the ingest must not hold the event lock while it waits for that row."""
    tenant_id, connection = await setup({"K-1": "100"})
    holder = await asyncpg.connect(database_url)
    try:
        await db._init_connection(holder)
        tr = holder.transaction()
        await tr.start()
        await holder.execute(
            "select 1 from bank_connections where id = $1 for update", connection["id"]
        )
        records = _records(
            {"provider_transaction_id": "k", "amount": "100", "remittance_information": "K-1"}
        )
        ingest = asyncio.create_task(_ingest(pool, tenant_id, connection, records))
        await asyncio.sleep(0.3)
        assert not ingest.done()  # waiting for the connection row
        await events_store.append_many(
            holder,
            tenant_id,
            [{"type": "CONNECTION_DISCONNECTED", "connection_id": connection["id"]}],
        )
        await tr.commit()
        _, outcome = await asyncio.wait_for(ingest, 30)
    finally:
        await holder.close()
    assert outcome.matched == 1
    types = [t for t, _ in await _events(pool, tenant_id)]
    assert types == [
        "CONNECTION_DISCONNECTED",
        "PAYMENT_RECEIVED",
        "PAYMENT_MATCHED",
        "DOCUMENT_PAID",
    ]


async def test_pool_connections_run_without_jit(pool: asyncpg.Pool) -> None:
    """The batch candidate queries would otherwise pay ~50 ms of JIT compilation each."""
    async with pool.acquire() as conn:
        assert await conn.fetchval("show jit") == "off"


async def test_jsonb_goes_both_ways_in_binary(pool: asyncpg.Pool) -> None:
    value = {"reason": "one edit away: E-2026-0132", "confidence": 0.8, "ids": [1, 2], "ő": None}
    async with pool.acquire() as conn:
        assert await conn.fetchval("select $1::jsonb", value) == value
        assert await conn.fetchval("select $1::jsonb ->> 'reason'", value) == value["reason"]
        assert await conn.fetchval("""select '{"a": [1, "x"]}'::jsonb""") == {"a": [1, "x"]}
        # json (not jsonb) stays text
        assert await conn.fetchval("select $1::json", [1, "x"]) == [1, "x"]


ODD = ['a"b', "c\\d", "e,f", "{g}", "h i", "ő ű 🙂", "NULL", "", "[1]", "\t"]


async def test_list_parameters_arrive_as_sent(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        for values in (ODD, [], ["x"]):
            sent = await conn.fetchval(
                f"select array(select {params.texts_of('$1')})",
                params.text_list(values),
            )
            assert sent == values
        for ids in ([], [7], [1, 2**62, 3]):
            sent = await conn.fetchval(f"select {params.bigints_of('$1')}", params.number_list(ids))
            assert sent == ids
        for amounts in (
            [],
            [Decimal("0.0001")],
            [Decimal("12.50"), Decimal("-3"), Decimal("1E+3")],
        ):
            sent = await conn.fetchval(
                f"select {params.numerics_of('$1')}", params.number_list(amounts)
            )
            assert sent == amounts


async def test_provider_ids_with_quotes_commas_and_backslashes_are_known_again(
    pool: asyncpg.Pool, setup: Setup
) -> None:
    """Each id reaches the duplicate check as sent: the second ingest stores nothing."""
    tid, connection = await setup({"E-2026-0001": "100"})
    odd = [pid for pid in ODD if pid.strip()]
    records = _records(*({"provider_transaction_id": p, "amount": "5"} for p in odd))
    first, _ = await _ingest(pool, tid, connection, records)
    assert sorted(r["provider_transaction_id"] for r in first) == sorted(odd)
    again, _ = await _ingest(pool, tid, connection, records)
    assert again == []
    async with pool.acquire() as conn:
        found = await transactions_store.by_provider_ids(conn, tid, connection["id"], odd)
    assert sorted(r["provider_transaction_id"] for r in found) == sorted(odd)


async def test_a_batch_fetched_in_parts_decides_as_one_read_before_it(
    pool: asyncpg.Pool, setup: Setup
) -> None:
    """Payments past the first part name documents the first part paid in full or in part:
    what the second fetch reads, as of the batch's start, must not undo that."""
    assert ingest_module._FIRST_FETCH * 2 < 400
    tenant_id, connection = await setup({f"P-2026-{i:04d}": "100" for i in range(300)})
    rows = []
    for i in range(400):
        n = i % 300  # payments i and i + 300 name the same document
        amount = "100" if i % 3 else "40"  # some pay in part, then again
        text = f"P-2026-{n:04d}" if i % 7 else f"P-2026-{n:04d}"[:-2] + f"{n:04d}"[::-1][:2]
        rows.append(
            {"provider_transaction_id": f"p{i}", "amount": amount, "remittance_information": text}
        )
    records = _records(*rows)
    config = config_of(connection)
    async with pool.acquire() as conn, conn.transaction():
        expected = await decide_batch(conn, tenant_id, [(payment_of(r), config) for r in records])
    new, _ = await _ingest(pool, tenant_id, connection, records)
    assert [(r["match_state"], r["explanation"], r["suggestions"]) for r in new] == [
        tuple(verdict(d).values()) for d in expected
    ]
    async with pool.acquire() as conn:
        paid = await conn.fetch(
            "select number, paid_amount, payment_count from documents where tenant_id = $1",
            tenant_id,
        )
    booked: dict[int, Decimal] = {}
    for d in expected:
        for plan in d.allocations:
            booked[plan.document_id] = booked.get(plan.document_id, Decimal(0)) + plan.amount
    assert sum(r["paid_amount"] for r in paid) == sum(booked.values())
    assert {d.state.value for d in expected} >= {"MATCHED", "SUGGESTED"}
    assert any(r["payment_count"] == 2 for r in paid)  # paid in part, then the rest
    # Received, in input order, before anything else; then matched, in input order.
    events = await _events(pool, tenant_id)
    ids = [r["id"] for r in new]
    assert events[: len(ids)] == [("PAYMENT_RECEIVED", i) for i in ids]
    matched = [r["id"] for r in new if r["match_state"] == "MATCHED"]
    assert events[len(ids) : len(ids) + len(matched)] == [("PAYMENT_MATCHED", i) for i in matched]
    assert {t for t, _ in events[len(ids) + len(matched) :]} <= {
        "DOCUMENT_PAID",
        "DOCUMENT_PARTIALLY_PAID",
        "DOCUMENT_OVERPAID",
    }


async def test_paid_state_added_by_ingest_equals_the_one_derived_from_allocations(
    pool: asyncpg.Pool, setup: Setup
) -> None:
    """Ingest adds each chunk's allocations to its documents; what it adds up to must be
    what the allocations say, across chunks and batches, for partial and split payments."""
    tenant_id, connection = await setup({f"Q-2026-{i:04d}": "1000" for i in range(300)})
    raw = []
    for i in range(450):
        # Three payments in a row to one document, so that a chunk adds several to it: two
        # in part, then the rest, alone or split with a document of its own.
        n = (i // 3) % 150
        if i % 3 < 2:
            text, amount = f"Q-2026-{n:04d}", "300"
        elif n % 4 == 0:
            text, amount = f"Q-2026-{n:04d} Q-2026-{n + 150:04d}", "1400"
        else:
            text, amount = f"Q-2026-{n:04d}", "400"
        raw.append(
            {"provider_transaction_id": f"q{i}", "amount": amount, "remittance_information": text}
        )
    for start in (0, 300):  # two batches: the second adds to what the first stored
        await _ingest(pool, tenant_id, connection, _records(*raw[start : start + 300]))
    async with pool.acquire() as conn:
        stored = {
            r["id"]: (r["paid_amount"], r["payment_count"])
            for r in await conn.fetch(
                "select id, paid_amount, payment_count from documents where tenant_id = $1",
                tenant_id,
            )
        }
        recompute = conn.transaction()  # rolled back: only read
        await recompute.start()
        derived = {
            r["id"]: (r["paid_amount"], r["payment_count"])
            for r in await matching_store.recompute_paid(conn, tenant_id, list(stored))
        }
        await recompute.rollback()
    assert derived == stored
    assert sorted(set(stored.values())) == [(0, 0), (1000, 1), (1000, 3)]


async def test_a_documents_event_names_the_payment_that_paid_it_last(
    pool: asyncpg.Pool, setup: Setup
) -> None:
    """Two payments settle a document between them, in one batch and, for a document that
    arrives late, in one re-examination: its one event names the second."""
    tenant_id, connection = await setup({"L-2026-0001": "100"})
    paying = [("a", "40", "L-2026-0001"), ("b", "60", "L-2026-0001")]
    waiting = [("c", "40", "L-2026-0002"), ("d", "60", "L-2026-0002")]
    new, _ = await _ingest(
        pool,
        tenant_id,
        connection,
        _records(
            *(
                {"provider_transaction_id": p, "amount": a, "remittance_information": text}
                for p, a, text in paying + waiting
            )
        ),
    )
    ids = {r["provider_transaction_id"]: r["id"] for r in new}
    assert [r["match_state"] for r in new] == ["MATCHED", "MATCHED", "UNMATCHED", "UNMATCHED"]
    async with pool.acquire() as conn, conn.transaction():
        await matching_store.lock_tenant(conn, tenant_id)
        [late] = await documents_store.upsert_many(
            conn, tenant_id, [_document("L-2026-0002", "100")]
        )
        outcome = await rematch_for_documents(
            conn, tenant_id, [late["id"]], datetime(2000, 1, 1, tzinfo=UTC)
        )
    assert outcome.matched == 2
    paid = [(t, i) for t, i in await _events(pool, tenant_id) if t.startswith("DOCUMENT_")]
    assert paid == [("DOCUMENT_PAID", ids["b"]), ("DOCUMENT_PAID", ids["d"])]
