"""BG/NBD checked against the lifetimes package (the reference implementation) and against its own
generative story: a population drawn from known parameters, observed for a while, then followed on."""
from __future__ import annotations

import numpy as np
import pytest

from online_models import bgnbd



def test_the_fit_and_p_alive_equal_lifetimes_on_the_cdnow_summary():
    from lifetimes import BetaGeoFitter
    from lifetimes.datasets import load_cdnow_summary

    summary = load_cdnow_summary(index_col=[0])
    x, T = summary["frequency"].to_numpy(), summary["T"].to_numpy()
    t_x = np.minimum(summary["recency"].to_numpy(), T)  # the file rounds a few recencies past T
    ours = bgnbd.fit(x, t_x, T)
    reference = BetaGeoFitter().fit(x, t_x, T).params_
    for name in ("r", "alpha", "a", "b"):
        assert getattr(ours, name) == pytest.approx(reference[name], rel=2e-3)
    theirs = BetaGeoFitter()
    theirs.params_ = reference
    assert np.abs(bgnbd.p_alive(ours, x, t_x, T)
                  - theirs.conditional_probability_alive(x, t_x, T)).max() < 1e-3


def simulate_population(params: bgnbd.BgNbdParams, buyers: int, observed: float, horizon: float, seed: int):
    """(x, t_x, T) after ``observed`` days from each buyer's first order, and whether it ordered in the horizon."""
    rng = np.random.default_rng(seed)
    rate = rng.gamma(params.r, 1.0 / params.alpha, buyers)
    dropout = rng.beta(params.a, params.b, buyers)
    x, t_x = np.zeros(buyers), np.zeros(buyers)
    ordered_after = np.zeros(buyers, dtype=bool)
    now, alive = np.zeros(buyers), np.ones(buyers, dtype=bool)
    while alive.any():
        now = np.where(alive, now + rng.exponential(1.0 / np.maximum(rate, 1e-12)), now)
        within = alive & (now <= observed)
        x[within] += 1
        t_x[within] = now[within]
        ordered_after |= alive & (now > observed) & (now <= observed + horizon)
        alive &= now <= observed  # past the observation: only whether one order came matters
        alive &= ~(within & (rng.random(buyers) < dropout))  # a repeat order may be the last
    return x, t_x, np.full(buyers, observed), ordered_after


def test_the_fit_recovers_planted_parameters_and_p_no_order_is_calibrated():
    planted = bgnbd.BgNbdParams(r=0.5, alpha=40.0, a=0.8, b=2.5)
    x, t_x, T, ordered = simulate_population(planted, 40_000, observed=270.0, horizon=90.0, seed=11)
    fitted = bgnbd.fit(x, t_x, T)
    assert fitted.r == pytest.approx(planted.r, rel=0.1)
    assert fitted.alpha == pytest.approx(planted.alpha, rel=0.15)
    assert fitted.a == pytest.approx(planted.a, rel=0.25)
    assert fitted.b == pytest.approx(planted.b, rel=0.3)
    predicted = bgnbd.p_no_order_within(fitted, x, t_x, T, 90.0)
    order = np.argsort(predicted)
    for decile in np.array_split(order, 10):
        assert abs(predicted[decile].mean() - (1 - ordered[decile]).mean()) < 0.02
