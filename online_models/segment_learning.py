"""Online clustering of customer feature vectors with river, behind one small interface.

The learner buffers a warm-up sample, fits the :class:`~online_models.segment_features.Scaler`
on it, seeds the k-means family with k-means++ on the same sample (river's
``KMeans`` draws its first centres at random and can leave a centre without
members for good), and from then on learns one vector at a time.

A shop's feature distribution moves as its customers age (tenure and lifetime
spend grow), so a scaler frozen on the first weeks weighs features wrongly a
year later (adjusted Rand index 0.73 instead of 0.85 on planted segments). The
k-means family therefore refits the scaler from running moments of every sample
seen and re-expresses its centres in the new scale (an affine map per column);
the density-based clusterers keep micro-cluster radii in the old scale, so their
scaler stays frozen after the warm-up.
Four river clusterers are available; bench/segments.py compares them on planted
segments and docs/segments.md records why ``kmeans`` is the default.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
from river import cluster

from online_models.batch_kmeans import best_kmeans, inertia, kmeans_plus_plus
from online_models.segment_features import WEIGHTS, Scaler

__all__ = ["CLUSTERERS", "SegmentLearner", "Moments"]


def _kmeans(k: int, seed: int):
    # Step 0.01: 0.002 kept snapshots steadier through a pipeline backlog but left the planted-segment ARI at
    # 0.48 (centres seeded in the shop's first weeks never reached the later population); docs/segments.md.
    return cluster.KMeans(n_clusters=k, halflife=0.01, sigma=0.0, seed=seed)


def _streamkmeans(k: int, seed: int):
    return cluster.STREAMKMeans(chunk_size=100, n_clusters=k, halflife=0.05, seed=seed)


def _denstream(k: int, seed: int):
    return cluster.DenStream(decaying_factor=0.001, beta=0.5, mu=4, epsilon=0.6, n_samples_init=500,
                             stream_speed=100)


def _dbstream(k: int, seed: int):
    return cluster.DBSTREAM(clustering_threshold=1.2, fading_factor=0.0005, cleanup_interval=500,
                            intersection_factor=0.3, minimum_weight=5.0)


#: Name -> factory(k, seed). k is a target for the k-means family; the density-based ones find their own.
CLUSTERERS: dict[str, Callable[[int, int], object]] = {
    "kmeans": _kmeans, "streamkmeans": _streamkmeans, "denstream": _denstream, "dbstream": _dbstream}


class Moments:
    """Running mean and variance per column (Welford), for refitting the scaler.

    >>> moments = Moments(2)
    >>> for row in ([1.0, 5.0], [3.0, 5.0]):
    ...     moments.update(row)
    >>> moments.scaler(weights=(1.0, 1.0))
    Scaler(mean=(2.0, 5.0), scale=(1.0, 1.0), weights=(1.0, 1.0))
    """

    def __init__(self, width: int) -> None:
        self.n, self.mean, self.m2 = 0, [0.0] * width, [0.0] * width

    def update(self, row: Sequence[float]) -> None:
        self.n += 1
        for i, v in enumerate(row):
            delta = v - self.mean[i]
            self.mean[i] += delta / self.n
            self.m2[i] += delta * (v - self.mean[i])

    def scaler(self, weights: Sequence[float]) -> Scaler:
        scale = tuple((m2 / self.n) ** 0.5 or 1.0 for m2 in self.m2)
        return Scaler(tuple(self.mean), scale, tuple(weights))


class SegmentLearner:
    """Warm-up, frozen scaler, then a river clusterer learning one vector at a time.

    >>> learner = SegmentLearner("kmeans", n_segments=2, warmup=40, weights=(1.0, 1.0))
    >>> for i in range(200):
    ...     learner.learn([float(i % 2) * 10 + (i % 7) * 0.1, 1.0])
    >>> sorted(round(learner.scaler.inverse(c)[0]) for c in learner.centroids())
    [0, 10]
    """

    restarts = 0  # class default: checkpoints pickled before restarts existed load without it

    def __init__(self, algorithm: str = "kmeans", n_segments: int = 4, warmup: int = 1000, seed: int = 42,
                 weights: Sequence[float] = WEIGHTS, rescale_every: int = 1000) -> None:
        if algorithm not in CLUSTERERS:
            raise ValueError(f"unknown clustering algorithm {algorithm!r} (one of {', '.join(CLUSTERERS)})")
        self.algorithm, self.n_segments, self.warmup, self.seed = algorithm, n_segments, warmup, seed
        self.weights = tuple(weights)
        self.model = CLUSTERERS[algorithm](n_segments, seed)
        self.scaler: Scaler | None = None
        self.buffer: list[list[float]] = []
        self.samples = 0
        self.moments = Moments(len(self.weights))
        self.rescale_every = rescale_every
        self.restarts = 0

    @property
    def ready(self) -> bool:
        return self.scaler is not None

    @property
    def rescales(self) -> bool:
        return self.algorithm in ("kmeans", "streamkmeans")

    def learn(self, raw: Sequence[float]) -> None:
        self.samples += 1
        self.moments.update(raw)
        if self.scaler is None:
            self.buffer.append(list(raw))
            if len(self.buffer) >= self.warmup:
                self._start()
            return
        if self.rescales and self.samples % self.rescale_every == 0:
            self._rescale(self.moments.scaler(self.weights))
        self.model.learn_one(self._as_dict(self.scaler.transform(raw)))

    def _centres(self) -> dict:
        """The k-means family's centres (STREAMKMeans keeps them in its inner KMeans)."""
        return getattr(self.model, "_kmeans", self.model).centers

    def _start(self) -> None:
        self.scaler = Scaler.fit(self.buffer, self.weights)
        points = [self.scaler.transform(row) for row in self.buffer]
        if self.rescales:
            for index, centre in enumerate(kmeans_plus_plus(points, self.n_segments, self.seed)):
                self._centres()[index].update(self._as_dict(centre))
        for point in points:
            self.model.learn_one(self._as_dict(point))
        self.buffer = []

    def _rescale(self, scaler: Scaler) -> None:
        """Switch to ``scaler``, moving every centre to the same raw position in the new scale."""
        width = len(self.weights)
        for centre in self._centres().values():
            moved = scaler.transform(self.scaler.inverse([centre.get(i, 0.0) for i in range(width)]))
            centre.update(self._as_dict(moved))
        self.scaler = scaler

    def restart_if_better(self, raw_points: Sequence[Sequence[float]], margin: float = 0.1, n_init: int = 4) -> bool:
        """Move the k-means centres to a restarted batch k-means on ``raw_points`` (the trainer's recent
        customers) when that lowers their inertia by more than ``margin``: online k-means cannot leave a
        local optimum by itself (online_models/batch_kmeans.py). Near the optimum nothing changes, so
        snapshots stay stable; after a restart the snapshot matching turns moved centres into births/deaths.
        """
        if not self.rescales or self.scaler is None or len(raw_points) < 10 * self.n_segments:
            return False
        points = np.asarray([self.scaler.transform(row) for row in raw_points], dtype=float)
        width = len(self.weights)
        current = np.asarray([[centre.get(i, 0.0) for i in range(width)] for centre in self._centres().values()])
        restarted = best_kmeans(points, self.n_segments, n_init, seed=self.seed + self.samples)
        if inertia(points, restarted) >= (1.0 - margin) * inertia(points, current):
            return False
        for centre, moved in zip(self._centres().values(), restarted):
            centre.update(self._as_dict(moved.tolist()))
        self.restarts += 1
        return True

    def centroids(self) -> list[list[float]]:
        """Current centres in the scaled space (the density-based clusterers recluster on a prediction)."""
        if self.scaler is None:
            return []
        if self.algorithm in ("denstream", "dbstream"):
            self.model.predict_one(self._as_dict([0.0] * len(self.weights)))
        width = len(self.weights)
        return [[float(centre.get(i, 0.0)) for i in range(width)] for centre in self.model.centers.values()]

    @staticmethod
    def _as_dict(point: Sequence[float]) -> dict[int, float]:
        return dict(enumerate(point))
