"""Mergeable quantile sketches of the live customer population, with deletions.

RFM scores rank a customer against everyone's *current* value, and a value
changes every time a customer buys. So the sketch must support removing the
old value as well as adding the new one. A bucketed histogram does: counts
per bucket add, subtract and merge (shards simply sum), memory is bounded by
the number of buckets, and the error is fixed by the bucket width.

``LogBuckets(alpha)`` is DDSketch's mapping: every positive value is
reported within relative error ``alpha`` (1% by default), so money and order
counts from 1 to 10^9 need ~1,000 buckets. Values <= 0 share one bucket.
``LinearBuckets(width)`` is exact up to ``width`` (used for days).
"""
from __future__ import annotations

import bisect
import itertools
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Protocol

__all__ = ["BucketMapping", "LogBuckets", "LinearBuckets", "QuantileSketch", "FrozenRanks"]

_NON_POSITIVE = -(10**9)


class BucketMapping(Protocol):
    def key(self, value: float) -> int: ...
    def value(self, key: int) -> float: ...


@dataclass(frozen=True)
class LogBuckets:
    """Relative-error buckets: ``value(key(x))`` is within ``alpha`` of ``x`` for x > 0.

    >>> buckets = LogBuckets(0.01)
    >>> abs(buckets.value(buckets.key(1234.5)) / 1234.5 - 1) <= 0.01
    True
    """

    alpha: float = 0.01

    @property
    def gamma(self) -> float:
        return (1 + self.alpha) / (1 - self.alpha)

    def key(self, value: float) -> int:
        if value <= 0:
            return _NON_POSITIVE
        return math.ceil(math.log(value) / math.log(self.gamma))

    def value(self, key: int) -> float:
        if key == _NON_POSITIVE:
            return 0.0
        return 2 * self.gamma**key / (self.gamma + 1)


@dataclass(frozen=True)
class LinearBuckets:
    """Fixed-width buckets, exact for integers when ``width`` is 1.

    >>> LinearBuckets(1).key(19_700), LinearBuckets(7).value(LinearBuckets(7).key(15))
    (19700, 14)
    """

    width: int = 1

    def key(self, value: float) -> int:
        return int(value // self.width)

    def value(self, key: int) -> float:
        return key * self.width


@dataclass
class QuantileSketch:
    """Bucket counts of the current population.

    >>> sketch = QuantileSketch(LinearBuckets(1))
    >>> for orders in (1, 1, 2, 3, 8):
    ...     sketch.add(orders)
    >>> sketch.replace(3, 4)        # a customer with 3 orders places a fourth
    >>> sketch.quantile(0.5), sketch.midrank(1), sketch.midrank(8)
    (2, 0.2, 0.9)
    """

    mapping: BucketMapping
    counts: Counter = field(default_factory=Counter)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def add(self, value: float, count: int = 1) -> None:
        key = self.mapping.key(value)
        self.counts[key] += count
        if self.counts[key] == 0:
            del self.counts[key]

    def remove(self, value: float) -> None:
        self.add(value, -1)

    def replace(self, old: float | None, new: float | None) -> None:
        if old is not None:
            self.remove(old)
        if new is not None:
            self.add(new)

    def merge(self, other: "QuantileSketch") -> None:
        self.counts.update(other.counts)

    def quantile(self, q: float) -> float | None:
        """Smallest bucket value with at least ``q`` of the population at or below it."""
        total = self.total
        if total <= 0:
            return None
        threshold = q * total
        running = 0
        for key in sorted(self.counts):
            running += self.counts[key]
            if running >= threshold:
                return self.mapping.value(key)
        return self.mapping.value(max(self.counts))

    def midrank(self, value: float) -> float | None:
        """Share of the population below ``value``, counting ties as half: ties get one score."""
        total = self.total
        if total <= 0:
            return None
        key = self.mapping.key(value)
        below = sum(count for k, count in self.counts.items() if k < key)
        return (below + self.counts.get(key, 0) / 2) / total

    def frozen(self) -> "FrozenRanks":
        """An immutable copy answering ``midrank`` in O(log buckets), for ranking many values."""
        return FrozenRanks(self.mapping, self.counts)

    def to_dict(self) -> dict[str, int]:
        return {str(key): count for key, count in sorted(self.counts.items())}

    @classmethod
    def from_dict(cls, mapping: BucketMapping, data: dict) -> "QuantileSketch":
        return cls(mapping, Counter({int(key): int(count) for key, count in data.items() if int(count)}))


class FrozenRanks:
    """Cumulative counts of a sketch at one moment: midranks by binary search.

    >>> sketch = QuantileSketch(LinearBuckets(1))
    >>> for orders in (1, 1, 2, 3, 8):
    ...     sketch.add(orders)
    >>> ranks = sketch.frozen()
    >>> [ranks.midrank(x) for x in (1, 2, 5, 8)] == [sketch.midrank(x) for x in (1, 2, 5, 8)]
    True
    """

    def __init__(self, mapping: BucketMapping, counts: Counter) -> None:
        self.mapping = mapping
        self.keys = sorted(key for key, count in counts.items() if count)
        self.counts = [counts[key] for key in self.keys]
        self.below = list(itertools.accumulate(self.counts, initial=0))
        self.total = self.below[-1]

    def midrank(self, value: float) -> float | None:
        if self.total <= 0:
            return None
        key = self.mapping.key(value)
        index = bisect.bisect_left(self.keys, key)
        tie = self.counts[index] if index < len(self.keys) and self.keys[index] == key else 0
        return (self.below[index] + tie / 2) / self.total
