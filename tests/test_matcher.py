"""Every matching decision of DESIGN.md, through the in-memory index and `decide` (no database).

Each case is run twice: through `DocumentIndex.match` (exact lookups first, then near misses)
and through `decide` over all documents, and both must agree, so the index never loses a
candidate the rules would use.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from decimal import Decimal

import pytest

from service.domain import index as index_module
from service.domain.index import DocumentIndex, _SortedKeys
from service.domain.matcher import (
    DEFAULT_MATCH_KEYS,
    MAX_TOKEN_LENGTH,
    MAX_TOKENS,
    Decision,
    MatchConfig,
    apply_allocations,
    decide,
    default_config,
    lookup_for,
    split_amount,
)
from service.domain.models import (
    DocumentKind,
    MatchKey,
    MatchState,
    OpenDocument,
    Payment,
    PaymentState,
    payment_state,
)
from service.domain.references import cut_allowed, edit_distance

INV, PRO, ORD = DocumentKind.INVOICE, DocumentKind.PROFORMA, DocumentKind.ORDER
K = MatchKey
BROAD = MatchConfig()
KH = default_config("KH_BANK")
FIO = default_config("FIO")
CS = default_config("CESKA_SPORITELNA")
COMGATE = default_config("COMGATE")
GPWEBPAY = default_config("GPWEBPAY")


# Every length a reference can have: near-miss keys worked out at these leave none out.
EVERY_LENGTH = range(1, MAX_TOKEN_LENGTH + 2)


def doc(
    id: int,
    number: str,
    total: str,
    paid: str = "0",
    currency: str = "HUF",
    kind: DocumentKind = INV,
    **references: object,
) -> OpenDocument:
    """A document whose age (seq) is its id unless given."""
    seq = references.pop("seq", id)
    assert isinstance(seq, int)
    return OpenDocument(
        id=id,
        seq=seq,
        kind=kind,
        number=number,
        total=Decimal(total),
        paid=Decimal(paid),
        currency=currency,
        **references,  # type: ignore[arg-type]
    )


def pay(amount: str, text: str | None = None, currency: str = "HUF", **refs: str) -> Payment:
    return Payment(amount=Decimal(amount), currency=currency, remittance_information=text, **refs)


def run(docs: list[OpenDocument], payment: Payment, config: MatchConfig = BROAD) -> Decision:
    by_index = DocumentIndex(docs).match(payment, config)
    brute = decide(payment, docs, config)
    assert by_index == brute
    # the order of candidates never matters
    assert decide(payment, list(reversed(docs)), config) == brute
    return brute


@dataclass
class Case:
    id: str
    docs: list[OpenDocument]
    payment: Payment
    state: MatchState
    allocations: list[tuple[int, str, MatchKey]] = field(default_factory=list)
    suggested: list[int] = field(default_factory=list)
    explains: list[str] = field(default_factory=list)
    config: MatchConfig = BROAD


CASES = [
    # --- one unambiguous exact hit: allocated automatically, rule recorded ---------------
    Case(
        "document number",
        [doc(1, "E-2026-0001", "1000"), doc(2, "E-2026-0002", "1000")],
        pay("1000", "Számla E-2026-0001, köszönöm"),
        MatchState.MATCHED,
        [(1, "1000", K.DOCUMENT_NUMBER)],
        explains=["matched invoice E-2026-0001 by document number in the remittance text"],
        config=KH,
    ),
    Case(
        "document number, case and trailing dot",
        [doc(1, "E-ABC-2026-7", "500")],
        pay("500", "fizetve: e-abc-2026-7."),
        MatchState.MATCHED,
        [(1, "500", K.DOCUMENT_NUMBER)],
    ),
    Case(
        "document number in brackets and quotes",
        [doc(1, "E-2026-5", "10"), doc(2, "E-2026-6", "10")],
        pay("10", '("E-2026-6")'),
        MatchState.MATCHED,
        [(2, "10", K.DOCUMENT_NUMBER)],
    ),
    Case(
        "variable symbol, leading zeros do not count",
        [doc(1, "2026001", "1250.50", "0", "CZK", variable_symbol="0002026001")],
        pay("1250.50", None, "CZK", variable_symbol="2026001"),
        MatchState.MATCHED,
        [(1, "1250.50", K.VARIABLE_SYMBOL)],
        explains=["by variable symbol 2026001"],
        config=FIO,
    ),
    Case(
        "specific symbol",
        [doc(1, "FV-1", "300", "0", "CZK", specific_symbol="777")],
        pay("300", None, "CZK", specific_symbol="0777"),
        MatchState.MATCHED,
        [(1, "300", K.SPECIFIC_SYMBOL)],
        config=FIO,
    ),
    Case(
        "payment key",
        [doc(1, "OBJ-1", "99", "0", "CZK", ORD, payment_key="AB12-CD34-EF56")],
        pay("99", None, "CZK", payment_key="ab12-cd34-ef56"),
        MatchState.MATCHED,
        [(1, "99", K.PAYMENT_KEY)],
        config=COMGATE,
    ),
    Case(
        "order number",
        [doc(1, "INV-9", "99", "0", "CZK", ORD, order_number="10077")],
        pay("99", "10077", "CZK"),
        MatchState.MATCHED,
        [(1, "99", K.ORDER_NUMBER)],
        explains=["by order number 10077"],
        config=GPWEBPAY,
    ),
    # --- several candidates for one reference ---------------------------------------------
    Case(
        "several candidates, exactly one with outstanding equal to the amount",
        [doc(1, "2026-7", "100", kind=INV), doc(2, "2026-7", "250", kind=PRO)],
        pay("250", "2026-7"),
        MatchState.MATCHED,
        [(2, "250", K.DOCUMENT_NUMBER)],
        explains=["the only one of 2 open documents", "equals the payment"],
    ),
    Case(
        "several candidates, none with the amount: suggestions only",
        [doc(1, "2026-7", "100", kind=INV), doc(2, "2026-7", "250", kind=PRO)],
        pay("180", "2026-7"),
        MatchState.SUGGESTED,
        suggested=[1, 2],
        explains=["matches 2 open documents", "none of them has an outstanding amount of 180"],
    ),
    Case(
        "several candidates, more than one with the amount: suggestions only",
        [doc(1, "2026-7", "100", kind=INV), doc(2, "2026-7", "100", kind=PRO)],
        pay("100", "2026-7"),
        MatchState.SUGGESTED,
        suggested=[1, 2],
    ),
    Case(
        "variable symbol on two documents, narrowed by the one with the amount",
        [
            doc(1, "A-1", "100", "0", "CZK", variable_symbol="55"),
            doc(2, "A-2", "200", "0", "CZK", variable_symbol="55"),
        ],
        pay("200", None, "CZK", variable_symbol="55"),
        MatchState.MATCHED,
        [(2, "200", K.VARIABLE_SYMBOL)],
        config=FIO,
    ),
    # --- split payments, in the order named --------------------------------------------------
    Case(
        "split payment, exact",
        [doc(1, "E-1001", "100"), doc(2, "E-1002", "200"), doc(3, "E-1003", "400")],
        pay("300", "E-1002 és E-1001"),
        MatchState.MATCHED,
        [(2, "200", K.DOCUMENT_NUMBER), (1, "100", K.DOCUMENT_NUMBER)],
        explains=["split payment", "invoice E-1002 and invoice E-1001"],
    ),
    Case(
        "split payment, remainder to the last named (overpaid)",
        [doc(1, "E-1001", "100"), doc(2, "E-1002", "200")],
        pay("350", "E-1001, E-1002"),
        MatchState.MATCHED,
        [(1, "100", K.DOCUMENT_NUMBER), (2, "250", K.DOCUMENT_NUMBER)],
        explains=["overpaid"],
    ),
    Case(
        "split payment, too little for all: the last named gets nothing",
        [doc(1, "E-1001", "100", "40"), doc(2, "E-1002", "200")],
        pay("50", "E-1001 E-1002"),
        MatchState.MATCHED,
        [(1, "50", K.DOCUMENT_NUMBER)],
        explains=["partially paid"],
    ),
    Case(
        "the same document named twice is not a split",
        [doc(1, "E-1001", "100")],
        pay("100", "E-1001 E-1001", variable_symbol="1001"),
        MatchState.MATCHED,
        [(1, "100", K.DOCUMENT_NUMBER)],
    ),
    # --- currency, direction, amounts ---------------------------------------------------------
    Case(
        "different currency is only a suggestion naming both currencies",
        [doc(1, "E-2026-0009", "100", "0", "EUR")],
        pay("100", "E-2026-0009", "HUF"),
        MatchState.SUGGESTED,
        suggested=[1],
        explains=["in EUR", "in HUF"],
    ),
    Case(
        "same number in two currencies: the payment's currency wins",
        [doc(1, "E-9", "100", "0", "EUR"), doc(2, "E-9", "100", "0", "HUF", kind=PRO)],
        pay("100", "E-9", "HUF"),
        MatchState.MATCHED,
        [(2, "100", K.DOCUMENT_NUMBER)],
    ),
    Case(
        "outgoing payment is never matched",
        [doc(1, "E-2026-0001", "1000")],
        pay("-1000", "E-2026-0001"),
        MatchState.UNMATCHED,
        explains=["outgoing payment"],
    ),
    Case(
        "zero amount is never matched",
        [doc(1, "E-2026-0001", "1000")],
        pay("0", "E-2026-0001"),
        MatchState.UNMATCHED,
        explains=["zero-amount"],
    ),
    Case(
        "HUF whole amounts equal however written",
        [doc(1, "E-7", "12500", kind=INV), doc(2, "E-7", "9000", kind=PRO)],
        pay("12500.00", "E-7"),
        MatchState.MATCHED,
        [(1, "12500.00", K.DOCUMENT_NUMBER)],
    ),
    Case(
        "CZK with haléře must be exact",
        [
            doc(1, "A-1", "1250.50", "0", "CZK", variable_symbol="8"),
            doc(2, "A-2", "1250.51", "0", "CZK", variable_symbol="8"),
        ],
        pay("1250.5", None, "CZK", variable_symbol="8"),
        MatchState.MATCHED,
        [(1, "1250.5", K.VARIABLE_SYMBOL)],
        config=FIO,
    ),
    # --- keys and kinds the connection does not use --------------------------------------------
    Case(
        "a key the connection does not enable never matches",
        [doc(1, "E-2026-0001", "1000", variable_symbol="1")],
        pay("1000", "E-2026-0001"),
        MatchState.UNMATCHED,
        explains=["no variable symbol"],
        config=FIO,
    ),
    Case(
        "a kind the connection does not match against is invisible",
        [doc(1, "D-2026-1", "100", kind=PRO)],
        pay("100", "D-2026-1"),
        MatchState.UNMATCHED,
        explains=["names no open invoices"],
        config=MatchConfig(frozenset({INV}), KH.match_keys),
    ),
    Case(
        "fully paid documents are not open",
        [doc(1, "E-2026-0001", "1000", "1000")],
        pay("1000", "E-2026-0001"),
        MatchState.UNMATCHED,
    ),
    # --- whole tokens only ----------------------------------------------------------------------
    Case(
        "E-2026-12 is not inside E-2026-123",
        [doc(1, "E-2026-12", "100")],
        pay("100", "E-2026-123"),
        MatchState.SUGGESTED,
        suggested=[1],
        explains=["one character too many"],
    ),
    Case(
        "E-2026-123 is not E-2026-12 plus text",
        [doc(1, "E-2026-12", "100"), doc(2, "E-2026-123", "100")],
        pay("100", "E-2026-123"),
        MatchState.MATCHED,
        [(2, "100", K.DOCUMENT_NUMBER)],
    ),
    # --- near misses: suggested with a reason, never applied --------------------------------
    Case(
        "typo",
        [doc(1, "E-2026-0123", "100"), doc(2, "E-2026-0500", "100")],
        pay("100", "E-2026-0124"),
        MatchState.SUGGESTED,
        suggested=[1],
        explains=[
            "number E-2026-0124 not found; closest open invoice E-2026-0123 differs by a typo"
        ],
    ),
    Case(
        "swapped characters",
        [doc(1, "E-2026-0132", "100")],
        pay("90", "E-2026-0123"),
        MatchState.SUGGESTED,
        suggested=[1],
        explains=[
            "number E-2026-0123 not found; closest open invoice E-2026-0132 differs by "
            "two swapped characters"
        ],
    ),
    Case(
        "one character missing",
        [doc(1, "E-2026-0123", "100")],
        pay("100", "E-2026-023"),
        MatchState.SUGGESTED,
        suggested=[1],
        explains=["one character missing"],
    ),
    Case(
        "number glued to the text (seed: not separated by a space)",
        [doc(1, "E-2026-123", "100"), doc(2, "E-2026-12", "100")],
        pay("100", "E-2026-123befizetes"),
        MatchState.SUGGESTED,
        suggested=[1],
        explains=["E-2026-123 is in it, glued to other text"],
    ),
    Case(
        "truncated number (seed: not the whole number)",
        [doc(1, "E-ABC-2026-123", "100"), doc(2, "E-ABC-2026-124", "100")],
        pay("100", "utalas 2026-123"),
        MatchState.SUGGESTED,
        suggested=[1],
        explains=["only part of the number of open invoice E-ABC-2026-123"],
    ),
    Case(
        "the beginning of a number (its end left off)",
        [doc(1, "E-2026-0123-HU", "100"), doc(2, "E-2026-0124-HU", "100")],
        pay("100", "szamla E-2026-0123"),
        MatchState.SUGGESTED,
        suggested=[1],
        explains=["only part of the number of open invoice E-2026-0123-HU"],
    ),
    Case(
        "the beginning of a number among many more going on with a digit",
        [doc(i, f"E-2026-1{i:02d}", "100") for i in range(60)] + [doc(999, "E-2026-1HU", "100")],
        pay("100", "szamla E-2026-1"),
        MatchState.SUGGESTED,
        suggested=[999],
        explains=["only part of the number of open invoice E-2026-1HU"],
    ),
    Case(
        "the end of a number among many more with a digit before it",
        [doc(i, f"{i:02d}1-2026", "100") for i in range(60)] + [doc(999, "HU1-2026", "100")],
        pay("100", "szamla 1-2026"),
        MatchState.SUGGESTED,
        suggested=[999],
        explains=["only part of the number of open invoice HU1-2026"],
    ),
    Case(
        "a fragment many numbers share is no suggestion",
        [doc(i, f"E-ABC-2026-{i}", "100") for i in range(1, 9)],
        pay("100", "ABC-2026"),
        MatchState.UNMATCHED,
        explains=["ABC-2026 in the remittance text names no open"],
    ),
    Case(
        "variable symbol with a wrong digit",
        [doc(1, "A-1", "100", "0", "CZK", variable_symbol="20260132")],
        pay("100", None, "CZK", variable_symbol="20260123"),
        MatchState.SUGGESTED,
        suggested=[1],
        explains=["variable symbol 20260123 not found", "two swapped digits"],
        config=FIO,
    ),
    Case(
        "amount equal to one open document of the payer",
        [
            doc(1, "E-1", "100", partner_name="Kovács Kft."),
            doc(2, "E-2", "250", partner_name="Kovács Kft."),
            doc(3, "E-3", "250", partner_name="Other Zrt."),
        ],
        Payment(Decimal("250"), "HUF", "havi díj", counterparty_name="KOVÁCS  KFT."),
        MatchState.SUGGESTED,
        suggested=[2],
        explains=["the payer KOVÁCS KFT. has exactly one open document of 250 HUF"],
    ),
    Case(
        "amount equal to two open documents of the payer: no suggestion",
        [
            doc(1, "E-1", "250", partner_name="Kovács Kft."),
            doc(2, "E-2", "250", partner_name="Kovács Kft."),
        ],
        Payment(Decimal("250"), "HUF", "havi díj", counterparty_name="Kovács Kft."),
        MatchState.UNMATCHED,
    ),
    Case(
        "nothing at all",
        [doc(1, "E-1", "100")],
        pay("100"),
        MatchState.UNMATCHED,
        explains=["no remittance text"],
        config=KH,
    ),
    # --- constant symbol only narrows -----------------------------------------------------------
    Case(
        "constant symbol narrows two variable-symbol hits to one",
        [
            doc(1, "A-1", "100", "0", "CZK", variable_symbol="5", constant_symbol="0308"),
            doc(2, "A-2", "100", "0", "CZK", variable_symbol="5", constant_symbol="0558"),
        ],
        pay("100", None, "CZK", variable_symbol="5", constant_symbol="558"),
        MatchState.MATCHED,
        [(2, "100", K.VARIABLE_SYMBOL)],
        config=CS,
    ),
    Case(
        "a constant symbol that disagrees blocks the match",
        [doc(1, "A-1", "100", "0", "CZK", variable_symbol="5", constant_symbol="0308")],
        pay("100", None, "CZK", variable_symbol="5", constant_symbol="0558"),
        MatchState.SUGGESTED,
        suggested=[1],
        explains=["constant symbol differs (558 on the payment, 308 on the document)"],
        config=CS,
    ),
    Case(
        "a document without a constant symbol is not excluded",
        [doc(1, "A-1", "100", "0", "CZK", variable_symbol="5")],
        pay("100", None, "CZK", variable_symbol="5", constant_symbol="0558"),
        MatchState.MATCHED,
        [(1, "100", K.VARIABLE_SYMBOL)],
        config=CS,
    ),
    Case(
        "the constant symbol alone never matches",
        [doc(1, "A-1", "100", "0", "CZK", constant_symbol="0308")],
        pay("100", None, "CZK", constant_symbol="0308"),
        MatchState.UNMATCHED,
        config=CS,
    ),
    # --- order numbers ---------------------------------------------------------------------------
    Case(
        "recurring order number pays the oldest open document carrying it",
        [
            doc(3, "E-3", "50", order_number="CARD-77", recurring_order_number=True),
            doc(1, "E-1", "50", order_number="CARD-77", recurring_order_number=True),
            doc(2, "E-2", "50", order_number="CARD-77", recurring_order_number=True),
        ],
        pay("50", "tagsagi dij CARD-77"),
        MatchState.MATCHED,
        [(1, "50", K.ORDER_NUMBER)],
        explains=["the oldest of 3 open documents carrying this recurring order number"],
        config=KH,
    ),
    Case(
        "order number without recurring must be unambiguous",
        [
            doc(1, "E-1", "50", order_number="ORD-5"),
            doc(2, "E-2", "60", order_number="ORD-5"),
        ],
        pay("55", "ORD-5"),
        MatchState.SUGGESTED,
        suggested=[1, 2],
        config=KH,
    ),
    # --- partner identifier ----------------------------------------------------------------------
    Case(
        "partner identifier prefers the document whose outstanding equals the payment",
        [
            doc(1, "E-1", "100", partner_id=7, partner_identifier="TAG-0042"),
            doc(2, "E-2", "80", partner_id=7, partner_identifier="TAG-0042"),
            doc(3, "E-3", "80", partner_id=8, partner_identifier="TAG-0043"),
        ],
        pay("80", "TAG-0042 havi"),
        MatchState.MATCHED,
        [(2, "80", K.PARTNER_IDENTIFIER)],
        config=KH,
    ),
    Case(
        "partner identifier otherwise pays the oldest open documents first",
        [
            doc(2, "E-2", "100", partner_id=7, partner_identifier="TAG-0042"),
            doc(1, "E-1", "100", "60", partner_id=7, partner_identifier="TAG-0042"),
        ],
        pay("70", "TAG-0042"),
        MatchState.MATCHED,
        [(1, "40", K.PARTNER_IDENTIFIER), (2, "30", K.PARTNER_IDENTIFIER)],
        explains=["oldest first"],
        config=KH,
    ),
    Case(
        "an explicit document number wins over the partner identifier",
        [
            doc(1, "E-1", "100", partner_id=7, partner_identifier="TAG-0042"),
            doc(2, "E-2", "100", partner_id=7, partner_identifier="TAG-0042"),
        ],
        pay("100", "TAG-0042 E-2"),
        MatchState.MATCHED,
        [(2, "100", K.DOCUMENT_NUMBER)],
        config=KH,
    ),
    # --- several references ------------------------------------------------------------------
    Case(
        "references that agree",
        [doc(1, "2026001", "100", "0", "CZK", variable_symbol="2026001")],
        pay("100", "faktura 2026001", "CZK", variable_symbol="2026001"),
        MatchState.MATCHED,
        [(1, "100", K.DOCUMENT_NUMBER)],
    ),
    Case(
        "references that disagree: nothing applied",
        [
            doc(1, "FV-1", "100", "0", "CZK", variable_symbol="111"),
            doc(2, "FV-2", "100", "0", "CZK", variable_symbol="222"),
        ],
        pay("100", "FV-1", "CZK", variable_symbol="222"),
        MatchState.SUGGESTED,
        suggested=[1, 2],
        explains=["the references disagree"],
    ),
    Case(
        "two ambiguous references settle on the one document both name",
        [
            doc(1, "A-1", "100", "0", "CZK", variable_symbol="5", specific_symbol="9"),
            doc(2, "A-2", "100", "0", "CZK", variable_symbol="5", specific_symbol="8"),
            doc(3, "A-3", "100", "0", "CZK", variable_symbol="6", specific_symbol="8"),
        ],
        pay("100", None, "CZK", variable_symbol="5", specific_symbol="8"),
        MatchState.MATCHED,
        [(2, "100", K.VARIABLE_SYMBOL)],
        config=FIO,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_decision(case: Case) -> None:
    decision = run(case.docs, case.payment, case.config)
    assert decision.state is case.state, decision.explanation
    assert [(a.document_id, a.amount, a.rule) for a in decision.allocations] == [
        (i, Decimal(amount), rule) for i, amount, rule in case.allocations
    ]
    assert sorted(s.document_id for s in decision.suggestions) == sorted(case.suggested)
    for words in case.explains:
        assert words in decision.explanation
    for suggestion in decision.suggestions:
        assert 0 < suggestion.confidence <= 1
        assert suggestion.reason
    if decision.allocations:
        assert sum(a.amount for a in decision.allocations) == case.payment.amount
    assert decision.explanation


@pytest.mark.parametrize(
    ("amount", "state"),
    [
        ("400", PaymentState.PARTIALLY_PAID),
        ("1000", PaymentState.PAID),
        ("1000.00", PaymentState.PAID),
        ("1200", PaymentState.OVERPAID),
    ],
)
def test_paid_state_after_allocation(amount: str, state: PaymentState) -> None:
    invoice = doc(1, "E-2026-0001", "1000")
    decision = run([invoice], pay(amount, "E-2026-0001"))
    assert decision.state is MatchState.MATCHED
    paid = invoice.paid + sum(a.amount for a in decision.allocations)
    assert payment_state(invoice.total, paid) is state


def test_partial_payments_add_up_in_the_index() -> None:
    index = DocumentIndex([doc(1, "E-2026-0001", "1000")])
    first = index.match(pay("600", "E-2026-0001"), BROAD)
    index.apply(first)
    remaining = index.get(1)
    assert remaining is not None and remaining.paid == Decimal("600")
    second = index.match(pay("400", "E-2026-0001"), BROAD)
    assert [a.amount for a in second.allocations] == [Decimal("400")]
    index.apply(second)
    assert index.get(1) is None  # fully paid: no longer open
    third = index.match(pay("400", "E-2026-0001"), BROAD)
    assert third.state is MatchState.UNMATCHED


def test_recurring_order_number_pays_oldest_first_payment_after_payment() -> None:
    docs = [
        doc(i, f"E-{i}", "50", order_number="CARD-77", recurring_order_number=True)
        for i in (3, 1, 2)
    ]
    index = DocumentIndex(docs)
    paid = []
    for _ in range(3):
        decision = index.match(pay("50", "CARD-77"), KH)
        paid.append(decision.allocations[0].document_id)
        index.apply(decision)
    assert paid == [1, 2, 3]


def test_document_arriving_after_its_payment_is_matched_when_added() -> None:
    index = DocumentIndex([doc(1, "E-1", "100")])
    payment = pay("250", "E-2026-0777")
    assert index.match(payment, BROAD).state is MatchState.UNMATCHED
    index.add(doc(2, "E-2026-0777", "250"))
    decision = index.match(payment, BROAD)
    assert decision.state is MatchState.MATCHED
    assert decision.allocations[0].document_id == 2


def test_removed_and_replaced_documents_leave_no_trace() -> None:
    index = DocumentIndex([doc(1, "E-2026-0777", "250", variable_symbol="777")])
    index.add(doc(1, "E-2026-0888", "250", variable_symbol="888"))  # same id: replaced
    assert index.match(pay("250", "E-2026-0777"), BROAD).state is MatchState.UNMATCHED
    assert index.match(pay("250", "E-2026-0888"), BROAD).state is MatchState.MATCHED
    assert index.remove(1) is not None
    assert len(index) == 0
    assert index.match(pay("250", "E-2026-0888"), BROAD).state is MatchState.UNMATCHED
    assert index.candidates(lookup_for(pay("250", "E-2026-0887 E-2026-088"), BROAD)) == []


def test_decide_does_not_trust_candidates() -> None:
    """A store may over-fetch; unrelated candidates must not be matched."""
    unrelated = [doc(i, f"X-{i}", "100", variable_symbol=str(i)) for i in range(1, 50)]
    decision = decide(pay("100", "E-2026-0001", variable_symbol="999"), unrelated, BROAD)
    assert decision.state is MatchState.UNMATCHED
    assert decision.allocations == ()


def test_hostile_remittance_text_is_bounded() -> None:
    text = " ".join(f"{i:064d}" for i in range(10_000)) + "x" * 100_000
    lookup = lookup_for(pay("100", text), BROAD)
    assert len(lookup.tokens) <= MAX_TOKENS
    assert all(len(t) <= 64 for t in lookup.tokens)
    assert len(lookup.fuzzy_at(EVERY_LENGTH)) <= 8 * 65 + 2 * 11
    assert len(lookup.glued_at(EVERY_LENGTH)) <= 8 * 2 * 64
    decision = run([doc(1, "E-1", "100")], pay("100", text))
    assert decision.state is MatchState.UNMATCHED


def test_lookup_holds_only_what_enabled_keys_need() -> None:
    payment = Payment(
        Decimal("10"),
        "CZK",
        "faktura 2026-0001",
        variable_symbol="001",
        specific_symbol="2",
        constant_symbol="0308",
        payment_key="K1",
        counterparty_name="  Jan   Novák ",
    )
    fio = lookup_for(payment, FIO)
    assert fio.tokens == () and fio.glued_at(EVERY_LENGTH) == () and fio.prefixes == ()
    assert (fio.variable_symbol, fio.specific_symbol, fio.payment_key) == ("1", "2", None)
    broad = lookup_for(payment, BROAD)
    assert broad.tokens == ("FAKTURA", "2026-0001")
    assert broad.prefixes == ("2026-0001",)
    assert {"2026-001", "2026-0001"} <= set(broad.fuzzy_at(EVERY_LENGTH))
    assert (broad.constant_symbol, broad.payment_key) == ("308", "K1")
    assert broad.counterparty_name == "JAN NOVÁK"
    exact = lookup_for(payment, BROAD, near_misses=False)
    assert exact.fuzzy_at(EVERY_LENGTH) == () and exact.glued_at(EVERY_LENGTH) == ()
    assert not exact.near_misses
    assert lookup_for(pay("-5", "E-1"), BROAD).tokens == ()


@pytest.mark.parametrize(
    ("provider", "keys"),
    [
        ("FIO", {K.VARIABLE_SYMBOL, K.SPECIFIC_SYMBOL}),
        ("CESKA_SPORITELNA", {K.VARIABLE_SYMBOL, K.SPECIFIC_SYMBOL, K.CONSTANT_SYMBOL}),
        ("GOPAY", {K.VARIABLE_SYMBOL}),
        ("COMGATE", {K.PAYMENT_KEY}),
        ("GPWEBPAY", {K.ORDER_NUMBER}),
        ("CSOB_BBF", {K.VARIABLE_SYMBOL, K.DOCUMENT_NUMBER}),
        ("KH_BANK", {K.DOCUMENT_NUMBER, K.ORDER_NUMBER, K.PARTNER_IDENTIFIER}),
        ("PUSH", set(MatchKey)),
        ("SANDBOX", set(MatchKey)),
        ("STATEMENT_FILE", set(MatchKey)),
        ("BYZNYS_WEB", set(MatchKey)),
    ],
)
def test_default_match_keys(provider: str, keys: set[MatchKey]) -> None:
    assert DEFAULT_MATCH_KEYS[provider] == keys
    config = default_config(provider)
    assert config.match_keys == keys
    assert config.match_against == frozenset(DocumentKind)


def test_config_accepts_names() -> None:
    config = MatchConfig(frozenset({"INVOICE"}), frozenset({"VARIABLE_SYMBOL"}))  # type: ignore[arg-type]
    assert config == MatchConfig(frozenset({INV}), frozenset({K.VARIABLE_SYMBOL}))


@pytest.mark.parametrize(
    ("amount", "outstandings", "shares"),
    [
        ("100", ["100"], ["100"]),
        ("150", ["100"], ["150"]),
        ("50", ["100"], ["50"]),
        ("300", ["100", "200"], ["100", "200"]),
        ("350", ["100", "200"], ["100", "250"]),
        ("50", ["100", "200"], ["50", "0"]),
        ("100", ["100", "200"], ["100", "0"]),
        ("0.03", ["0.01", "0.01", "0.01"], ["0.01", "0.01", "0.01"]),
        ("0", ["100"], ["0"]),
        ("100", [], []),
    ],
)
def test_split_amount(amount: str, outstandings: list[str], shares: list[str]) -> None:
    assert split_amount(Decimal(amount), [Decimal(o) for o in outstandings]) == [
        Decimal(s) for s in shares
    ]


def test_apply_allocations_keeps_only_positive_shares() -> None:
    a, b = doc(1, "E-1", "100"), doc(2, "E-2", "100")
    assert apply_allocations(Decimal("60"), [a, b]) == [(a, Decimal("60"))]
    assert apply_allocations(Decimal("160"), [a, b]) == [(a, Decimal("100")), (b, Decimal("60"))]


def test_index_fetches_few_candidates_for_a_typo_in_dense_numbering() -> None:
    """Positional deletion keys: a typo's candidates are its neighbours, not half the series."""
    index = DocumentIndex(doc(n, f"N-{n}", "100") for n in range(10_000, 20_000))
    token = "N-12354"  # 12345 with two digits swapped
    candidates = index.candidates(lookup_for(pay("100", token), BROAD))
    numbers = {c.number for c in candidates}
    one_edit_away = {f"N-{n}" for n in range(10_000, 20_000) if edit_distance(f"N-{n}", token) == 1}
    assert one_edit_away <= numbers  # every true neighbour, the swap N-12345 among them
    assert all(edit_distance(n, token) <= 2 for n in numbers)
    # a typo key and a swap key per position: about twice the true neighbours, not hundreds
    assert len(numbers) <= 2 * len(one_edit_away) + 10


