"""Prequential (predict, then learn) evaluation of a probabilistic binary classifier.

Overall figures come from a fixed 1,000-bin histogram of predictions per class
(bounded memory for an endless stream; ROC AUC and decile calibration are exact up
to ties within a bin of width 0.001); the recent window keeps the last N pairs
and is exact. An example may carry a weight (a thinned example stands for several):
every figure is then of the population the examples stand for.
"""
from __future__ import annotations

import math
from collections import deque

import numpy as np

__all__ = ["PrequentialMetrics", "roc_auc", "calibration_by_decile"]

_BINS = 1000
_EPS = 1e-15


def roc_auc(scores: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None) -> float | None:
    """Exact ROC AUC (ties count half), each example counting ``weights`` times; None when one class is missing.

    >>> roc_auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1]))
    0.75
    >>> repeated = roc_auc(np.array([0.1, 0.4, 0.4, 0.35, 0.8]), np.array([0, 0, 0, 1, 1]))
    >>> repeated == roc_auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1]), np.array([1, 2, 1, 1]))
    True
    """
    labels = np.asarray(labels).astype(bool)
    weights = np.ones(len(scores)) if weights is None else np.asarray(weights, dtype=float)
    values, group = np.unique(scores, return_inverse=True)
    return _auc_of_groups(np.bincount(group, weights * labels, minlength=len(values)),
                          np.bincount(group, weights * ~labels, minlength=len(values)))


def _auc_of_groups(positives: np.ndarray, negatives: np.ndarray) -> float | None:
    """ROC AUC from the weight of each class per group of equal scores (ascending): ties count half."""
    if positives.sum() == 0 or negatives.sum() == 0:
        return None
    below = np.concatenate(([0.0], np.cumsum(negatives)[:-1]))  # negatives scored lower
    wins = (positives * (below + negatives / 2.0)).sum()
    return float(wins / (positives.sum() * negatives.sum()))


