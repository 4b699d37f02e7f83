"""What one customer's items leave behind: recent items for recommendations, and the view→purchase join.

"Viewed X, then bought Y" pairs a product view (or add-to-cart) with an order
of the same customer up to ``window_ms`` later. The two arrive on different
topics, which drain at different speeds when a backlog is replayed, so the join
is symmetric: an order credits the views already remembered, and a view that
arrives after the order credits the remembered orders it precedes. Each order
credits a viewed item once, however many times it was viewed.

Memory stays bounded and the result does not depend on how the two topics
interleave, as long as each topic is in event-time order within the allowed
lateness: views are forgotten once an order later than ``view + window +
lateness`` has been seen (no order that can still arrive could use them), and
orders once a view later than ``order + lateness`` has been seen. Counts cap
the rest (``MAX_VIEWS``, ``MAX_PENDING_ORDERS``) for customers that do not
produce the other kind of event.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from online_models.cooccurrence import capped_basket

__all__ = ["ItemMemory", "Credit", "KIND_WEIGHTS"]

#: How much a recent item says about what the customer wants next (bought > carted > viewed).
KIND_WEIGHTS = {"bought": 1.0, "carted": 0.6, "viewed": 0.3}
MAX_VIEWS = 100
MAX_PENDING_ORDERS = 10
MAX_BOUGHT = 50


@dataclass(frozen=True)
class Credit:
    """New "viewed X then bought Y" evidence: ``viewed`` items preceded the order's ``basket``."""

    viewed: tuple[str, ...]
    basket: tuple[str, ...]
    weight: float


@dataclass
class ItemMemory:
    """One customer's item memory (part of the customer state).

    >>> memory = ItemMemory()
    >>> memory.view("shoe", 1_000, "viewed", window_ms=3_600_000, lateness_ms=0)
    []
    >>> memory.order("o1", 2_000, ["sock", "shoe"], 1.0, window_ms=3_600_000, lateness_ms=0, max_viewed=30)
    Credit(viewed=('shoe',), basket=('shoe', 'sock'), weight=1.0)
    >>> memory.view("lace", 1_500, "viewed", window_ms=3_600_000, lateness_ms=0)  # late, before the order
    [Credit(viewed=('lace',), basket=('shoe', 'sock'), weight=1.0)]
    >>> memory.view("shoe", 1_600, "viewed", window_ms=3_600_000, lateness_ms=0)  # already credited
    []
    >>> [sku for sku, _, _ in memory.recent], memory.bought
    (['lace', 'shoe', 'sock'], ['shoe', 'sock'])
    """

    recent: list[list] = field(default_factory=list)   # [sku, ts_ms, kind], oldest first, one entry per sku
    bought: list[str] = field(default_factory=list)    # distinct purchased skus, oldest first
    views: list[list] = field(default_factory=list)    # [sku, ts_ms] still joinable with a future order
    orders: list[list] = field(default_factory=list)   # [ts_ms, weight, basket, credited] joinable with a late view
    newest_order_ms: int | None = None
    newest_view_ms: int | None = None

    # -- events ------------------------------------------------------------------------------

    def order(self, order_id: str, ts_ms: int, basket: Sequence[str], weight: float | None, *, window_ms: int,
              lateness_ms: int, max_viewed: int, recent_limit: int = 20,
              bought: Sequence[str] | None = None) -> Credit | None:
        """Remember an order; ``weight`` None: it does not count shop-wide (only the customer's own memory).

        ``basket``: the items that count (a sample of a big order); ``bought``: all of them (default: the
        basket), which the customer's recent and purchased items remember. Returns the views it credits
        (None when there is nothing to credit).
        """
        basket = tuple(sorted(set(basket)))
        for sku in basket if bought is None else sorted(set(bought)):
            self._remember(sku, ts_ms, "bought", recent_limit)
            if sku in self.bought:
                self.bought.remove(sku)
            self.bought.append(sku)
        del self.bought[:-MAX_BOUGHT]
        self.newest_order_ms = ts_ms if self.newest_order_ms is None else max(self.newest_order_ms, ts_ms)
        credit = None
        if weight is not None and basket:
            viewed = capped_basket(order_id, (sku for sku, viewed_ms in self.views
                                              if ts_ms - window_ms <= viewed_ms < ts_ms), max_viewed)
            self.orders.append([ts_ms, weight, list(basket), viewed])
            self.orders.sort(key=lambda entry: entry[0])
            credit = Credit(tuple(viewed), basket, weight) if viewed else None
        self._forget(window_ms, lateness_ms)
        return credit

    def view(self, sku: str, ts_ms: int, kind: str, *, window_ms: int, lateness_ms: int, max_viewed: int = 30,
             recent_limit: int = 20) -> list[Credit]:
        """Remember a product view or add-to-cart; returns the remembered orders it now credits."""
        self._remember(sku, ts_ms, kind, recent_limit)
        credits = []
        for ts_order, weight, basket, credited in self.orders:
            if ts_ms < ts_order <= ts_ms + window_ms and sku not in credited and len(credited) < max_viewed:
                credited.append(sku)
                credited.sort()
                credits.append(Credit((sku,), tuple(basket), weight))
        if [sku, ts_ms] not in self.views:
            self.views.append([sku, ts_ms])
            self.views.sort(key=lambda entry: (entry[1], entry[0]))
        self.newest_view_ms = ts_ms if self.newest_view_ms is None else max(self.newest_view_ms, ts_ms)
        self._forget(window_ms, lateness_ms)
        return credits

    def _forget(self, window_ms: int, lateness_ms: int) -> None:
        """Drop what no event that can still arrive will join with. Both clocks only move forward and both
        methods prune the same way, so what is kept depends on the events, not on their interleaving."""
        if self.newest_order_ms is not None:
            self.views = [v for v in self.views if v[1] + window_ms + lateness_ms >= self.newest_order_ms]
        del self.views[:-MAX_VIEWS]
        if self.newest_view_ms is not None:
            self.orders = [o for o in self.orders if o[0] + lateness_ms > self.newest_view_ms]
        del self.orders[:-MAX_PENDING_ORDERS]

    def _remember(self, sku: str, ts_ms: int, kind: str, limit: int) -> None:
        """Keep the customer's ``limit`` most recent distinct items and how they last met each (the strongest
        way at equal times): a rule that gives the same list whatever order the two topics arrive in."""
        for entry in self.recent:
            if entry[0] == sku:
                if ts_ms > entry[1] or (ts_ms == entry[1] and KIND_WEIGHTS[kind] > KIND_WEIGHTS[entry[2]]):
                    entry[1], entry[2] = ts_ms, kind
                break
        else:
            self.recent.append([sku, ts_ms, kind])
        self.recent.sort(key=lambda entry: (entry[1], entry[0]))
        del self.recent[:-limit]

    # -- storage -------------------------------------------------------------------------------

    def to_dict(self) -> dict:
        return {"recent": self.recent, "bought": self.bought, "views": self.views, "orders": self.orders,
                "newest_order_ms": self.newest_order_ms, "newest_view_ms": self.newest_view_ms}

    @classmethod
    def from_dict(cls, data: dict | None) -> "ItemMemory":
        return cls(**data) if data else cls()
