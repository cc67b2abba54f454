"""Exact money: currency codes and their minor units (ISO 4217)."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

import pycountry

__all__ = ["MoneyError", "currency_exponent", "parse_amount", "validate_currency"]

# ISO 4217 minor units that differ from the usual two. HUF and CZK keep two by the standard,
# although HUF is in practice paid in whole forints.
_EXPONENTS: dict[str, int] = {
    **dict.fromkeys(
        [
            "BIF",
            "CLP",
            "DJF",
            "GNF",
            "ISK",
            "JPY",
            "KMF",
            "KRW",
            "PYG",
            "RWF",
            "UGX",
            "UYI",
            "VND",
            "VUV",
            "XAF",
            "XOF",
            "XPF",
        ],
        0,
    ),
    **dict.fromkeys(["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"], 3),
    **dict.fromkeys(["CLF", "UYW"], 4),
}
# Codes pycountry lists that are not money one can be paid in (precious metals, testing codes).
_NOT_PAYABLE = frozenset(
    ["XAG", "XAU", "XBA", "XBB", "XBC", "XBD", "XDR", "XPD", "XPT", "XSU", "XTS", "XUA", "XXX"]
)
# numeric(18, 4) in the database.
_LIMIT = Decimal("1e14")


class MoneyError(ValueError):
    """An amount or currency that cannot be accepted; the message says why."""


def validate_currency(code: str) -> str:
    """Return the ISO 4217 code in upper case, or raise MoneyError."""
    normalized = code.strip().upper()
    if (
        len(normalized) != 3
        or normalized in _NOT_PAYABLE
        or pycountry.currencies.get(alpha_3=normalized) is None
    ):
        raise MoneyError(f"unknown currency {code!r}: use an ISO 4217 code such as HUF, CZK or EUR")
    return normalized


def currency_exponent(code: str) -> int:
    """How many decimal places the currency allows."""
    return _EXPONENTS.get(code, 2)


def parse_amount(value: Decimal | str | int, currency: str) -> Decimal:
    """Check an amount against its currency and return it as an exact Decimal."""
    try:
        amount = value if isinstance(value, Decimal) else Decimal(str(value).strip())
    except InvalidOperation:
        raise MoneyError(f"amount {value!r} is not a decimal number") from None
    if not amount.is_finite():
        raise MoneyError(f"amount {value!r} is not a finite number")
    if abs(amount) >= _LIMIT:
        raise MoneyError(f"amount {amount} is too large")
    exponent = currency_exponent(currency)
    if amount != amount.quantize(Decimal(1).scaleb(-exponent)):
        raise MoneyError(
            f"amount {amount} has more decimal places than {currency} allows ({exponent})"
        )
    return amount
