"""Pure matching speed: `DocumentIndex` candidates + `decide`, no database.

Matches the same realistic mix of payments against a small and a large set of open documents
and prints payments/s at both sizes and their ratio (near 1 means the cost does not grow with
the number of documents), with the index's build time and memory.

    .venv/bin/python bench/bench_matcher.py [--payments 100000] [--sizes 10000 1000000]
                                            [--repeat 3] [--slices 10]

The ratio is also taken slice by slice of the payments, each size timed right after the
other: on a shared machine whose speed drifts by tens of percent over a minute, the median
of those paired ratios is the figure least disturbed by the drift.
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

# Runnable as a plain script from anywhere: the project root holds the `service` package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from service.domain.index import DocumentIndex
from service.domain.matcher import MatchConfig, decide, lookup_for
from service.domain.models import DocumentKind, MatchState, OpenDocument, Payment

SEED = 20260101
HU_SERIES = ["ABC", "KHB", "WEB", "SZL", "BLT", "ONL"]
HU_WORDS = ["Számla", "szla", "befizetés", "díjbekérő", "köszönöm", "rendelés", "tagdíj"]
CZ_WORDS = ["faktura", "platba", "úhrada", "objednávka", "děkuji", "č."]


def _rss_mb() -> float:
    """Resident memory now (not the peak), from /proc; 0 where there is none."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def make_documents(count: int, rnd: random.Random) -> list[OpenDocument]:
    """Open documents as a mixed Hungarian/Czech business issues them.

    Numbers follow their real shapes: `E-ABC-2026-123` (szamlazz.hu-style series), Czech
    ten-digit numbers reused as the variable symbol, `FV2026/00123`, and web-shop orders with a
    gateway payment key. Counters are dense, as real numbering is, so near misses are common.
    """
    docs: list[OpenDocument] = []
    counters: Counter[str] = Counter()
    partners = max(50, count // 20)
    huf, czk, eur = "HUF", "CZK", "EUR"
    zero = Decimal(0)
    for i in range(1, count + 1):
        style = rnd.random()
        year = rnd.choice((2025, 2026))
        partner = rnd.randrange(partners)
        order_number = None
        payment_key = None
        vs = None
        if style < 0.5:
            series = rnd.choice(HU_SERIES)
            counters[series + str(year)] += 1
            number = f"E-{series}-{year}-{counters[series + str(year)]}"
            kind = DocumentKind.PROFORMA if rnd.random() < 0.2 else DocumentKind.INVOICE
            currency = eur if rnd.random() < 0.05 else huf
            total = Decimal(rnd.randrange(1, 2000) * 500)
        elif style < 0.8:
            counters[f"cz{year}"] += 1
            number = f"{year}{counters[f'cz{year}']:06d}"
            vs = number
            kind = DocumentKind.INVOICE
            currency = czk
            total = Decimal(rnd.randrange(10000, 5000000)) / 100
        elif style < 0.9:
            counters[f"fv{year}"] += 1
            number = f"FV{year}/{counters[f'fv{year}']:05d}"
            vs = f"{year}{counters[f'fv{year}']:05d}"
            kind = DocumentKind.INVOICE
            currency = czk
            total = Decimal(rnd.randrange(10000, 5000000)) / 100
        else:
            counters["obj"] += 1
            number = f"OBJ-{counters['obj']}"
            order_number = f"{700000 + counters['obj']}"
            payment_key = f"{rnd.getrandbits(48):012X}"
            kind = DocumentKind.ORDER
            currency = czk
            total = Decimal(rnd.randrange(100, 50000))
        identifier = f"TAG-{partner:05d}" if partner % 25 == 0 else None
        docs.append(
            OpenDocument(
                id=i,
                seq=i,
                kind=kind,
                number=number,
                total=total,
                paid=zero,
                currency=currency,
                order_number=order_number,
                variable_symbol=vs,
                payment_key=payment_key,
                partner_id=partner,
                partner_identifier=identifier,
                partner_name=f"Partner {partner} Kft.",
            )
        )
    return docs


def _typo(value: str, rnd: random.Random) -> str:
    i = rnd.randrange(len(value) - 1)
    how = rnd.random()
    if how < 0.4:  # swapped neighbours
        return value[:i] + value[i + 1] + value[i] + value[i + 2 :]
    if how < 0.8:  # one wrong digit
        return value[:i] + rnd.choice("0123456789") + value[i + 1 :]
    return value[:i] + value[i + 1 :]  # one character missing


@dataclass(frozen=True, slots=True)
class Mix:
    exact_number: float = 0.55
    symbol: float = 0.20
    gateway: float = 0.05
    typo: float = 0.07
    glued: float = 0.05
    truncated: float = 0.03
    # the rest (5%): references to nothing known


def make_payments(
    docs: Sequence[OpenDocument], count: int, rnd: random.Random, mix: Mix = Mix()
) -> list[Payment]:
    """Payments in the proportions of `Mix`, each aimed at a random open document."""
    payments: list[Payment] = []
    cut_exact = mix.exact_number
    cut_symbol = cut_exact + mix.symbol
    cut_gateway = cut_symbol + mix.gateway
    cut_typo = cut_gateway + mix.typo
    cut_glued = cut_typo + mix.glued
    cut_truncated = cut_glued + mix.truncated
    for _ in range(count):
        doc = docs[rnd.randrange(len(docs))]
        czech = doc.currency == "CZK"
        words = CZ_WORDS if czech else HU_WORDS
        amount = doc.outstanding if rnd.random() < 0.9 else doc.outstanding / 2
        pick = rnd.random()
        text: str | None
        vs = None
        key = None
        if pick < cut_exact:
            text = f"{rnd.choice(words)} {doc.number}{rnd.choice(['', '.', ',', ' köszi'])}"
        elif pick < cut_symbol and doc.variable_symbol:
            text = rnd.choice([None, rnd.choice(words)])
            vs = "000" + doc.variable_symbol if rnd.random() < 0.2 else doc.variable_symbol
        elif pick < cut_symbol:  # Hungarian transfers carry no symbols: the number instead
            text = f"{doc.number} {rnd.choice(words)}"
        elif pick < cut_gateway:
            text = doc.order_number
            key = doc.payment_key
        elif pick < cut_typo:
            text = f"{rnd.choice(words)} {_typo(doc.number, rnd)}"
        elif pick < cut_glued:
            text = f"{doc.number}{rnd.choice(['befizetes', 'platba', 'THX'])}"
        elif pick < cut_truncated:
            text = f"{rnd.choice(words)} {doc.number.split('-', 2)[-1]}"
        else:
            text = f"{rnd.choice(words)} {rnd.randrange(10**8, 10**9)}"
        payments.append(
            Payment(
                amount=Decimal(str(amount)),
                currency=doc.currency,
                remittance_information=_own(text),
                variable_symbol=_own(vs),
                payment_key=_own(key),
                counterparty_name=_own(doc.partner_name),
            )
        )
    return payments


def _own(value: str | None) -> str | None:
    """A copy of a document's string for a payment, as a parsed statement holds its own.

    Sharing the document's object would put the payment's fields wherever the document
    lies in memory: with a million documents, a cache miss no real payment pays.
    """
    return None if value is None else value.encode().decode()


def _timed(run: Callable[[], object], repeat: int) -> list[float]:
    """Wall times of `repeat` runs, garbage collection off as in a steady state."""
    times = []
    for _ in range(repeat):
        gc.collect()
        gc.disable()
        try:
            start = time.perf_counter()
            run()
            times.append(time.perf_counter() - start)
        finally:
            gc.enable()
    return times


def bench_size(size: int, payments_count: int, repeat: int) -> Callable[[int, int], object]:
    rnd = random.Random(SEED + size)
    config = MatchConfig()
    rss_start = _rss_mb()
    docs = make_documents(size, rnd)
    rss_docs = _rss_mb()
    start = time.perf_counter()
    index = DocumentIndex(docs)
    build = time.perf_counter() - start
    rss_index = _rss_mb()
    payments = make_payments(docs, payments_count, rnd)

    def match_slice(start: int, end: int) -> None:
        for payment in payments[start:end]:
            index.match(payment, config)

    def match_all() -> None:
        match_slice(0, payments_count)

    times = _timed(match_all, repeat)
    best = payments_count / min(times)
    median = payments_count / statistics.median(times)

    by_state: dict[MatchState, list[Payment]] = {}
    for payment in payments:
        by_state.setdefault(index.match(payment, config).state, []).append(payment)
    rates = {}
    for state, group in by_state.items():

        def match_group(group: list[Payment] = group) -> None:
            for payment in group:
                index.match(payment, config)

        rates[state] = len(group) / min(_timed(match_group, repeat))

    # decide alone, on pre-fetched candidates of the payments that match exactly
    fetched = [
        (p, index.candidates(lookup_for(p, config, near_misses=False))) for p in payments[:20000]
    ]
    typical = [(p, c) for p, c in fetched if decide(p, c, config).state is MatchState.MATCHED]

    def decide_all() -> None:
        for payment, candidates in typical:
            decide(payment, candidates, config)

    decide_rate = len(typical) / min(_timed(decide_all, repeat))

    per_doc = (rss_index - rss_docs) * 1024 * 1024 / size
    print(f"--- {size:,} open documents")
    print(
        f"  documents: {rss_docs - rss_start:,.0f} MB as objects; index built in {build:.1f} s, "
        f"+{rss_index - rss_docs:,.0f} MB ({per_doc:,.0f} bytes per document)"
    )
    print(
        f"  match (lookup + index.candidates + decide), {payments_count:,} payments: "
        f"{best:,.0f} payments/s best of {repeat}, {median:,.0f} median"
    )
    print(f"  decide alone, exact matched payments: {decide_rate:,.0f} payments/s")
    for state in (MatchState.MATCHED, MatchState.SUGGESTED, MatchState.UNMATCHED):
        group = by_state.get(state, [])
        if group:
            print(
                f"    {state.value:<9} {len(group) / payments_count:6.1%} of payments, "
                f"{rates[state]:,.0f} payments/s"
            )
    return match_slice


def interleaved(
    runs: dict[int, Callable[[int, int], object]], count: int, rounds: int, slices: int
) -> tuple[list[float], list[float]]:
    """Timing the sizes in turn, slice by slice of the payments, so that a slow spell of a
    shared machine hits every size rather than the one measured at that moment.

    Returns the best payments/s per size over whole passes, and the ratio of the first size's
    speed to the last's for every slice (each pair timed back to back).
    """
    step = -(-count // slices)
    cuts = [(start, min(start + step, count)) for start in range(0, count, step)]
    best = dict.fromkeys(runs, float("inf"))
    ratios = []
    first, *_, last = runs
    gc.collect()
    gc.disable()
    try:
        for _ in range(rounds):
            spent = dict.fromkeys(runs, 0.0)
            for start, end in cuts:
                took = {}
                for size, run in runs.items():
                    # Its own documents back in the cache first, through payments of
                    # another slice (the timed ones would find theirs cached).
                    warm = (start - 100) % count
                    run(warm, warm + 100)
                    began = time.perf_counter()
                    run(start, end)
                    took[size] = time.perf_counter() - began
                    spent[size] += took[size]
                ratios.append(took[last] / took[first])
            for size in runs:
                best[size] = min(best[size], spent[size])
    finally:
        gc.enable()
    return [count / best[size] for size in runs], ratios


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--payments", type=int, default=100_000)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 1_000_000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--slices", type=int, default=10, help="pieces of the payments timed in turn per size"
    )
    args = parser.parse_args(argv)
    print(f"Python {sys.version.split()[0]}, one core; mix: {Mix()}")
    runs = {}
    for size in args.sizes:
        runs[size] = bench_size(size, args.payments, args.repeat)
    if len(runs) > 1:
        rates, ratios = interleaved(runs, args.payments, args.repeat, args.slices)
        print(
            f"--- the sizes timed in turn, in {args.slices} slices of the payments,"
            f" {args.repeat} times"
        )
        for size, rate in zip(runs, rates, strict=True):
            print(f"  {size:,} open documents: {rate:,.0f} payments/s best of {args.repeat}")
        quartiles = statistics.quantiles(ratios, n=4)
        print(
            f"ratio {args.sizes[0]:,} / {args.sizes[-1]:,} documents:"
            f" best {rates[0] / rates[-1]:.2f};"
            f" slice by slice, median {quartiles[1]:.2f}"
            f" (quartiles {quartiles[0]:.2f} to {quartiles[2]:.2f}, {len(ratios)} pairs)"
            " (1.00 = cost independent of the number of documents)"
        )


if __name__ == "__main__":
    main()
