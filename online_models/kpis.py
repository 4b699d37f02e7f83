"""Business KPIs in event-time buckets (day, ISO week, month), exact and replayable.

Additive quantities (orders, revenue, refunds, interactions, survey answers,
new buyers, churns, reactivations) are counted per UTC day and summed into
weeks and months when read. Distinct counts (active customers, buyers, repeat
buyers) cannot be summed, so they are counted per bucket of each granularity,
once per customer: each customer keeps a bitmap of the days it was active and
the days it ordered, so the first day in a bucket is known exactly whatever
the arrival order.

Churn follows the product definition: a customer churns when the horizon
(90 days) passes after an order without a further order. Between two orders
more than a horizon apart this is a *closed* churn (at ``previous + horizon``)
followed by a *reactivation* at the next order; both are counted when the
orders are folded, and a late order that splits a long gap removes them again.
The *open* churn of a customer's last order is not counted by the stream: it is
read from the population sketch of last-order days (``last_order_day + horizon``
days that are over), so it needs no timer and is exact as of the event clock.
"""
from __future__ import annotations

import bisect
import functools
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, timedelta

from online_models.purchase_history import DAY_MS, PurchaseHistory

__all__ = [
    "GRANULARITIES", "DISTINCT_METRICS", "ADDITIVE_METRICS", "bucket_of", "buckets_between", "day_of",
    "KpiDeltas", "churn_changes", "kpi_rates", "count_event", "count_order", "count_refund",
    "count_interaction", "bucket_first_day", "bucket_days", "DayBitmap", "KpiMemory", "NO_SEGMENT",
]

GRANULARITIES = ("day", "week", "month")
DISTINCT_METRICS = ("active", "buyers", "repeat_buyers")
ADDITIVE_METRICS = (
    "orders", "revenue_minor", "refunds_minor", "interactions", "csat_answers", "csat_satisfied", "nps_answers",
    "nps_promoters", "nps_detractors", "new_buyers", "churned", "reactivated",
)
_EPOCH = date(1970, 1, 1)


def day_of(ts_ms: int) -> int:
    """Days since 1970-01-01 (UTC)."""
    return ts_ms // DAY_MS


@functools.lru_cache(maxsize=8192)
def bucket_of(granularity: str, day: int) -> str:
    """Bucket label of a day: ``2024-03-01``, ``2024-02-26`` (the week's Monday), ``2024-03``.

    >>> [bucket_of(g, day_of(1_709_290_800_000)) for g in GRANULARITIES]
    ['2024-03-01', '2024-02-26', '2024-03']
    """
    when = _EPOCH + timedelta(days=day)
    if granularity == "day":
        return when.isoformat()
    if granularity == "week":
        return (when - timedelta(days=when.weekday())).isoformat()
    return when.isoformat()[:7]


def bucket_first_day(granularity: str, bucket: str) -> int:
    """First day (days since epoch) of a bucket label."""
    first = date.fromisoformat(bucket if granularity != "month" else bucket + "-01")
    return (first - _EPOCH).days


