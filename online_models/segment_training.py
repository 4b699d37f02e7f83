"""The segment trainer's state: learner, recent customers, the served snapshot and its successor.

Besides learning, the trainer measures what a new snapshot would do to the
customers it has seen lately: the share that changes segment between the served
snapshot and the new one (with the workers' hysteresis), published with the
snapshot as ``changed_share`` — the stability figure of docs/segments.md.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Sequence

from online_models.segment_learning import SegmentLearner
from online_models.segment_snapshot import SegmentModel, build_snapshot

__all__ = ["SegmentSettings", "SegmentTraining"]


@dataclass(frozen=True)
class SegmentSettings:
    """How segments are learnt and served (``CRM_SEGMENT_*``, streams/config.py)."""

    algorithm: str = "kmeans"
    n_segments: int = 4
    warmup: int = 1000            # samples before the first snapshot (scaler fit, k-means++ seeding)
    max_match_distance: float = 1.0  # in scaled units: farther apart is not the same segment
    hysteresis: float = 0.1       # a customer moves only to a segment nearer by this fraction
    max_step: float = 0.25        # a published centroid moves at most this far (scaled units) per snapshot
    window_days: float = 180.0    # order rate measured over this window: the migration delay's main knob
    sample_days: float = 7.0      # a customer sends the trainer a sample at most this often (event time)
    restart_margin: float = 0.1   # restart k-means when a batch fit lowers the recent customers' inertia by this
    seed: int = 42


class SegmentTraining:
    """Learn samples, build snapshots with stable ids, measure how many customers each would move.

    >>> training = SegmentTraining(SegmentSettings(n_segments=2, warmup=50))
    >>> for i in range(400):
    ...     value = 3.0 if i % 2 else 8.0
    ...     training.learn(f"c{i % 60}", [value + (i % 5) * 0.05, 0.5, 1.0, 1.0, 2.0, 5.0, 4.0, 0.0])
    >>> first, events = training.publish(created_at_ms=0)
    >>> [e["type"] for e in events], len(first["segments"])
    (['birth', 'birth'], 2)
    >>> second, events = training.publish(created_at_ms=1)
    >>> events, second["changed_share"], sorted(s["id"] for s in second["segments"])
    ([], 0.0, [0, 1])
    """

    def __init__(self, settings: SegmentSettings, remembered: int = 5000) -> None:
        self.settings = settings
        self.learner = SegmentLearner(settings.algorithm, settings.n_segments, settings.warmup, settings.seed)
        self.recent: OrderedDict[str, list[float]] = OrderedDict()  # customer -> newest sample
        self.remembered = remembered
        self.served: dict | None = None
        self.version = 0
        self.changes: list[float | None] = []  # changed_share of every snapshot published

    @property
    def ready(self) -> bool:
        return self.learner.ready

    def learn(self, customer_id: str, raw: Sequence[float]) -> None:
        self.learner.learn(raw)
        self.recent[customer_id] = list(raw)
        self.recent.move_to_end(customer_id)
        if len(self.recent) > self.remembered:
            self.recent.popitem(last=False)

    def publish(self, created_at_ms: int) -> tuple[dict, list[dict]]:
        """The next snapshot (becomes the served one) and its birth/death/rename events; first the learner
        may restart from a batch k-means on the recent customers if that fits them clearly better."""
        restarted = self.learner.restart_if_better(list(self.recent.values()), self.settings.restart_margin)
        snapshot, events = build_snapshot(self.learner, self.served, self.version + 1, created_at_ms,
                                          self.settings.max_match_distance, self.settings.max_step)
        snapshot["changed_share"] = self.changed_share(snapshot)
        snapshot["restarted"] = restarted
        self.changes.append(snapshot["changed_share"])
        self.version, self.served = snapshot["version"], snapshot
        return snapshot, events

    def changed_share(self, snapshot: dict) -> float | None:
        """Share of recently seen customers whose segment differs between the served snapshot and this one."""
        if self.served is None or not self.recent:
            return None
        before, after = SegmentModel.from_snapshot(self.served), SegmentModel.from_snapshot(snapshot)
        hysteresis = self.settings.hysteresis
        changed = 0
        for raw in self.recent.values():
            current, _ = before.assign(raw)
            changed += after.assign(raw, current, hysteresis)[0] != current
        return round(changed / len(self.recent), 4)
