"""The matcher: which open documents a received payment pays, or why it pays none.

Pure and synchronous. A store (database or `DocumentIndex`) fetches candidate documents for the
keys in a `Lookup`; `decide` then verifies every candidate itself, so a store may over-fetch
freely. The rules are those of DESIGN.md, "Matching rules".
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field, fields
from decimal import Decimal
from operator import attrgetter
from typing import Literal, NamedTuple, overload

from service.domain.models import DocumentKind, MatchKey, MatchState, OpenDocument, Payment
from service.domain.references import (
    EditKind,
    deletes,
    glued_parts,
    has_digit,
    is_glued_in,
    is_truncation_of,
    normalize_name,
    normalize_reference,
    normalize_symbol,
    one_edit,
    tokenize,
)

__all__ = [
    "ALL_KINDS",
    "BROAD_MATCH_KEYS",
    "DEFAULT_MATCH_KEYS",
    "MAX_SUGGESTIONS",
    "MAX_TEXT_LENGTH",
    "MAX_TOKENS",
    "MAX_TOKEN_LENGTH",
    "MAX_TRUNCATION_HITS",
    "MIN_NEAR_LENGTH",
    "AllocationPlan",
    "Decision",
    "Lookup",
    "MatchConfig",
    "Suggestion",
    "apply_allocations",
    "decide",
    "default_config",
    "lookup_for",
    "match",
    "split_amount",
]

# Bounds that keep a hostile remittance text from blowing up lookups (SEPA allows 140 chars).
MAX_TEXT_LENGTH = 4096
MAX_TOKENS = 32
MAX_TOKEN_LENGTH = 64
# Near misses are looked for only in digit-bearing tokens this long, at most this many of them:
# shorter ones ("12", "E-1") are one edit away from far too many numbers to mean anything.
MIN_NEAR_LENGTH = 4
MAX_NEAR_TOKENS = 8
# A truncated number that is the beginning or end of more documents than this identifies none.
MAX_TRUNCATION_HITS = 5
MAX_SUGGESTIONS = 20

ALL_KINDS: frozenset[DocumentKind] = frozenset(DocumentKind)
# Every key; the constant symbol among them only narrows symbol matches, never matches alone.
BROAD_MATCH_KEYS: frozenset[MatchKey] = frozenset(MatchKey)

_K = MatchKey
# Defaults per provider, from the seeds (see DESIGN.md). Sources that carry any kind of
# payment get the broad set.
DEFAULT_MATCH_KEYS: dict[str, frozenset[MatchKey]] = {
    "FIO": frozenset({_K.VARIABLE_SYMBOL, _K.SPECIFIC_SYMBOL}),
    "CESKA_SPORITELNA": frozenset({_K.VARIABLE_SYMBOL, _K.SPECIFIC_SYMBOL, _K.CONSTANT_SYMBOL}),
    "GOPAY": frozenset({_K.VARIABLE_SYMBOL}),
    "COMGATE": frozenset({_K.PAYMENT_KEY}),
    "GPWEBPAY": frozenset({_K.ORDER_NUMBER}),
    # Domestic ČSOB payments by VS, foreign ones by the purpose text.
    "CSOB_BBF": frozenset({_K.VARIABLE_SYMBOL, _K.DOCUMENT_NUMBER}),
    "KH_BANK": frozenset({_K.DOCUMENT_NUMBER, _K.ORDER_NUMBER, _K.PARTNER_IDENTIFIER}),
    "PUSH": BROAD_MATCH_KEYS,
    "SANDBOX": BROAD_MATCH_KEYS,
    "STATEMENT_FILE": BROAD_MATCH_KEYS,
    "BYZNYS_WEB": BROAD_MATCH_KEYS,
}

# Confidence of suggestions (never applied automatically); an amount equal to the document's
# outstanding adds _AMOUNT_BONUS.
_ZERO = Decimal(0)
_CONF_AMBIGUOUS = 0.6
_CONF_CONFLICT = 0.5
_CONF_WRONG_CURRENCY = 0.6
_CONF_CONSTANT_SYMBOL = 0.7
_CONF_EDIT = {
    EditKind.SWAPPED: 0.75,
    EditKind.TYPO: 0.7,
    EditKind.MISSING: 0.65,
    EditKind.EXTRA: 0.65,
}
_CONF_GLUED = 0.8
_CONF_TRUNCATED = 0.5
_CONF_PAYER_AMOUNT = 0.5
_AMOUNT_BONUS = 0.15

_KIND_WORDS = {
    DocumentKind.INVOICE: ("invoice", "invoices"),
    DocumentKind.PROFORMA: ("proforma invoice", "proforma invoices"),
    DocumentKind.ORDER: ("order", "orders"),
}
_KEY_WORDS = {
    _K.DOCUMENT_NUMBER: "document number",
    _K.ORDER_NUMBER: "order number",
    _K.PARTNER_IDENTIFIER: "partner identifier",
    _K.VARIABLE_SYMBOL: "variable symbol",
    _K.SPECIFIC_SYMBOL: "specific symbol",
    _K.CONSTANT_SYMBOL: "constant symbol",
    _K.PAYMENT_KEY: "payment key",
}
_SYMBOL_WORDS = {
    _K.VARIABLE_SYMBOL: "variable symbol",
    _K.SPECIFIC_SYMBOL: "specific symbol",
}


class _Flags:
    """A config's keys as plain booleans: the hot path tests them once per document."""

    __slots__ = (
        "kinds",
        "ks",
        "near",
        "near_fields",
        "number",
        "order",
        "partner",
        "payment_key",
        "ss",
        "text",
        "vs",
    )

    def __init__(self, kinds: frozenset[DocumentKind], keys: frozenset[MatchKey]) -> None:
        self.kinds = tuple(k for k in DocumentKind if k in kinds)
        self.number = _K.DOCUMENT_NUMBER in keys
        self.order = _K.ORDER_NUMBER in keys
        self.partner = _K.PARTNER_IDENTIFIER in keys
        self.text = self.number or self.order or self.partner
        self.near = self.number or self.order  # near misses are about numbers
        self.near_fields: tuple[tuple[MatchKey, str], ...] = tuple(
            (key, word)
            for key, word, on in (
                (_K.DOCUMENT_NUMBER, "number", self.number),
                (_K.ORDER_NUMBER, "order number", self.order),
            )
            if on
        )
        self.vs = _K.VARIABLE_SYMBOL in keys
        self.ss = _K.SPECIFIC_SYMBOL in keys
        self.ks = _K.CONSTANT_SYMBOL in keys
        self.payment_key = _K.PAYMENT_KEY in keys


