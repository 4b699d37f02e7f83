"""Prequential (predict, then learn) evaluation of a probabilistic binary classifier.

Overall figures come from a fixed 1,000-bin histogram of predictions per class
(bounded memory for an endless stream; ROC AUC and decile calibration are exact up
to ties within a bin of width 0.001); the recent window keeps the last N pairs
and is exact.
"""
from __future__ import annotations

import math
from collections import deque

import numpy as np

__all__ = ["PrequentialMetrics", "roc_auc", "calibration_by_decile"]

_BINS = 1000
_EPS = 1e-15


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """Exact ROC AUC (ties count half), None when one class is missing.

    >>> roc_auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1]))
    0.75
    """
    positives = int(labels.sum())
    negatives = len(labels) - positives
    if positives == 0 or negatives == 0:
        return None
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    # average ranks over ties
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    average = first + (counts - 1) / 2.0 + 1
    ranks[order] = np.repeat(average, counts)
    return float((ranks[labels == 1].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def calibration_by_decile(scores: np.ndarray, labels: np.ndarray) -> list[dict]:
    """Mean predicted vs observed rate per decile of the predictions (sorted by prediction)."""
    if len(scores) < 10:
        return []
    order = np.argsort(scores, kind="mergesort")
    return [{"decile": i + 1, "predicted": float(scores[part].mean()), "observed": float(labels[part].mean()),
             "count": int(len(part))} for i, part in enumerate(np.array_split(order, 10))]


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
        self.log_loss_sum = 0.0
        self.brier_sum = 0.0
        self.histogram = np.zeros((2, _BINS), dtype=np.int64)
        self.predicted_sum = np.zeros(_BINS)
        self.recent: deque[tuple[float, int]] = deque(maxlen=window)
        self._recent_losses: deque[float] = deque(maxlen=window)
        self._recent_loss_sum = 0.0

    def update(self, p: float, y: int) -> None:
        p_clipped = min(max(p, _EPS), 1 - _EPS)
        loss = -math.log(p_clipped) if y else -math.log(1 - p_clipped)
        self.count += 1
        self.log_loss_sum += loss
        if len(self._recent_losses) == self._recent_losses.maxlen:
            self._recent_loss_sum -= self._recent_losses[0]
        self._recent_losses.append(loss)
        self._recent_loss_sum += loss
        self.brier_sum += (p - y) ** 2
        index = min(int(p * _BINS), _BINS - 1)
        self.histogram[y, index] += 1
        self.predicted_sum[index] += p
        self.recent.append((p, y))

    def recent_log_loss(self) -> float | None:
        """Mean log loss over the window, kept as a running sum (the trainer asks for it per example)."""
        return self._recent_loss_sum / len(self._recent_losses) if self._recent_losses else None

    def _overall_auc(self) -> float | None:
        negatives, positives = self.histogram
        if positives.sum() == 0 or negatives.sum() == 0:
            return None
        below = np.concatenate(([0], np.cumsum(negatives)[:-1]))  # negatives in lower bins
        wins = (positives * (below + negatives / 2.0)).sum()
        return float(wins / (positives.sum() * negatives.sum()))

    def _overall_calibration(self) -> list[dict]:
        counts = self.histogram.sum(axis=0)
        if counts.sum() < 10:
            return []
        cumulative = np.cumsum(counts)
        decile_of_bin = np.minimum((cumulative - counts / 2) * 10 // counts.sum(), 9).astype(int)
        rows = []
        for decile in range(10):
            bins = decile_of_bin == decile
            n = counts[bins].sum()
            if n:
                rows.append({"decile": decile + 1, "predicted": float(self.predicted_sum[bins].sum() / n),
                             "observed": float(self.histogram[1, bins].sum() / n), "count": int(n)})
        return rows

    def report(self) -> dict:
        window: dict = {"count": len(self.recent), "log_loss": self.recent_log_loss()}
        if self.recent:
            p, y = np.array(self.recent).T
            window.update(brier=float(np.mean((p - y) ** 2)), roc_auc=roc_auc(p, y.astype(int)),
                          calibration=calibration_by_decile(p, y))
        overall = {"log_loss": self.log_loss_sum / self.count if self.count else None,
                   "brier": self.brier_sum / self.count if self.count else None,
                   "roc_auc": self._overall_auc(), "calibration": self._overall_calibration()}
        return {"count": self.count, "overall": overall, "window": window}