def _deciles_of(weights: np.ndarray) -> np.ndarray:
    """The decile (0-9) of each of ``weights`` in their order: where the middle of its weight falls."""
    cumulative = np.cumsum(weights)
    return np.minimum((cumulative - weights / 2) * 10 // cumulative[-1], 9).astype(int)


def calibration_by_decile(scores: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None) -> list[dict]:
    """Mean predicted vs observed rate per decile of the predictions (sorted by prediction; deciles of the
    total weight when examples carry ``weights``); ``count``: the examples in the decile.

    >>> rows = calibration_by_decile(np.arange(20) / 20, np.arange(20) % 2)
    >>> len(rows), rows[0]["predicted"], rows[0]["observed"], rows[0]["count"]
    (10, 0.025, 0.5, 2)
    """
    if len(scores) < 10:
        return []
    weights = np.ones(len(scores)) if weights is None else np.asarray(weights, dtype=float)
    order = np.argsort(scores, kind="mergesort")
    scores, labels, weights = scores[order], labels[order], weights[order]
    decile = _deciles_of(weights)
    rows = []
    for i in range(10):
        part = decile == i
        total = weights[part].sum()
        if total:
            rows.append({"decile": i + 1, "predicted": float((scores[part] * weights[part]).sum() / total),
                         "observed": float((labels[part] * weights[part]).sum() / total), "count": int(part.sum())})
    return rows


class PrequentialMetrics:
    """Log loss, Brier score, ROC AUC and calibration, overall and over the last ``window`` predictions.

    >>> metrics = PrequentialMetrics(window=4)
    >>> for p, y in [(0.9, 1), (0.2, 0), (0.7, 1), (0.4, 0), (0.6, 0), (0.8, 0)]:
    ...     metrics.update(p, y)
    >>> report = metrics.report()
    >>> report["count"], report["overall"]["roc_auc"], round(report["window"]["roc_auc"], 4)
    (6, 0.875, 0.6667)
    """

    def __init__(self, window: int = 5000) -> None:
        self.count = 0
        self.weight_sum = 0.0
        self.log_loss_sum = 0.0
        self.brier_sum = 0.0
        self.histogram = np.zeros((2, _BINS))  # weight of the predictions per class and bin
        self.predicted_sum = np.zeros(_BINS)
        # The window's (prediction, label, weight) columns, a ring written at ``_recent_at``: a report reads them
        # as arrays (converting a deque of tuples cost 2.6 ms of the 5.4 a report took, once per version cut).
        self._recent = np.zeros((3, window))
        self._recent_at = 0
        self._recent_count = 0
        self._recent_losses: deque[tuple[float, float]] = deque(maxlen=window)  # (weighted loss, weight)
        self._recent_loss_sum = 0.0
        self._recent_weight_sum = 0.0

    def __setstate__(self, state: dict) -> None:
        """Checkpoints from before weighted examples resume, each example they counted weighing 1; those from
        before the window was a ring, with their window in it."""
        self.__dict__.update(state)
        if "weight_sum" not in state:
            self.weight_sum, self.histogram = float(self.count), self.histogram.astype(float)
            self.recent = deque(((p, y, 1.0) for p, y in self.recent), maxlen=self.recent.maxlen)
            self._recent_losses = deque(((loss, 1.0) for loss in self._recent_losses), maxlen=self.recent.maxlen)
            self._recent_weight_sum = float(len(self._recent_losses))
        if "recent" in self.__dict__:
            recent = self.__dict__.pop("recent")
            self._recent, self._recent_at, self._recent_count = np.zeros((3, recent.maxlen)), 0, 0
            for p, y, weight in recent:
                self._remember(p, y, weight)

    def update(self, p: float, y: int, weight: float = 1.0) -> None:
        p_clipped = min(max(p, _EPS), 1 - _EPS)
        loss = (-math.log(p_clipped) if y else -math.log(1 - p_clipped)) * weight
        self.count += 1
        self.weight_sum += weight
        self.log_loss_sum += loss
        if len(self._recent_losses) == self._recent_losses.maxlen:
            dropped_loss, dropped_weight = self._recent_losses[0]
            self._recent_loss_sum -= dropped_loss
            self._recent_weight_sum -= dropped_weight
        self._recent_losses.append((loss, weight))
        self._recent_loss_sum += loss
        self._recent_weight_sum += weight
        self.brier_sum += (p - y) ** 2 * weight
        index = min(int(p * _BINS), _BINS - 1)
        self.histogram[y, index] += weight
        self.predicted_sum[index] += p * weight
        self._remember(p, y, weight)

    @property
    def window(self) -> int:
        """How many of the newest predictions the window holds."""
        return self._recent.shape[1]

    def _remember(self, p: float, y: int, weight: float) -> None:
        self._recent[:, self._recent_at] = p, y, weight
        self._recent_at = (self._recent_at + 1) % self._recent.shape[1]
        self._recent_count = min(self._recent_count + 1, self._recent.shape[1])

    def _window(self) -> np.ndarray:
        """The window's columns, oldest first (the order ties are sorted in)."""
        if self._recent_count < self._recent.shape[1]:
            return self._recent[:, :self._recent_count]
        return np.concatenate((self._recent[:, self._recent_at:], self._recent[:, :self._recent_at]), axis=1)

    def recent_log_loss(self) -> float | None:
        """Mean log loss over the window, kept as a running sum (the trainer asks for it per example)."""
        return self._recent_loss_sum / self._recent_weight_sum if self._recent_losses else None

    def _overall_auc(self) -> float | None:
        negatives, positives = self.histogram
        return _auc_of_groups(positives, negatives)  # bins are the groups: ties within a bin count half

    def _overall_calibration(self) -> list[dict]:
        counts = self.histogram.sum(axis=0)
        if counts.sum() < 10:
            return []
        decile_of_bin = _deciles_of(counts)
        rows = []
        for decile in range(10):
            bins = decile_of_bin == decile
            n = counts[bins].sum()
            if n:
                rows.append({"decile": decile + 1, "predicted": float(self.predicted_sum[bins].sum() / n),
                             "observed": float(self.histogram[1, bins].sum() / n), "count": round(float(n), 1)})
        return rows

    def report(self) -> dict:
        window: dict = {"count": self._recent_count, "log_loss": self.recent_log_loss()}
        if self._recent_count:
            p, y, w = self._window()
            window.update(brier=float(np.average((p - y) ** 2, weights=w)), roc_auc=roc_auc(p, y.astype(int), w),
                          calibration=calibration_by_decile(p, y, w))
        overall = {"log_loss": self.log_loss_sum / self.weight_sum if self.count else None,
                   "brier": self.brier_sum / self.weight_sum if self.count else None,
                   "roc_auc": self._overall_auc(), "calibration": self._overall_calibration()}
        return {"count": self.count, "overall": overall, "window": window}