@dataclass(frozen=True, slots=True)
class MatchConfig:
    """What a connection matches against and by which keys."""

    match_against: frozenset[DocumentKind] = ALL_KINDS
    match_keys: frozenset[MatchKey] = BROAD_MATCH_KEYS
    # Derived from the two above, for the hot path; not part of equality or the constructor.
    flags: _Flags = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        # Accept any iterable of names or members (API input), store canonical frozensets.
        against = frozenset(DocumentKind(k) for k in self.match_against)
        keys = frozenset(MatchKey(k) for k in self.match_keys)
        object.__setattr__(self, "match_against", against)
        object.__setattr__(self, "match_keys", keys)
        object.__setattr__(self, "flags", _Flags(against, keys))


def default_config(provider: str) -> MatchConfig:
    """The seeds' defaults for a provider name (Provider enum value); unknown ones get broad."""
    return MatchConfig(ALL_KINDS, DEFAULT_MATCH_KEYS.get(provider.upper(), BROAD_MATCH_KEYS))


@dataclass(frozen=True, slots=True)
class AllocationPlan:
    """Part of a payment to book onto a document, and the rule that identified it."""

    document_id: int
    amount: Decimal
    rule: MatchKey


@dataclass(frozen=True, slots=True)
class Suggestion:
    """A document the payment may pay; never applied automatically."""

    document_id: int
    confidence: float
    reason: str


@dataclass(frozen=True, slots=True)
class Decision:
    """The matcher's verdict for one payment, with an explanation for people."""

    state: MatchState
    allocations: tuple[AllocationPlan, ...] = ()
    suggestions: tuple[Suggestion, ...] = ()
    explanation: str = ""


class Lookup(NamedTuple):
    """Normalized keys a store must fetch candidate documents for.

    Exact keys: `tokens` (document number, order number, partner identifier equal to a token),
    the symbols and `payment_key`. Near-miss keys, present only when `near_misses` is true:
    `prefixes` (the digit-bearing tokens near misses are looked for in: numbers that start or
    end with one of them), `glued_at` and `fuzzy_at` (derived on demand from `prefixes` and
    the symbols at the lengths references have, see below) and `counterparty_name` with
    `amount` (documents of the partner of that name whose outstanding equals the amount).
    Everything is bounded.

    A named tuple rather than a frozen dataclass: one is built per payment on the hot path.
    """

    tokens: tuple[str, ...] = ()
    variable_symbol: str | None = None
    specific_symbol: str | None = None
    constant_symbol: str | None = None
    payment_key: str | None = None
    near_misses: bool = False
    prefixes: tuple[str, ...] = ()
    counterparty_name: str | None = None
    amount: Decimal | None = None

    def glued_at(self, lengths: Sequence[int]) -> tuple[str, ...]:
        """Parts of the near tokens that may be a number glued to other text, when every
        number has one of `lengths` (ascending): fetch document and order numbers equal to
        one of them."""
        found: dict[str, None] = {}
        for token in self.prefixes:
            found.update(dict.fromkeys(glued_parts(token, lengths, MIN_NEAR_LENGTH)))
        return tuple(found)

    @property
    def near_symbols(self) -> tuple[str, ...]:
        """The symbols a near-miss search looks at (a hostile overlong one gets none)."""
        if not self.near_misses:
            return ()
        return tuple(
            s
            for s in (self.variable_symbol, self.specific_symbol)
            if s is not None and MIN_NEAR_LENGTH <= len(s) <= MAX_TOKEN_LENGTH
        )

    def fuzzy_at(self, lengths: Collection[int]) -> tuple[str, ...]:
        """The near tokens' and symbols' deletion neighbourhoods, when every number and
        symbol has one of `lengths`: fetch numbers and symbols equal to a member, or one of
        whose own one-character deletions is a member. That finds everything one edit away,
        and some two away, which `decide` then discards. Only members as long as a reference
        or one shorter (its deletions) are kept: no other can meet one.

        `DocumentIndex` derives positional deletion keys from the same sources instead, which
        fetch only true one-edit neighbours.
        """
        found: dict[str, None] = {}
        for value in (*self.prefixes, *self.near_symbols):
            n = len(value)
            if n in lengths or n + 1 in lengths:
                found[value] = None
            if n - 1 in lengths or n in lengths:
                found.update(dict.fromkeys(sorted(deletes(value))))
        return tuple(found)


# A frozen dataclass's __init__ pays an object.__setattr__ call per field. On the per-payment
# hot path the slots are set directly instead: the objects are the same in every respect
# (equality, hashing, immutability afterwards). Unrolled per class on purpose: a generic
# setter loop measured +19 % instructions per matched payment.
_new = object.__new__
_D = tuple(Decision.__dict__[f.name].__set__ for f in fields(Decision))
_A = tuple(AllocationPlan.__dict__[f.name].__set__ for f in fields(AllocationPlan))
_S = tuple(Suggestion.__dict__[f.name].__set__ for f in fields(Suggestion))


def _new_decision(
    state: MatchState,
    allocations: tuple[AllocationPlan, ...],
    suggestions: tuple[Suggestion, ...],
    explanation: str,
) -> Decision:
    decision: Decision = _new(Decision)
    set_state, set_allocations, set_suggestions, set_explanation = _D
    set_state(decision, state)
    set_allocations(decision, allocations)
    set_suggestions(decision, suggestions)
    set_explanation(decision, explanation)
    return decision


def _suggestion(document_id: int, confidence: float, reason: str) -> Suggestion:
    suggestion: Suggestion = _new(Suggestion)
    set_id, set_confidence, set_reason = _S
    set_id(suggestion, document_id)
    set_confidence(suggestion, confidence)
    set_reason(suggestion, reason)
    return suggestion