def test_hostile_symbols_are_bounded() -> None:
    payment = pay("100", None, variable_symbol="1" * 100_000, specific_symbol="2" * 100_000)
    lookup = lookup_for(payment, BROAD)
    # No near-miss search on a symbol no bank would send.
    assert lookup.fuzzy_at(EVERY_LENGTH) == ()
    assert run([doc(1, "E-1", "100", variable_symbol="1" * 99_999)], payment).state is (
        MatchState.UNMATCHED
    )


def test_with_paid_keeps_references_and_moves_outstanding() -> None:
    original = doc(
        7, "e-2026/0123", "1000", paid="100", partner_name="Kovács Kft.", variable_symbol="00123"
    )
    paid = original.with_paid(Decimal("400"))
    assert paid == doc(
        7, "e-2026/0123", "1000", paid="400", partner_name="Kovács Kft.", variable_symbol="00123"
    )
    assert (paid.outstanding, original.outstanding) == (Decimal("600"), Decimal("900"))
    for name in ("number_norm", "variable_symbol_norm", "partner_name_norm"):
        assert getattr(paid, name) == getattr(original, name) is not None


def test_decide_extends_an_exact_lookup_it_is_given() -> None:
    docs = [doc(1, "E-2026-0132", "5000")]
    payment = pay("5000", "szamla E-2026-0123")
    exact = lookup_for(payment, BROAD, near_misses=False)
    given = decide(payment, docs, BROAD, exact)
    assert (
        given
        == decide(payment, docs, BROAD)
        == decide(payment, docs, BROAD, lookup_for(payment, BROAD))
    )
    assert given.state is MatchState.SUGGESTED


