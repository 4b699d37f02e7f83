"""Has the rate of customers entering high churn risk jumped? An EWMA baseline and a Poisson CUSUM.

Why not a z-score per bucket: counts per hour are small Poisson counts. A 4-sigma rule on a rate of 3
fires about once a month on calm traffic (P(X >= 10) ~ 0.001 per hour), yet misses a tripled rate in
most single hours (P(X >= 10 | 9) ~ 0.41). The CUSUM of the Poisson log-likelihood ratio between the
baseline rate and ``shift`` times it accumulates evidence over consecutive buckets. Simulated (200 seeds,
hourly Poisson counts of rate 3, defaults): 1 calm month in 200 had a false alarm; a tripled rate alerted
3 hours after it began (p50; p95 6). The statistic restarts after an alert (standard CUSUM practice), so
a lasting shock alerts again only once fresh evidence has accumulated; the baseline (EWMA of the counts)
learns every bucket, so a lasting level change (a growing shop) becomes the new normal instead of an
alarm that never ends.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["RateVerdict", "RateShiftDetector", "ConversionDropDetector"]


@dataclass(frozen=True)
class RateVerdict:
    """A closed bucket's evidence: the count, the baseline rate, the CUSUM statistic and a z-score."""

    observed: int
    expected: float
    statistic: float
    z: float
    alert: bool


class RateShiftDetector:
    """One count series (overall, or one segment): EWMA baseline rate, CUSUM for a shift to ``shift`` times it.

    ``shift`` above 1 watches for a rise (customers entering high risk, support tickets): a quiet series is
    judged against the floor ``min_rate``, so it needs a real jump. ``shift`` below 1 watches for a drop
    (a segment's orders): a series whose baseline is under ``min_rate`` is too quiet to show one and
    gathers no evidence.

    >>> detector = RateShiftDetector(alpha=0.1, warmup=5, shift=2.0, threshold=10.0, min_rate=1.0)
    >>> [detector.observe(count).alert for count in (3, 2, 4, 3, 2, 3, 4, 3)]
    [False, False, False, False, False, False, False, False]
    >>> [(v.alert, round(v.statistic, 1)) for v in map(detector.observe, (9, 10, 11, 12))]
    [(False, 3.2), (False, 6.5), (False, 9.9), (True, 13.3)]
    >>> drop = RateShiftDetector(alpha=0.1, warmup=5, shift=0.5, threshold=8.0, min_rate=3.0)
    >>> [drop.observe(count).alert for count in (20, 18, 22, 19, 21, 20)]
    [False, False, False, False, False, False]
    >>> [(v.alert, round(v.statistic, 1)) for v in map(drop.observe, (9, 8, 10))]
    [(False, 3.8), (False, 7.7), (True, 9.7)]
    """

    def __init__(self, alpha: float = 0.05, warmup: int = 48, shift: float = 2.0, threshold: float = 10.0,
                 min_rate: float = 1.0, beta: float = 0.0) -> None:
        if not 0 < alpha <= 1 or warmup < 1 or shift <= 0 or shift == 1 or threshold <= 0 or min_rate <= 0 \
                or not 0 <= beta < 1:
            raise ValueError("alpha in (0, 1], warmup >= 1, shift > 0 and not 1, threshold > 0, min_rate > 0, "
                             "beta in [0, 1)")
        self.alpha, self.warmup, self.shift, self.threshold, self.min_rate = alpha, warmup, shift, threshold, min_rate
        self.beta = beta
        self.buckets = 0
        self.mean = 0.0
        self.trend = 0.0
        self.statistic = 0.0

    @property
    def forecast(self) -> float:
        """The baseline rate of the next bucket: the level, plus the trend when one is learnt (``beta`` > 0).
        Why a trend: a shop whose customers stop arriving sees its order rate fall for months; a level alone
        lags it by about 1/alpha buckets, and that lag reads as a drop (or, while it grows, as a rise)."""
        return max(self.mean + self.trend, 0.0)

    def observe(self, count: int) -> RateVerdict:
        """Judge a closed bucket's count (buckets in event-time order, empty ones as 0)."""
        expected = self.forecast
        rate = max(expected, self.min_rate)  # a quiet series still needs a real jump to alarm
        shifted = self.shift * rate
        if self.shift < 1 and expected < self.min_rate:
            self.statistic = 0.0  # too quiet to tell a drop from chance
        elif self.buckets >= self.warmup:
            self.statistic = max(0.0, self.statistic + count * math.log(self.shift) - (shifted - rate))
        alert = self.statistic >= self.threshold
        verdict = RateVerdict(count, expected, self.statistic, (count - rate) / math.sqrt(rate), alert)
        if alert:
            self.statistic = 0.0
        self._learn(count)
        return verdict

    def _learn(self, count: int) -> None:
        """Holt's linear smoothing (a plain EWMA when ``beta`` is 0)."""
        if self.buckets == 0:
            self.mean = float(count)
        else:
            level = self.mean + self.trend + self.alpha * (count - self.mean - self.trend)
            self.trend += self.beta * (level - self.mean - self.trend)
            self.mean = level
        self.buckets += 1

    def to_dict(self) -> dict:
        return {"buckets": self.buckets, "mean": self.mean, "trend": self.trend, "statistic": self.statistic}

    @classmethod
    def from_dict(cls, data: dict, **settings) -> "RateShiftDetector":
        detector = cls(**settings)
        detector.buckets, detector.mean, detector.statistic = int(data["buckets"]), data["mean"], data["statistic"]
        detector.trend = data.get("trend", 0.0)
        return detector