def _plan(document_id: int, amount: Decimal, rule: MatchKey) -> AllocationPlan:
    plan: AllocationPlan = _new(AllocationPlan)
    set_id, set_amount, set_rule = _A
    set_id(plan, document_id)
    set_amount(plan, amount)
    set_rule(plan, rule)
    return plan


def _exact(payment: Payment, flags: _Flags) -> Lookup:
    """A payment's exact references, normalized once, limited to what the enabled keys use."""
    tokens: tuple[str, ...] = ()
    text = payment.remittance_information
    if flags.text and text:
        if len(text) > MAX_TEXT_LENGTH:
            text = text[:MAX_TEXT_LENGTH]
        words = tokenize(text)
        # No token is longer than the text it comes from: most texts need no check.
        if len(text) > MAX_TOKEN_LENGTH and words and max(map(len, words)) > MAX_TOKEN_LENGTH:
            words = [t for t in words if len(t) <= MAX_TOKEN_LENGTH]
        tokens = tuple(dict.fromkeys(words))[:MAX_TOKENS]
    vs, ss, ks, key = (
        payment.variable_symbol,
        payment.specific_symbol,
        payment.constant_symbol,
        payment.payment_key,
    )
    # The named tuple's own __new__ is a Python function; the tuple's is not.
    return tuple.__new__(
        Lookup,
        (
            tokens,
            normalize_symbol(vs) if flags.vs and vs is not None else None,
            normalize_symbol(ss) if flags.ss and ss is not None else None,
            normalize_symbol(ks) if flags.ks and ks is not None else None,
            normalize_reference(key) if flags.payment_key and key is not None else None,
            False,
            (),
            None,
            None,
        ),
    )


def _with_near(payment: Payment, exact: Lookup, flags: _Flags) -> Lookup:
    """The exact lookup plus the near-miss keys."""
    near: tuple[str, ...] = ()
    if flags.near:
        # Tokens that may be a mistyped, glued or truncated number.
        found = [t for t in exact.tokens if len(t) >= MIN_NEAR_LENGTH and has_digit(t)]
        near = tuple(found[:MAX_NEAR_TOKENS])
    name = payment.counterparty_name
    # The named tuple's own __new__ is a Python function; the tuple's is not.
    return tuple.__new__(
        Lookup,
        (
            *exact[:5],
            True,
            near,
            normalize_name(name) if name is not None else None,
            payment.amount,
        ),
    )


def lookup_for(payment: Payment, config: MatchConfig, *, near_misses: bool = True) -> Lookup:
    """The keys to fetch candidates for; with `near_misses=False` only the exact ones."""
    if payment.amount <= _ZERO:
        return Lookup()  # outgoing payments are never matched: nothing to fetch
    flags = config.flags
    exact = _exact(payment, flags)
    return _with_near(payment, exact, flags) if near_misses else exact


# -- allocation ------------------------------------------------------------------------------


def split_amount(amount: Decimal, outstandings: Sequence[Decimal]) -> list[Decimal]:
    """Split a payment over documents in order: each gets up to its outstanding amount, the
    last one named gets whatever is left (it becomes overpaid).

    Returns one amount per document (trailing zeros when the payment runs out early). The sum
    equals `amount` whenever `amount > 0` and there is at least one document.
    """
    if amount <= 0 or not outstandings:
        return [Decimal(0)] * len(outstandings)
    remaining = amount
    shares: list[Decimal] = []
    last = len(outstandings) - 1
    for i, outstanding in enumerate(outstandings):
        # Only the last document may take more than its outstanding amount.
        share = remaining if i == last else min(max(outstanding, Decimal(0)), remaining)
        shares.append(share)
        remaining -= share
    return shares


def apply_allocations(
    amount: Decimal, documents: Sequence[OpenDocument]
) -> list[tuple[OpenDocument, Decimal]]:
    """`split_amount` over documents, keeping only those that receive something."""
    shares = split_amount(amount, [d.outstanding for d in documents])
    return [(d, share) for d, share in zip(documents, shares, strict=True) if share > 0]


# -- decide ----------------------------------------------------------------------------------


@dataclass(slots=True)
class _Ref:
    """One reference on the payment and the open documents (same currency) it names."""

    rule: MatchKey
    label: str
    pool: list[OpenDocument]
    chosen: OpenDocument | None
    why: str


def _kind(doc: OpenDocument) -> str:
    return _KIND_WORDS[doc.kind][0]


def _doc(doc: OpenDocument) -> str:
    return f"{_KIND_WORDS[doc.kind][0]} {doc.number}"


# Iterating an Enum class runs a generator in Python: the fixed orders are kept as tuples.
_KIND_ORDER = tuple(DocumentKind)
_KEY_ORDER = tuple(MatchKey)


def _kinds_phrase(kinds: frozenset[DocumentKind]) -> str:
    words = [_KIND_WORDS[k][1] for k in _KIND_ORDER if k in kinds]
    if len(words) <= 1:
        return words[0] if words else "documents"
    return ", ".join(words[:-1]) + " or " + words[-1]


def _currency(code: str) -> str:
    clean = _CURRENCIES.get(code)
    if clean is None:
        clean = code.strip().upper()
        if len(_CURRENCIES) < 1024:  # a memo of the few codes in use, bounded against abuse
            _CURRENCIES[code] = clean
    return clean


_CURRENCIES: dict[str, str] = {}


def _open_documents(
    candidates: Iterable[OpenDocument], kinds: tuple[DocumentKind, ...]
) -> list[OpenDocument]:
    """Open documents of the enabled kinds, each once, oldest first; order of input is moot."""
    if isinstance(candidates, list | tuple) and len(candidates) == 1:
        doc = candidates[0]  # the usual exact hit: nothing to de-duplicate or sort
        return [doc] if doc.kind in kinds and doc.outstanding > _ZERO else []
    by_id: dict[int, OpenDocument] = {}
    for doc in candidates:
        if doc.kind not in kinds or doc.outstanding <= _ZERO:  # one object read, not two
            continue
        seen = by_id.get(doc.id)
        # The same id twice (a store over-fetching through two keys) is normally the same
        # object; if two versions differ, keep a deterministic one: the least paid.
        if seen is None or (seen is not doc and _version_key(doc) < _version_key(seen)):
            by_id[doc.id] = doc
    docs = list(by_id.values())
    docs.sort(key=_order_key)
    return docs


