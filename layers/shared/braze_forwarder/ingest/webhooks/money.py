"""Money: a provider's integer amount in minor units, as the major-unit price Braze expects.

Each provider says for itself how many minor units a currency has, and they do not all agree with
ISO 4217 (WEBHOOKS_AND_RELIABILITY.md §1.5): Stripe counts MGA as zero-decimal (ISO: two) and
sends ISK with two decimals "for backwards compatibility" (ISO: zero). So every provider has its
own exponent rule, and nothing here divides by 100 on its own.
"""

from __future__ import annotations

import re
from decimal import Decimal

from braze_forwarder.braze.reference.currencies import CURRENCY_EXPONENTS
from braze_forwarder.ingest.webhooks.base import MappingError

# docs.stripe.com/currencies: "Zero-decimal currencies" and "Three-decimal currencies"; every other
# currency is two-decimal in Stripe's API, whatever ISO says (ISK, HUF and TWD included).
STRIPE_ZERO_DECIMAL = frozenset(
    {"BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "UGX", "VND", "VUV", "XAF", "XOF", "XPF"}
)
STRIPE_THREE_DECIMAL = frozenset({"BHD", "JOD", "KWD", "OMR", "TND"})

_CODE = re.compile(r"[A-Za-z]{3}")
# Paddle sends amounts as strings of digits (lowest denomination); 18 digits stay exact in a float's
# integer range for every realistic amount and bound the work.
_PADDLE_AMOUNT = re.compile(r"-?[0-9]{1,18}")


def currency_code(value: object, field: str) -> str:
    """An ISO 4217 alphabetic code in upper case (Stripe sends lower case); refuses anything else."""
    if not (isinstance(value, str) and _CODE.fullmatch(value)):
        raise MappingError(f"{field} is not a three-letter currency code")
    return value.upper()


def stripe_exponent(currency: str) -> int:
    if currency in STRIPE_ZERO_DECIMAL:
        return 0
    if currency in STRIPE_THREE_DECIMAL:
        return 3
    return 2


def paddle_exponent(currency: str) -> int:
    # Paddle's currencies carry `decimal_places` "in the common notation of the currency", which is
    # ISO 4217's minor unit for every currency Paddle sells in (JPY and KRW none, the rest two).
    # A code ISO does not list falls back to two; the purchase then fails validation on its currency.
    return CURRENCY_EXPONENTS.get(currency, 2)


def to_major(amount: int, exponent: int) -> float:
    """Minor units → major units, exact to the last minor unit (Decimal, then one rounding to float)."""
    return float(Decimal(amount).scaleb(-exponent))


def minor_int(value: object, field: str) -> int:
    """An integer amount (Stripe sends JSON integers; bool is not one)."""
    if type(value) is not int:
        raise MappingError(f"{field} is not an integer amount")
    return value


def paddle_minor(value: object, field: str) -> int:
    """Paddle's string amount in the lowest denomination, as an integer."""
    if not (isinstance(value, str) and _PADDLE_AMOUNT.fullmatch(value)):
        raise MappingError(f"{field} is not an amount in the lowest denomination")
    return int(value)
