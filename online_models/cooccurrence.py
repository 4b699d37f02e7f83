"""Item co-occurrence counts and the association measures computed from them at query time.

The stream keeps only counts, because counts add up: per order (basket) the
distinct items, every ordered pair of them, the number of baskets; per
"viewed X before buying Y" the cross pair and how many orders were preceded by
a view of X. Every measure (raw count, cosine, lift, Dunning's log-likelihood
ratio as in Mahout's correlated cross-occurrence) is a function of four counts
of one item pair, so it is computed when asked, for the measure asked.

Bounds that keep a busy shop linear (Mahout's limits, made deterministic so a
replay writes the same counts):

* a basket counts at most ``max_basket`` distinct items: the ones with the
  smallest hash of (order id, sku), a uniform sample that does not depend on
  the order of the lines, so a 100-item order costs 30·29 pair updates, not
  100·99;
* a customer counts every order up to ``max_orders``; their n-th order after
  that counts with probability ``max_orders / n`` (again by hash), so a reseller
  with 10,000 orders cannot outvote the shop.

Optional time decay is *forward decay*: an increment at event time ``t`` is
weighted ``2 ** ((t - landmark) / half_life)``. Weights only grow, so stored
sums never have to be rewritten; dividing by the weight of "now" gives the
decayed counts, and every measure's ranking is unchanged by that common factor.
"""
from __future__ import annotations

import hashlib
import heapq
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

__all__ = ["FIRST_ORDER", "MEASURES", "ItemSettings", "ItemCounts", "capped_basket", "order_counts", "ForwardDecay", "association",
           "log_likelihood_ratio", "rank_neighbours", "Neighbour"]

MEASURES = ("llr", "cosine", "lift", "count")

#: Decimal places scores are ranked (and reported) at: a different evaluation order of the same
#: formula must not reorder equal scores, so ties are broken by sku at this precision.
SCORE_DECIMALS = 9


def _rank_hash(*parts: str) -> int:
    return int.from_bytes(hashlib.blake2b("|".join(parts).encode(), digest_size=8).digest(), "big")


def capped_basket(order_id: str, skus: Iterable[str], max_basket: int) -> list[str]:
    """The order's distinct items, down-sampled to ``max_basket`` (0: no cap), sorted. The items viewed
    before an order are capped the same way.

    >>> capped_basket("o1", ["b", "a", "b", "c"], 0)
    ['a', 'b', 'c']
    >>> capped_basket("o1", ["b", "a", "c"], 2) == capped_basket("o1", ["c", "b", "a"], 2)
    True
    >>> len(capped_basket("o1", [f"sku-{i}" for i in range(100)], 30))
    30
    """
    distinct = set(skus)
    if max_basket <= 0 or len(distinct) <= max_basket:
        return sorted(distinct)
    return sorted(heapq.nsmallest(max_basket, distinct, key=lambda sku: _rank_hash(order_id, sku)))


def order_counts(order_id: str, nth_order: int, max_orders: int) -> bool:
    """Whether a customer's ``nth_order`` (1-based) adds to the shop-wide counts (``max_orders`` 0: all).

    >>> all(order_counts(f"o{n}", n, 500) for n in range(1, 501))
    True
    >>> kept = sum(order_counts(f"o{n}", n, 500) for n in range(501, 10_001))
    >>> 1300 < kept < 1700  # expected 500 * ln(10000 / 500) = 1498
    True
    """
    if max_orders <= 0 or nth_order <= max_orders:
        return True
    return _rank_hash("order", order_id) < (max_orders / nth_order) * 2.0**64


@dataclass(frozen=True)
class ForwardDecay:
    """Weights of forward decay; ``half_life_ms`` 0 means no decay (every weight is 1).

    >>> decay = ForwardDecay(half_life_ms=10, landmark_ms=0)
    >>> decay.weight(20), decay.scale(30)
    (4.0, 8.0)
    >>> 16.0 / decay.scale(30)  # four unit events at t=20, decayed to t=30
    2.0
    """

    half_life_ms: float = 0.0
    landmark_ms: int = 0

    #: 2**1000 still fits a double with room for sums; beyond it the landmark must move (rebuild).
    MAX_EXPONENT = 1000.0

    def weight(self, ts_ms: int) -> float:
        if not self.half_life_ms:
            return 1.0
        exponent = (ts_ms - self.landmark_ms) / self.half_life_ms
        if exponent > self.MAX_EXPONENT:
            raise OverflowError(f"event time {ts_ms} is {exponent:.0f} half-lives after the decay landmark; "
                                "rebuild the item matrices with a later landmark")
        return 2.0**exponent

    def scale(self, now_ms: int) -> float:
        """What a count stored as of ``now_ms`` is divided by to give decayed counts (1 without decay)."""
        return self.weight(now_ms)

    def amount(self, weight: float) -> str:
        """An increment as Redis receives it: integers stay integers, floats keep all 17 digits."""
        return str(int(weight)) if not self.half_life_ms else repr(weight)


