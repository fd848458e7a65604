"""Minor units → major units, by each provider's own exponent rules."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from braze_forwarder.braze.reference.currencies import CURRENCY_EXPONENTS
from braze_forwarder.ingest.webhooks import money
from braze_forwarder.ingest.webhooks.base import MappingError


@pytest.mark.parametrize(
    ("currency", "amount", "price"),
    [
        ("USD", 1999, 19.99),
        ("EUR", 5, 0.05),
        ("JPY", 12000, 12000.0),  # zero-decimal: never divided by 100
        ("KRW", 55000, 55000.0),
        ("BHD", 12345, 12.345),  # three-decimal
        ("KWD", 5120, 5.12),
        ("JOD", 1, 0.001),
        ("MGA", 5000, 5000.0),  # Stripe: zero-decimal, although ISO 4217 gives it two
        ("ISK", 50000, 500.0),  # Stripe: two decimals "for backwards compatibility", ISO gives none
        ("HUF", 150000, 1500.0),  # Stripe charges HUF with two decimals
    ],
)
def test_stripe_amounts_use_stripes_own_exponents(currency, amount, price):
    assert money.to_major(amount, money.stripe_exponent(currency)) == price


def test_where_stripe_and_iso_disagree_each_provider_keeps_its_own_rule():
    assert (money.stripe_exponent("MGA"), money.paddle_exponent("MGA")) == (0, 2)
    assert (money.stripe_exponent("ISK"), money.paddle_exponent("ISK")) == (2, 0)


@pytest.mark.parametrize(("currency", "exponent"), [("JPY", 0), ("KRW", 0), ("USD", 2), ("BHD", 3), ("KWD", 3)])
def test_paddle_uses_iso_4217_minor_units(currency, exponent):
    assert money.paddle_exponent(currency) == exponent


def test_stripe_codes_are_upper_cased_and_non_codes_refused():
    assert money.currency_code("usd", "currency") == "USD"
    for bad in ("us", "usdd", "€ur", 840, None, "ü s"):
        with pytest.raises(MappingError):
            money.currency_code(bad, "currency")


def test_integer_amounts_only():
    for bad in (19.99, "1999", True, None):
        with pytest.raises(MappingError):
            money.minor_int(bad, "amount")
    assert money.paddle_minor("-150", "total") == -150
    for bad in ("1.50", "", "1e3", 150, "١٥٠", "9" * 19):
        with pytest.raises(MappingError):
            money.paddle_minor(bad, "total")


@given(
    amount=st.integers(min_value=-(10**15), max_value=10**15),
    exponent=st.sampled_from(sorted(set(CURRENCY_EXPONENTS.values()))),
)
def test_conversion_is_exact_to_the_last_minor_unit(amount, exponent):
    assert round(money.to_major(amount, exponent) * 10**exponent) == amount
