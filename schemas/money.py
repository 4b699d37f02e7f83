"""Money without floating point: decimal input, integer minor units inside.

The webshop may send ``"19.99"`` or ``19.99``; both become ``1999`` cents.
The money of an order line is its line total: ``qty × unit_price`` computed
exactly in decimal, or the line ``amount`` when the shop sends it, and rounded
once, to the currency's minor unit, half to even (banker's rounding, so ties
do not drift upwards over millions of lines). Unit prices finer than the minor
unit are real business data (volume pricing, converted currencies, an export's
``amount / qty``: 29.33 / 2 = 14.665) and are accepted; only the line total is
rounded, never each unit.
"""
from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation, localcontext

__all__ = ["CURRENCY_EXPONENTS", "MAX_MONEY_CHARS", "decimal_amount", "decimal_text", "to_minor_units",
           "line_minor_units"]

#: ISO 4217 minor-unit exponents of the currencies we accept.
CURRENCY_EXPONENTS: dict[str, int] = {
    **dict.fromkeys(
        "AED ARS AUD BGN BRL CAD CHF CNY COP CZK DKK EGP EUR GBP HKD HUF IDR ILS INR MAD MXN MYR NOK NZD "
        "PEN PHP PLN QAR RON RUB SAR SEK SGD THB TRY TWD UAH USD ZAR".split(), 2),
    **dict.fromkeys("CLP ISK JPY KRW VND XAF XOF".split(), 0),
    **dict.fromkeys("BHD JOD KWD OMR TND".split(), 3),
}

#: Longest decimal string read as money: 12 integer digits and 12 decimals fit with room to spare.
MAX_MONEY_CHARS = 32
_MAX_MINOR = 10**15  # far above any basket, far below float/int64 trouble


def decimal_amount(amount: object) -> Decimal:
    """A decimal string or JSON number as an exact, finite :class:`~decimal.Decimal` (one already read is
    passed through, so callers that checked its sign do not parse it again).

    >>> decimal_amount("14.665"), decimal_amount(0.1), decimal_amount(3), decimal_amount(Decimal("2.5"))
    (Decimal('14.665'), Decimal('0.1'), Decimal('3'), Decimal('2.5'))
    """
    if isinstance(amount, Decimal) and amount.is_finite():
        return amount
    if isinstance(amount, bool) or not isinstance(amount, (str, int, float)):
        raise TypeError(f"amount must be a decimal string or number, got {type(amount).__name__}")
    # str(float) is the shortest repr, so 0.1 -> "0.1", not 0.1000000000000000055...
    text = amount if isinstance(amount, str) else str(amount)
    if len(text) > MAX_MONEY_CHARS:
        raise ValueError(f"amount {text[:MAX_MONEY_CHARS]!r}... is longer than {MAX_MONEY_CHARS} characters")
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"{amount!r} is not a decimal number") from None
    if not value.is_finite():
        raise ValueError(f"{amount!r} is not a finite amount")
    return value


def _rounded_minor(value: Decimal, currency: str, what: object) -> int:
    minor = int(value.scaleb(CURRENCY_EXPONENTS[currency]).to_integral_value(rounding=ROUND_HALF_EVEN))
    if abs(minor) >= _MAX_MINOR:
        raise ValueError(f"{what} {currency} is out of range")
    return minor


def to_minor_units(amount: object, currency: str) -> int:
    """An amount in integer minor units, rounded once, half to even.

    >>> to_minor_units("19.99", "EUR"), to_minor_units(5, "JPY"), to_minor_units(0.1, "USD")
    (1999, 5, 10)
    >>> to_minor_units("1.005", "EUR"), to_minor_units("1.015", "EUR"), to_minor_units("0.001", "GBP")
    (100, 102, 0)
    """
    value = decimal_amount(amount)
    return _rounded_minor(value, currency, amount)


def line_minor_units(qty: int, unit_price: object, currency: str) -> int:
    """The money of an order line, ``qty × unit_price`` exact, then rounded once to the minor unit.

    >>> line_minor_units(2, "14.665", "EUR"), line_minor_units(1, "14.665", "EUR")
    (2933, 1466)
    >>> line_minor_units(1000, "0.001", "GBP"), line_minor_units(3, 0.1, "USD")
    (100, 30)
    """
    value = decimal_amount(unit_price)
    with localcontext() as exact:
        exact.prec = 4 * MAX_MONEY_CHARS  # wide enough that the product is exact: the one rounding is ours
        return _rounded_minor(value * qty, currency, f"{qty} x {unit_price}")


def decimal_text(minor: int, currency: str) -> str:
    """Minor units as the decimal string the contract takes back, exact.

    >>> decimal_text(2933, "EUR"), decimal_text(5, "JPY"), decimal_text(1234, "KWD"), decimal_text(7, "USD")
    ('29.33', '5', '1.234', '0.07')
    """
    exponent = CURRENCY_EXPONENTS[currency]
    return f"{Decimal(minor).scaleb(-exponent):.{exponent}f}"
