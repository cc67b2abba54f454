"""An in-memory index of open documents that answers a `Lookup` without scanning.

Every lookup key is a dict probe or a bisect in a sorted list, so fetching candidates costs
O(references in the payment) whatever the number of documents. Memory per document is kept low
(one million documents must fit comfortably): postings hold the document itself until a second
document shares the key, the one-edit keys (a deletion, its position and the kinds of reference
it comes from) are stored as 60-bit hashes with packed codes instead of strings, and normalized
keys reuse the document's own string objects when they are equal.

A near-miss token is first looked at through its shape (see `_SHAPE`): which of its searches
can find anything depends on the shape alone, and numbers come in few shapes, so the answer is
kept per shape. A token that cannot be glued to, cut from or one edit from any number's shape
then costs no probe into the tables of millions of keys.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from decimal import Decimal
from itertools import combinations, repeat
from operator import and_
from string import ascii_letters
from typing import NamedTuple, TypeAlias, TypeVar

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
from service.domain.references import cut_allowed, deletes, glued_cuts, has_digit

__all__ = ["DocumentIndex"]

# A posting: one document, or a list once several documents share the key. The documents
# themselves rather than their ids: an exact hit, most payments' only lookup, then reads no
# id-to-document dict (two cache misses with a million documents).
_DocPosting = OpenDocument | list[OpenDocument]
# One-edit codes: one int, or a packed array once several share the key (a list only for
# codes beyond 64 bits). The array is one block instead of a list and an int object per
# code: 8 bytes a code rather than 40, and one cache miss rather than one per code.
_Codes: TypeAlias = "int | array[int] | list[int]"
_K = TypeVar("_K", str, int)
_MASK = (1 << 60) - 1  # fits a two-digit CPython int (32 bytes); collisions only over-fetch
# How many numbers starting or ending with a fragment are fetched; more than the matcher uses
# (MAX_TRUNCATION_HITS) so that it can see the fragment is ambiguous.
_PREFIX_FETCH = 8 * (MAX_TRUNCATION_HITS + 1)
_PENDING_LIMIT = 512
# A reference's shape: each ASCII digit written 9, each ASCII letter A, any other character as
# it is. A mapping of single characters keeps every relation the near-miss search looks for:
# a value one edit from another has a shape one edit from (or equal to) the other's shape, a
# part of a value has the shape of that part of the value's shape.
_SHAPE = str.maketrans(dict.fromkeys("0123456789", "9") | dict.fromkeys(ascii_letters, "A"))
_PLANS_LIMIT = 4096  # distinct token shapes remembered; more are only worked out again
# Numbers in more shapes than this (random codes, not counters) are not told apart by shape:
# every token then gets every search, as it would without shapes, and the sets stay small.
_SHAPES_LIMIT = 1024

# One-edit keys post a document id with the position of the deleted character in its low bits.
_POSITION_BITS = 7  # positions go up to MAX_TOKEN_LENGTH + 1
_POSITION_MASK = (1 << _POSITION_BITS) - 1
_WHOLE = _POSITION_MASK  # in place of a position: the key is a whole value's hash
assert MAX_TOKEN_LENGTH + 1 < _WHOLE
# Above the position, which references the key comes from: a payment's text is compared
# with numbers and its symbols with symbols, so a text token one edit from some other
# document's symbol is no candidate. A Czech number that is its own symbol has both bits.
_NUMBERS = 1
_SYMBOLS = 2
_ID_SHIFT = _POSITION_BITS + 2
_NO_KINDS = ~(3 << _POSITION_BITS)


class _Plan(NamedTuple):
    """Which near-miss searches a token of one shape needs."""

    cuts: tuple[tuple[int, int], ...]  # glued parts, as (start, end), shaped like some number
    # Some number's shape starts with the token's (and is longer), or ends with it, where
    # `is_truncation_of` lets a number be cut (not between two digits: a shape keeps them).
    starts: bool
    ends: bool
    # Some number's shape may be one edit from it: with one character more (found by the
    # token's whole value), or as long or one shorter (found by the token's deletions).
    longer: bool
    alike: bool


class _Shapes:
    """The shapes of the numbers and order numbers that hold a digit (no other is a near
    miss), and every part of them the searches compare."""

    __slots__ = ("deletions", "ends", "overflow", "starts", "whole")

    def __init__(self) -> None:
        self.whole: set[str] = set()
        self.starts: set[str] = set()  # proper prefixes of the shapes, at allowed cuts
        self.ends: set[str] = set()  # proper suffixes, at allowed cuts
        self.deletions: set[str] = set()  # the shapes' one-character deletions
        self.overflow = False  # more than _SHAPES_LIMIT shapes: none is told apart

    def add(self, value: str) -> bool:
        """Take a number's shape (none without a digit); whether that changes any plan."""
        if self.overflow or not has_digit(value):
            return False
        shape = value.translate(_SHAPE)
        if shape in self.whole:
            return False
        if len(self.whole) >= _SHAPES_LIMIT:
            self.overflow = True
            self.whole, self.starts, self.ends, self.deletions = set(), set(), set(), set()
            return True
        self.whole.add(shape)
        cuts = [i for i in range(1, len(shape)) if cut_allowed(shape[i - 1], shape[i])]
        self.starts.update(shape[:i] for i in cuts)
        self.ends.update(shape[i:] for i in cuts)
        self.deletions.update(deletes(shape))
        return True

    def plan(self, shape: str, lengths: list[int]) -> _Plan:
        """The searches a token of `shape` needs when numbers have `lengths` (ascending)."""
        cuts = glued_cuts(shape, lengths, MIN_NEAR_LENGTH)
        if self.overflow:
            shorter = bool(lengths) and len(shape) < lengths[-1]
            return _Plan(tuple(cuts), shorter, shorter, True, True)
        whole, deletions = self.whole, self.deletions
        own = deletes(shape)
        # A number one character longer loses one to become the token.
        longer = shape in deletions
        # One as long loses the same character as the token (a typo) or one of two swapped,
        # and one shorter is the token less a character (symmetric deletes: a superset,
        # some pairs two edits apart pass too).
        alike = not (deletions.isdisjoint(own) and whole.isdisjoint(own))
        return _Plan(
            tuple(cut for cut in cuts if shape[slice(*cut)] in whole),
            shape in self.starts,
            shape in self.ends,
            longer,
            alike,
        )


