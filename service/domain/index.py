"""An in-memory index of open documents that answers a `Lookup` without scanning.

Every lookup key is a dict probe or a bisect in a sorted list, so fetching candidates costs
O(references in the payment) whatever the number of documents. Memory per document is kept low
(one million documents must fit comfortably): postings hold a bare document id until a second
document shares the key, the one-edit keys (a deletion and its position) are stored as 60-bit
hashes instead of strings, and normalized keys reuse the document's own string objects when
they are equal.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from decimal import Decimal
from typing import TypeVar

from service.domain.matcher import (
    MAX_TOKEN_LENGTH,
    MAX_TRUNCATION_HITS,
    MIN_NEAR_LENGTH,
    Decision,
    Lookup,
    MatchConfig,
    match,
)
from service.domain.models import OpenDocument, Payment
from service.domain.references import (
    has_digit,
    normalize_name,
    normalize_reference,
    normalize_symbol,
)

__all__ = ["DocumentIndex"]

# A posting: one document id, or a list once several documents share the key.
_Posting = int | list[int]
_K = TypeVar("_K", str, int)
_MASK = (1 << 60) - 1  # fits a two-digit CPython int (32 bytes); collisions only over-fetch
# How many numbers starting or ending with a fragment are fetched; more than the matcher uses
# (MAX_TRUNCATION_HITS) so that it can see the fragment is ambiguous.
_PREFIX_FETCH = 8 * (MAX_TRUNCATION_HITS + 1)
_PENDING_LIMIT = 512


_POSITION = 0x9E3779B97F4A7C15  # odd multiplier that spreads positions over the hash


def _deletion_key(s: str, i: int) -> int:
    """Key of `s` with its character at position `i` removed, the position included."""
    return (hash(s[:i] + s[i + 1 :]) + i * _POSITION) & _MASK


def _payer_hash(name: str, outstanding: Decimal) -> int:
    # Decimal hashes by value, so 100 and 100.00 meet.
    return hash((name, outstanding)) & _MASK


def _post(postings: dict[_K, _Posting], key: _K, doc_id: int) -> None:
    """Add a document to a key's posting; callers never add the same pair twice."""
    current = postings.get(key)
    if current is None:
        postings[key] = doc_id
    elif isinstance(current, int):
        postings[key] = [current, doc_id]
    else:
        current.append(doc_id)


def _unpost(postings: dict[_K, _Posting], key: _K, doc_id: int) -> None:
    current = postings.get(key)
    if current is None:
        return
    if isinstance(current, int):
        if current == doc_id:
            del postings[key]
        return
    try:
        current.remove(doc_id)
    except ValueError:
        return
    if len(current) == 1:
        postings[key] = current[0]


def _own(raw: str | None, key: str | None) -> str | None:
    """The normalized key, reusing the document's string when it is already normalized."""
    return raw if raw is not None and key == raw else key


class _SortedKeys:
    """Keys in sorted order for prefix scans; adds are buffered, removals are lazy.

    Bulk loading appends and sorts once; single adds wait in a small unsorted buffer that
    scans read linearly. Removed keys stay until `rebuild`: readers check liveness in the
    owning dicts, which are the truth.
    """

    __slots__ = ("_pending", "_sorted", "stale")

    def __init__(self) -> None:
        self._sorted: list[str] = []
        self._pending: list[str] = []
        self.stale = 0

    def __len__(self) -> int:
        return len(self._sorted) + len(self._pending)

    def add(self, key: str) -> None:
        self._pending.append(key)

    def merge(self) -> None:
        if self._pending:
            # Timsort merges the sorted run and the sorted tail in linear time.
            self._pending.sort()
            self._sorted.extend(self._pending)
            self._pending.clear()
            self._sorted.sort()

    def rebuild(self, keys: Iterable[str]) -> None:
        self._sorted = sorted(set(keys))
        self._pending = []
        self.stale = 0

    def starting_with(self, prefix: str) -> Iterator[str]:
        if len(self._pending) > _PENDING_LIMIT:
            self.merge()
        keys = self._sorted
        i = bisect_left(keys, prefix)
        n = len(keys)
        while i < n and keys[i].startswith(prefix):
            yield keys[i]
            i += 1
        for key in self._pending:
            if key.startswith(prefix):
                yield key