@pytest.mark.parametrize("base", [1, 2**60])  # 2**60: codes too large to pack into an array
def test_index_one_edit_keys_shared_by_many_documents_survive_removal(base: int) -> None:
    """Neighbours share one-edit keys (packed together); whole values share them too."""
    docs = [doc(base + n, f"E-{n}", "100") for n in (123, 124, 125, 12, 1234)]
    index = DocumentIndex(docs)
    payment = pay("100", "szamla E-126")  # a typo of E-123/124/125, one too many for E-12
    assert index.match(payment, BROAD) == decide(payment, docs, BROAD)
    assert len(index.match(payment, BROAD).suggestions) == 4
    for gone in (docs[0], docs[3]):
        index.remove(gone.id)
    left = [d for d in docs if d.id in index]
    assert index.match(payment, BROAD) == decide(payment, left, BROAD)
    assert {s.document_id for s in index.match(payment, BROAD).suggestions} == {
        base + 124,
        base + 125,
    }


def test_index_keys_of_different_kinds_share_one_entry_and_leave_it_one_by_one() -> None:
    """One document's number is another's variable symbol and a third's order number; a
    Czech number doubling as its own symbol counts once. Removing one leaves the others."""
    docs = [
        doc(1, "2026000123", "100", variable_symbol="2026000123"),
        doc(2, "FV-7", "200", variable_symbol="2026000123"),
        doc(3, "FV-8", "300", order_number="2026000123"),
    ]
    index = DocumentIndex(docs)
    payments = [
        pay("100", "faktura 2026000123"),
        pay("200", None, variable_symbol="2026000123"),
        pay("300", "obj 2026000123"),
        pay("300", "obj 2026000124"),  # one edit from all three
    ]
    for gone in (None, 1, 2):
        if gone is not None:
            index.remove(gone)
        left = [d for d in docs if d.id in index]
        for payment in payments:
            assert index.match(payment, BROAD) == decide(payment, left, BROAD)
        assert {d.id for d in index.candidates(lookup_for(payments[1], BROAD))} == {
            d.id for d in left
        }