@functools.lru_cache(maxsize=8192)
def bucket_days(granularity: str, day: int) -> tuple[str, int, int]:
    """(label, first day, last day) of the bucket holding ``day``.

    >>> bucket_days("month", day_of(1_709_290_800_000))
    ('2024-03', 19783, 19813)
    """
    label = bucket_of(granularity, day)
    first = bucket_first_day(granularity, label)
    if granularity == "day":
        return label, first, first
    if granularity == "week":
        return label, first, first + 6
    when = _EPOCH + timedelta(days=first)
    following = date(when.year + when.month // 12, when.month % 12 + 1, 1)
    return label, first, (following - _EPOCH).days - 1


def buckets_between(granularity: str, first_day: int, last_day: int) -> list[str]:
    """Bucket labels covering the days ``first_day..last_day``, in order."""
    labels: list[str] = []
    for day in range(first_day, last_day + 1):
        label = bucket_of(granularity, day)
        if not labels or labels[-1] != label:
            labels.append(label)
    return labels


@dataclass
class DayBitmap:
    """The set of days (since epoch) a customer did something, one bit per day from ``base_day``.

    Exact whatever the arrival order, which matters: during a backfill one topic can run months ahead of
    another, so "the last few buckets" would not do. A year of history costs ~46 bytes.

    >>> days = DayBitmap()
    >>> [days.add(day) for day in (100, 103, 98, 103)]
    [True, True, True, False]
    >>> days.any_between(99, 102), days.any_between(101, 102), days.first_day
    (True, False, 98)
    """

    base_day: int | None = None
    bits: int = 0

    def add(self, day: int) -> bool:
        """Set ``day``; True if it was not set before."""
        if self.base_day is None:
            self.base_day = day
        elif day < self.base_day:
            self.bits <<= self.base_day - day
            self.base_day = day
        bit = 1 << (day - self.base_day)
        if self.bits & bit:
            return False
        self.bits |= bit
        return True

    def any_between(self, first_day: int, last_day: int) -> bool:
        if self.base_day is None or last_day < self.base_day:
            return False
        first = max(first_day - self.base_day, 0)
        width = last_day - self.base_day - first + 1
        return bool((self.bits >> first) & ((1 << width) - 1))

    @property
    def first_day(self) -> int | None:
        if self.base_day is None or not self.bits:
            return None
        return self.base_day + ((self.bits & -self.bits).bit_length() - 1)

    def to_dict(self) -> dict:
        return {"base_day": self.base_day, "bits": format(self.bits, "x")}

    @classmethod
    def from_dict(cls, data: dict) -> "DayBitmap":
        return cls(data["base_day"], int(data["bits"], 16))


@dataclass
class KpiMemory:
    """Per customer: the days it was active and the days it ordered (for distinct counts per bucket)."""

    active_days: DayBitmap = field(default_factory=DayBitmap)
    order_days: DayBitmap = field(default_factory=DayBitmap)

    def to_dict(self) -> dict:
        return {"active_days": self.active_days.to_dict(), "order_days": self.order_days.to_dict()}

    @classmethod
    def from_dict(cls, data: dict) -> "KpiMemory":
        return cls(DayBitmap.from_dict(data["active_days"]), DayBitmap.from_dict(data["order_days"]))


def churn_changes(history: PurchaseHistory, ts_ms: int, horizon_ms: int) -> list[tuple[str, int, int]]:
    """(metric, day, ±1) changes of new buyers, closed churns and reactivations if an order at
    ``ts_ms`` is added to ``history`` (call it before adding the order).

    >>> history = PurchaseHistory()
    >>> churn_changes(history, 0, 90 * DAY_MS)
    [('new_buyers', 0, 1)]
    >>> history.add_order(0, 100, 1)
    >>> churn_changes(history, 100 * DAY_MS, 90 * DAY_MS)   # back after 100 days: churned at day 90
    [('churned', 90, 1), ('reactivated', 100, 1)]
    >>> history.add_order(100 * DAY_MS, 100, 1)
    >>> churn_changes(history, 50 * DAY_MS, 90 * DAY_MS)    # a late order splits the gap
    [('churned', 90, -1), ('reactivated', 100, -1)]
    """
    recent = history.recent_order_ms
    if len(recent) == history.tail_size and ts_ms < recent[0]:
        return []  # far older than the allowed lateness: the timeline there is folded away
    index = bisect.bisect_left(recent, ts_ms)
    previous = recent[index - 1] if index > 0 else None
    following = recent[index] if index < len(recent) else None
    changes: list[tuple[str, int, int]] = []
    if previous is None:
        if following is not None and history.first_order_ms == following:
            changes.append(("new_buyers", day_of(following), -1))
        changes.append(("new_buyers", day_of(ts_ms), 1))
    if previous is not None and following is not None and following - previous > horizon_ms:
        changes += [("churned", day_of(previous + horizon_ms), -1), ("reactivated", day_of(following), -1)]
    if previous is not None and ts_ms - previous > horizon_ms:
        changes += [("churned", day_of(previous + horizon_ms), 1), ("reactivated", day_of(ts_ms), 1)]
    if following is not None and following - ts_ms > horizon_ms:
        changes += [("churned", day_of(ts_ms + horizon_ms), 1), ("reactivated", day_of(following), 1)]
    return changes


#: Segment label of customers without an RFM segment (no order yet, or no population to rank against).
NO_SEGMENT = "none"


class KpiDeltas:
    """KPI counter changes of one batch: (granularity, bucket) -> metric -> delta.

    Changes of one event are held until :meth:`attribute` names the customer's segment; they then count
    overall (``metric``) and for the segment (``metric@segment``).

    >>> deltas = KpiDeltas()
    >>> deltas.add_daily(19783, "orders")
    >>> deltas.attribute("Champions")
    >>> dict(deltas.changes[("day", "2024-03-01")])
    {'orders': 1, 'orders@Champions': 1}
    """

    def __init__(self) -> None:
        self.changes: dict[tuple[str, str], Counter] = {}
        self._pending: list[tuple[str, str, str, int]] = []

    def add(self, granularity: str, bucket: str, metric: str, amount: int = 1) -> None:
        self._pending.append((granularity, bucket, metric, amount))

    def attribute(self, segment: str) -> None:
        changes = self.changes
        for granularity, bucket, metric, amount in self._pending:
            counts = changes.get((granularity, bucket))
            if counts is None:
                counts = changes[granularity, bucket] = Counter()
            counts[metric] += amount
            counts[f"{metric}@{segment}"] += amount
        self._pending.clear()

    def add_daily(self, day: int, metric: str, amount: int = 1) -> None:
        self.add("day", bucket_of("day", day), metric, amount)

    def count_distinct(self, days: DayBitmap, metric: str, day: int) -> list[tuple[str, str, int]]:
        """Mark ``day`` in ``days``; count the customer in each bucket where it is their first day.

        Returns the (granularity, label, first day) of the buckets newly counted."""
        if days.any_between(day, day):
            return []
        counted = []
        for granularity in GRANULARITIES:
            label, first, last = bucket_days(granularity, day)
            if not days.any_between(first, last):
                self.add(granularity, label, metric)
                counted.append((granularity, label, first))
        days.add(day)
        return counted


def kpi_rates(counts: dict[str, float], alive_at_start: float | None) -> dict[str, float | None]:
    """Rates of one bucket from its counts.

    >>> rates = kpi_rates({"orders": 4, "revenue_minor": 10000, "buyers": 3, "repeat_buyers": 1, "active": 5,
    ...                    "interactions": 20, "csat_answers": 4, "csat_satisfied": 3, "nps_answers": 5,
    ...                    "nps_promoters": 3, "nps_detractors": 1, "churned": 2}, alive_at_start=8)
    >>> rates["average_order_minor"], rates["csat_pct"], rates["nps"], rates["churn_rate"], rates["engagement"]
    (2500.0, 75.0, 40.0, 0.25, 4.0)
    """
    def ratio(numerator: float, denominator: float) -> float | None:
        return numerator / denominator if denominator else None

    get = counts.get
    return {
        "average_order_minor": ratio(get("revenue_minor", 0), get("orders", 0)),
        "repeat_purchase_rate": ratio(get("repeat_buyers", 0), get("buyers", 0)),
        "csat_pct": None if not get("csat_answers") else 100 * get("csat_satisfied", 0) / get("csat_answers"),
        "nps": None if not get("nps_answers") else
        100 * (get("nps_promoters", 0) - get("nps_detractors", 0)) / get("nps_answers"),
        "engagement": ratio(get("interactions", 0), get("active", 0)),
        "churn_rate": ratio(get("churned", 0), alive_at_start or 0),
    }


def count_event(deltas: KpiDeltas, memory: KpiMemory, ts_ms: int) -> None:
    """Any event makes its customer active in the event's buckets."""
    deltas.count_distinct(memory.active_days, "active", day_of(ts_ms))


def count_order(deltas: KpiDeltas, memory: KpiMemory, history: PurchaseHistory, ts_ms: int, amount_minor: int,
                horizon_ms: int) -> None:
    """An order's KPI contributions; call before the order is added to ``history``."""
    day = day_of(ts_ms)
    for metric, change_day, amount in churn_changes(history, ts_ms, horizon_ms):
        deltas.add_daily(change_day, metric, amount)
    deltas.add_daily(day, "orders")
    deltas.add_daily(day, "revenue_minor", amount_minor)
    previous_first_day = memory.order_days.first_day
    first_day = day if previous_first_day is None else min(previous_first_day, day)
    # A buyer is a repeat buyer of a bucket when they had ordered before the bucket started.
    for granularity, label, bucket_first in deltas.count_distinct(memory.order_days, "buyers", day):
        if first_day < bucket_first:
            deltas.add(granularity, label, "repeat_buyers")
    if previous_first_day is not None and day < previous_first_day:
        # An earlier first order arrived late: the old first order's bucket now has a repeat buyer.
        for granularity in GRANULARITIES:
            label, bucket_first, _ = bucket_days(granularity, previous_first_day)
            if day < bucket_first:
                deltas.add(granularity, label, "repeat_buyers")


def count_refund(deltas: KpiDeltas, ts_ms: int, amount_minor: int) -> None:
    deltas.add_daily(day_of(ts_ms), "refunds_minor", amount_minor)


def count_interaction(deltas: KpiDeltas, ts_ms: int, survey: str | None, score: int | None) -> None:
    day = day_of(ts_ms)
    deltas.add_daily(day, "interactions")
    if survey == "csat":
        deltas.add_daily(day, "csat_answers")
        if score >= 4:
            deltas.add_daily(day, "csat_satisfied")
    elif survey == "nps":
        deltas.add_daily(day, "nps_answers")
        if score >= 9:
            deltas.add_daily(day, "nps_promoters")
        elif score <= 6:
            deltas.add_daily(day, "nps_detractors")
