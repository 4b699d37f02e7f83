"""Batch k-means (Lloyd, best of several k-means++ restarts) on a few thousand points, with numpy.

Why a batch method next to river's online k-means: an online k-means never leaves the local optimum its
first centres led it into. On planted segments the segment trainer sometimes ends with two centres
inside one segment and one centre spanning two others (adjusted Rand 0.50 instead of 0.88, depending on
nothing more than the order of the first samples). The trainer therefore checks, at each snapshot,
whether a restarted batch k-means on its recent customers explains them clearly better, and if so moves
the online centres there (online_models/segment_learning.py).
"""
from __future__ import annotations

import random
from typing import Sequence

import numpy as np

__all__ = ["kmeans_plus_plus", "inertia", "lloyd", "best_kmeans"]


def kmeans_plus_plus(points: Sequence[Sequence[float]], k: int, seed: int) -> list[list[float]]:
    """k-means++ seeding: each next centre drawn with probability ∝ squared distance to the nearest chosen.

    >>> centres = kmeans_plus_plus([[0.0], [0.1], [10.0], [10.1]], k=2, seed=1)
    >>> sorted(round(c[0]) for c in centres)
    [0, 10]
    """
    rng = random.Random(seed)
    centres = [list(points[rng.randrange(len(points))])]
    nearest = [_sq(p, centres[0]) for p in points]
    while len(centres) < min(k, len(points)):
        total = sum(nearest)
        if total == 0:
            break
        pick, acc = rng.random() * total, 0.0
        for index, d in enumerate(nearest):
            acc += d
            if acc >= pick:
                break
        centres.append(list(points[index]))
        nearest = [min(d, _sq(p, centres[-1])) for d, p in zip(nearest, points)]
    return centres


def _sq(a: Sequence[float], b: Sequence[float]) -> float:
    return sum((x - y) ** 2 for x, y in zip(a, b))


def inertia(points: np.ndarray, centres: np.ndarray) -> float:
    """Sum of squared distances of each point to its nearest centre.

    >>> inertia(np.array([[0.0], [2.0], [10.0]]), np.array([[1.0], [10.0]]))
    2.0
    """
    return float(_squared_distances(points, centres).min(axis=1).sum())


def lloyd(points: np.ndarray, centres: np.ndarray, max_iter: int = 50) -> np.ndarray:
    """Lloyd iterations from ``centres`` until no point changes centre; a centre left empty stays put.

    >>> lloyd(np.array([[0.0], [1.0], [9.0], [11.0]]), np.array([[0.0], [1.0]])).ravel().tolist()
    [0.5, 10.0]
    """
    centres = centres.astype(float).copy()
    labels = None
    for _ in range(max_iter):
        new_labels = _squared_distances(points, centres).argmin(axis=1)
        if labels is not None and np.array_equal(new_labels, labels):
            break
        labels = new_labels
        for index in range(len(centres)):
            members = points[labels == index]
            if len(members):
                centres[index] = members.mean(axis=0)
    return centres


def best_kmeans(points: Sequence[Sequence[float]], k: int, n_init: int = 4, seed: int = 0) -> np.ndarray:
    """The lowest-inertia result of ``n_init`` k-means++ seeded Lloyd runs (deterministic for a seed).

    >>> points = [[0.0, 0.0], [0.2, 0.0], [5.0, 5.0], [5.2, 5.0], [9.0, 0.0], [9.2, 0.0]]
    >>> sorted(round(float(c[0]), 1) for c in best_kmeans(points, k=3, seed=1))
    [0.1, 5.1, 9.1]
    """
    array = np.asarray(points, dtype=float)
    runs = [lloyd(array, np.asarray(kmeans_plus_plus(array.tolist(), k, seed + run), dtype=float))
            for run in range(n_init)]
    return min(runs, key=lambda centres: inertia(array, centres))


def _squared_distances(points: np.ndarray, centres: np.ndarray) -> np.ndarray:
    return ((points[:, None, :] - centres[None, :, :]) ** 2).sum(axis=2)