# Oldest first; the id breaks ties so the order never depends on the input's.
_order_key: Callable[[OpenDocument], tuple[int, int]] = attrgetter("seq", "id")


def _version_key(doc: OpenDocument) -> tuple[Decimal, Decimal, int, str]:
    return (doc.paid, doc.total, doc.seq, doc.number)


def _choose(
    pool: list[OpenDocument], amount: Decimal, recurring: bool
) -> tuple[OpenDocument | None, str]:
    """The one document a reference names, and why it was chosen among several."""
    if len(pool) == 1:
        return pool[0], ""
    if recurring:
        return pool[0], (
            f"the oldest of {len(pool)} open documents carrying this recurring order number"
        )
    equal = [d for d in pool if d.outstanding == amount]
    if len(equal) == 1:
        return equal[0], (
            f"the only one of {len(pool)} open documents with this reference whose "
            "outstanding amount equals the payment"
        )
    return None, ""


def _merge(a: Iterable[OpenDocument], b: Iterable[OpenDocument]) -> list[OpenDocument]:
    merged = {d.id: d for d in a}
    for d in b:
        merged.setdefault(d.id, d)
    return sorted(merged.values(), key=_order_key)


_ROUNDED: dict[float, float] = {}


class _Suggestions:
    """Collects suggestions; per document the most confident reason wins."""

    __slots__ = ("amount", "best")

    def __init__(self, amount: Decimal) -> None:
        self.amount = amount
        # document id -> (rank key: -confidence, seq, id; confidence; reason)
        self.best: dict[int, tuple[tuple[float, int, int], float, str]] = {}

    def add(
        self, doc: OpenDocument, confidence: float, reason: str, amount_bonus: bool = True
    ) -> None:
        if amount_bonus and doc.outstanding == self.amount:
            confidence += _AMOUNT_BONUS
            reason += "; its outstanding amount equals the payment"
        rounded = _ROUNDED.get(confidence)
        if rounded is None:
            # round() of a float formats it: costly per suggestion, and confidences come
            # from a handful of constants, so the memo stays tiny.
            rounded = _ROUNDED[confidence] = round(min(confidence, 0.95), 2)
        confidence = rounded
        current = self.best.get(doc.id)
        # Ties keep the first reason added: callers add in a fixed order, so this is stable.
        if current is None or confidence > current[1]:
            self.best[doc.id] = ((-confidence, doc.seq, doc.id), confidence, reason)

    def result(self) -> tuple[Suggestion, ...]:
        if len(self.best) == 1:  # the usual near miss: nothing to rank
            for key, confidence, reason in self.best.values():
                return (_suggestion(key[2], confidence, reason),)
        ranked = sorted(self.best.values())[:MAX_SUGGESTIONS]
        return tuple(_suggestion(key[2], confidence, reason) for key, confidence, reason in ranked)

    def __bool__(self) -> bool:
        return bool(self.best)


def _outgoing(payment: Payment) -> Decision:
    amount, currency = payment.amount, _currency(payment.currency)
    if amount == 0:
        why = "a zero-amount payment is not a received payment; nothing to match"
    else:
        why = (
            f"outgoing payment ({amount} {currency}): money leaving the account is never "
            "matched to issued documents"
        )
    return Decision(MatchState.UNMATCHED, explanation=why)


def decide(
    payment: Payment,
    candidates: Iterable[OpenDocument],
    config: MatchConfig,
    refs: Lookup | None = None,
) -> Decision:
    """Decide what a payment pays among `candidates` (which may include unrelated documents).

    Exact references allocate automatically when they name documents unambiguously; anything
    else becomes suggestions with reasons, or an explanation of why nothing matched. `refs`
    is the payment's `lookup_for` under `config` when the caller has it already (the exact
    keys alone are extended, not recomputed).
    """
    if payment.amount <= _ZERO:
        return _outgoing(payment)
    if refs is None:
        refs = lookup_for(payment, config)
    elif not refs.near_misses:
        refs = _with_near(payment, refs, config.flags)
    decision = _decide(payment, candidates, config, refs, near=True)
    assert decision is not None
    return decision


@overload
def _decide(
    payment: Payment,
    candidates: Iterable[OpenDocument],
    config: MatchConfig,
    refs: Lookup,
    near: Literal[True],
    retry: bool = False,
) -> Decision: ...


@overload
def _decide(
    payment: Payment,
    candidates: Iterable[OpenDocument],
    config: MatchConfig,
    refs: Lookup,
    near: bool,
    retry: bool = False,
) -> Decision | None: ...


