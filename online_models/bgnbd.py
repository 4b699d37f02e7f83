"""BG/NBD: the customer-base model for sparse, non-contractual histories (Fader, Hardie & Lee, 2005).

A buyer orders as a Poisson process at rate λ ~ Gamma(r, α) while alive and, after each order, drops out for
good with probability p ~ Beta(a, b). From three numbers per buyer (``x`` repeat orders, ``t_x`` the age of
the last order measured from the first, ``T`` the age now) it gives, in closed form, the probability the buyer
is still alive and the probability of no order within a horizon. It is what the customer-base literature
ranks sparse shops with (most buyers order once or twice and fall silent), and a shop's one-line rule "days
since last order" is its crude special case; the churn learner uses it as a baseline and as a feature.

Times are in days here; any unit works as long as one is used throughout (α carries it).

>>> params = BgNbdParams(r=0.243, alpha=4.414 * 7, a=0.793, b=2.426)  # CDNOW's published fit, weeks -> days
>>> round(float(p_alive(params, 0, 0.0, 270.0)), 3)  # one order, never again: certainly alive (no dropout yet)
1.0
>>> silent, recent = p_alive(params, 3, 30.0, 270.0), p_alive(params, 3, 260.0, 270.0)
>>> bool(silent < recent)
True
>>> round(float(p_no_order_within(params, 3, 260.0, 270.0, 90.0)), 3)
0.523
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from scipy.special import betaln, gammaln

__all__ = ["BgNbdParams", "fit", "log_likelihood", "p_alive", "p_no_order_within", "BuyerSample"]


@dataclass(frozen=True, slots=True)
class BgNbdParams:
    """Population parameters: order rate λ ~ Gamma(shape r, rate α), dropout after an order p ~ Beta(a, b)."""

    r: float
    alpha: float
    a: float
    b: float

    def to_dict(self) -> dict[str, float]:
        return {"r": self.r, "alpha": self.alpha, "a": self.a, "b": self.b}

    @classmethod
    def from_dict(cls, data: dict) -> BgNbdParams:
        return cls(float(data["r"]), float(data["alpha"]), float(data["a"]), float(data["b"]))


def log_likelihood(params: BgNbdParams, x, t_x, T) -> np.ndarray:
    """Each buyer's log-likelihood of (x, t_x, T): alive through T, or dropped right after the last order."""
    x, t_x, T = (np.asarray(v, dtype=float) for v in (x, t_x, T))
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    common = gammaln(r + x) - gammaln(r) + r * math.log(alpha)
    alive = betaln(a, b + x) - betaln(a, b) - (r + x) * np.log(alpha + T)
    repeat = x > 0
    dropped = np.full_like(x, -np.inf)
    dropped[repeat] = (betaln(a + 1, b + x[repeat] - 1) - betaln(a, b)
                       - (r + x[repeat]) * np.log(alpha + t_x[repeat]))
    return common + np.logaddexp(alive, dropped)


def fit(x, t_x, T, weights=None, start: BgNbdParams | None = None) -> BgNbdParams:
    """Maximum likelihood over log-parameters (L-BFGS-B); ``weights`` count a row as several buyers.

    A few thousand buyers take tens of milliseconds; ``start`` (the previous fit) makes a refit cheaper.
    """
    x, t_x, T = (np.asarray(v, dtype=float) for v in (x, t_x, T))
    weights = np.ones_like(x) if weights is None else np.asarray(weights, dtype=float)
    scale = float(np.mean(T)) or 1.0  # α starts at the buyers' mean age: the optimiser sees numbers near 1
    guess = start or BgNbdParams(1.0, scale, 1.0, 1.0)

    def negative(theta: np.ndarray) -> float:
        r, alpha, a, b = np.exp(np.clip(theta, -20.0, 20.0))
        ll = log_likelihood(BgNbdParams(r, alpha, a, b), x, t_x, T)
        return -float(np.dot(weights, ll)) / float(weights.sum())

    theta0 = np.log([guess.r, guess.alpha, guess.a, guess.b])
    result = minimize(negative, theta0, method="L-BFGS-B", bounds=[(-12.0, 12.0)] * 4)
    return BgNbdParams(*(float(v) for v in np.exp(result.x)))


