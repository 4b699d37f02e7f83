"""What a behaviour segmentation sees of a customer, and how it is scaled.

Segments describe *how* a customer shops: basket value, rhythm, basket size,
e-mail engagement. Recency, lifetime spend, tenure and refunds describe the
customer too, but mostly say *when* they arrived or how long they have been
silent; with full weight they split the base by arrival cohort instead of by
behaviour (on planted segments the adjusted Rand index fell from 0.87 to 0.45,
docs/segments.md). They enter with smaller weights (:data:`SEGMENT_FEATURES`).

Value and rhythm are read from the customer's newest orders (last five orders,
orders within a window), so a customer whose behaviour changes moves to another
segment within weeks, not after their whole history has been outweighed.

Distances are taken between standardised, weighted vectors; the :class:`Scaler`
is fitted once on the trainer's warm-up sample and frozen, so centroids of one
snapshot and the next live in the same space (stable ids need that).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from online_models.customer_state import CustomerState
from online_models.purchase_history import DAY_MS

__all__ = ["SEGMENT_FEATURES", "FEATURE_NAMES", "WEIGHTS", "segment_features", "Scaler"]

#: (feature, weight in the distance). Logs tame the long tails of money and counts.
SEGMENT_FEATURES: tuple[tuple[str, float], ...] = (
    ("log_aov", 1.0),         # log1p spend per order over the last 5 orders, major units
    ("order_rate", 1.0),      # log1p orders per 30 days within the window
    ("basket_units", 1.0),    # log units per order
    ("engagement", 1.0),      # log1p decayed e-mail opens and clicks
    ("recency", 0.5),         # log1p days since the last order
    ("log_monetary", 0.5),    # log1p lifetime net spend, major units
    ("tenure", 0.25),         # log1p days since the first order
    ("refund_ratio", 0.25),   # refunded / gross spend
)
FEATURE_NAMES = tuple(name for name, _ in SEGMENT_FEATURES)
WEIGHTS = tuple(weight for _, weight in SEGMENT_FEATURES)

_AOV_ORDERS = 5
_MIN_WINDOW_MS = 30 * DAY_MS


def segment_features(state: CustomerState, as_of_ms: int, window_days: float = 180.0) -> list[float] | None:
    """The raw feature vector (:data:`FEATURE_NAMES` order) as of ``as_of_ms``; None before a first order.

    >>> state = CustomerState.new(engagement_half_life_ms=30 * DAY_MS)
    >>> for day in (0, 30, 60):
    ...     state.apply_order(day * DAY_MS, amount_minor=5000, units=2)
    >>> state.apply_interaction("email_open", 60 * DAY_MS)
    >>> x = segment_features(state, as_of_ms=90 * DAY_MS)
    >>> dict(zip(FEATURE_NAMES, (round(v, 3) for v in x)))  # doctest: +NORMALIZE_WHITESPACE
    {'log_aov': 3.932, 'order_rate': 0.693, 'basket_units': 0.693, 'engagement': 0.405, 'recency': 3.434,
     'log_monetary': 5.017, 'tenure': 4.511, 'refund_ratio': 0.0}
    >>> segment_features(CustomerState.new(30 * DAY_MS), as_of_ms=0) is None
    True
    """
    history = state.purchases
    if history.orders == 0:
        return None
    amounts = history.recent_order_minor[-_AOV_ORDERS:]
    aov_major = sum(amounts) / len(amounts) / 100 if amounts else history.gross_minor / history.orders / 100
    return [
        math.log1p(max(aov_major, 0.0)),
        math.log1p(_orders_per_30_days(state, as_of_ms, window_days * DAY_MS)),
        math.log(max(history.units, 1) / history.orders),
        math.log1p(state.engagement.decayed("email_open", as_of_ms) + state.engagement.decayed("email_click", as_of_ms)),
        math.log1p(max(as_of_ms - history.last_order_ms, 0) / DAY_MS),
        math.log1p(max(history.net_minor, 0) / 100),
        math.log1p(max(as_of_ms - history.first_order_ms, 0) / DAY_MS),
        history.refunded_minor / history.gross_minor if history.gross_minor > 0 else 0.0,
    ]


def _orders_per_30_days(state: CustomerState, as_of_ms: int, window_ms: float) -> float:
    """Orders per 30 days within the window, or since the first order when that is shorter. When the
    window holds more orders than the history's tail remembers, the rate is taken over the tail's span."""
    history = state.purchases
    tail = history.recent_order_ms
    inside = [t for t in tail if as_of_ms - window_ms < t <= as_of_ms]
    if inside and len(inside) == len(tail) == history.tail_size:
        span_ms = as_of_ms - inside[0]
    else:
        span_ms = min(window_ms, as_of_ms - history.first_order_ms)
    return len(inside) / max(span_ms, _MIN_WINDOW_MS) * _MIN_WINDOW_MS


@dataclass(frozen=True)
class Scaler:
    """Standardise and weight raw vectors: ``(x - mean) / scale * weight``.

    >>> scaler = Scaler.fit([[1.0, 10.0], [3.0, 10.0]], weights=(1.0, 0.5))
    >>> scaler.mean, scaler.scale
    ((2.0, 10.0), (1.0, 1.0))
    >>> scaler.transform([3.0, 12.0])
    [1.0, 1.0]
    >>> scaler.inverse([1.0, 1.0])
    [3.0, 12.0]
    """

    mean: tuple[float, ...]
    scale: tuple[float, ...]
    weights: tuple[float, ...] = WEIGHTS

    @classmethod
    def fit(cls, rows: Sequence[Sequence[float]], weights: Sequence[float] = WEIGHTS) -> "Scaler":
        """Mean and standard deviation per column (a constant column gets scale 1)."""
        n = len(rows)
        columns = list(zip(*rows))
        mean = tuple(sum(c) / n for c in columns)
        scale = tuple(math.sqrt(sum((v - m) ** 2 for v in c) / n) or 1.0 for c, m in zip(columns, mean))
        return cls(mean, scale, tuple(weights))

    def transform(self, raw: Sequence[float]) -> list[float]:
        return [(v - m) / s * w for v, m, s, w in zip(raw, self.mean, self.scale, self.weights)]

    def inverse(self, point: Sequence[float]) -> list[float]:
        """Back to raw units (a centroid as a customer profile)."""
        return [v / w * s + m for v, m, s, w in zip(point, self.mean, self.scale, self.weights)]

    def to_dict(self) -> dict:
        return {"mean": list(self.mean), "scale": list(self.scale), "weights": list(self.weights)}

    @classmethod
    def from_dict(cls, data: dict) -> "Scaler":
        return cls(tuple(data["mean"]), tuple(data["scale"]), tuple(data["weights"]))