def _decide(
    payment: Payment,
    candidates: Iterable[OpenDocument],
    config: MatchConfig,
    refs: Lookup,
    near: bool,
    retry: bool = False,
) -> Decision | None:
    """`decide` proper; with `near=False` it returns None where only near misses could
    still say something, so a caller that fetched exact candidates knows to fetch more.
    `retry` says an exact pass over the same references resolved nothing already."""
    amount = payment.amount
    currency = _currency(payment.currency)
    flags = config.flags
    docs = _open_documents(candidates, flags.kinds)
    if len(docs) == 1 and not retry:
        single = _single(docs[0], amount, currency, refs, flags)
        if single is not None:
            return single
    tokens = refs.tokens
    want_number = flags.number and bool(tokens)
    want_order = flags.order and bool(tokens)
    want_partner = flags.partner and bool(tokens)
    vs, ss, ks, pkey = (
        refs.variable_symbol,
        refs.specific_symbol,
        refs.constant_symbol,
        refs.payment_key,
    )

    # Verify every candidate: a store may have fetched it for a key that does not hold.
    number_hits: dict[str, list[OpenDocument]] = {}
    order_hits: dict[str, list[OpenDocument]] = {}
    partner_hits: dict[str, list[OpenDocument]] = {}
    vs_hits: list[OpenDocument] = []
    ss_hits: list[OpenDocument] = []
    key_hits: list[OpenDocument] = []
    if docs:
        token_set = frozenset(tokens)
        for doc in docs:
            if want_number:
                k = doc.number_norm
                if k in token_set:
                    number_hits.setdefault(k, []).append(doc)
            if want_order:
                k = doc.order_number_norm
                if k is not None and k in token_set:
                    order_hits.setdefault(k, []).append(doc)
            if want_partner:
                k = doc.partner_identifier_norm
                if k is not None and k in token_set:
                    partner_hits.setdefault(k, []).append(doc)
            if vs is not None and doc.variable_symbol_norm == vs:
                vs_hits.append(doc)
            if ss is not None and doc.specific_symbol_norm == ss:
                ss_hits.append(doc)
            if pkey is not None and doc.payment_key_norm == pkey:
                key_hits.append(doc)

    suggestions = _Suggestions(amount)
    text_refs: list[_Ref] = []
    symbol_refs: list[_Ref] = []
    partner_refs: list[_Ref] = []
    hit_tokens: set[str] = set()

    if number_hits or order_hits or partner_hits:
        named = (
            number_hits.keys()
            if not order_hits and not partner_hits
            else number_hits.keys() | order_hits.keys() | partner_hits.keys()
        )
        for token in tokens:
            if token not in named:
                continue
            nums = number_hits.get(token)
            ords = order_hits.get(token)
            if not nums and not ords:
                partners = partner_hits.get(token)
                if partners:
                    hit_tokens.add(token)
                    label = f"partner identifier {token} in the remittance text"
                    pool = _same_currency(partners, currency)
                    if pool:
                        partner_refs.append(_Ref(_K.PARTNER_IDENTIFIER, label, pool, None, ""))
                    else:
                        _wrong_currency(suggestions, label, partners, currency)
                continue
            hit_tokens.add(token)
            same_nums = _same_currency(nums, currency) if nums else []
            same_ords = _same_currency(ords, currency) if ords else []
            if not same_nums and not same_ords:
                _wrong_currency(
                    suggestions,
                    f"document number {token} in the remittance text",
                    _merge(nums or (), ords or ()),
                    currency,
                )
                continue
            if not same_nums:
                rule = _K.ORDER_NUMBER
                pool = same_ords
                recurring = any(d.recurring_order_number for d in pool)
            else:
                rule = _K.DOCUMENT_NUMBER
                pool = _merge(same_nums, same_ords) if same_ords else same_nums
                recurring = False
            chosen, why = _choose(pool, amount, recurring)
            if chosen is not None and rule is _K.DOCUMENT_NUMBER and chosen not in same_nums:
                rule = _K.ORDER_NUMBER
            label = (
                f"order number {token} in the remittance text"
                if rule is _K.ORDER_NUMBER
                else f"document number {token} in the remittance text"
            )
            text_refs.append(_Ref(rule, label, pool, chosen, why))

    if vs_hits or ss_hits:
        for rule, symbol, hits in (
            (_K.VARIABLE_SYMBOL, vs, vs_hits),
            (_K.SPECIFIC_SYMBOL, ss, ss_hits),
        ):
            if not hits:
                continue
            label = f"{_SYMBOL_WORDS[rule]} {symbol}"
            if ks is not None:
                hits = _narrow_by_constant_symbol(suggestions, label, hits, ks)
                if not hits:
                    continue
            pool = _same_currency(hits, currency)
            if not pool:
                _wrong_currency(suggestions, label, hits, currency)
                continue
            chosen, why = _choose(pool, amount, False)
            symbol_refs.append(_Ref(rule, label, pool, chosen, why))
    if key_hits:
        label = f"payment key {pkey}"
        pool = _same_currency(key_hits, currency)
        if pool:
            chosen, why = _choose(pool, amount, False)
            symbol_refs.append(_Ref(_K.PAYMENT_KEY, label, pool, chosen, why))
        else:
            _wrong_currency(suggestions, label, key_hits, currency)

    if text_refs or symbol_refs or partner_refs:
        return _combine(amount, currency, text_refs, symbol_refs, partner_refs, suggestions)

    if not near:
        return None  # only near misses are left, and the caller has not fetched for them
    _near_misses(payment, refs, docs, hit_tokens, bool(vs_hits), bool(ss_hits), flags, suggestions)
    return _not_matched(payment, refs, config, suggestions)


def _near_only(
    payment: Payment, candidates: Sequence[OpenDocument], config: MatchConfig, refs: Lookup
) -> Decision:
    """`_decide` for a payment whose exact keys named no document at all: only near
    misses can say anything, so the exact verification is skipped."""
    suggestions = _Suggestions(payment.amount)
    docs = _open_documents(candidates, config.flags.kinds)
    _near_misses(payment, refs, docs, set(), False, False, config.flags, suggestions)
    return _not_matched(payment, refs, config, suggestions)


def _not_matched(
    payment: Payment, refs: Lookup, config: MatchConfig, suggestions: _Suggestions
) -> Decision:
    if suggestions:
        found = suggestions.result()
        more = len(found) - 1
        explanation = "not matched automatically: " + found[0].reason
        if more:
            explanation += f" (and {more} more suggestion{'s' if more > 1 else ''})"
        return _new_decision(MatchState.SUGGESTED, (), found, explanation)
    return _new_decision(MatchState.UNMATCHED, (), (), _unmatched(payment, refs, config))