def test_index_exact_hits_carry_the_paid_amount_booked_last() -> None:
    """Exact keys hold the documents themselves: booking replaces them there too."""
    docs = [doc(1, "E-2026-0001", "100", variable_symbol="77001"), doc(2, "E-2026-0002", "50")]
    index = DocumentIndex(docs)
    by_number = lookup_for(pay("30", "E-2026-0001"), BROAD, near_misses=False)
    by_symbol = lookup_for(pay("30", None, variable_symbol="77001"), BROAD, near_misses=False)
    index.apply(index.match(pay("30", "E-2026-0001"), BROAD))
    for lookup in (by_number, by_symbol):
        (found,) = index.candidates(lookup)
        assert (found.paid, found.outstanding) == (Decimal("30"), Decimal("70"))
        assert found is index.get(1)
    index.apply(index.match(pay("70", "E-2026-0001"), BROAD))
    assert index.candidates(by_number) == [] and index.candidates(by_symbol) == []
    assert [d.id for d in index.documents()] == [2]


def test_index_one_edit_candidates_leave_out_two_edits_that_share_a_deletion() -> None:
    """12345 less its 3 and 12495 less its 9 are both 1245, but the two are two edits apart;
    12354 is a true swap. Dense numbering has such pairs around every number."""
    docs = [doc(1, "E-12495", "100"), doc(2, "E-12354", "100"), doc(3, "E-12346", "100")]
    index = DocumentIndex(docs)
    lookup = lookup_for(pay("100", "szamla E-12345"), BROAD)
    assert {d.number for d in index.candidates(lookup)} == {"E-12354", "E-12346"}
    assert index.match(pay("100", "szamla E-12345"), BROAD) == decide(
        pay("100", "szamla E-12345"), docs, BROAD
    )


