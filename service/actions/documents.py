"""Upserting partners and documents."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from asyncpg import Pool

from ..domain.records import RecordProblem, check_document, check_partner
from ..errors import BadUserInput
from ..store import documents as documents_store
from ..store import matching as matching_store
from ..store import partners as partners_store
from .matching import rematch_for_documents
from .results import BatchResult
from .scope import Scope

__all__ = ["upsert_documents", "upsert_partners"]


def _check_batch_size(items: Sequence[Any], limit: int) -> None:
    if len(items) > limit:
        raise BadUserInput(f"at most {limit} records per call; got {len(items)}: split the batch")


def _dedupe(
    checked: list[tuple[int, dict[str, Any]]], key: tuple[str, ...], problems: list[RecordProblem]
) -> list[tuple[int, dict[str, Any]]]:
    # One statement cannot upsert the same row twice; a repeated key in one call is a mistake.
    seen: dict[tuple[Any, ...], int] = {}
    out = []
    for index, row in checked:
        k = tuple(row[f] for f in key)
        if k in seen:
            problems.append(
                RecordProblem(index, key[-1], f"repeats record {seen[k]} of this call", str(k[-1]))
            )
            continue
        seen[k] = index
        out.append((index, row))
    return out


def _accept(
    items: Sequence[dict[str, Any]],
    max_batch: int,
    check: Callable[[int, dict[str, Any]], dict[str, Any] | list[RecordProblem]],
    key: tuple[str, ...],
    problems: list[RecordProblem],
) -> list[tuple[int, dict[str, Any]]]:
    """The records that pass their checks, once per key, with their positions; what fails
    goes into `problems`."""
    _check_batch_size(items, max_batch)
    checked: list[tuple[int, dict[str, Any]]] = []
    for i, raw in enumerate(items):
        verdict = check(i, raw)
        if isinstance(verdict, list):
            problems.extend(verdict)
        else:
            checked.append((i, verdict))
    return _dedupe(checked, key, problems)


async def upsert_partners(
    pool: Pool, scope: Scope, items: Sequence[dict[str, Any]], *, max_batch: int
) -> BatchResult:
    result = BatchResult()
    checked = _accept(items, max_batch, check_partner, ("external_id",), result.problems)
    if checked:
        async with pool.acquire() as conn, conn.transaction():
            result.rows = await partners_store.upsert_many(
                conn, scope.tenant_id, [row for _, row in checked]
            )
    return result


async def upsert_documents(
    pool: Pool,
    scope: Scope,
    items: Sequence[dict[str, Any]],
    *,
    max_batch: int,
    rematch_window_days: int = 90,
) -> BatchResult:
    result = BatchResult()
    checked = _accept(items, max_batch, check_document, ("kind", "number"), result.problems)
    if not checked:
        return result
    async with pool.acquire() as conn, conn.transaction():
        await matching_store.lock_tenant(conn, scope.tenant_id)
        wanted = sorted({r["partner_external_id"] for _, r in checked if r["partner_external_id"]})
        partner_ids = await partners_store.ids_by_external_id(conn, scope.tenant_id, wanted)
        paid = await documents_store.paid_currencies(
            conn, scope.tenant_id, [(r["kind"], r["number"]) for _, r in checked]
        )
        rows = []
        for index, row in checked:
            held = paid.get((row["kind"], row["number"]))
            if held is not None and held != row["currency"]:
                row.pop("partner_external_id")
                result.problems.append(
                    RecordProblem(
                        index,
                        "currency",
                        f"the document already has payments in {held}; its currency cannot"
                        " change (unmatch them first)",
                        row["number"],
                    )
                )
                continue
            ext = row.pop("partner_external_id")
            if ext is not None and ext not in partner_ids:
                result.problems.append(
                    RecordProblem(
                        index,
                        "partnerExternalId",
                        f"no partner with externalId {ext!r}: upsert the partner first",
                        row["number"],
                    )
                )
                continue
            row["partner_id"] = partner_ids.get(ext) if ext else None
            rows.append(row)
        if not rows:
            return result
        upserted = await documents_store.upsert_many(conn, scope.tenant_id, rows)
        since = datetime.now(UTC) - timedelta(days=rematch_window_days)
        outcome = await rematch_for_documents(
            conn, scope.tenant_id, [r["id"] for r in upserted], since
        )
        # Show the documents as they are after the payments that were waiting for them.
        paid = {r["id"]: r for r in outcome.documents}
        result.rows = [paid.get(r["id"], r) for r in upserted]
    return result