def _single(
    doc: OpenDocument, amount: Decimal, currency: str, refs: Lookup, flags: _Flags
) -> Decision | None:
    """The usual case without the general machinery: the only candidate, in the payment's
    currency, named by exactly one reference. Gives what `_decide` would; None otherwise."""
    if doc.currency != currency:
        return None
    tokens = refs.tokens
    rule: MatchKey | None = None
    label = ""
    hits = 0
    if tokens:
        if flags.number and doc.number_norm in tokens:
            hits += 1
            rule = _K.DOCUMENT_NUMBER
            label = "document number in the remittance text"
        key = doc.order_number_norm
        if flags.order and key is not None and key in tokens:
            hits += 1
            rule = _K.ORDER_NUMBER
            label = f"order number {key} in the remittance text"
        key = doc.partner_identifier_norm
        if flags.partner and key is not None and key in tokens:
            return None
    symbol = refs.variable_symbol
    if symbol is not None and doc.variable_symbol_norm == symbol:
        if refs.constant_symbol is not None:
            return None  # the constant symbol may narrow it away
        hits += 1
        rule = _K.VARIABLE_SYMBOL
        label = f"variable symbol {symbol}"
    symbol = refs.specific_symbol
    if symbol is not None and doc.specific_symbol_norm == symbol:
        if refs.constant_symbol is not None:
            return None
        hits += 1
        rule = _K.SPECIFIC_SYMBOL
        label = f"specific symbol {symbol}"
    key = refs.payment_key
    if key is not None and doc.payment_key_norm == key:
        hits += 1
        rule = _K.PAYMENT_KEY
        label = f"payment key {key}"
    if hits != 1 or rule is None:
        return None
    # As `_allocate` words it for one target, without building its arguments.
    return _new_decision(
        MatchState.MATCHED,
        (_plan(doc.id, amount, rule),),
        (),
        f"matched {_KIND_WORDS[doc.kind][0]} {doc.number} by {label} "
        f"({_amount_note(doc, amount, currency)})",
    )


def _same_currency(pool: list[OpenDocument], currency: str) -> list[OpenDocument]:
    return [d for d in pool if d.currency == currency or _currency(d.currency) == currency]


def _wrong_currency(
    suggestions: _Suggestions, label: str, pool: Iterable[OpenDocument], currency: str
) -> None:
    for d in pool:
        suggestions.add(
            d,
            _CONF_WRONG_CURRENCY,
            f"{label} names {_doc(d)}, but the document is in {_currency(d.currency)} "
            f"and the payment in {currency}",
        )


def _narrow_by_constant_symbol(
    suggestions: _Suggestions, label: str, hits: list[OpenDocument], ks: str
) -> list[OpenDocument]:
    """The constant symbol only narrows: where both sides carry one, they must agree."""
    kept = []
    for d in hits:
        dks = d.constant_symbol_norm
        if dks is not None and dks != ks:
            suggestions.add(
                d,
                _CONF_CONSTANT_SYMBOL,
                f"{label} names {_doc(d)}, but the constant symbol differs "
                f"({ks} on the payment, {dks} on the document)",
            )
        else:
            kept.append(d)
    return kept


def _amount_note(doc: OpenDocument, share: Decimal, currency: str) -> str:
    outstanding = doc.outstanding
    if share == outstanding:
        return "paid in full"
    if share < outstanding:
        return f"{share} of {outstanding} {currency} outstanding, partially paid"
    extra = share - outstanding
    return f"{share} {currency}, {extra} more than the {outstanding} outstanding: overpaid"


def _allocate(
    amount: Decimal,
    currency: str,
    targets: list[tuple[OpenDocument, MatchKey]],
    lead: str,
) -> Decision:
    if len(targets) == 1:
        doc, rule = targets[0]
        return _new_decision(
            MatchState.MATCHED,
            (_plan(doc.id, amount, rule),),
            (),
            f"{lead} ({_amount_note(doc, amount, currency)})",
        )
    shares = split_amount(amount, [d.outstanding for d, _ in targets])
    plans: list[AllocationPlan] = []
    notes: list[str] = []
    for (doc, rule), share in zip(targets, shares, strict=True):
        if share > 0:
            plans.append(_plan(doc.id, share, rule))
            notes.append(f"{_doc(doc)}: {_amount_note(doc, share, currency)}")
    return _new_decision(MatchState.MATCHED, tuple(plans), (), f"{lead} ({'; '.join(notes)})")


def _lead(doc: OpenDocument, ref: _Ref) -> str:
    # The number is in the document's own name already; do not repeat it.
    how = "document number in the remittance text" if ref.rule is _K.DOCUMENT_NUMBER else ref.label
    lead = f"matched {_doc(doc)} by {how}"
    return f"{lead}, {ref.why}" if ref.why else lead


