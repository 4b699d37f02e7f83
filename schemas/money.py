"""Money without floating point: decimal input, integer minor units inside.

The webshop may send ``"19.99"`` or ``19.99``; both become ``1999`` cents.
Amounts with more decimals than the currency has (``"1.005"`` EUR) are
rejected rather than rounded, because silently rounding money is a bug
someone pays for.
"""
from __future__ import annotations

from decimal import Decimal, InvalidOperation

__all__ = ["CURRENCY_EXPONENTS", "to_minor_units"]

#: ISO 4217 minor-unit exponents of the currencies we accept.
CURRENCY_EXPONENTS: dict[str, int] = {
    **dict.fromkeys(
        "AED ARS AUD BGN BRL CAD CHF CNY COP CZK DKK EGP EUR GBP HKD HUF IDR ILS INR MAD MXN MYR NOK NZD "
        "PEN PHP PLN QAR RON RUB SAR SEK SGD THB TRY TWD UAH USD ZAR".split(), 2),
    **dict.fromkeys("CLP ISK JPY KRW VND XAF XOF".split(), 0),
    **dict.fromkeys("BHD JOD KWD OMR TND".split(), 3),
}

_MAX_MINOR = 10**15  # far above any basket, far below float/int64 trouble


def to_minor_units(amount: object, currency: str) -> int:
    """Convert a decimal string or JSON number to integer minor units.

    >>> to_minor_units("19.99", "EUR"), to_minor_units(5, "JPY"), to_minor_units(0.1, "USD")
    (1999, 5, 10)
    >>> to_minor_units("1.005", "EUR")
    Traceback (most recent call last):
    ...
    ValueError: 1.005 has more decimals than EUR allows (2)
    """
    if isinstance(amount, bool) or not isinstance(amount, (str, int, float)):
        raise TypeError(f"amount must be a decimal string or number, got {type(amount).__name__}")
    try:
        # str(float) is the shortest repr, so 0.1 -> "0.1", not 0.1000000000000000055...
        value = Decimal(amount if isinstance(amount, str) else str(amount))
    except InvalidOperation:
        raise ValueError(f"{amount!r} is not a decimal number") from None
    if not value.is_finite():
        raise ValueError(f"{amount!r} is not a finite amount")
    exponent = CURRENCY_EXPONENTS[currency]
    minor = value.scaleb(exponent)
    if minor != minor.to_integral_value():
        raise ValueError(f"{amount} has more decimals than {currency} allows ({exponent})")
    minor_int = int(minor)
    if abs(minor_int) >= _MAX_MINOR:
        raise ValueError(f"{amount} {currency} is out of range")
    return minor_int

