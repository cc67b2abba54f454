"""Properties of the matcher over generated documents and payments (hypothesis, no database).

Documents are drawn from a deliberately small alphabet so that shared numbers, one-edit
neighbours, glued and truncated numbers, shared symbols and several currencies are common.
"""

from __future__ import annotations

import random
from dataclasses import replace
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.domain.index import DocumentIndex
from service.domain.matcher import (
    MIN_NEAR_LENGTH,
    Decision,
    MatchConfig,
    apply_allocations,
    decide,
    lookup_for,
    split_amount,
)
from service.domain.models import DocumentKind, MatchKey, MatchState, OpenDocument, Payment
from service.domain.references import deletes

from .test_references import glued_by_definition

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

CURRENCIES = st.sampled_from(["HUF"] * 6 + ["CZK", "EUR"])
DIGITS = st.text("0123", min_size=1, max_size=5)
PREFIXES = st.sampled_from(["E-", "E-A-", "", "FV", "2026-", "e-"])
WORDS = st.sampled_from(["szamla", "faktura", "koszi", "befizetes", "dij", "VS", "2026"])
SEPARATORS = st.sampled_from([" ", ", ", "; ", " (", ") ", ".", '"', "#", "", "/", "-"])
PARTNERS = [(1, "TAG-01", "Kovács Kft."), (2, "TAG-02", "Novák s.r.o."), (3, None, None)]


def amounts(max_units: int = 500) -> st.SearchStrategy[Decimal]:
    return st.builds(
        lambda units, cents: Decimal(units) + Decimal(cents) / 100,
        st.integers(1, max_units),
        st.sampled_from([0, 0, 0, 50, 1, 99]),
    )


@st.composite
def documents(draw: st.DrawFn) -> list[OpenDocument]:
    count = draw(st.integers(0, 12))
    docs: list[OpenDocument] = []
    for i in range(1, count + 1):
        total = draw(amounts())
        paid = draw(st.sampled_from([Decimal(0)] * 4 + [total / 2, total, total + 1]))
        partner_id, identifier, name = draw(st.sampled_from(PARTNERS))
        docs.append(
            OpenDocument(
                id=i,
                seq=draw(st.integers(0, 20)),  # ties are allowed: (seq, id) still orders
                kind=draw(st.sampled_from(list(DocumentKind))),
                number=draw(PREFIXES) + draw(DIGITS),
                total=total,
                paid=paid,
                currency=draw(CURRENCIES),
                order_number=draw(st.none() | st.sampled_from(["ORD-1", "CARD-77", "10077"])),
                recurring_order_number=draw(st.booleans()),
                variable_symbol=draw(st.none() | st.text("0123", min_size=1, max_size=6)),
                specific_symbol=draw(st.none() | st.sampled_from(["7", "0007", "88"])),
                constant_symbol=draw(st.none() | st.sampled_from(["0308", "308", "0558"])),
                payment_key=draw(st.none() | st.sampled_from(["K-1", "k-2"])),
                partner_id=partner_id if identifier else None,
                partner_identifier=draw(st.none() | st.just(identifier)) if identifier else None,
                partner_name=name,
            )
        )
    return docs


def _mutate(draw: st.DrawFn, value: str) -> str:
    """A reference as a payer might write it: exact, mistyped, glued, truncated or cased."""
    how = draw(st.sampled_from(["exact", "exact", "typo", "swap", "drop", "glue", "cut", "low"]))
    if not value or how == "exact":
        return value
    i = draw(st.integers(0, len(value) - 1))
    if how == "typo":
        return value[:i] + draw(st.sampled_from("0123X")) + value[i + 1 :]
    if how == "swap" and i + 1 < len(value):
        return value[:i] + value[i + 1] + value[i] + value[i + 2 :]
    if how == "drop":
        return value[:i] + value[i + 1 :]
    if how == "glue":
        return value + draw(WORDS) if draw(st.booleans()) else draw(WORDS) + value
    if how == "cut":
        return value[i:] if draw(st.booleans()) else value[: i + 1]
    return value.lower()


