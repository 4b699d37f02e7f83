"""Exact incremental purchase history of one customer.

Everything a support agent or a model reads about purchases — orders, spend,
refunds, items, distinct purchase days, the rhythm of reorders — folded one
event at a time, so that events arriving out of order (within the allowed
lateness) give exactly the same state as in order.

Sums and counts commute, so order does not matter for them. The rhythm
(mean and spread of the gaps between orders) does: an order arriving late
splits a gap in two. We keep the newest ``tail_size`` order times sorted and
fold older gaps into running sums; a late order lands inside the tail (the
tail spans far more than the lateness), where its gaps are recomputed
exactly. Distinct purchase days use the same tail idea.
"""
from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field

__all__ = ["PurchaseHistory", "DAY_MS"]

DAY_MS = 86_400_000


@dataclass
class PurchaseHistory:
    """Orders and refunds of one customer.

    >>> history = PurchaseHistory()
    >>> history.add_order(ts_ms=10 * DAY_MS, amount_minor=5000, units=2)
    >>> history.add_order(ts_ms=30 * DAY_MS, amount_minor=3000, units=1)
    >>> history.add_order(ts_ms=20 * DAY_MS, amount_minor=1500, units=1)   # arrives late
    >>> history.add_refund(ts_ms=31 * DAY_MS, amount_minor=500, units=1)
    >>> history.orders, history.net_minor, history.mean_gap_days, history.gap_std_days
    (3, 9000, 10.0, 0.0)
    >>> history.average_order_minor, history.distinct_days
    (3000.0, 3)
    """

    orders: int = 0
    refunds: int = 0
    gross_minor: int = 0
    refunded_minor: int = 0
    units: int = 0
    units_refunded: int = 0
    first_order_ms: int | None = None
    last_order_ms: int | None = None
    tail_size: int = 16
    recent_order_ms: list[int] = field(default_factory=list)
    recent_order_minor: list[int] = field(default_factory=list)  # amounts of the tail's orders (spend trend)
    old_gaps: int = 0
    old_gap_sum_ms: float = 0.0
    old_gap_sq_sum_days: float = 0.0
    recent_days: list[int] = field(default_factory=list)
    old_days: int = 0

    def add_order(self, ts_ms: int, amount_minor: int, units: int) -> None:
        self.orders += 1
        self.gross_minor += amount_minor
        self.units += units
        self.first_order_ms = ts_ms if self.first_order_ms is None else min(self.first_order_ms, ts_ms)
        self.last_order_ms = ts_ms if self.last_order_ms is None else max(self.last_order_ms, ts_ms)
        self._remember_order(ts_ms, amount_minor)
        self._remember_day(ts_ms // DAY_MS)

    def add_refund(self, ts_ms: int, amount_minor: int, units: int) -> None:
        """Refunds lower net spend and units; they do not undo the order's frequency."""
        self.refunds += 1
        self.refunded_minor += amount_minor
        self.units_refunded += units

    # -- derived values ----------------------------------------------------------------------------

    @property
    def net_minor(self) -> int:
        return self.gross_minor - self.refunded_minor

    @property
    def average_order_minor(self) -> float | None:
        """Net spend per order (refunds included)."""
        return self.net_minor / self.orders if self.orders else None

    @property
    def distinct_days(self) -> int:
        return self.old_days + len(self.recent_days)

    @property
    def gaps(self) -> int:
        return max(self.orders - 1, 0)

    @property
    def mean_gap_days(self) -> float | None:
        """Mean days between consecutive orders = span / (orders - 1)."""
        if self.gaps == 0:
            return None
        return (self.last_order_ms - self.first_order_ms) / self.gaps / DAY_MS

    @property
    def gap_std_days(self) -> float | None:
        """Population standard deviation of the days between consecutive orders."""
        if self.gaps == 0:
            return None
        recent = [(b - a) / DAY_MS for a, b in zip(self.recent_order_ms, self.recent_order_ms[1:])]
        square_sum = self.old_gap_sq_sum_days + sum(g * g for g in recent)
        mean = self.mean_gap_days
        return math.sqrt(max(square_sum / self.gaps - mean * mean, 0.0))

    def expected_next_order_ms(self) -> int | None:
        """Last order plus the mean gap; None before a second order shows a rhythm."""
        mean = self.mean_gap_days
        return None if mean is None else int(self.last_order_ms + mean * DAY_MS)

    # -- tails ----------------------------------------------------------------------------------------

    def _remember_order(self, ts_ms: int, amount_minor: int) -> None:
        recent, amounts = self.recent_order_ms, self.recent_order_minor
        if len(recent) == self.tail_size and ts_ms < recent[0]:
            # Older than the whole tail: far beyond any allowed lateness. Count its gap to the tail
            # start; the gap sum stays exact (it is span-based), the spread is approximated.
            self._fold_gap(recent[0] - ts_ms)
            return
        index = bisect.bisect_right(recent, ts_ms)
        while index > 0 and recent[index - 1] == ts_ms and amounts[index - 1] > amount_minor:
            index -= 1  # equal times ordered by amount: arrival order must not change the state
        recent.insert(index, ts_ms)
        amounts.insert(index, amount_minor)
        if len(recent) > self.tail_size:
            self._fold_gap(recent[1] - recent[0])
            del recent[0], amounts[0]

    def _fold_gap(self, gap_ms: int) -> None:
        self.old_gaps += 1
        self.old_gap_sum_ms += gap_ms
        self.old_gap_sq_sum_days += (gap_ms / DAY_MS) ** 2

    def _remember_day(self, day: int) -> None:
        days = self.recent_days
        index = bisect.bisect_left(days, day)
        if index < len(days) and days[index] == day:
            return
        if len(days) == self.tail_size and index == 0:
            self.old_days += 1  # older than every remembered day: assume distinct (documented)
            return
        days.insert(index, day)
        if len(days) > self.tail_size:
            del days[0]
            self.old_days += 1

    # -- plain data ---------------------------------------------------------------------------------

    def to_dict(self) -> dict:
        return dict(self.__dict__, recent_order_ms=list(self.recent_order_ms),
                    recent_order_minor=list(self.recent_order_minor), recent_days=list(self.recent_days))

    @classmethod
    def from_dict(cls, data: dict) -> "PurchaseHistory":
        if "recent_order_minor" not in data:  # stored before amounts were kept: assume average orders
            average = round(data["gross_minor"] / data["orders"]) if data.get("orders") else 0
            data = {**data, "recent_order_minor": [average] * len(data.get("recent_order_ms", []))}
        return cls(**data)