def p_alive(params: BgNbdParams, x, t_x, T) -> np.ndarray:
    """P(still alive at T | x, t_x, T). A buyer without a repeat order cannot have dropped out yet (dropout
    happens only right after a repeat order in this model), so it is 1 for them."""
    x, t_x, T = (np.asarray(v, dtype=float) for v in (x, t_x, T))
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    odds = np.zeros_like(x)
    repeat = x > 0
    odds[repeat] = (a / (b + x[repeat] - 1)) * ((alpha + T[repeat]) / (alpha + t_x[repeat])) ** (r + x[repeat])
    return 1.0 / (1.0 + odds)


def p_no_order_within(params: BgNbdParams, x, t_x, T, horizon) -> np.ndarray:
    """P(no order in (T, T + horizon] | x, t_x, T): dead already, or alive and the Poisson clock stays quiet.

    Alive, the rate's posterior is Gamma(r + x, α + T), and no dropout can happen without an order, so
    ``1 − P(alive) · (1 − ((α + T) / (α + T + horizon))^(r + x))``.
    """
    x, T = np.asarray(x, dtype=float), np.asarray(T, dtype=float)
    quiet_if_alive = ((params.alpha + T) / (params.alpha + T + horizon)) ** (params.r + x)
    return 1.0 - p_alive(params, x, t_x, T) * (1.0 - quiet_if_alive)


class BuyerSample:
    """Each sampled buyer's newest (repeat orders, last order's age, age) with the event time it was read at: the
    population a fit needs, from what the churn trainer sees (each example is a buyer at a checkpoint).

    Which buyers are kept depends only on their ids (a hash below a threshold that halves when the sample
    outgrows ``capacity``), so every replay of a history keeps the same buyers, whatever the order of examples.
    A buyer is aged to the fit's time: its silence since the newest row is known (an order would have
    brought a newer row).

    >>> sample = BuyerSample(capacity=1000)
    >>> for i in range(3000):
    ...     sample.observe(f"c{i}", at_days=100.0, repeats=i % 3, last_order_age_days=float(i % 3) * 10, age_days=60.0)
    >>> 500 <= len(sample) <= 1000, sample.level >= 2
    (True, True)
    >>> x, t_x, T = sample.summaries(now_days=130.0)
    >>> float(T.min()), float(T.max())
    (90.0, 90.0)
    """

    def __init__(self, capacity: int = 20_000) -> None:
        self.capacity, self.level = capacity, 0
        self.buyers: dict[str, tuple[float, float, float, float]] = {}

    def __len__(self) -> int:
        return len(self.buyers)

    def observe(self, buyer: str, at_days: float, repeats: float, last_order_age_days: float,
                age_days: float) -> None:
        if not self._kept(buyer):
            return
        known = self.buyers.get(buyer)
        if known is None or known[0] <= at_days:
            self.buyers[buyer] = (at_days, repeats, last_order_age_days, age_days)
        while len(self.buyers) > self.capacity:
            self.level += 1
            self.buyers = {b: v for b, v in self.buyers.items() if self._kept(b)}

    def _kept(self, buyer: str) -> bool:
        return _hash64(buyer) >> (64 - self.level) == 0 if self.level else True

    def summaries(self, now_days: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(x, t_x, T) of every sampled buyer as of ``now_days`` (silent since its newest row)."""
        rows = np.array(list(self.buyers.values()), dtype=float).reshape(-1, 4)
        at, x, t_x, age = rows.T
        return x, t_x, age + np.maximum(now_days - at, 0.0)


def _hash64(text: str) -> int:
    """A stable 64-bit hash (Python's own is salted per process)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")