def _whole_hash(value: str) -> int:
    """Hash of a value as a tuple of characters, comparable with `_deletion_hashes`."""
    return hash(tuple(value)) & _MASK


def _deletion_hashes(value: str) -> list[int]:
    """Hash of `value` without its character at position i, for every i.

    `combinations` yields each deletion as a tuple of characters (reusing one tuple), and
    tuples hash from their items' cached hashes, so this runs in C without building a
    string per position: it is the hot loop of every payment that names nothing exactly.
    Hash collisions only over-fetch; `decide` verifies every candidate.
    """
    hashes = list(map(and_, map(hash, combinations(value, len(value) - 1)), repeat(_MASK)))
    hashes.reverse()  # combinations drop the last character first
    return hashes


def _payer_hash(name: str, outstanding: Decimal) -> int:
    # Decimal hashes by value, so 100 and 100.00 meet.
    return hash((name, outstanding)) & _MASK


def _exact_keys(doc: OpenDocument) -> set[str]:
    """A document's exact keys, each once (a Czech number is often its variable symbol)."""
    refs = (
        doc.number_norm,
        doc.order_number_norm,
        doc.variable_symbol_norm,
        doc.specific_symbol_norm,
        doc.partner_identifier_norm,
        doc.payment_key_norm,
    )
    return {ref for ref in refs if ref is not None}


def _post_code(postings: dict[int, _Codes], key: int, code: int) -> None:
    """`_post` for one-edit codes, packing shared keys' codes into an array."""
    current = postings.get(key)
    if current is None:
        postings[key] = code
        return
    try:
        if isinstance(current, int):
            postings[key] = array("q", (current, code))
        else:
            current.append(code)
    except OverflowError:  # an id too large to pack: a plain list holds any int
        postings[key] = [current, code] if isinstance(current, int) else [*current, code]


