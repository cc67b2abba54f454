"""The sandbox bank: invents realistic incoming payments against the tenant's open documents.

Payments arrive at `paymentsPerMinute` (settings, default 6). Each is derived from a seeded
random generator and its sequence number, so a fetch repeated after a crash yields the same
payments with the same ids, which deduplication then drops. The mix follows what users see
in practice: exact references (Hungarian document numbers in the text, Czech variable
symbols), typos, swapped digits, numbers glued to text, truncated numbers, partial payments,
and payments nobody can place.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from decimal import ROUND_DOWN, Decimal
from typing import Any

from ..domain.money import currency_exponent
from .base import ConsentGrant, ConsentStart, DocumentHint, FetchRequest, FetchResult, ProviderError

__all__ = ["SandboxBank"]

_NAMES = ["Kovács Péter", "Nagy Anna", "Szabó Kft.", "Novák Jan", "Dvořáková Eva", "Tóth Bt."]
_HU_WORDS = ["szamla", "befizetes", "dijbekero", "koszonom", "rendeles"]
_CZ_WORDS = ["platba", "faktura", "uhrada", "objednavka"]
_CONSENT_DAYS = 90
# What a connection may ask of the simulated bank: (setting, lowest, highest).
_LIMITS = (("paymentsPerMinute", 0, 600), ("maxPerFetch", 1, 500), ("delaySeconds", 0, 30))


def _swap(text: str, rng: random.Random) -> str:
    digits = [i for i in range(len(text) - 1) if text[i].isdigit() and text[i + 1].isdigit()]
    digits = [i for i in digits if text[i] != text[i + 1]]
    if not digits:
        return text
    i = rng.choice(digits)
    return text[:i] + text[i + 1] + text[i] + text[i + 2 :]


def _typo(text: str, rng: random.Random) -> str:
    digits = [i for i, c in enumerate(text) if c.isdigit()]
    if not digits:
        return text + "X"
    i = rng.choice(digits)
    return text[:i] + str((int(text[i]) + rng.randint(1, 9)) % 10) + text[i + 1 :]


class SandboxBank:
    name = "SANDBOX"
    wants_documents = True

    def __init__(self, public_url: str = "http://127.0.0.1:8000") -> None:
        self._public_url = public_url.rstrip("/")

    def check_settings(self, settings: Mapping[str, Any]) -> None:
        for key, low, high in _LIMITS:
            if key in settings:
                value = settings[key]
                if (
                    isinstance(value, bool)
                    or not isinstance(value, int | float)
                    or not low <= value <= high
                ):
                    raise ValueError(f"settings.{key} must be a number from {low} to {high}")

    def requires_consent(self, settings: Mapping[str, Any]) -> bool:
        # Off by default, so the demo runs at once; on, it walks the PSD2 consent path.
        return bool(settings.get("consent"))

    async def fetch(self, request: FetchRequest) -> FetchResult:
        settings = request.settings
        if settings.get("delaySeconds"):  # a slow bank, for trying timeouts and shutdowns
            await asyncio.sleep(float(settings["delaySeconds"]))
        if settings.get("fail"):
            raise ProviderError(f"sandbox bank: simulated failure ({settings['fail']})")
        self.check_settings(settings)  # stored settings were checked; this guards old rows
        rate = float(settings.get("paymentsPerMinute", 6))
        cap = int(settings.get("maxPerFetch", 50))
        cursor = dict(request.cursor or {})
        seq = int(cursor.get("seq", 0))
        last = (
            datetime.fromisoformat(cursor["at"])
            if "at" in cursor
            else request.now - timedelta(minutes=1)
        )
        due = int((request.now - last).total_seconds() / 60 * rate)
        count = max(0, min(due, cap))
        seed = int(settings.get("seed", request.connection_id))
        records = [self._payment(seed, seq + i, request) for i in range(count)]
        if count:
            # Keep the unspent fraction of time for the next fetch.
            spent = timedelta(minutes=count / rate) if rate > 0 else request.now - last
            cursor = {"seq": seq + count, "at": (last + spent).isoformat()}
        elif "at" not in cursor:
            cursor = {"seq": seq, "at": request.now.isoformat()}
        return FetchResult(records=records, cursor=cursor)

    def _payment(self, seed: int, seq: int, request: FetchRequest) -> dict[str, Any]:
        rng = random.Random(f"{seed}:{seq}")
        docs: Sequence[DocumentHint] = sorted(request.open_documents, key=lambda d: d.number)
        record: dict[str, Any] = {
            "provider_transaction_id": f"SBX-{seed}-{seq:08d}",
            "booking_date": request.now.date().isoformat(),
            "counterparty_account": f"HU{rng.randint(10, 99)}1177{rng.randint(10**15, 10**16 - 1)}",
        }
        roll = rng.random()
        if not docs or roll > 0.93:
            record.update(
                amount=str(rng.choice([1500, 9900, 25000, 120000])),
                currency="HUF",
                counterparty_name=rng.choice(_NAMES),
                remittance_information=f"{rng.choice(_HU_WORDS)} {rng.randint(1000, 99999)}",
            )
            return record
        doc = rng.choice(list(docs))
        amount = Decimal(str(doc.total))
        exp = currency_exponent(doc.currency)
        number = doc.number
        czech = doc.currency == "CZK" and doc.variable_symbol
        if roll < 0.50:
            text = f"{number} {rng.choice(_HU_WORDS)}" if not czech else rng.choice(_CZ_WORDS)
        elif roll < 0.58:
            text = _typo(number, rng)
        elif roll < 0.64:
            text = _swap(number, rng)
        elif roll < 0.70:
            text = number + rng.choice(_HU_WORDS)  # glued to the text
        elif roll < 0.75:
            text = number[: max(3, len(number) - 2)]  # truncated
        elif roll < 0.85:
            text = f"{number} reszlet"
            amount = (amount / 2).quantize(Decimal(1).scaleb(-exp), rounding=ROUND_DOWN)
        else:
            text = f"{doc.order_number or number} {rng.choice(_HU_WORDS)}"
        record.update(
            amount=str(amount),
            currency=doc.currency,
            counterparty_name=doc.partner_name or rng.choice(_NAMES),
            remittance_information=text,
        )
        if czech:
            vs = doc.variable_symbol or ""
            record["variable_symbol"] = _typo(vs, rng) if 0.50 <= roll < 0.58 else vs
        return record

    async def start_consent(
        self, settings: Mapping[str, Any], redirect_uri: str | None, now: datetime
    ) -> ConsentStart:
        reference = f"sbx-consent-{int(now.timestamp() * 1000)}"
        back = f"?redirect_uri={redirect_uri}" if redirect_uri else ""
        return ConsentStart(reference, f"{self._public_url}/sandbox-bank/consent/{reference}{back}")

    async def check_consent(
        self, settings: Mapping[str, Any], reference: str, now: datetime
    ) -> ConsentGrant:
        # The simulated customer always authorizes at the simulated bank.
        if settings.get("rejectConsent"):
            return ConsentGrant("REJECTED", None)
        return ConsentGrant("VALID", now + timedelta(days=_CONSENT_DAYS))

    async def revoke(self, settings: Mapping[str, Any], reference: str | None) -> None:
        return None
