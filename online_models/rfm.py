"""RFM scores (1–5) and the classic named RFM segments.

Scores are quintiles of the live population: a customer's midrank (share of
customers below, ties counted half) in each dimension, cut into fifths. For
recency the rank is of the last order day, so more recent = higher score.

Named segments follow the usual R × FM grid, with FM = round-half-up of
(F + M) / 2. Every (R, FM) cell has exactly one name:

====  ================  ==================  ===========  ===========  ===========
R     FM = 1            FM = 2              FM = 3       FM = 4       FM = 5
====  ================  ==================  ===========  ===========  ===========
5     New               Potential loyalist  Loyal        Champions    Champions
4     Promising         Potential loyalist  Loyal        Champions    Champions
3     About to sleep    Need attention      Loyal        Loyal        Loyal
2     Hibernating       Hibernating         At risk      At risk      At risk
1     Lost              Lost                At risk      Can't lose   Can't lose
====  ================  ==================  ===========  ===========  ===========
"""
from __future__ import annotations

from dataclasses import dataclass

from typing import Mapping, Sequence

from online_models.quantiles import BucketMapping, LinearBuckets, LogBuckets, QuantileSketch

__all__ = ["SEGMENT_NAMES", "POPULATION_SKETCHES", "RfmScores", "score_from_rank", "segment_name",
           "population_sketches"]

#: Population sketches behind the scores: the day of the last order (exact, one bucket per day),
#: the number of orders and net spend in minor units (1% relative error; exact below ~50 orders).
POPULATION_SKETCHES: dict[str, BucketMapping] = {
    "last_order_day": LinearBuckets(1),
    "orders": LogBuckets(0.01),
    "net_minor": LogBuckets(0.01),
    "value_minor": LogBuckets(0.01),   # predicted CLV if retained: who is in the top CLV decile (alerts)
}

SEGMENT_NAMES = (
    "Champions", "Loyal", "Potential loyalist", "New", "Promising", "Need attention", "About to sleep",
    "At risk", "Can't lose them", "Hibernating", "Lost",
)

_GRID = {  # R -> names for FM = 1..5
    5: ("New", "Potential loyalist", "Loyal", "Champions", "Champions"),
    4: ("Promising", "Potential loyalist", "Loyal", "Champions", "Champions"),
    3: ("About to sleep", "Need attention", "Loyal", "Loyal", "Loyal"),
    2: ("Hibernating", "Hibernating", "At risk", "At risk", "At risk"),
    1: ("Lost", "Lost", "At risk", "Can't lose them", "Can't lose them"),
}


def population_sketches(bucket_counts: Sequence[Mapping[str, str | int]]) -> dict[str, QuantileSketch]:
    """The population sketches from their stored bucket counts, in :data:`POPULATION_SKETCHES` order."""
    return {name: QuantileSketch.from_dict(mapping, counts)
            for (name, mapping), counts in zip(POPULATION_SKETCHES.items(), bucket_counts)}


def score_from_rank(midrank: float) -> int:
    """Quintile score of a midrank in [0, 1].

    >>> [score_from_rank(r) for r in (0.0, 0.19, 0.2, 0.5, 0.99, 1.0)]
    [1, 1, 2, 3, 5, 5]
    """
    return 1 + min(4, int(midrank * 5))


def segment_name(recency: int, frequency: int, monetary: int) -> str:
    """Named segment of RFM scores.

    >>> segment_name(5, 5, 4), segment_name(5, 1, 1), segment_name(1, 5, 5), segment_name(1, 1, 2)
    ('Champions', 'New', "Can't lose them", 'Lost')
    """
    frequency_monetary = (frequency + monetary + 1) // 2
    return _GRID[recency][frequency_monetary - 1]


@dataclass(frozen=True)
class RfmScores:
    """R, F and M scores with the derived segment and weighted value.

    >>> scores = RfmScores(4, 3, 5)
    >>> scores.segment, scores.value((0.5, 0.25, 0.25))
    ('Champions', 4.0)
    """

    recency: int
    frequency: int
    monetary: int

    @property
    def segment(self) -> str:
        return segment_name(self.recency, self.frequency, self.monetary)

    def value(self, weights: tuple[float, float, float] = (1 / 3, 1 / 3, 1 / 3)) -> float:
        """``V = wR·R + wF·F + wM·M``; with weights summing to 1 it stays on the 1–5 scale."""
        w_r, w_f, w_m = weights
        return w_r * self.recency + w_f * self.frequency + w_m * self.monetary