def _unpost_code(postings: dict[int, _Codes], key: int, code: int) -> None:
    current = postings.get(key)
    if current is None:
        return
    if isinstance(current, int):
        if current == code:
            del postings[key]
        return
    try:
        current.remove(code)
    except (ValueError, OverflowError):
        return
    if len(current) == 1:
        postings[key] = current[0]


def _post_doc(postings: dict[_K, _DocPosting], key: _K, doc: OpenDocument) -> None:
    current = postings.get(key)
    if current is None:
        postings[key] = doc
    elif isinstance(current, list):
        current.append(doc)
    else:
        postings[key] = [current, doc]


def _replace_doc(
    postings: dict[_K, _DocPosting], key: _K, old: OpenDocument, new: OpenDocument | None
) -> None:
    """Put `new` (a new version of the same document) where `old`, the very object, is
    posted; with None, drop it."""
    current = postings.get(key)
    if current is old:
        if new is None:
            del postings[key]
        else:
            postings[key] = new
        return
    if not isinstance(current, list):
        return
    at = next((i for i, posted in enumerate(current) if posted is old), None)
    if at is None:
        return
    if new is not None:
        current[at] = new
        return
    del current[at]
    if len(current) == 1:
        postings[key] = current[0]


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

    def first_with(self, prefix: str) -> int | None:
        """Where the sorted keys starting with `prefix` begin, or None when no key does: one
        bisect, no generator (the usual answer for a near-miss fragment is None)."""
        if len(self._pending) > _PENDING_LIMIT:
            self.merge()
        keys = self._sorted
        i = bisect_left(keys, prefix)
        if i < len(keys) and keys[i].startswith(prefix):
            return i
        # Usually empty after a bulk load: skip building the generator.
        if self._pending and any(key.startswith(prefix) for key in self._pending):
            return len(keys)  # only pending ones
        return None

    def starting_with(self, prefix: str, start: int, *, cut: bool = False) -> Iterator[str]:
        """The keys starting with `prefix`, from `first_with`'s answer on; with `cut`, only
        those a number may be cut from after the prefix (see `cut_allowed`)."""
        keys = self._sorted
        i, n = start, len(keys)
        end = len(prefix)
        last = prefix[-1] if cut and prefix else None

        def refused(key: str) -> bool:
            return last is not None and len(key) > end and not cut_allowed(last, key[end])

        while i < n and keys[i].startswith(prefix):
            key = keys[i]
            if refused(key):
                # Only a digit after a digit is refused, and the keys going on with a digit
                # sort together, before the prefix followed by ':' (the character after
                # '9'): one bisect skips them, however many a dense numbering has.
                i = bisect_left(keys, prefix + ":", i)
                continue
            yield key
            i += 1
        for key in self._pending:
            if key.startswith(prefix) and not refused(key):
                yield key