@dataclass(frozen=True)
class ItemSettings:
    """Bounds of the counting (write side) and defaults of the queries (read side)."""

    max_basket: int = 30                 # distinct items of one order that count (0: all)
    max_orders_per_customer: int = 500   # a customer's orders beyond this count with probability max / n
    view_window_ms: int = 86_400_000     # a view credits orders up to this much later
    decay: ForwardDecay = ForwardDecay()
    recent_items: int = 20               # per customer, for recommendations
    recent_half_life_ms: float = 30 * 86_400_000.0
    min_support: float = 2.0             # pairs seen fewer times are not neighbours
    candidates: int = 500                # most frequent neighbours an item is scored among
    indicators_per_item: int = 50        # neighbours of one recent item that vote in recommendations


@dataclass
class ItemCounts:
    """Count increments (one batch's, or a whole rebuild's), keyed like the Redis sorted sets.

    >>> counts = ItemCounts()
    >>> counts.add_basket(["a", "b", "c"], 1.0, segment=FIRST_ORDER)
    >>> counts.add_cross(viewed=["a", "d"], basket=["a", "b"], weight=1.0)
    >>> counts.pairs[("a", "b")], counts.pairs[("b", "a")], counts.items["c"], counts.baskets
    (1.0, 1.0, 1.0, 1.0)
    >>> sorted(counts.cross), counts.viewed["d"]
    ([('a', 'b'), ('d', 'a'), ('d', 'b')], 1.0)
    """

    pairs: Counter = field(default_factory=Counter)       # (x, y) -> baskets holding both, both directions
    items: Counter = field(default_factory=Counter)       # y -> baskets holding y
    baskets: float = 0.0
    cross: Counter = field(default_factory=Counter)       # (viewed x, bought y) -> orders, x != y
    viewed: Counter = field(default_factory=Counter)      # x -> orders with x viewed in the window before
    popular: dict[str, Counter] = field(default_factory=dict)  # segment -> y -> baskets of that segment

    def add_basket(self, basket: Sequence[str], weight: float, segment: str | None) -> None:
        """``segment``: whose best-sellers the basket adds to (None: no segment's)."""
        self.baskets += weight
        by_segment = self.popular.setdefault(segment, Counter()) if segment is not None else Counter()
        for x in basket:
            self.items[x] += weight
            by_segment[x] += weight
            for y in basket:
                if x != y:
                    self.pairs[x, y] += weight

    def add_cross(self, viewed: Iterable[str], basket: Sequence[str], weight: float) -> None:
        for x in viewed:
            self.viewed[x] += weight
            for y in basket:
                if x != y:
                    self.cross[x, y] += weight

    def __bool__(self) -> bool:
        return bool(self.baskets or self.viewed)

    def sorted_set_increments(self, decay: ForwardDecay) -> dict[str, dict[str, str]]:
        """Sorted-set key (under the prefix) -> member -> increment, as the batch commit applies them."""
        keys: dict[str, dict[str, str]] = {}

        def add(key: str, member: str, weight: float) -> None:
            keys.setdefault(key, {})[member] = decay.amount(weight)

        for (x, y), weight in self.pairs.items():
            add(co_key(x), y, weight)
        for (x, y), weight in self.cross.items():
            add(viewed_bought_key(x), y, weight)
        for y, weight in self.items.items():
            add(ITEM_COUNTS_KEY, y, weight)
        for x, weight in self.viewed.items():
            add(VIEWED_BEFORE_KEY, x, weight)
        for segment, counts in self.popular.items():
            for y, weight in counts.items():
                add(popular_key(segment), y, weight)
        if self.baskets:
            add(TOTALS_KEY, "baskets", self.baskets)
        return keys


#: The best-sellers of customers' first orders: what a customer without history is recommended.
FIRST_ORDER = "first_order"

# Sorted-set keys, under the Redis prefix. ``{sku}`` is a hash tag: one item's neighbours stay in one slot.
ITEM_COUNTS_KEY = "item:counts"
VIEWED_BEFORE_KEY = "item:viewed_before"
TOTALS_KEY = "item:totals"