class ConversionDropDetector:
    """A drop in the share of trials that succeed (customers who filled a cart and also ordered), against its
    own EWMA baseline: a Bernoulli CUSUM for the share falling to ``shift`` times the baseline.

    Why besides the order count: when customers keep coming but stop buying (a price rise), orders fall only by
    the share of the segment that left, and a count is slow to show it; the conversion of those still filling
    carts falls at once. Judged only while the baseline has ``min_trials`` trials per bucket.

    >>> detector = ConversionDropDetector(alpha=0.1, warmup=5, shift=0.7, threshold=6.0, min_trials=3.0)
    >>> [detector.observe(9, 10).alert for _ in range(8)]
    [False, False, False, False, False, False, False, False]
    >>> [(v.alert, round(v.statistic, 1)) for v in (detector.observe(6, 10), detector.observe(5, 10))]
    [(False, 3.1), (True, 6.8)]
    """

    def __init__(self, alpha: float = 0.05, warmup: int = 48, shift: float = 0.7, threshold: float = 10.0,
                 min_trials: float = 3.0) -> None:
        if not 0 < alpha <= 1 or warmup < 1 or not 0 < shift < 1 or threshold <= 0 or min_trials <= 0:
            raise ValueError("alpha in (0, 1], warmup >= 1, shift in (0, 1), threshold > 0, min_trials > 0")
        self.alpha, self.warmup, self.shift, self.threshold = alpha, warmup, shift, threshold
        self.min_trials = min_trials
        self.buckets = 0
        self.successes = 0.0   # EWMA of successes per bucket
        self.trials = 0.0      # EWMA of trials per bucket
        self.statistic = 0.0

    def observe(self, successes: int, trials: int) -> RateVerdict:
        """Judge a closed bucket: ``successes`` of ``trials`` (more successes than trials count as all)."""
        successes = min(successes, trials)
        p0 = min(max(self.successes / self.trials, 0.01), 0.99) if self.trials > 0 else 0.5
        p1 = p0 * self.shift
        if self.trials < self.min_trials:
            self.statistic = 0.0
        elif self.buckets >= self.warmup:
            self.statistic = max(0.0, self.statistic + successes * math.log(p1 / p0)
                                 + (trials - successes) * math.log((1 - p1) / (1 - p0)))
        alert = self.statistic >= self.threshold
        expected = p0 * trials
        z = (successes - expected) / math.sqrt(max(trials * p0 * (1 - p0), 1e-9))
        verdict = RateVerdict(successes, expected, self.statistic, z, alert)
        if alert:
            self.statistic = 0.0
        if self.buckets == 0:
            self.successes, self.trials = float(successes), float(trials)
        else:
            self.successes += self.alpha * (successes - self.successes)
            self.trials += self.alpha * (trials - self.trials)
        self.buckets += 1
        return verdict

    def to_dict(self) -> dict:
        return {"buckets": self.buckets, "successes": self.successes, "trials": self.trials,
                "statistic": self.statistic}

    @classmethod
    def from_dict(cls, data: dict, **settings) -> "ConversionDropDetector":
        detector = cls(**settings)
        detector.buckets, detector.statistic = int(data["buckets"]), data["statistic"]
        detector.successes, detector.trials = data["successes"], data["trials"]
        return detector