def test_index_finds_a_swap_whose_deletions_other_references_share_in_part() -> None:
    """12345 less its last digit is 1234, as is its symbol 12349 less its own: that key is
    both a number's and a symbol's, the other half of the swap a number's alone."""
    docs = [doc(1, "12345", "100", variable_symbol="12349"), doc(2, "77777", "100")]
    payment = pay("100", "szamla 12354")
    index = DocumentIndex(docs)
    assert 1 in {d.id for d in index.candidates(lookup_for(payment, BROAD))}
    assert index.match(payment, BROAD) == decide(payment, docs, BROAD)
    assert index.match(payment, BROAD).suggestions[0].document_id == 1


def test_index_text_one_edit_from_another_documents_symbol_fetches_nothing() -> None:
    """Text is compared with numbers, symbols with symbols: no candidate decide would drop."""
    docs = [doc(1, "E-1", "100", variable_symbol="2026000123")]
    index = DocumentIndex(docs)
    assert index.candidates(lookup_for(pay("100", "platba 2026000124"), BROAD)) == []
    by_symbol = pay("100", None, variable_symbol="2026000124")
    assert [d.id for d in index.candidates(lookup_for(by_symbol, BROAD))] == [1]
    assert index.match(by_symbol, BROAD) == decide(by_symbol, docs, BROAD)