@st.composite
def payments(draw: st.DrawFn, docs: list[OpenDocument]) -> Payment:
    parts: list[str] = []
    for _ in range(draw(st.integers(0, 4))):
        source = draw(st.sampled_from(["doc", "doc", "doc", "order", "partner", "word", "random"]))
        if source == "doc" and docs:
            parts.append(_mutate(draw, draw(st.sampled_from(docs)).number))
        elif source == "order" and docs:
            parts.append(_mutate(draw, draw(st.sampled_from(docs)).order_number or "ORD-1"))
        elif source == "partner":
            parts.append(draw(st.sampled_from(["TAG-01", "tag-02", "TAG-0"])))
        elif source == "word":
            parts.append(draw(WORDS))
        else:
            parts.append(draw(PREFIXES) + draw(DIGITS))
        parts.append(draw(SEPARATORS))
    symbol_sources = [d.variable_symbol for d in docs if d.variable_symbol]
    vs = None
    pick = draw(st.sampled_from(["none", "none", "doc", "random"]))
    if symbol_sources and pick == "doc":
        vs = _mutate(draw, draw(st.sampled_from(symbol_sources)))
    elif pick == "random":
        vs = draw(st.text("0123 a", max_size=6))
    amount = (
        draw(st.sampled_from([d.outstanding for d in docs]))
        if docs and draw(st.booleans())
        else draw(amounts(1200) | st.sampled_from([Decimal(0), Decimal(-100)]))
    )
    return Payment(
        amount=amount,
        currency=draw(CURRENCIES),
        remittance_information="".join(parts) or None,
        variable_symbol=vs,
        specific_symbol=draw(st.sampled_from([None, None, None, "7", "88", "9"])),
        constant_symbol=draw(st.sampled_from([None, None, "308", "0558", "1"])),
        payment_key=draw(st.sampled_from([None, None, None, "K-1", "K-2", "K-3"])),
        counterparty_name=draw(st.none() | st.sampled_from(["KOVÁCS KFT.", "Nobody"])),
    )


# Half the time everything is enabled, so that the rules get exercised rather than skipped.
configs = st.just(MatchConfig()) | st.builds(
    MatchConfig,
    st.frozensets(st.sampled_from(list(DocumentKind)), min_size=1),
    st.frozensets(st.sampled_from(list(MatchKey)), min_size=1),
)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[OpenDocument], Payment, MatchConfig]:
    docs = draw(documents())
    return docs, draw(payments(docs)), draw(configs)


def _check_invariants(decision: Decision, docs: list[OpenDocument], payment: Payment) -> None:
    by_id = {d.id: d for d in docs}
    if decision.allocations:
        assert decision.state is MatchState.MATCHED
        assert not decision.suggestions
        total = sum((a.amount for a in decision.allocations), Decimal(0))
        assert total == payment.amount  # the whole payment, never more
        ids = [a.document_id for a in decision.allocations]
        assert len(ids) == len(set(ids))
        for i, plan in enumerate(decision.allocations):
            assert plan.amount > 0
            target = by_id[plan.document_id]
            assert target.paid < target.total  # only open documents
            assert target.currency == payment.currency
            if i < len(decision.allocations) - 1:
                assert plan.amount <= target.outstanding  # only the last may be overpaid
    else:
        assert decision.state is not MatchState.MATCHED
        assert (decision.state is MatchState.SUGGESTED) == bool(decision.suggestions)
    for suggestion in decision.suggestions:
        assert suggestion.document_id in by_id
        assert 0 < suggestion.confidence <= 1
        assert suggestion.reason
    assert decision.explanation
    if payment.amount <= 0:
        assert decision.state is MatchState.UNMATCHED


@SETTINGS
@given(scenarios())
def test_allocations_never_exceed_and_add_up(
    scenario: tuple[list[OpenDocument], Payment, MatchConfig],
) -> None:
    docs, payment, config = scenario
    decision = decide(payment, docs, config)
    _check_invariants(decision, docs, payment)
    for plan in decision.allocations:
        doc = next(d for d in docs if d.id == plan.document_id)
        assert doc.kind in config.match_against
        assert plan.rule in config.match_keys


@SETTINGS
@given(scenarios(), st.randoms(use_true_random=False))
def test_decision_does_not_depend_on_order(
    scenario: tuple[list[OpenDocument], Payment, MatchConfig], rnd: random.Random
) -> None:
    docs, payment, config = scenario
    expected = decide(payment, docs, config)
    shuffled = docs[:]
    rnd.shuffle(shuffled)
    assert decide(payment, shuffled, config) == expected
    assert decide(payment, shuffled + docs, config) == expected  # duplicates change nothing
    # the index, whatever the order documents were added in, gives the same decision
    assert DocumentIndex(docs).match(payment, config) == expected
    assert DocumentIndex(shuffled).match(payment, config) == expected
    index = DocumentIndex()
    for d in reversed(shuffled):
        index.add(d)
    assert index.match(payment, config) == expected


@SETTINGS
@given(scenarios())
def test_index_candidates_are_all_the_rules_need(
    scenario: tuple[list[OpenDocument], Payment, MatchConfig],
) -> None:
    """Deciding over the index's candidates equals deciding over every document."""
    docs, payment, config = scenario
    index = DocumentIndex(docs)
    candidates = index.candidates(lookup_for(payment, config))
    assert decide(payment, candidates, config) == decide(payment, docs, config)
    assert len({d.id for d in candidates}) == len(candidates)


@SETTINGS
@given(scenarios(), st.data())
def test_index_survives_updates_and_removals(
    scenario: tuple[list[OpenDocument], Payment, MatchConfig], data: st.DataObject
) -> None:
    docs, payment, config = scenario
    index = DocumentIndex(docs)
    live = {d.id: d for d in docs}
    for d in docs:
        action = data.draw(st.sampled_from(["keep", "remove", "pay"]))
        if action == "remove":
            index.remove(d.id)
            live.pop(d.id)
        elif action == "pay":
            paid = data.draw(st.sampled_from([d.total / 4, d.total / 2, d.total]))
            updated = replace(d, paid=paid)
            if d.id in index:
                index.update_paid(d.id, paid)
            else:
                index.add(updated)  # a paid document reopened (an unmatch) comes back by add
            live[d.id] = updated
    assert index.match(payment, config) == decide(payment, list(live.values()), config)


