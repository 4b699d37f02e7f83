"""Personalised recommendations: the customer's recent items vote for their LLR neighbours.

This is Mahout's correlated cross-occurrence recommender evaluated per request:
each recent item is an anchor, bought items vote with their "also bought"
indicators and viewed / carted items with their "viewed then bought" ones. A
vote is the indicator's LLR times the anchor's weight: how strongly the
customer met it (bought > carted > viewed) and how recently (half-life in
event time). Items the customer already bought can be left out. When the
customer has no history, or their items have no indicators yet, the list is
filled with what sells best in their segment, then in the whole shop.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

from online_models.cooccurrence import SCORE_DECIMALS, Neighbour
from online_models.item_memory import KIND_WEIGHTS

__all__ = ["Anchor", "Recommendation", "anchor_weight", "recommend"]


@dataclass(frozen=True)
class Anchor:
    """A recent item of the customer, with its weight and its indicators (positive LLR neighbours)."""

    sku: str
    kind: str
    weight: float
    indicators: Sequence[Neighbour]


@dataclass(frozen=True)
class Recommendation:
    sku: str
    score: float
    source: str                   # "personal", "segment:<name>" or "popular"
    because: tuple[str, ...] = ()  # the anchors that voted, strongest first


def anchor_weight(kind: str, ts_ms: int, as_of_ms: int, half_life_ms: float) -> float:
    """How much a recent item speaks for the customer now.

    >>> anchor_weight("bought", 0, 0, 1000), anchor_weight("viewed", 0, 2000, 1000)
    (1.0, 0.075)
    """
    return KIND_WEIGHTS[kind] * 2.0 ** (-max(as_of_ms - ts_ms, 0) / half_life_ms)


def recommend(anchors: Iterable[Anchor], exclude: set[str], k: int,
              fallbacks: Sequence[tuple[str, Sequence[tuple[str, float]]]] = ()) -> list[Recommendation]:
    """The ``k`` best items: votes of the anchors first, then each fallback list (source, [(sku, count)]).

    >>> from online_models.cooccurrence import Neighbour
    >>> anchors = [Anchor("tent", "bought", 1.0, [Neighbour("pegs", 12.0, 5), Neighbour("stove", 3.0, 2)]),
    ...            Anchor("mat", "viewed", 0.5, [Neighbour("stove", 8.0, 4), Neighbour("tent", 9.0, 3)])]
    >>> [(r.sku, r.score, r.because) for r in recommend(anchors, exclude={"tent"}, k=2)]
    [('pegs', 12.0, ('tent',)), ('stove', 7.0, ('mat', 'tent'))]
    >>> [(r.sku, r.source) for r in recommend([], set(), 2, [("segment:new", [("cap", 9), ("hat", 4)])])]
    [('cap', 'segment:new'), ('hat', 'segment:new')]
    """
    votes: dict[str, dict[str, float]] = {}
    for anchor in anchors:
        for neighbour in anchor.indicators:
            if neighbour.score > 0 and neighbour.sku not in exclude:
                by_anchor = votes.setdefault(neighbour.sku, {})
                by_anchor[anchor.sku] = by_anchor.get(anchor.sku, 0.0) + anchor.weight * neighbour.score
    ranked = sorted((-round(sum(by_anchor.values()), SCORE_DECIMALS), sku) for sku, by_anchor in votes.items())
    picks = [Recommendation(sku, -negative, "personal",
                            tuple(a for a, _ in sorted(votes[sku].items(), key=lambda kv: (-kv[1], kv[0]))))
             for negative, sku in ranked[:k]]
    chosen = {pick.sku for pick in picks} | exclude
    for source, popular in fallbacks:
        for sku, count in popular:
            if len(picks) >= k:
                return picks
            if sku not in chosen:
                chosen.add(sku)
                picks.append(Recommendation(sku, float(count), source))
    return picks