def _combine(
    amount: Decimal,
    currency: str,
    text_refs: list[_Ref],
    symbol_refs: list[_Ref],
    partner_refs: list[_Ref],
    suggestions: _Suggestions,
) -> Decision:
    """Turn the references (at least one) into an allocation or suggestions.

    The text may name several documents (a split payment, in the order named). Structured
    references (symbols, payment key) name one. Every other reference must agree with the
    documents chosen, or nothing is applied: money is not booked on contradictory evidence.
    """
    refs = text_refs + symbol_refs
    if len(refs) == 1 and not partner_refs:
        # The usual case: one reference naming one document.
        only, chosen = refs[0], refs[0].chosen
        if chosen is not None:
            return _allocate(amount, currency, [(chosen, only.rule)], _lead(chosen, only))
    resolved = [r for r in refs if r.chosen is not None]
    ambiguous = [r for r in refs if r.chosen is None]

    targets: list[tuple[OpenDocument, _Ref]] = []
    text_resolved = [r for r in text_refs if r.chosen is not None]
    if text_resolved:
        seen: set[int] = set()
        for r in text_resolved:
            assert r.chosen is not None
            if r.chosen.id not in seen:
                seen.add(r.chosen.id)
                targets.append((r.chosen, r))
    elif resolved:
        first = resolved[0]
        assert first.chosen is not None
        targets.append((first.chosen, first))

    if targets:
        target_ids = {d.id for d, _ in targets}
        disagreeing = [
            r
            for r in refs
            if (r.chosen is not None and r.chosen.id not in target_ids)
            or (r.chosen is None and not any(d.id in target_ids for d in r.pool))
        ]
        if not disagreeing:
            if len(targets) == 1:
                lead = _lead(*targets[0])
            else:
                names = [_doc(d) for d, _ in targets]
                named = ", ".join(names[:-1]) + " and " + names[-1]
                lead = f"split payment: the remittance text names {named}; allocated in that order"
            return _allocate(amount, currency, [(d, r.rule) for d, r in targets], lead)
        return _conflict(targets, disagreeing, suggestions)

    # No reference names a single document: several candidates each. Documents all of them
    # name (narrowed by a partner identifier if that leaves any) may still settle it.
    common = {d.id: d for d in ambiguous[0].pool} if ambiguous else {}
    for r in ambiguous[1:]:
        ids = {d.id for d in r.pool}
        common = {i: d for i, d in common.items() if i in ids}
    if ambiguous and partner_refs:
        partner_ids = {d.id for r in partner_refs for d in r.pool}
        narrowed = {i: d for i, d in common.items() if i in partner_ids}
        if narrowed:
            common = narrowed
    if ambiguous:
        pool = sorted(common.values(), key=_order_key)
        chosen, why = _choose(pool, amount, False) if pool else (None, "")
        labels = " and ".join(r.label for r in ambiguous)
        if chosen is not None:
            lead = f"matched {_doc(chosen)} by {labels}"
            if len(pool) > 1:
                lead += f", {why}"
            elif len(ambiguous) > 1 or partner_refs:
                lead += ", the only open document all these references name"
            return _allocate(amount, currency, [(chosen, ambiguous[0].rule)], lead)
        if not pool:
            # Each reference names several documents, but no document is named by all.
            parts = "; ".join(
                f"{r.label} names {', '.join(_doc(d) for d in r.pool[:3])}" for r in ambiguous
            )
            for r in ambiguous:
                for d in r.pool:
                    suggestions.add(
                        d, _CONF_CONFLICT, f"{r.label} names {_doc(d)}, other references disagree"
                    )
            return Decision(
                MatchState.SUGGESTED,
                suggestions=suggestions.result(),
                explanation=f"not matched automatically: the references disagree ({parts})",
            )
        count = len(pool)
        equal = sum(1 for d in pool if d.outstanding == amount)
        verb = "matches" if len(ambiguous) == 1 else "match"
        how = "none of them has" if equal == 0 else f"{equal} of them have"
        for d in pool:
            suggestions.add(
                d,
                _CONF_AMBIGUOUS,
                f"{labels} {verb} {count} open documents, {_doc(d)} among them, and {how} an "
                "outstanding amount equal to the payment",
                amount_bonus=False,
            )
        shown = ", ".join(_doc(d) for d in pool[:3]) + (", …" if count > 3 else "")
        return Decision(
            MatchState.SUGGESTED,
            suggestions=suggestions.result(),
            explanation=(
                f"not matched automatically: {labels} {verb} {count} open documents ({shown}) "
                f"and {how} an outstanding amount of {amount} {currency}"
            ),
        )

    return _partner(amount, currency, partner_refs, suggestions)


def _conflict(
    targets: list[tuple[OpenDocument, _Ref]], disagreeing: list[_Ref], suggestions: _Suggestions
) -> Decision:
    named = "; ".join(f"{r.label} names {_doc(d)}" for d, r in targets)
    others: list[str] = []
    for r in disagreeing:
        docs = [r.chosen] if r.chosen is not None else r.pool
        others.append(f"{r.label} names {', '.join(_doc(d) for d in docs[:3])}")
        for d in docs:
            suggestions.add(
                d, _CONF_CONFLICT, f"{r.label} names {_doc(d)}, other references disagree"
            )
    for d, r in targets:
        suggestions.add(d, _CONF_CONFLICT, f"{r.label} names {_doc(d)}, other references disagree")
    return Decision(
        MatchState.SUGGESTED,
        suggestions=suggestions.result(),
        explanation=(
            f"not matched automatically: the references disagree ({named}; but {'; '.join(others)})"
        ),
    )


def _partner(
    amount: Decimal, currency: str, partner_refs: list[_Ref], suggestions: _Suggestions
) -> Decision:
    pool = _merge((), (d for r in partner_refs for d in r.pool))
    labels = " and ".join(r.label for r in partner_refs)
    partners = {d.partner_id for d in pool}
    if len(partners) > 1:
        for d in pool:
            suggestions.add(
                d,
                _CONF_AMBIGUOUS,
                f"{labels} belongs to more than one partner; {_doc(d)} is an open document "
                "of one of them",
            )
        return Decision(
            MatchState.SUGGESTED,
            suggestions=suggestions.result(),
            explanation=(
                f"not matched automatically: {labels} belongs to {len(partners)} partners"
            ),
        )
    rule = _K.PARTNER_IDENTIFIER
    equal = [d for d in pool if d.outstanding == amount]
    if equal:
        doc = equal[0]
        lead = f"matched {_doc(doc)} by {labels}: the partner's open document"
        lead += (
            " whose outstanding amount equals the payment"
            if len(equal) == 1
            else f", the oldest of {len(equal)} whose outstanding amount equals the payment"
        )
        return _allocate(amount, currency, [(doc, rule)], lead)
    lead = f"matched by {labels}: the partner's open documents, oldest first"
    return _allocate(amount, currency, [(d, rule) for d in pool], lead)