@pytest.mark.parametrize("size", [0, 1, 15, 16, 17, 100, 1000])
def test_index_sorted_keys_find_what_a_scan_finds(size: int) -> None:
    """One bisect finds where the keys with a prefix start, as a scan would; keys added
    since the last sort are found too."""
    rnd = random.Random(size)
    keys = sorted({f"E-{rnd.randrange(10**4)}" for _ in range(size)})
    sorted_keys = _SortedKeys()
    sorted_keys.rebuild(keys)
    # Added since, still waiting unsorted: found after the sorted ones, or alone.
    pending = [f"E-{rnd.randrange(10**4)}X" for _ in range(size % 7)] + ["P-1"]
    for key in pending:
        sorted_keys.add(key)
    every = [*keys, *pending]
    prefixes = ["", "E", "E-9", "F", "D", "P", *every, *(k[:-1] for k in every)]
    prefixes += [k + "0" for k in keys]
    for prefix in prefixes:
        expected = [k for k in every if k.startswith(prefix)]
        start = sorted_keys.first_with(prefix)
        if start is None:
            assert expected == []
        else:
            assert list(sorted_keys.starting_with(prefix, start)) == expected
            # Only where a number may be cut: never between two digits.
            n = len(prefix)
            cut = [k for k in expected if len(k) == n or n == 0 or cut_allowed(k[n - 1], k[n])]
            assert list(sorted_keys.starting_with(prefix, start, cut=True)) == cut


