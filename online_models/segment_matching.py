"""Stable segment ids: match a new centroid set to the previous one.

Clusterers number their clusters arbitrarily and may renumber them between
snapshots. A minimum-cost assignment (Hungarian method) between the previous
and the new centroids, on their distance in the new snapshot's scaled space,
carries ids (and names) over; a pair further apart than ``max_distance`` is
not the same segment. Unmatched new centroids are births (fresh ids, never
reused), unmatched old ones deaths.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

__all__ = ["Matching", "match_centroids"]


@dataclass
class Matching:
    """Id of every new centroid (in order), and which ids were born and which died."""

    ids: list[int]
    births: list[int] = field(default_factory=list)
    deaths: list[int] = field(default_factory=list)
    distances: dict[int, float] = field(default_factory=dict)  # surviving id -> how far its centroid moved


def match_centroids(previous: dict[int, Sequence[float]], new: Sequence[Sequence[float]], max_distance: float,
                    next_id: int) -> Matching:
    """Ids for ``new`` centroids given the ``previous`` ones (id -> centroid, same space).

    >>> m = match_centroids({0: [0.0, 0.0], 1: [5.0, 5.0]}, [[5.1, 5.0], [0.2, 0.0], [20.0, 0.0]],
    ...                     max_distance=1.0, next_id=2)
    >>> m.ids, m.births, m.deaths
    ([1, 0, 2], [2], [])
    >>> match_centroids({0: [0.0], 1: [9.0]}, [[0.1]], max_distance=1.0, next_id=2).deaths
    [1]
    """
    old_ids = list(previous)
    ids: list[int | None] = [None] * len(new)
    distances: dict[int, float] = {}
    if old_ids and len(new):
        cost = np.linalg.norm(np.asarray([previous[i] for i in old_ids], dtype=float)[:, None, :]
                              - np.asarray(new, dtype=float)[None, :, :], axis=2)
        for row, column in zip(*linear_sum_assignment(cost)):
            if cost[row, column] <= max_distance:
                ids[column] = old_ids[row]
                distances[old_ids[row]] = round(float(cost[row, column]), 4)
    births = []
    for index, assigned in enumerate(ids):
        if assigned is None:
            ids[index] = next_id
            births.append(next_id)
            next_id += 1
    deaths = [i for i in old_ids if i not in distances]
    return Matching([int(i) for i in ids], births, deaths, distances)
