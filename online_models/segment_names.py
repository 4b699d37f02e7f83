"""Readable names and descriptions of segments, from their centroid relative to the population.

A centroid in the scaled space is, per feature, a number of population standard
deviations from the mean (times the feature weight, undone here). Beyond
±``threshold`` a feature is worth a word: "high value", "frequent", "lapsing",
"bargain"; the description spells the centroid out in shop units.
"""
from __future__ import annotations

import math
from typing import Sequence

from online_models.segment_features import FEATURE_NAMES, Scaler

__all__ = ["segment_name", "segment_profile", "describe", "unique_names"]


def _z(centroid: Sequence[float], scaler: Scaler) -> dict[str, float]:
    return {name: value / weight for name, value, weight in zip(FEATURE_NAMES, centroid, scaler.weights)}


def segment_name(centroid: Sequence[float], scaler: Scaler, threshold: float = 0.5) -> str:
    """A short name of the centroid's strongest traits.

    >>> scaler = Scaler(mean=(0.0,) * 8, scale=(1.0,) * 8)
    >>> def centroid(**z): return [z.get(name, 0.0) * w for name, w in zip(FEATURE_NAMES, scaler.weights)]
    >>> segment_name(centroid(log_aov=1.2, log_monetary=1.5, order_rate=1.0, recency=-0.8), scaler)
    'high value, frequent, recent'
    >>> segment_name(centroid(log_aov=1.0, log_monetary=1.2, recency=1.5), scaler)
    'lapsing big spenders'
    >>> segment_name(centroid(log_aov=-1.0, order_rate=-1.0), scaler)
    'occasional bargain buyers'
    >>> segment_name(centroid(engagement=1.0), scaler)
    'average, engaged'
    """
    z = _z(centroid, scaler)
    value = (z["log_aov"] + z["log_monetary"]) / 2
    recency, t = z["recency"], threshold
    rhythm = "frequent" if z["order_rate"] > t else "occasional" if z["order_rate"] < -t else ""
    if recency > t and value > t:
        return "lapsing big spenders"
    if z["log_aov"] < -t:
        name = " ".join(filter(None, (rhythm, "bargain buyers")))
        return f"lapsing {name}" if recency > t else name
    parts = [p for p in ("high value" if value > t else "low value" if value < -t else "", rhythm,
                         "recent" if recency < -t else "lapsing" if recency > t else "") if p]
    if len(parts) < 3 and abs(z["engagement"]) > t:
        parts.append("engaged" if z["engagement"] > 0 else "unengaged")
    if not parts or parts == ["engaged"] or parts == ["unengaged"]:
        parts.insert(0, "average")
    return ", ".join(parts)


def segment_profile(centroid: Sequence[float], scaler: Scaler) -> dict[str, float]:
    """The centroid in shop units (money in major units, days, orders a month).

    >>> scaler = Scaler(mean=(math.log1p(40), math.log1p(1), 0.0, 0.0, math.log1p(10), math.log1p(200),
    ...                       math.log1p(100), 0.02), scale=(1.0,) * 8)
    >>> segment_profile([0.0] * 8, scaler)  # doctest: +NORMALIZE_WHITESPACE
    {'order_value': 40.0, 'orders_per_month': 1.0, 'items_per_order': 1.0, 'email_engagement': 0.0,
     'days_since_order': 10.0, 'lifetime_spend': 200.0, 'tenure_days': 100.0, 'refund_ratio': 0.02}
    """
    raw = dict(zip(FEATURE_NAMES, scaler.inverse(centroid)))
    return {
        "order_value": round(math.expm1(raw["log_aov"]), 2),
        "orders_per_month": round(math.expm1(raw["order_rate"]), 2),
        "items_per_order": round(math.exp(raw["basket_units"]), 2),
        "email_engagement": round(math.expm1(raw["engagement"]), 2),
        "days_since_order": round(math.expm1(raw["recency"]), 1),
        "lifetime_spend": round(math.expm1(raw["log_monetary"]), 2),
        "tenure_days": round(math.expm1(raw["tenure"]), 1),
        "refund_ratio": round(raw["refund_ratio"], 3),
    }


def describe(profile: dict[str, float]) -> str:
    """One sentence a support agent can read.

    >>> describe({'order_value': 40.0, 'orders_per_month': 1.0, 'items_per_order': 1.5, 'email_engagement': 0.4,
    ...           'days_since_order': 10.0, 'lifetime_spend': 200.0, 'tenure_days': 100.0, 'refund_ratio': 0.02})
    'Typical customer: 40.00 per order, 1.0 orders a month, 1.5 items per order, last order 10 days ago, 200.00 spent in 100 days, 0.4 recent e-mail opens/clicks, 2% refunded.'
    """
    p = profile
    return (f"Typical customer: {p['order_value']:.2f} per order, {p['orders_per_month']:.1f} orders a month, "
            f"{p['items_per_order']:.1f} items per order, last order {p['days_since_order']:.0f} days ago, "
            f"{p['lifetime_spend']:.2f} spent in {p['tenure_days']:.0f} days, "
            f"{p['email_engagement']:.1f} recent e-mail opens/clicks, {p['refund_ratio']:.0%} refunded.")


def unique_names(names: Sequence[str]) -> list[str]:
    """Number repeated names so that every segment's name is its own.

    >>> unique_names(["frequent", "recent", "frequent"])
    ['frequent', 'recent', 'frequent (2)']
    """
    seen: dict[str, int] = {}
    result = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        result.append(name if seen[name] == 1 else f"{name} ({seen[name]})")
    return result