def test_index_payer_and_amount_follow_a_partial_payment() -> None:
    """After 40 of 100 is paid, the payer's 60 points at the document, and 100 no longer."""
    docs = [
        doc(1, "E-2026-0001", "100", partner_name="Kovács Kft."),
        doc(2, "E-2026-0002", "500", partner_name="Kovács Kft."),
    ]
    index = DocumentIndex(docs)
    index.apply(index.match(pay("40", "E-2026-0001"), BROAD))
    left = list(index.documents())
    for amount, expected in (("60", [1]), ("100", [])):
        payment = pay(amount, "köszönöm", counterparty_name="Kovács Kft.")
        decision = index.match(payment, BROAD)
        assert decision == decide(payment, left, BROAD)
        assert [s.document_id for s in decision.suggestions] == expected


def _count_probes(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Count the index's one-edit searches and sorted-key bisects from now on."""
    counts = {"one_edit": 0, "bisect": 0, "deletions": 0}
    edit_postings = DocumentIndex._edit_postings
    first_with = _SortedKeys.first_with
    deletion_hashes = index_module._deletion_hashes

    def counted_edit(self: DocumentIndex, *args: object) -> None:
        counts["one_edit"] += 1
        edit_postings(self, *args)  # type: ignore[arg-type]

    def counted_bisect(self: _SortedKeys, prefix: str) -> int | None:
        counts["bisect"] += 1
        return first_with(self, prefix)

    def counted_deletions(value: str) -> list[int]:
        counts["deletions"] += 1
        return deletion_hashes(value)

    monkeypatch.setattr(DocumentIndex, "_edit_postings", counted_edit)
    monkeypatch.setattr(_SortedKeys, "first_with", counted_bisect)
    monkeypatch.setattr(index_module, "_deletion_hashes", counted_deletions)
    return counts


def test_index_token_shaped_like_no_number_costs_no_search(monkeypatch: pytest.MonkeyPatch) -> None:
    """Numbers shaped A-9999-9999: a token that is no number's shape, part or neighbour
    (digits glued to a word) is answered from the shapes, with no one-edit or prefix search;
    one of a number's shape gets the one-edit search, the end of one the search by ends."""
    docs = [doc(n, f"E-2026-{n:04d}", "100") for n in range(1, 200)]
    index = DocumentIndex(docs)
    counts = _count_probes(monkeypatch)
    unrelated = pay("100", "platba 2026000123PLATBA")
    assert index.match(unrelated, BROAD) == decide(unrelated, docs, BROAD)
    assert counts == {"one_edit": 0, "bisect": 0, "deletions": 0}
    typo = pay("100", "szamla E-2026-0312")  # 0132 with two digits swapped
    decision = index.match(typo, BROAD)
    assert decision == decide(typo, docs, BROAD)
    assert 132 in {s.document_id for s in decision.suggestions}
    # As long as a number: not a part of one, but maybe one edit from one.
    assert counts == {"one_edit": 1, "bisect": 0, "deletions": 1}
    fragment = pay("100", "szamla 2026-0132")
    decision = index.match(fragment, BROAD)
    assert decision == decide(fragment, docs, BROAD)
    assert [s.document_id for s in decision.suggestions] == [132]
    assert counts["bisect"] == 1  # the ends of numbers; none starts with digits


def test_index_token_a_digit_short_of_every_number_is_not_split_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Ten-digit numbers only: a nine-digit token can be one of them with a digit missing
    (one probe with the whole token). No number is as long as the token or one shorter, so
    it is no typo, swap or extra digit of any, and its nine deletions are never worked out;
    as a number is never cut between two digits, it is no beginning or end of one either."""
    docs = [doc(n, f"2026{n:06d}", "100") for n in range(1, 300)]
    index = DocumentIndex(docs)
    counts = _count_probes(monkeypatch)
    payment = pay("100", "platba 202600123")  # 2026000123 less a zero
    decision = index.match(payment, BROAD)
    assert decision == decide(payment, docs, BROAD)
    assert [s.document_id for s in decision.suggestions] == [123]
    assert counts == {"one_edit": 1, "deletions": 0, "bisect": 0}
    swap = pay("100", "platba 2026000929")  # 2026000299 with two digits swapped
    decision = index.match(swap, BROAD)
    assert decision == decide(swap, docs, BROAD)
    assert 299 in {s.document_id for s in decision.suggestions}
    assert counts["deletions"] == 1


def _suggested_once_added(index: DocumentIndex, payment: Payment, new: OpenDocument) -> None:
    """The payment finds nothing, its token's plan is kept; `new` arrives and is suggested."""
    assert index.match(payment, BROAD).state is MatchState.UNMATCHED
    index.add(new)
    decision = index.match(payment, BROAD)
    assert [s.document_id for s in decision.suggestions] == [new.id]
    assert decision == decide(payment, list(index.documents()), BROAD)


def test_index_plans_follow_documents_of_a_new_shape() -> None:
    """What a token of one shape is searched for is remembered, and forgotten when a number
    of a new shape arrives: the token then finds it."""
    index = DocumentIndex([doc(1, "E-2026-00001", "100")])  # as long as the new one
    _suggested_once_added(index, pay("100", "FV2026/00132"), doc(2, "FV2026/00123", "100"))


def test_index_numbers_in_too_many_shapes_get_every_search() -> None:
    """Random codes as numbers have a shape each: past the limit the shapes are not kept
    (their sets would grow with the documents), and every search runs as before."""
    rnd = random.Random(7)
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ0123456789"
    count = index_module._SHAPES_LIMIT + 200
    docs = [doc(n, "".join(rnd.choices(alphabet, k=16)), "100") for n in range(1, count + 1)]
    index = DocumentIndex(docs)
    shapes = index._shapes
    assert shapes.overflow and not (
        shapes.whole or shapes.starts or shapes.ends or shapes.deletions
    )
    # One whose fifth and sixth characters differ, with a digit in its first six and a letter
    # seventh (a number may end there), to be mistyped, glued to a word and cut short.
    target = next(
        d
        for d in docs
        if d.number[4] != d.number[5]
        and any(c.isdigit() for c in d.number[:6])
        and d.number[6].isalpha()
    )
    number = target.number
    for text in (
        number[:4] + number[5] + number[4] + number[6:],  # two swapped characters
        number + "-PLATBA",  # glued to a word
        number[:6],  # its beginning
    ):
        payment = pay("100", f"szamla {text}")
        decision = index.match(payment, BROAD)
        assert decision == decide(payment, docs, BROAD)
        assert target.id in {s.document_id for s in decision.suggestions}, text


def test_index_remembers_a_bounded_number_of_token_shapes() -> None:
    index = DocumentIndex([doc(1, "E-2026-0001", "100")])
    for n in range(index_module._PLANS_LIMIT + 500):
        shape = format(n, "b").replace("0", "X").replace("1", "7")  # a new shape each
        index.match(pay("100", f"E{shape}"), BROAD)
    assert 0 < len(index._plans) <= index_module._PLANS_LIMIT


@pytest.mark.parametrize("plans", [3, 4096])
@pytest.mark.parametrize("seed", range(30))
def test_index_decides_as_all_documents_when_shapes_overflow_and_plans_are_evicted(
    monkeypatch: pytest.MonkeyPatch, seed: int, plans: int
) -> None:
    """With room for 4 shapes (and 3 plans, or many), the switch to no shapes and the
    eviction of plans happen all the time, and documents come, get paid, go and are rebuilt
    in between: every payment is still decided as over all open documents."""
    monkeypatch.setattr(index_module, "_SHAPES_LIMIT", 4)
    monkeypatch.setattr(index_module, "_PLANS_LIMIT", plans)
    rnd = random.Random(seed)
    shapes = ["E-2026-{:04d}", "{:06d}", "FV2026/{:05d}", "A{:03d}B", "2026{:06d}", "X-{:d}"]

    def number() -> str:
        return rnd.choice(shapes).format(rnd.randrange(1, 300))

    def payment(docs: list[OpenDocument]) -> Payment:
        value = rnd.choice(docs).number if docs else number()
        i = rnd.randrange(len(value))
        text = rnd.choice(
            [
                value[:i] + value[i + 1 :],  # a character missing
                value[:i] + rnd.choice("0123456789") + value[i + 1 :],  # a typo
                value[:i] + value[i + 1 : i + 2] + value[i : i + 1] + value[i + 2 :],  # a swap
                value + "X" + value[:i],  # something more
                value + "PLATBA",  # glued
                value[:i],  # its beginning
                value[i:],  # its end
            ]
        )
        return pay("100", f"szamla {text}")

    live: dict[int, OpenDocument] = {}
    index = DocumentIndex()
    for step in range(120):
        action = rnd.random()
        if action < 0.55 or not live:
            d = doc(step, number(), "100")
            live[d.id] = d
            index.add(d)
        elif action < 0.7:
            index.remove(live.pop(rnd.choice(sorted(live))).id)
        elif action < 0.8:
            d = live[rnd.choice(sorted(live))]
            index.update_paid(d.id, Decimal("40"))
            live[d.id] = replace(d, paid=Decimal("40"))
        elif action < 0.85:
            index._rebuild_sorted()
        p = payment(list(live.values()))
        assert index.match(p, BROAD) == decide(p, list(live.values()), BROAD), (seed, step, p)


def test_index_plans_follow_new_lengths_once_shapes_overflow(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Past the shapes' limit a new shape no longer refreshes plans, but a new length still
    does: a glued token is cut at the numbers' lengths."""
    monkeypatch.setattr(index_module, "_SHAPES_LIMIT", 1)
    index = DocumentIndex([doc(1, "E-1", "100"), doc(2, "FV-22", "100")])
    assert index._shapes.overflow
    payment = pay("100", "szamla 2026000123PLATBA")
    _suggested_once_added(index, payment, doc(3, "2026000123", "100"))


def test_index_keeps_only_the_shapes_of_numbers_with_a_digit() -> None:
    """A number without a digit is never a near miss: its shape would only widen plans."""
    index = DocumentIndex([doc(1, "E-2026-0001", "100"), doc(2, "ZALOHA", "100")])
    assert index._shapes.whole == {"A-9999-9999"}