@SETTINGS
@given(
    st.decimals(min_value=Decimal("-10"), max_value=Decimal("100000"), places=2),
    st.lists(st.decimals(min_value=Decimal("0"), max_value=Decimal("5000"), places=2)),
)
def test_split_amount(amount: Decimal, outstandings: list[Decimal]) -> None:
    shares = split_amount(amount, outstandings)
    assert len(shares) == len(outstandings)
    assert all(share >= 0 for share in shares)
    if amount > 0 and outstandings:
        assert sum(shares, Decimal(0)) == amount
        for share, outstanding in zip(shares[:-1], outstandings[:-1], strict=True):
            assert share <= outstanding
    else:
        assert sum(shares, Decimal(0)) == 0


@SETTINGS
@given(amounts(2000), documents())
def test_apply_allocations_gives_each_document_a_positive_amount(
    amount: Decimal, docs: list[OpenDocument]
) -> None:
    open_docs = [d for d in docs if d.paid < d.total]
    allocated = apply_allocations(amount, open_docs)
    assert all(share > 0 for _, share in allocated)
    if open_docs:
        assert sum((share for _, share in allocated), Decimal(0)) == amount
    else:
        assert allocated == []


@SETTINGS
@given(
    st.lists(amounts(), min_size=2, max_size=5),
    st.data(),
    amounts(3000),
    st.sampled_from([", ", " ", "; ", " + "]),
)
def test_split_payment_in_the_order_named(
    totals: list[Decimal], data: st.DataObject, amount: Decimal, separator: str
) -> None:
    docs = [
        OpenDocument(i, i, DocumentKind.INVOICE, f"E-2026-{i:04d}", total, Decimal(0), "HUF")
        for i, total in enumerate(totals, start=1)
    ]
    named = data.draw(st.permutations(docs)).copy()[: data.draw(st.integers(2, len(docs)))]
    payment = Payment(amount, "HUF", "fizetve " + separator.join(d.number for d in named))
    decision = DocumentIndex(docs).match(payment, MatchConfig())
    assert decision.state is MatchState.MATCHED
    assert decision == decide(payment, docs, MatchConfig())
    _check_invariants(decision, docs, payment)
    # allocated in the order named, each up to its outstanding, the rest to the last one
    expected = apply_allocations(amount, named)
    assert [(a.document_id, a.amount) for a in decision.allocations] == [
        (d.id, share) for d, share in expected
    ]
    assert all(a.rule is MatchKey.DOCUMENT_NUMBER for a in decision.allocations)


@SETTINGS
@given(scenarios())
def test_exact_only_index_answers_exact_lookups_alike(
    scenario: tuple[list[OpenDocument], Payment, MatchConfig],
) -> None:
    """An index built without near-miss keys finds what a full one finds for exact keys,
    and refuses a near-miss lookup rather than answering it incompletely."""
    docs, payment, config = scenario
    exact = lookup_for(payment, config, near_misses=False)
    full, lean = DocumentIndex(docs), DocumentIndex(docs, near_misses=False)
    assert sorted(d.id for d in lean.candidates(exact)) == sorted(
        d.id for d in full.candidates(exact)
    )
    near = lookup_for(payment, config)
    if near.near_misses:
        with pytest.raises(ValueError, match="exact lookups only"):
            lean.candidates(near)


_REFERENCE_TEXT = st.text(alphabet="E-/ABZ0123456789 ", max_size=40)


@SETTINGS
@given(
    text=_REFERENCE_TEXT,
    symbol=st.text(alphabet="0123456789", min_size=1, max_size=12),
    lengths=st.sets(st.integers(1, 24), max_size=6),
)
def test_near_keys_at_known_lengths_are_the_ones_a_reference_can_meet(
    text: str, symbol: str, lengths: set[int]
) -> None:
    """Near-miss keys worked out at the tenant's reference lengths are exactly those a
    reference can meet: glued parts as long as one, one-edit keys as long as one or one
    shorter (its deletions); the same by the definitions, without the length shortcuts."""
    payment = Payment(Decimal("10"), "HUF", text, variable_symbol=symbol, specific_symbol=symbol)
    lookup = lookup_for(payment, MatchConfig())
    assert sorted(lookup.glued_at(sorted(lengths))) == sorted(
        {
            part
            for token in lookup.prefixes
            for part in glued_by_definition(token, lengths, MIN_NEAR_LENGTH)
        }
    )
    assert sorted(lookup.fuzzy_at(frozenset(lengths))) == sorted(
        {
            key
            for value in (*lookup.prefixes, *lookup.near_symbols)
            for key in (value, *deletes(value))
            if len(key) in lengths or len(key) + 1 in lengths
        }
    )