class DocumentIndex:
    """Open documents by every normalized reference the matcher looks them up by."""

    __slots__ = (
        "_backward",
        "_docs",
        "_forward",
        "_fuzzy",
        "_key",
        "_number",
        "_order",
        "_partner",
        "_payer",
        "_ss",
        "_vs",
    )

    def __init__(self, documents: Iterable[OpenDocument] = ()) -> None:
        self._docs: dict[int, OpenDocument] = {}
        self._number: dict[str, _Posting] = {}
        self._order: dict[str, _Posting] = {}
        self._partner: dict[str, _Posting] = {}
        self._vs: dict[str, _Posting] = {}
        self._ss: dict[str, _Posting] = {}
        self._key: dict[str, _Posting] = {}
        self._payer: dict[int, _Posting] = {}
        self._fuzzy: dict[int, _Posting] = {}
        self._forward = _SortedKeys()  # number and order-number keys
        self._backward = _SortedKeys()  # the same keys reversed, for "ends with"
        for doc in documents:
            self.add(doc)
        self.compact()

    def __len__(self) -> int:
        return len(self._docs)

    def __contains__(self, doc_id: object) -> bool:
        return doc_id in self._docs

    def get(self, doc_id: int) -> OpenDocument | None:
        return self._docs.get(doc_id)

    def documents(self) -> Iterator[OpenDocument]:
        return iter(self._docs.values())

    # -- maintenance ---------------------------------------------------------------------------

    def add(self, doc: OpenDocument) -> None:
        """Index an open document, replacing one with the same id; a paid one is dropped."""
        if doc.id in self._docs:
            self.remove(doc.id)
        if doc.paid >= doc.total:
            return
        doc_id = doc.id
        self._docs[doc_id] = doc
        number = _own(doc.number, normalize_reference(doc.number))
        order = _own(doc.order_number, normalize_reference(doc.order_number))
        vs = _own(doc.variable_symbol, normalize_symbol(doc.variable_symbol))
        ss = _own(doc.specific_symbol, normalize_symbol(doc.specific_symbol))
        if number is not None:
            _post(self._number, number, doc_id)
        if order is not None:
            _post(self._order, order, doc_id)
        if vs is not None:
            _post(self._vs, vs, doc_id)
        if ss is not None:
            _post(self._ss, ss, doc_id)
        partner = _own(doc.partner_identifier, normalize_reference(doc.partner_identifier))
        if partner is not None:
            _post(self._partner, partner, doc_id)
        key = _own(doc.payment_key, normalize_reference(doc.payment_key))
        if key is not None:
            _post(self._key, key, doc_id)
        payer = normalize_name(doc.partner_name)
        if payer is not None:
            _post(self._payer, _payer_hash(payer, doc.outstanding), doc_id)
        for value in (number, order):
            if value is not None and len(value) > MIN_NEAR_LENGTH and has_digit(value):
                self._forward.add(value)
                self._backward.add(value[::-1])
        for h in self._fuzzy_keys(number, order, vs, ss):
            _post(self._fuzzy, h, doc_id)

    def remove(self, doc_id: int) -> OpenDocument | None:
        """Forget a document (paid, deleted or replaced); returns what was indexed."""
        doc = self._docs.pop(doc_id, None)
        if doc is None:
            return None
        number = normalize_reference(doc.number)
        order = normalize_reference(doc.order_number)
        vs = normalize_symbol(doc.variable_symbol)
        ss = normalize_symbol(doc.specific_symbol)
        for postings, value in (
            (self._number, number),
            (self._order, order),
            (self._vs, vs),
            (self._ss, ss),
            (self._partner, normalize_reference(doc.partner_identifier)),
            (self._key, normalize_reference(doc.payment_key)),
        ):
            if value is not None:
                _unpost(postings, value, doc_id)
        payer = normalize_name(doc.partner_name)
        if payer is not None:
            _unpost(self._payer, _payer_hash(payer, doc.outstanding), doc_id)
        for value in (number, order):
            if value is not None and len(value) > MIN_NEAR_LENGTH and has_digit(value):
                self._forward.stale += 1
                self._backward.stale += 1
        for h in self._fuzzy_keys(number, order, vs, ss):
            _unpost(self._fuzzy, h, doc_id)
        if self._forward.stale > 1024 and self._forward.stale > len(self._forward) // 2:
            self._rebuild_sorted()
        return doc

    def update_paid(self, doc_id: int, paid: Decimal) -> OpenDocument | None:
        """Set a document's paid amount; it leaves the index once fully paid."""
        doc = self._docs.get(doc_id)
        if doc is None:
            return None
        updated = replace(doc, paid=paid)
        if updated.paid >= updated.total:
            self.remove(doc_id)
            return updated
        payer = normalize_name(doc.partner_name)
        if payer is not None:
            # Only the payer-amount key depends on what is paid.
            _unpost(self._payer, _payer_hash(payer, doc.outstanding), doc_id)
            _post(self._payer, _payer_hash(payer, updated.outstanding), doc_id)
        self._docs[doc_id] = updated
        return updated

    def apply(self, decision: Decision) -> None:
        """Book a decision's allocations onto the indexed documents."""
        for plan in decision.allocations:
            doc = self._docs.get(plan.document_id)
            if doc is not None:
                self.update_paid(doc.id, doc.paid + plan.amount)

    def compact(self) -> None:
        """Sort buffered keys now (after a bulk load) rather than on the first near-miss query."""
        self._forward.merge()
        self._backward.merge()

    def _rebuild_sorted(self) -> None:
        keys = [
            k for k in (*self._number, *self._order) if len(k) > MIN_NEAR_LENGTH and has_digit(k)
        ]
        self._forward.rebuild(keys)
        self._backward.rebuild(k[::-1] for k in keys)

    @staticmethod
    def _fuzzy_keys(*values: str | None) -> set[int]:
        """Positional deletion keys: one per character of each number or symbol.

        Unlike plain symmetric deletes, the position makes a shared key mean one substitution
        (same position) or one swap (adjacent positions), never two edits; with dense
        numbering that keeps the candidates of a typo to its true neighbours. Values shorter
        than MIN_NEAR_LENGTH are found from the payment side instead (its deletions are
        looked up among the exact keys).
        """
        keys: set[int] = set()
        for value in values:
            # Longer than a token plus one, a value is never one edit from a payment's.
            if (
                value is not None
                and MIN_NEAR_LENGTH <= len(value) <= MAX_TOKEN_LENGTH + 1
                and has_digit(value)
            ):
                keys.update(_deletion_key(value, i) for i in range(len(value)))
        return keys

    # -- queries -------------------------------------------------------------------------------

    def candidates(self, lookup: Lookup) -> list[OpenDocument]:
        """Documents that may match the lookup (a superset; `decide` verifies each)."""
        postings: list[_Posting] = []
        add = postings.append
        number, order, partner = self._number, self._order, self._partner
        for token in lookup.tokens:
            # Membership first: most tokens are words that name nothing.
            if token in number:
                add(number[token])
            if token in order:
                add(order[token])
            if token in partner:
                add(partner[token])
        if lookup.variable_symbol is not None and lookup.variable_symbol in self._vs:
            add(self._vs[lookup.variable_symbol])
        if lookup.specific_symbol is not None and lookup.specific_symbol in self._ss:
            add(self._ss[lookup.specific_symbol])
        if lookup.payment_key is not None and lookup.payment_key in self._key:
            add(self._key[lookup.payment_key])
        if lookup.near_misses:
            self._near_postings(lookup, add)
        docs = self._docs
        if len(postings) == 1 and isinstance(postings[0], int):
            found = docs.get(postings[0])
            return [found] if found is not None else []
        ids: dict[int, None] = {}
        for posting in postings:
            if isinstance(posting, int):
                ids[posting] = None
            else:
                ids.update(dict.fromkeys(posting))
        return [docs[i] for i in ids if i in docs]

    def _near_postings(self, lookup: Lookup, add: Callable[[_Posting], None]) -> None:
        number, order = self._number, self._order
        for part in lookup.glued:
            if part in number:
                add(number[part])
            if part in order:
                add(order[part])
        for fragment in lookup.prefixes:
            for key in self._scan(self._forward, fragment):
                if key in number:
                    add(number[key])
                if key in order:
                    add(order[key])
            for key in self._scan(self._backward, fragment[::-1]):
                key = key[::-1]
                if key in number:
                    add(number[key])
                if key in order:
                    add(order[key])
        # One edit away, from the same sources as `lookup.fuzzy` (near tokens and symbols) but
        # with positional keys, see `_fuzzy_keys`.
        vs, ss, fuzzy = self._vs, self._ss, self._fuzzy
        sources = list(lookup.prefixes)
        for symbol in (lookup.variable_symbol, lookup.specific_symbol):
            if symbol is not None and MIN_NEAR_LENGTH <= len(symbol) <= MAX_TOKEN_LENGTH:
                sources.append(symbol)
        for value in sources:
            length = len(value)
            base = hash(value)
            for i in range(length + 1):
                # The document has one character more, at position i: its deletion is `value`.
                h = (base + i * _POSITION) & _MASK
                if h in fuzzy:
                    add(fuzzy[h])
                if i == length:
                    break
                shorter = value[:i] + value[i + 1 :]
                hashed = hash(shorter)
                # Typo at position i: both lose the same position.
                h = (hashed + i * _POSITION) & _MASK
                if h in fuzzy:
                    add(fuzzy[h])
                # Swap of positions i, i+1: the document loses the character at i + 1.
                h = (hashed + (i + 1) * _POSITION) & _MASK
                if i + 1 < length and h in fuzzy:
                    add(fuzzy[h])
                # The payment has one character too many: its deletion is the exact value.
                for exact in (number, order, vs, ss):
                    if shorter in exact:
                        add(exact[shorter])
        if lookup.counterparty_name is not None and lookup.amount is not None:
            h = _payer_hash(lookup.counterparty_name, lookup.amount)
            if h in self._payer:
                add(self._payer[h])

    def _scan(self, keys: _SortedKeys, prefix: str) -> list[str]:
        """Up to _PREFIX_FETCH live keys starting with `prefix` (stale ones skipped)."""
        found: dict[str, None] = {}
        backward = keys is self._backward
        for key in keys.starting_with(prefix):
            live = key[::-1] if backward else key
            if live in self._number or live in self._order:
                found[key] = None
                if len(found) >= _PREFIX_FETCH:
                    break
        return list(found)

    def match(self, payment: Payment, config: MatchConfig) -> Decision:
        """Match one payment against the indexed documents (exact keys first)."""
        return match(payment, config, self.candidates)
