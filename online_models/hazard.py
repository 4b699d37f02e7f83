"""Discrete-time hazard examples with late labels, and their composition into churn risk.

Why not one example per purchase labelled "no order within 90 days"? Its label 0
arrives at the next order, its label 1 only 90 days later, so an online learner
sees a biased, stale mix; and it never sees a silent customer, which is what most
scores are about. Instead every customer carries one *open* example at a time: a
checkpoint ``c`` (a purchase, or every ``step`` days of silence after it) with the
features at ``c``, asking "an order within (c, c + step]?". An order in the window
closes it with ``purchased=True``; the watermark passing ``c + step`` closes it with
``purchased=False`` and opens the next checkpoint at ``c + step``. Labels are at most
one step late, and examples look like what is scored.

The churn probability composes the step hazards ``h_k`` along the customer's future
silence path: ``P(no order within H) = Π_k (1 - h_k)^{w_k}``, with ``w_k = 1`` except a
fractional last step when ``H`` is not a multiple of the step.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from online_models.purchase_history import DAY_MS

__all__ = ["HazardConfig", "Example", "OpenExample", "ExampleAt", "ExampleClock", "no_order_probability", "band_of"]


@dataclass(frozen=True)
class HazardConfig:
    step_days: float = 7.0
    horizon_days: float = 90.0
    max_silence_days: float = 365.0  # no examples (and no re-scoring) for customers silent longer
    thin_every: int = 1  # past thin_after_steps of silence, one example in this many is learned (weighted)
    thin_after_steps: int = 26

    def thinning_weight(self, checkpoint_ms: int, spell_start_ms: int | None) -> int:
        """How much the example at ``checkpoint_ms`` counts (0: not learned), ``spell_start_ms`` being the order
        that began the silent spell.

        Why: in a sparse shop most examples are of deep silence (a one-time buyer leaves 52 a year, 39 of
        them past the horizon), where the hazard hardly moves from one week to the next. Past
        ``thin_after_steps`` one checkpoint in ``thin_every`` is kept, weighted by ``thin_every``: an unbiased
        sample (it ignores the label), deterministic (the same replay keeps the same ones), its phase moving
        with the spell so that not every customer is learned at the same silence. Off by default: it cost
        calibration (docs/churn.md), and with the trainers in a process of their own learning no longer
        holds up the worker.

        >>> config, week = HazardConfig(thin_every=4, thin_after_steps=13), 7 * 86_400_000
        >>> [config.thinning_weight(k * week, 0) for k in (0, 12, 13, 14, 15, 16, 17)]
        [1, 1, 4, 0, 0, 0, 4]
        >>> HazardConfig().thinning_weight(30 * week, 0)
        1
        """
        steps_in = 0 if spell_start_ms is None else (checkpoint_ms - spell_start_ms) // self.step_ms
        if self.thin_every <= 1 or steps_in < self.thin_after_steps:
            return 1
        phase = spell_start_ms // 1000 % self.thin_every
        return self.thin_every if (steps_in - self.thin_after_steps + phase) % self.thin_every == 0 else 0

    @property
    def step_ms(self) -> int:
        return int(self.step_days * DAY_MS)

    @property
    def steps(self) -> int:
        return math.ceil(self.horizon_days / self.step_days)

    def step_weights(self) -> np.ndarray:
        """Exposure of each step within the horizon.

        >>> HazardConfig(7, 90).step_weights()[-2:].tolist()
        [1.0, 0.8571428571428571]
        """
        weights = np.ones(self.steps)
        weights[-1] = (self.horizon_days - (self.steps - 1) * self.step_days) / self.step_days
        return weights


def no_order_probability(hazards: np.ndarray, config: HazardConfig) -> np.ndarray:
    """P(no order within the horizon) from step hazards along the silence path (the last axis: steps).

    >>> no_order_probability(np.full((2, 13), [[0.1], [0.0]]), HazardConfig(7, 90)).round(4)   # 0.9 ** (12 + 6/7)
    array([0.258, 1.   ])
    """
    hazards = np.clip(hazards, 1e-9, 1 - 1e-9)
    return np.exp(np.log1p(-hazards) @ config.step_weights())


def band_of(churn_p: float) -> str:
    """low < 0.33 ≤ medium < 0.66 ≤ high.

    >>> [band_of(p) for p in (0.1, 0.33, 0.659, 0.66)]
    ['low', 'medium', 'medium', 'high']
    """
    return "low" if churn_p < 0.33 else "medium" if churn_p < 0.66 else "high"


@dataclass(frozen=True)
class Example:
    """A closed example: features at ``checkpoint_ms``; did an order follow within one step? ``weight``: how
    many checkpoints it stands for (:meth:`HazardConfig.thinning_weight`). ``closed_ms``: when its label was
    decided, in event time (the order's, or the window's end): the trainer learns examples in that order."""

    checkpoint_ms: int
    features: list[float]
    purchased: bool
    weight: int = 1
    closed_ms: int | None = field(default=None, repr=False)


@dataclass
class OpenExample:
    checkpoint_ms: int
    features: list[float]


#: ``example_at(checkpoint_ms, anchors) -> (features, anchor)``: the example's features at a checkpoint, given
#: what earlier checkpoints of the same silent spell remembered (oldest first), and what this one remembers.
ExampleAt = Callable[[int, list], tuple[list[float], object]]


@dataclass
class ExampleClock:
    """The open example of one customer and how it closes; plain data, stored with the customer.

    ``example_at`` is supplied by the caller (it reads the customer's state). Each checkpoint of a
    silent spell (the order that starts it, then every step) leaves an *anchor*; the last
    ``steps - 1`` are kept, so a checkpoint's features may be built from what was known up to
    ``steps - 1`` steps earlier (see :func:`online_models.churn_features.landmark_lag`).

    >>> clock = ExampleClock()
    >>> step = 7 * DAY_MS
    >>> at_day = lambda t, anchors: ([t / DAY_MS, len(anchors)], t // DAY_MS)   # features, anchor
    >>> clock.open(0, at_day)
    >>> clock.on_order(3 * DAY_MS, at_day)                   # ordered within the first week
    ([Example(checkpoint_ms=0, features=[0.0, 0], purchased=True, weight=1)], True)
    >>> clock.open(3 * DAY_MS, at_day)
    >>> closed = clock.advance(3 * DAY_MS + 2 * step, at_day, HazardConfig())
    >>> [(e.checkpoint_ms // DAY_MS, e.features) for e in closed], clock.pending.checkpoint_ms // DAY_MS
    ([(3, [3.0, 0]), (10, [10.0, 1])], 17)
    >>> clock.anchors                                        # this spell's checkpoints: days 3, 10, 17
    [3, 10, 17]
    """

    pending: OpenExample | None = None
    last_order_ms: int | None = None
    anchors: list = field(default_factory=list)
    early: list = field(default_factory=list)  # [checkpoint, features, anchor] of checkpoints remembered early

    def open(self, checkpoint_ms: int, example_at: ExampleAt, config: HazardConfig = HazardConfig()) -> None:
        """Open the checkpoint of an order: a new silent spell starts."""
        self.anchors, self.early = [], []
        self._open(checkpoint_ms, example_at, config)
        self.last_order_ms = checkpoint_ms if self.last_order_ms is None else max(self.last_order_ms, checkpoint_ms)

    def _open(self, checkpoint_ms: int, example_at: ExampleAt, config: HazardConfig) -> None:
        while self.early and self.early[0][0] < checkpoint_ms:
            self.early.pop(0)
        if self.early and self.early[0][0] == checkpoint_ms:
            _, features, anchor = self.early.pop(0)
        else:
            features, anchor = example_at(checkpoint_ms, self.anchors)
        self.pending = OpenExample(checkpoint_ms, features)
        self.anchors = (self.anchors + [anchor])[-max(config.steps - 1, 1):]

    def remember_before(self, ts_ms: int, example_at: ExampleAt, config: HazardConfig = HazardConfig()) -> None:
        """An event at ``ts_ms`` is about to be applied while silence checkpoints before it are not open yet
        (the open example cannot close before the purchases watermark passes its end): build their features now,
        as the state is before the event, and open them with those later. Without this, the features would depend
        on whether a batch's watermark passed them before the event was applied: on where batches were cut.

        >>> clock = ExampleClock()
        >>> at_day = lambda t, anchors: ([t / DAY_MS, len(anchors)], t // DAY_MS)
        >>> clock.open(0, at_day)
        >>> clock.remember_before(16 * DAY_MS, at_day)          # checkpoints of days 7 and 14, before the event
        >>> seen_later = lambda t, anchors: ([-1.0, -1], -1)     # the state after the event
        >>> [(e.checkpoint_ms // DAY_MS, e.features) for e in clock.advance(21 * DAY_MS, seen_later)]
        [(0, [0.0, 0]), (7, [7.0, 1]), (14, [14.0, 2])]
        >>> clock.pending.features, clock.early                # day 21: after the event
        ([-1.0, -1], [])
        """
        built = self.last_built_ms()
        if built is None:
            return
        step, keep = config.step_ms, max(config.steps - 1, 1)
        anchors = list(self.anchors)
        for _, _, anchor in self.early:
            anchors = (anchors + [anchor])[-keep:]
        following = built + step
        while following < ts_ms and (self.last_order_ms is None
                                     or following - self.last_order_ms <= config.max_silence_days * DAY_MS):
            features, anchor = example_at(following, anchors)
            self.early.append([following, features, anchor])
            anchors = (anchors + [anchor])[-keep:]
            following += step

    def on_order(self, ts_ms: int, example_at: ExampleAt,
                 config: HazardConfig = HazardConfig()) -> tuple[list[Example], bool]:
        """Close what an order at ``ts_ms`` decides; call before the order is applied to the state.

        Returns the closed examples and whether the order opens a new checkpoint. An order at or
        before the open checkpoint arrived late (the checkpoint's features missed it): it closes
        nothing and opens nothing, so each moment is asked about once.
        """
        if self.pending is None:
            return [], self.last_order_ms is None or ts_ms > self.last_order_ms
        if ts_ms <= self.pending.checkpoint_ms:
            return [], False
        closed = self.advance(ts_ms - 1, example_at, config)
        if self.pending is not None:
            self._close(closed, True, config, ts_ms)
            self.pending = None
        return closed, True

    def advance(self, watermark_ms: int, example_at: ExampleAt, config: HazardConfig = HazardConfig()) -> list[Example]:
        """Close every open example whose window ended by ``watermark_ms`` without an order, opening the
        next silence checkpoint each time (until the silence exceeds ``config.max_silence_days``)."""
        closed = []
        step = config.step_ms
        while self.pending is not None and self.pending.checkpoint_ms + step <= watermark_ms:
            self._close(closed, False, config, self.pending.checkpoint_ms + step)
            following = self.pending.checkpoint_ms + step
            if self.last_order_ms is not None and following - self.last_order_ms > config.max_silence_days * DAY_MS:
                self.pending, self.anchors, self.early = None, [], []
            else:
                self._open(following, example_at, config)
        return closed

    def _close(self, closed: list[Example], purchased: bool, config: HazardConfig, closed_ms: int) -> None:
        """Add the open example, decided at ``closed_ms``, to ``closed`` unless thinning leaves it out."""
        weight = config.thinning_weight(self.pending.checkpoint_ms, self.last_order_ms)
        if weight:
            closed.append(Example(self.pending.checkpoint_ms, self.pending.features, purchased, weight, closed_ms))

    def last_built_ms(self) -> int | None:
        """The newest checkpoint whose features exist: the last remembered early, or the open one (None when no
        example is open)."""
        if self.pending is None:
            return None
        return self.early[-1][0] if self.early else self.pending.checkpoint_ms

    def due_ms(self, config: HazardConfig) -> int | None:
        """When the open example closes without an order (the wheel's timer), or None."""
        return None if self.pending is None else self.pending.checkpoint_ms + config.step_ms

    def to_dict(self) -> dict:
        pending = None if self.pending is None else [self.pending.checkpoint_ms, self.pending.features]
        data = {"pending": pending, "last_order_ms": self.last_order_ms, "anchors": self.anchors}
        if self.early:
            data["early"] = self.early
        return data

    @classmethod
    def from_dict(cls, data: dict | None) -> "ExampleClock":
        if not data:
            return cls()
        pending = data.get("pending")
        return cls(OpenExample(pending[0], pending[1]) if pending else None, data.get("last_order_ms"),
                   list(data.get("anchors", [])), [list(entry) for entry in data.get("early", [])])