def co_key(sku: str) -> str:
    return f"item:{{{sku}}}:co"


def viewed_bought_key(sku: str) -> str:
    return f"item:{{{sku}}}:vb"


def popular_key(segment: str) -> str:
    return f"item:popular:{segment}"


# -- measures ------------------------------------------------------------------------------------------


def _xlogx(values: np.ndarray) -> np.ndarray:
    positive = values > 0
    return np.where(positive, values * np.log(np.where(positive, values, 1.0)), 0.0)


def _entropy(*parts: np.ndarray) -> np.ndarray:
    """Mahout's unnormalised entropy: N log N - Σ k log k."""
    return _xlogx(sum(parts)) - sum(_xlogx(part) for part in parts)


def log_likelihood_ratio(k11, k12, k21, k22) -> np.ndarray:
    """Dunning's G² of a 2x2 contingency table (Mahout's ``LogLikelihood.logLikelihoodRatio``).

    >>> round(float(log_likelihood_ratio(10, 0, 0, 10)), 4)  # 2·20·ln 2
    27.7259
    >>> float(log_likelihood_ratio(5, 5, 5, 5))  # independent
    0.0
    """
    k11, k12, k21, k22 = (np.asarray(k, dtype=float) for k in (k11, k12, k21, k22))
    rows = _entropy(k11 + k12, k21 + k22)
    columns = _entropy(k11 + k21, k12 + k22)
    matrix = _entropy(k11, k12, k21, k22)
    return np.maximum(2.0 * (rows + columns - matrix), 0.0)  # below 0 only by rounding


def association(measure: str, together, anchor_total, neighbour_totals, baskets) -> np.ndarray:
    """How strongly each neighbour goes with the anchor item, from counts.

    ``together``: orders with both; ``anchor_total``: orders with the anchor (bought, or viewed before
    for cross-occurrence); ``neighbour_totals``: orders with each neighbour; ``baskets``: all orders.
    LLR is signed: negative where a pair occurs *less* often than independence predicts, so that a
    best-seller that merely shows up everywhere ranks below a real complement.

    >>> [round(float(s), 3) for s in association("lift", [2, 2], 4, [2, 8], 10)]
    [2.5, 0.625]
    >>> [round(float(s), 3) for s in association("llr", [2, 2], 4, [2, 8], 10)]  # mirror-image tables
    [4.463, -4.463]
    """
    k11 = np.asarray(together, dtype=float)
    n_y = np.asarray(neighbour_totals, dtype=float)
    n_x, n = float(anchor_total), float(baskets)
    if measure == "count":
        return k11
    if measure == "cosine":
        return k11 / np.sqrt(np.maximum(n_x * n_y, 1e-300))
    if measure == "lift":
        return k11 * n / np.maximum(n_x * n_y, 1e-300)
    if measure == "llr":
        k12 = np.maximum(n_x - k11, 0.0)
        k21 = np.maximum(n_y - k11, 0.0)
        k22 = np.maximum(n - n_x - n_y + k11, 0.0)
        return np.where(k11 * n >= n_x * n_y, 1.0, -1.0) * log_likelihood_ratio(k11, k12, k21, k22)
    raise ValueError(f"measure must be one of {MEASURES}, got {measure!r}")


@dataclass(frozen=True)
class Neighbour:
    sku: str
    score: float
    together: float  # orders with both (decayed when decay is on)


def rank_neighbours(anchor: str, measure: str, neighbours: Sequence[str], together: Sequence[float],
                    anchor_total: float, neighbour_totals: Sequence[float], baskets: float, k: int,
                    min_support: float = 1.0) -> list[Neighbour]:
    """The ``k`` best neighbours of ``anchor``: pairs seen at least ``min_support`` times, best score first,
    ties broken by sku.

    >>> [n.sku for n in rank_neighbours("a", "count", ["c", "b", "d"], [2, 2, 1], 4, [3, 3, 1], 10, k=5,
    ...                                  min_support=2)]
    ['b', 'c']
    """
    if not neighbours:
        return []
    together_array = np.asarray(together, dtype=float)
    scores = association(measure, together_array, anchor_total, neighbour_totals, baskets)
    ranked = sorted(
        (-round(float(score), SCORE_DECIMALS), sku, float(count))
        for sku, score, count in zip(neighbours, scores, together_array)
        if count >= min_support and sku != anchor and math.isfinite(score))
    return [Neighbour(sku, -negative, count) for negative, sku, count in ranked[:k]]