class DocumentIndex:
    """Open documents by every normalized reference the matcher looks them up by."""

    __slots__ = (
        "_backward",
        "_deleted",
        "_docs",
        "_edit_lengths",
        "_exact",
        "_forward",
        "_lengths",
        "_near",
        "_payer",
        "_plans",
        "_shapes",
    )

    def __init__(self, documents: Iterable[OpenDocument] = (), *, near_misses: bool = True) -> None:
        """With `near_misses=False` only the exact keys are kept: cheaper to build, for a
        caller that answers exact lookups only (the one-edit keys are most of the cost)."""
        self._near = near_misses
        self._docs: dict[int, OpenDocument] = {}
        # Every exact key in one dict: number, order number, symbols, payment key, partner
        # identifier. Candidates are a superset `decide` verifies, so which reference a key
        # is does not matter here, and a token costs one probe rather than one per kind
        # (each a cache miss once there are a million documents).
        self._exact: dict[str, _DocPosting] = {}
        self._payer: dict[int, _DocPosting] = {}  # documents, as the exact keys
        # One edit away: (document id, reference kinds, position) codes by the hash of a
        # deletion or of a whole value; see `_edit_keys`.
        self._deleted: dict[int, _Codes] = {}
        # Lengths of the values with one-edit keys: a value can only be one edit from a
        # value one character shorter, as long, or longer.
        self._edit_lengths: set[int] = set()
        self._forward = _SortedKeys()  # number and order-number keys
        # Lengths of number and order-number keys: a glued token is cut only at these.
        self._lengths: list[int] = []
        self._backward = _SortedKeys()  # the same keys reversed, for "ends with"
        self._shapes = _Shapes()  # of the numbers and order numbers with a digit
        self._plans: dict[str, _Plan] = {}  # by token shape, for the shapes and lengths now
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
        number, order = doc.number_norm, doc.order_number_norm
        vs, ss = doc.variable_symbol_norm, doc.specific_symbol_norm
        for ref in _exact_keys(doc):
            _post_doc(self._exact, ref, doc)
        if not self._near:
            return
        payer = doc.partner_name_norm
        if payer is not None:
            _post_doc(self._payer, _payer_hash(payer, doc.outstanding), doc)
        for value in (number, order):
            if value is not None:
                new_length = len(value) not in self._lengths
                if new_length:
                    self._lengths.append(len(value))
                    self._lengths.sort()
                # Plans depend on the shapes and on the lengths (their cuts).
                if self._shapes.add(value) or new_length:
                    self._plans.clear()
                if len(value) > MIN_NEAR_LENGTH and has_digit(value):
                    self._forward.add(value)
                    self._backward.add(value[::-1])
        edit_keys = self._edit_keys(doc_id, (number, order), (vs, ss))
        if edit_keys:
            self._edit_lengths.update(len(v) for v in (number, order, vs, ss) if v is not None)
        for h, code in edit_keys:
            _post_code(self._deleted, h, code)

    def remove(self, doc_id: int) -> OpenDocument | None:
        """Forget a document (paid, deleted or replaced); returns what was indexed."""
        doc = self._docs.pop(doc_id, None)
        if doc is None:
            return None
        number, order = doc.number_norm, doc.order_number_norm
        vs, ss = doc.variable_symbol_norm, doc.specific_symbol_norm
        for ref in _exact_keys(doc):
            _replace_doc(self._exact, ref, doc, None)
        if not self._near:
            return doc
        payer = doc.partner_name_norm
        if payer is not None:
            _replace_doc(self._payer, _payer_hash(payer, doc.outstanding), doc, None)
        for value in (number, order):
            if value is not None and len(value) > MIN_NEAR_LENGTH and has_digit(value):
                self._forward.stale += 1
                self._backward.stale += 1
        for h, code in self._edit_keys(doc_id, (number, order), (vs, ss)):
            _unpost_code(self._deleted, h, code)
        if self._forward.stale > 1024 and self._forward.stale > len(self._forward) // 2:
            self._rebuild_sorted()
        return doc

    def update_paid(self, doc_id: int, paid: Decimal) -> OpenDocument | None:
        """Set a document's paid amount; it leaves the index once fully paid.

        Returns the document as it stays indexed, or None once it has left (or was not here).
        """
        doc = self._docs.get(doc_id)
        if doc is None:
            return None
        if paid >= doc.total:  # the usual case: no copy for a document that leaves
            self.remove(doc_id)
            return None
        updated = doc.with_paid(paid)
        for ref in _exact_keys(doc):
            _replace_doc(self._exact, ref, doc, updated)
        payer = doc.partner_name_norm
        if payer is not None and self._near:
            # Only the payer-amount key depends on what is paid.
            _replace_doc(self._payer, _payer_hash(payer, doc.outstanding), doc, None)
            _post_doc(self._payer, _payer_hash(payer, updated.outstanding), updated)
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
        numbers = {
            v
            for doc in self._docs.values()
            for v in (doc.number_norm, doc.order_number_norm)
            if v is not None
        }
        self._lengths = sorted({len(k) for k in numbers})
        self._shapes = _Shapes()  # shapes no number has any more stop costing probes
        for number in numbers:
            self._shapes.add(number)
        self._plans.clear()
        keys = [k for k in numbers if len(k) > MIN_NEAR_LENGTH and has_digit(k)]
        self._forward.rebuild(keys)
        self._backward.rebuild(k[::-1] for k in keys)

    @staticmethod
    def _edit_keys(
        doc_id: int, numbers: tuple[str | None, ...], symbols: tuple[str | None, ...]
    ) -> set[tuple[int, int]]:
        """One-edit keys of a document's numbers and symbols: each deletion's hash with the
        document id, the kinds of reference it comes from and the deleted position, and each
        whole value's hash with the document id, its kinds and `_WHOLE`.

        A payment's value is one edit from a document's when its whole value is one of the
        document's deletions (one character missing), when both lose the same position (a
        typo) or adjacent ones (a swap), or when one of its deletions is the document's whole
        value (one character too many). Unlike plain symmetric deletes, the position keeps
        two edits out, which matters with dense numbering. Whole values share the deletions'
        dict, so a payment's deletion finds both with one probe.
        """
        kinds: dict[tuple[int, int], int] = {}  # (hash, position) -> kinds
        for kind, values in ((_NUMBERS, numbers), (_SYMBOLS, symbols)):
            for value in values:
                # Near misses are about numbers; outside these lengths a value is never one
                # edit from a near token or symbol (MIN_NEAR_LENGTH to MAX_TOKEN_LENGTH long).
                if (
                    value is not None
                    and MIN_NEAR_LENGTH - 1 <= len(value) <= MAX_TOKEN_LENGTH + 1
                    and has_digit(value)
                ):
                    if len(value) >= MIN_NEAR_LENGTH:
                        for i, h in enumerate(_deletion_hashes(value)):
                            kinds[h, i] = kinds.get((h, i), 0) | kind
                    if len(value) <= MAX_TOKEN_LENGTH:
                        whole = (_whole_hash(value), _WHOLE)
                        kinds[whole] = kinds.get(whole, 0) | kind
        base = doc_id << _ID_SHIFT
        return {(h, base | k << _POSITION_BITS | i) for (h, i), k in kinds.items()}

    # -- queries -------------------------------------------------------------------------------

    def candidates(self, lookup: Lookup) -> list[OpenDocument]:
        """Documents that may match the lookup (a superset; `decide` verifies each)."""
        found: list[_DocPosting] = []
        add = found.append
        exact = self._exact
        tokens = lookup.tokens
        if tokens:
            # One set intersection (a loop in C): most tokens are words that name nothing.
            # Candidate order is moot; `decide` sorts.
            for token in exact.keys() & tokens:
                add(exact[token])
        for value in (lookup.variable_symbol, lookup.specific_symbol, lookup.payment_key):
            if value is not None:
                posting = exact.get(value)
                if posting is not None:
                    add(posting)
        ids: list[int] = []
        if lookup.near_misses:
            if not self._near:
                raise ValueError("this index was built for exact lookups only")
            self._near_postings(lookup, add, ids.append)
        if not ids:
            if not found:
                return []  # e.g. the exact fetch of every near-miss payment
            if len(found) == 1:  # the usual exact hit
                posting = found[0]
                return posting[:] if isinstance(posting, list) else [posting]
        by_id: dict[int, OpenDocument] = {}
        for posting in found:
            if isinstance(posting, list):
                for doc in posting:
                    by_id[doc.id] = doc
            else:
                by_id[posting.id] = posting
        docs = self._docs
        for i in ids:
            if i not in by_id:
                near = docs.get(i)
                if near is not None:
                    by_id[i] = near
        return list(by_id.values())

    def _near_postings(
        self,
        lookup: Lookup,
        add_found: Callable[[_DocPosting], None],
        add_id: Callable[[int], None],
    ) -> None:
        """Near misses' postings: of documents through the exact and payer keys, of ids
        through the one-edit codes."""
        exact = self._exact
        for token in lookup.prefixes:
            plan = self._plan(token)
            # The token may be a number glued to other text,
            if plan.cuts:
                parts = [token[start:end] for start, end in plan.cuts]
                for part in exact.keys() & parts:
                    add_found(exact[part])
            # or the beginning or end of a number (which is longer),
            if plan.starts or plan.ends:
                for key in self._truncated(token, plan):
                    posting = exact.get(key)
                    if posting is not None:
                        add_found(posting)
            # or, like a symbol, one edit away from a number or symbol.
            if plan.longer or plan.alike:
                self._edit_postings(token, _NUMBERS, add_id, plan.longer, plan.alike)
        # The symbols of `lookup.near_symbols`, without the property's generator per lookup.
        for symbol in (lookup.variable_symbol, lookup.specific_symbol):
            if symbol is not None and MIN_NEAR_LENGTH <= len(symbol) <= MAX_TOKEN_LENGTH:
                self._edit_postings(symbol, _SYMBOLS, add_id)
        if lookup.counterparty_name is not None and lookup.amount is not None:
            payer = self._payer.get(_payer_hash(lookup.counterparty_name, lookup.amount))
            if payer is not None:
                add_found(payer)

    def _edit_postings(
        self,
        value: str,
        kind: int,
        add_id: Callable[[int], None],
        longer: bool = True,
        alike: bool = True,
    ) -> None:
        """Documents with a reference of `kind` (`_NUMBERS` or `_SYMBOLS`) one edit away
        from `value` (see `_edit_keys`): with `longer`, those with one character more; with
        `alike`, those as long or one character shorter."""
        lengths, length = self._edit_lengths, len(value)
        if length not in lengths and length - 1 not in lengths and length + 1 not in lengths:
            return  # e.g. a token glued to text: longer than anything one edit away
        deleted = self._deleted
        more = deleted.get(_whole_hash(value)) if longer else None
        if more is not None:  # the document has one character more, anywhere (or is equal)
            for code in [more] if isinstance(more, int) else more:
                if code >> _POSITION_BITS & kind:
                    add_id(code >> _ID_SHIFT)
        if not alike:
            return
        hashes = _deletion_hashes(value)
        shared = deleted.keys() & hashes
        if shared:
            last = len(hashes) - 1
            # Codes of documents that lost position i + 1 where the payment lost i, as the
            # document's code at i: half of a swap of i and i + 1.
            ahead: set[int] = set()
            for i, h in enumerate(hashes):
                if h in shared:
                    posting = deleted[h]
                    for code in [posting] if isinstance(posting, int) else posting:
                        if not code >> _POSITION_BITS & kind:
                            continue
                        j = code & _POSITION_MASK
                        # Same position: a typo; a whole value: the payment has one
                        # character too many.
                        if j == i or j >= _WHOLE:
                            add_id(code >> _ID_SHIFT)
                        elif j == i + 1 and i < last:
                            ahead.add((code - 1) & _NO_KINDS)
                        # Two swapped characters lose the same when either is deleted, each
                        # at the other's position. One such pair alone may be two edits
                        # (12345 less its 3 and 12495 less its 9 are both 1245), and dense
                        # numbering has ten of those for every position.
                        elif j == i - 1 and code & _NO_KINDS in ahead:
                            add_id(code >> _ID_SHIFT)

    def _plan(self, token: str) -> _Plan:
        shape = token.translate(_SHAPE)
        plan = self._plans.get(shape)
        if plan is None:
            plan = self._shapes.plan(shape, self._lengths)
            if len(self._plans) >= _PLANS_LIMIT:
                self._plans.clear()
            self._plans[shape] = plan
        return plan

    def _truncated(self, fragment: str, plan: _Plan) -> list[str]:
        """Numbers that start or end with `fragment` (a superset of its truncations)."""
        found = self._scan(self._forward, fragment) if plan.starts else []
        if plan.ends:
            backward = self._scan(self._backward, fragment[::-1])
            if backward:
                found += [key[::-1] for key in backward]
        return found

    def _scan(self, keys: _SortedKeys, prefix: str) -> list[str]:
        """Up to _PREFIX_FETCH live keys starting with `prefix` where a number may be cut
        (stale ones skipped): keys no cut allows must not crowd out ones that it does."""
        start = keys.first_with(prefix)
        if start is None:
            return []
        found: dict[str, None] = {}
        backward = keys is self._backward
        check = keys.stale > 0
        exact = self._exact
        for key in keys.starting_with(prefix, start, cut=True):
            # Stale keys are skipped; another reference's equal key only over-fetches.
            if check and (key[::-1] if backward else key) not in exact:
                continue
            found[key] = None
            if len(found) >= _PREFIX_FETCH:
                break
        return list(found)

    def match(self, payment: Payment, config: MatchConfig) -> Decision:
        """Match one payment against the indexed documents (exact keys first)."""
        return match(payment, config, self.candidates)