def _near_misses(
    payment: Payment,
    refs: Lookup,
    docs: list[OpenDocument],
    hit_tokens: set[str],
    vs_hit: bool,
    ss_hit: bool,
    flags: _Flags,
    suggestions: _Suggestions,
) -> None:
    """Suggest documents a payment almost names; none of these is ever applied.

    Only references that hit nothing exactly (in any currency) are examined, so whether a
    store fetched near-miss candidates never changes an exact decision.
    """
    currency = _currency(payment.currency)
    amount = payment.amount
    tokens = refs.prefixes
    if hit_tokens:
        tokens = tuple(t for t in tokens if t not in hit_tokens)
    fields = flags.near_fields if tokens else ()
    symbols: list[tuple[MatchKey, str]] = []
    vs, ss = refs.variable_symbol, refs.specific_symbol
    if vs is not None and not vs_hit and MIN_NEAR_LENGTH <= len(vs) <= MAX_TOKEN_LENGTH:
        symbols.append((_K.VARIABLE_SYMBOL, vs))
    if ss is not None and not ss_hit and MIN_NEAR_LENGTH <= len(ss) <= MAX_TOKEN_LENGTH:
        symbols.append((_K.SPECIFIC_SYMBOL, ss))
    payer = refs.counterparty_name

    truncations: dict[str, list[tuple[OpenDocument, str]]] = {}
    payer_docs: list[OpenDocument] = []
    for doc in docs:
        if doc.currency != currency and _currency(doc.currency) != currency:
            continue
        for key, word in fields:
            raw: str | None
            if key is _K.DOCUMENT_NUMBER:
                raw, value = doc.number, doc.number_norm
            else:
                raw, value = doc.order_number, doc.order_number_norm
            # Near misses are about numbers: a value without a digit is never one.
            if value is None or len(value) < MIN_NEAR_LENGTH - 1 or not has_digit(value):
                continue
            length = len(value)
            for token in tokens:
                # Lengths decide which relation is possible: one edit changes the length by
                # at most one, a glued token is longer, a truncated one shorter.
                longer = len(token) - length
                if -1 <= longer <= 1:
                    kind = one_edit(token, value)
                    if kind is None:
                        continue
                    how = (
                        "differs by " if kind in (EditKind.TYPO, EditKind.SWAPPED) else "differs: "
                    )
                    suggestions.add(
                        doc,
                        _CONF_EDIT[kind],
                        f"{word} {token} not found; closest open {_kind(doc)} {doc.number} "
                        f"{how}{kind.describe()}"
                        + ("" if key is _K.DOCUMENT_NUMBER else f" (its {word} is {raw})"),
                    )
                elif longer > 0:
                    if length >= MIN_NEAR_LENGTH and is_glued_in(value, token):
                        suggestions.add(
                            doc,
                            _CONF_GLUED,
                            f"{word} {token} not found; open {_kind(doc)} {doc.number} is in "
                            "it, glued to other text (not separated by a space)"
                            + ("" if key is _K.DOCUMENT_NUMBER else f" by its {word} {raw}"),
                        )
                elif is_truncation_of(token, value):
                    truncations.setdefault(token, []).append((doc, word))
        for key, symbol in symbols:
            value = (
                doc.variable_symbol_norm if key is _K.VARIABLE_SYMBOL else doc.specific_symbol_norm
            )
            if value is None:
                continue
            kind = one_edit(symbol, value)
            if kind is not None:
                word = _SYMBOL_WORDS[key]
                suggestions.add(
                    doc,
                    _CONF_EDIT[kind],
                    f"{word} {symbol} not found; open {_doc(doc)} has {word} {value}, which "
                    f"differs by {kind.describe('digit')}",
                )
        # The amount first: `_open_documents` has just read it, the name is one more miss.
        if payer is not None and doc.outstanding == amount and doc.partner_name_norm == payer:
            payer_docs.append(doc)

    for token, found in truncations.items():
        # A fragment shared by many numbers ("2026-1") identifies none of them.
        if len({d.id for d, _ in found}) > MAX_TRUNCATION_HITS:
            continue
        for doc, word in found:
            suggestions.add(
                doc,
                _CONF_TRUNCATED,
                f"{word} {token} not found; it is only part of the {word} of open "
                f"{_kind(doc)} {doc.number} (incomplete number)"
                + ("" if word == "number" else f": {doc.order_number_norm}"),
            )
    if len(payer_docs) == 1:
        doc = payer_docs[0]
        payer_shown = " ".join((payment.counterparty_name or "").split())
        suggestions.add(
            doc,
            _CONF_PAYER_AMOUNT,
            f"no reference matched, but the payer {payer_shown} has exactly one "
            f"open document of {amount} {currency}: {_doc(doc)}",
            amount_bonus=False,
        )


def _unmatched(payment: Payment, refs: Lookup, config: MatchConfig) -> str:
    keys = config.match_keys
    kinds = _kinds_phrase(config.match_against)
    parts: list[str] = []
    if config.flags.text:
        if not payment.remittance_information or not refs.tokens:
            parts.append("the payment has no remittance text")
        elif refs.prefixes:
            shown = ", ".join(refs.prefixes[:3])
            parts.append(f"{shown} in the remittance text names no open {kinds}")
        else:
            parts.append(f"the remittance text names no open {kinds}")
    for key, symbol, given in (
        (_K.VARIABLE_SYMBOL, refs.variable_symbol, payment.variable_symbol),
        (_K.SPECIFIC_SYMBOL, refs.specific_symbol, payment.specific_symbol),
    ):
        if key in keys:
            word = _SYMBOL_WORDS[key]
            if symbol is not None:
                parts.append(f"{word} {symbol} matches no open {kinds}")
            elif given and given.strip():
                parts.append(f"{word} {given.strip()!r} is not a number")
            else:
                parts.append(f"no {word}")
    if _K.PAYMENT_KEY in keys:
        if refs.payment_key is not None:
            parts.append(f"payment key {refs.payment_key} matches no open {kinds}")
        else:
            parts.append("no payment key")
    if not parts:
        return "not matched: no match key is enabled for this connection"
    return (
        "not matched: "
        + "; ".join(parts)
        + f" (this connection matches {kinds} by "
        + (", ".join(_KEY_WORDS[k] for k in _KEY_ORDER if k in keys) + ")")
    )


def match(
    payment: Payment,
    config: MatchConfig,
    fetch: Callable[[Lookup], Sequence[OpenDocument]],
) -> Decision:
    """Fetch exact candidates first, and near-miss candidates only when no exact reference hit.

    Gives the same decision as one `decide` over the full lookup: near-miss documents never
    change what exact references decide (a match, or ambiguity among exact hits); they only
    add suggestions when no reference hit at all.
    """
    if payment.amount <= _ZERO:
        return _outgoing(payment)
    flags = config.flags
    exact = _exact(payment, flags)
    candidates = fetch(exact)
    if len(candidates) == 1:
        # The usual exact hit, without `_decide`'s setup (`_single` gives what it would).
        doc = candidates[0]
        if doc.kind in flags.kinds and doc.outstanding > _ZERO:
            single = _single(doc, payment.amount, _currency(payment.currency), exact, flags)
            if single is not None:
                return single
    if candidates:
        decision = _decide(payment, candidates, config, exact, near=False)
        if decision is not None:
            return decision
    # Nothing was decided by exact references (with no candidates at all, `_decide` would
    # have said exactly that): fetch and decide again with the near-miss keys.
    near = _with_near(payment, exact, flags)
    if not candidates:
        return _near_only(payment, fetch(near), config, near)
    return _decide(payment, fetch(near), config, near, near=True, retry=True)
