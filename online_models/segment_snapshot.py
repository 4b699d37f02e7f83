"""Segment snapshots: what the trainer publishes and what every worker assigns customers with.

A snapshot is plain JSON (no pickles cross process boundaries): version, the
scaler, and per segment its stable id, name, description, profile and centroid
in the scaled space. :func:`build_snapshot` matches a learner's centroids to
the previous snapshot (:mod:`online_models.segment_matching`) and says what
changed as explicit events: births, deaths and renames.

A customer keeps their segment unless another centroid is closer by more than
the hysteresis margin: a customer half-way between two segments would otherwise
flip with every small move of either centroid.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from online_models.segment_features import FEATURE_NAMES, Scaler
from online_models.segment_learning import SegmentLearner
from online_models.segment_matching import match_centroids
from online_models.segment_names import describe, segment_name, segment_profile, unique_names

__all__ = ["SegmentModel", "build_snapshot"]

_NAME_THRESHOLDS = (0.4, 0.5, 0.6)


@dataclass(frozen=True)
class SegmentModel:
    """The served segments of one snapshot.

    >>> scaler = Scaler(mean=(0.0,) * 8, scale=(1.0,) * 8, weights=(1.0,) * 8)
    >>> model = SegmentModel(3, scaler, (7, 9), ((0.0,) * 8, (2.0,) + (0.0,) * 7))
    >>> model.assign([0.9] + [0.0] * 7)
    (7, 0.9)
    >>> model.assign([1.05] + [0.0] * 7, current=7, hysteresis=0.2)   # nearer to 9, but not by 20%
    (7, 1.05)
    >>> model.assign([1.05] + [0.0] * 7, current=7, hysteresis=0.0)
    (9, 0.95)
    """

    version: int
    scaler: Scaler
    ids: tuple[int, ...]
    centroids: tuple[tuple[float, ...], ...]

    @classmethod
    def from_snapshot(cls, snapshot: dict) -> "SegmentModel":
        if tuple(snapshot["features"]) != FEATURE_NAMES:
            raise ValueError("segment snapshot was built on other features")
        segments = snapshot["segments"]
        return cls(int(snapshot["version"]), Scaler.from_dict(snapshot["scaler"]),
                   tuple(int(s["id"]) for s in segments), tuple(tuple(map(float, s["centroid"])) for s in segments))

    def assign(self, raw: Sequence[float], current: int | None = None, hysteresis: float = 0.1) -> tuple[int, float]:
        """(segment id, distance) of the nearest centroid, keeping ``current`` within the margin."""
        point = self.scaler.transform(raw)
        distances = [math.dist(point, c) for c in self.centroids]
        best = min(range(len(distances)), key=distances.__getitem__)
        if current is not None and current in self.ids:
            kept = distances[self.ids.index(current)]
            if kept <= distances[best] * (1 + hysteresis):
                return current, round(kept, 4)
        return self.ids[best], round(distances[best], 4)


def build_snapshot(learner: SegmentLearner, previous: dict | None, version: int, created_at_ms: int,
                   max_distance: float, max_step: float | None = None) -> tuple[dict, list[dict]]:
    """The learner's centroids as snapshot ``version``, ids carried over from ``previous``; and the events.

    A surviving segment's published centroid moves at most ``max_step`` (scaled units) towards the learner's
    per snapshot: a burst of samples from one partition or one stretch of event time must not re-sort
    customers; a lasting move still arrives, a step per snapshot.
    """
    scaler = learner.scaler
    centroids = learner.centroids()
    old: dict[int, list[float]] = {}
    old_names: dict[int, str] = {}
    next_id = 0
    if previous is not None:
        old_scaler = Scaler.from_dict(previous["scaler"])
        for segment in previous["segments"]:
            old[segment["id"]] = scaler.transform(old_scaler.inverse(segment["centroid"]))
            old_names[segment["id"]] = segment["name"]
        next_id = previous["next_id"]
    matching = match_centroids(old, centroids, max_distance, next_id)
    if max_step:
        centroids = [_toward(old[i], c, max_step) if i in old else c for i, c in zip(matching.ids, centroids)]
    events = [{"type": "death", "segment_id": i, "name": old_names[i]} for i in matching.deaths]
    names = []
    for segment_id, centroid in zip(matching.ids, centroids):
        derived = [segment_name(centroid, scaler, t) for t in _NAME_THRESHOLDS]
        kept = old_names.get(segment_id)
        names.append(kept if kept is not None and kept.split(" (")[0] in derived else derived[1])
    names = unique_names(names)
    segments = []
    for segment_id, centroid, name in zip(matching.ids, centroids, names):
        profile = segment_profile(centroid, scaler)
        segments.append({"id": segment_id, "name": name, "description": describe(profile), "profile": profile,
                         "centroid": [round(v, 6) for v in centroid]})
        if segment_id in matching.births:
            events.append({"type": "birth", "segment_id": segment_id, "name": name})
        elif name != old_names[segment_id]:
            events.append({"type": "renamed", "segment_id": segment_id, "name": name,
                           "previous_name": old_names[segment_id]})
    for event in events:
        event.update(version=version, at_ms=created_at_ms)
    snapshot = {"version": version, "created_at_ms": created_at_ms, "algorithm": learner.algorithm,
                "samples": learner.samples, "features": list(FEATURE_NAMES), "scaler": scaler.to_dict(),
                "next_id": max([next_id - 1, *matching.ids]) + 1, "segments": segments,
                "moved": {str(i): d for i, d in matching.distances.items()}}
    return snapshot, events


def _toward(start: Sequence[float], target: Sequence[float], max_step: float) -> list[float]:
    """``target``, or the point ``max_step`` from ``start`` on the way to it.

    >>> _toward([0.0, 0.0], [3.0, 4.0], max_step=1.0)
    [0.6, 0.8]
    """
    distance = math.dist(start, target)
    if distance <= max_step:
        return list(target)
    return [a + (b - a) * max_step / distance for a, b in zip(start, target)]
