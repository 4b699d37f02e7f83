"""Churn features of a customer at an event time, and along their future silence path.

A churn score is a question about the future ("no order within 90 days?"), asked
at a moment. The features describe the customer *as of* that moment: how long they
have been silent, relative to their own rhythm, and how engaged they still are.
Along a silence path (no further event) they change predictably: silence grows,
decayed interaction counts shrink, recent orders age out of the trend window;
:func:`silence_path` computes that, so a hazard model can be composed over the
horizon (:mod:`online_models.hazard`).

Features that only proxy calendar time (tenure in a shop whose customers arrive in
cohorts) extrapolate badly to the future; tenure enters as ``log1p`` and the
cutoff benchmark (bench/churn_cutoff.py) reports the effect of dropping it.
"""
from __future__ import annotations

import math

import numpy as np

from online_models.customer_state import CustomerState
from online_models.purchase_history import DAY_MS

__all__ = ["FEATURES", "feature_row", "features_at", "silence_rows", "silence_path", "PRIOR_GAP_DAYS"]

#: Assumed days between orders for customers with a single order (no rhythm of their own yet).
PRIOR_GAP_DAYS = 60.0
_TREND_WINDOW_DAYS = 90.0

FEATURES = (
    "log_silence_days",      # days since the last order
    "silence_ratio",         # silence / own mean gap between orders (capped)
    "log_orders",
    "log_mean_gap_days",
    "gap_cv",                # spread of the gaps / their mean
    "order_trend",           # orders in the last 90 days vs the customer's lifetime rate (log ratio)
    "log_aov",               # net spend per order, major units
    "refund_ratio",          # refunded / gross spend
    "log_tenure_days",       # days since the first order
    "log_views",             # decayed product and page views
    "log_carts",             # decayed add-to-cart
    "log_email_clicks",      # decayed e-mail clicks
    "open_tickets",
    "csat_centered",         # last CSAT - 3 (0 when never answered)
    "nps_centered",          # (last NPS - 5) / 5 (0 when never answered)
)


def feature_row(state: CustomerState, at_ms: int) -> list[float]:
    """The features at ``at_ms`` as a list in :data:`FEATURES` order (what examples store)."""
    history, engagement = state.purchases, state.engagement
    silence_days = max(at_ms - history.last_order_ms, 0) / DAY_MS
    mean_gap = history.mean_gap_days or PRIOR_GAP_DAYS
    std_gap = history.gap_std_days or 0.0
    tenure_days = max(at_ms - history.first_order_ms, 0) / DAY_MS
    window_start = at_ms - _TREND_WINDOW_DAYS * DAY_MS
    recent_orders = sum(1 for ts in history.recent_order_ms if window_start < ts <= at_ms)
    expected_recent = history.orders * _TREND_WINDOW_DAYS / max(tenure_days, _TREND_WINDOW_DAYS)
    decayed = engagement.decayed
    csat, nps = engagement.last_csat, engagement.last_nps
    return [
        math.log1p(silence_days),
        min(silence_days / max(mean_gap, 1.0), 10.0),
        math.log1p(history.orders),
        math.log1p(mean_gap),
        std_gap / max(mean_gap, 1.0),
        math.log((recent_orders + 0.5) / (expected_recent + 0.5)),
        math.log1p(max(history.average_order_minor or 0.0, 0.0) / 100),
        history.refunded_minor / history.gross_minor if history.gross_minor > 0 else 0.0,
        math.log1p(tenure_days),
        math.log1p(decayed("product_view", at_ms) + decayed("page_view", at_ms)),
        math.log1p(decayed("add_to_cart", at_ms)),
        math.log1p(decayed("email_click", at_ms)),
        float(engagement.open_tickets),
        0.0 if csat is None else csat - 3.0,
        0.0 if nps is None else (nps - 5.0) / 5.0,
    ]


def features_at(state: CustomerState, at_ms: int) -> dict[str, float]:
    """The customer's features at event time ``at_ms`` (a buyer: at least one order).

    >>> state = CustomerState.new(engagement_half_life_ms=30 * DAY_MS)
    >>> state.apply_order(0, 5000, 1); state.apply_order(20 * DAY_MS, 3000, 1)
    >>> x = features_at(state, 50 * DAY_MS)
    >>> round(math.expm1(x["log_silence_days"])), x["silence_ratio"], round(math.expm1(x["log_mean_gap_days"]))
    (30, 1.5, 20)
    """
    return dict(zip(FEATURES, feature_row(state, at_ms)))


def silence_rows(state: CustomerState, from_ms: int, step_ms: int, steps: int) -> list[list[float]]:
    """Feature rows at ``from_ms + k·step_ms`` (k < ``steps``) if the customer stays silent.

    Only time moves, so only the time-dependent columns are recomputed per step (plain Python:
    numpy costs more than it saves on 13 rows; batches are stacked into one array by the caller).

    >>> state = CustomerState.new(engagement_half_life_ms=30 * DAY_MS)
    >>> state.apply_order(0, 5000, 1); state.apply_order(20 * DAY_MS, 3000, 1)
    >>> state.apply_interaction("product_view", 25 * DAY_MS)
    >>> rows = silence_rows(state, 30 * DAY_MS, 7 * DAY_MS, 3)
    >>> expected = [feature_row(state, (30 + 7 * k) * DAY_MS) for k in range(3)]
    >>> all(math.isclose(a, b, abs_tol=1e-12) for row, want in zip(rows, expected) for a, b in zip(row, want))
    True
    """
    base = feature_row(state, from_ms)
    history, engagement = state.purchases, state.engagement
    mean_gap = max(history.mean_gap_days or PRIOR_GAP_DAYS, 1.0)
    decayed = engagement.decayed
    engaged_now = [decayed("product_view", from_ms) + decayed("page_view", from_ms), decayed("add_to_cart", from_ms),
                   decayed("email_click", from_ms)]
    recent = history.recent_order_ms
    rows = []
    for k in range(steps):
        at = from_ms + k * step_ms
        silence_days = max(at - history.last_order_ms, 0) / DAY_MS
        tenure_days = max(at - history.first_order_ms, 0) / DAY_MS
        window_start = at - _TREND_WINDOW_DAYS * DAY_MS
        recent_orders = sum(1 for ts in recent if window_start < ts <= at)
        expected_recent = history.orders * _TREND_WINDOW_DAYS / max(tenure_days, _TREND_WINDOW_DAYS)
        fade = 2.0 ** (-(k * step_ms) / engagement.half_life_ms)
        row = base.copy()
        row[0] = math.log1p(silence_days)
        row[1] = min(silence_days / mean_gap, 10.0)
        row[5] = math.log((recent_orders + 0.5) / (expected_recent + 0.5))
        row[8] = math.log1p(tenure_days)
        row[9], row[10], row[11] = (math.log1p(value * fade) for value in engaged_now)
        rows.append(row)
    return rows


def silence_path(state: CustomerState, from_ms: int, step_ms: int, steps: int) -> np.ndarray:
    """:func:`silence_rows` as an array (``steps`` × features)."""
    return np.array(silence_rows(state, from_ms, step_ms, steps), dtype=float)
