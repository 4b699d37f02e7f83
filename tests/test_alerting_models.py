"""Pure alerting models (issue 7 foundations): next best action and the spike baseline, against pandas."""
from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, strategies as st

from online_models.customer_alerts import CooldownGate, CustomerAlertRules, customer_alerts
from online_models.hazard import band_of
from online_models.purchase_history import DAY_MS
from online_models.retention_actions import DEFAULT_CATALOGUE, catalogue_from_json, rank_actions
from online_models.spike_detection import RateShiftDetector


@pytest.mark.parametrize("churn_p", [0.0, 0.1, 0.45, 0.9, 1.0])
@pytest.mark.parametrize("clv_minor", [0, 2_500, 40_000, 250_000])
def test_actions_are_ranked_by_expected_utility_recomputed_with_pandas(churn_p, clv_minor):
    catalogue = pd.DataFrame([vars(a) for a in DEFAULT_CATALOGUE])
    catalogue["eu"] = churn_p * catalogue.uplift * clv_minor * catalogue.value_share - catalogue.cost_minor
    expected = catalogue.sort_values(["eu", "cost_minor"], ascending=[False, True])
    ranked = rank_actions(churn_p, clv_minor)
    assert [a["action"] for a in ranked] == list(expected.name)
    assert [a["expected_utility_minor"] for a in ranked] == [round(v) for v in expected.eu]
    assert [a["recommended"] for a in ranked] == list(expected.eu > 0)


@pytest.mark.parametrize("entries, message", [
    ([{"name": "call", "cost_minor": 100, "uplift": 1.5}], "invalid retention action"),
    ([{"name": "call", "cost_minor": -1, "uplift": 0.1}], "invalid retention action"),
    ([{"name": "call", "cost_minor": 1, "uplift": 0.1, "price": 3}], "unknown retention action fields"),
    ([{"name": "a", "cost_minor": 1, "uplift": 0.1}, {"name": "a", "cost_minor": 2, "uplift": 0.2}], "unique"),
])
def test_a_bad_catalogue_is_refused(entries, message):
    with pytest.raises(ValueError, match=message):
        catalogue_from_json(entries)


def test_the_baseline_is_pandas_exponentially_weighted_mean_while_in_control():
    counts = np.random.default_rng(1).poisson(4, size=200)
    detector = RateShiftDetector(alpha=0.1, warmup=1_000)  # the CUSUM never starts: every bucket is learnt
    means = []
    for count in counts:
        detector.observe(int(count))
        means.append(detector.mean)
    assert means == pytest.approx(list(pd.Series(counts, dtype=float).ewm(alpha=0.1, adjust=False).mean()))


def cusum_reference(counts, rate: float, shift: float) -> list[float]:
    """Textbook Poisson CUSUM with a known in-control rate (itertools.accumulate)."""
    step = [c * np.log(shift) - (shift - 1) * rate for c in counts]
    return list(itertools.accumulate(step, lambda s, x: max(0.0, s + x), initial=0.0))[1:]


def test_the_statistic_is_the_textbook_poisson_cusum_once_the_baseline_is_learnt():
    detector = RateShiftDetector(alpha=1e-12, warmup=1, shift=2.0, threshold=1e9)  # baseline stays at 5
    detector.observe(5)
    counts = [4, 9, 12, 3, 0, 0, 7, 11]
    statistics = [detector.observe(c).statistic for c in counts]
    assert statistics == pytest.approx(cusum_reference(counts, rate=5.0, shift=2.0), abs=1e-6)


@pytest.mark.parametrize("seed", range(5))
def test_calm_traffic_raises_nothing_for_30_days_and_a_tripled_rate_is_caught_within_8_hours(seed):
    rng = np.random.default_rng(seed)
    detector = RateShiftDetector(alpha=0.05, warmup=48, shift=2.0, threshold=10.0)
    calm = rng.poisson(3, size=30 * 24)
    assert not any(detector.observe(int(c)).alert for c in calm)
    shock = rng.poisson(9, size=12)
    alerts = [detector.observe(int(c)).alert for c in shock]
    assert True in alerts[:8]
    assert sum(alerts) >= 2  # the statistic restarts after an alert; a lasting shock alerts again


def test_customer_rules_match_a_pandas_recomputation():
    rng = np.random.default_rng(7)
    rules = CustomerAlertRules()
    frame = pd.DataFrame({"previous_churn_p": rng.uniform(0, 1, 500), "churn_p": rng.uniform(0, 1, 500),
                          "clv_minor": rng.integers(0, 100_000, 500), "value_rank": rng.uniform(0, 1, 500),
                          "rfm_segment": rng.choice(["Champions", "Loyal", "At risk", "Hibernating"], 500)})
    frame["band"] = frame.churn_p.map(band_of)
    frame["previous_band"] = frame.previous_churn_p.map(band_of)
    valuable = (frame.value_rank >= 0.9) | frame.rfm_segment.isin(rules.watched_segments)
    frame["valuable_at_risk"] = valuable & (frame.band == "high") & (frame.previous_band != "high")
    frame["churn_jump"] = frame.churn_p - frame.previous_churn_p >= rules.jump
    for row in frame.itertuples():
        change = {"customer_id": f"c{row.Index}", "as_of_ms": row.Index, "churn_p": row.churn_p, "band": row.band,
                  "previous_churn_p": row.previous_churn_p, "previous_band": row.previous_band}
        raised = {a["rule"] for a in customer_alerts(change, row.clv_minor, row.value_rank, row.rfm_segment, rules)}
        assert raised == {rule for rule in ("valuable_at_risk", "churn_jump") if getattr(row, rule)}, row


@given(st.lists(st.tuples(st.sampled_from(["a", "b"]), st.integers(0, 60 * DAY_MS)), max_size=60))
def test_the_cooldown_admits_alerts_of_one_key_at_least_a_cooldown_apart(alerts):
    gate = CooldownGate(cooldown_ms=7 * DAY_MS)
    admitted = [(key, ts) for key, ts in sorted(alerts, key=lambda a: a[1]) if gate.admit(key, ts)]
    for key in ("a", "b"):
        times = [ts for k, ts in admitted if k == key]
        assert all(later - earlier >= 7 * DAY_MS for earlier, later in zip(times, times[1:]))
        offered = sorted(ts for k, ts in alerts if k == key)
        assert (not offered) == (not times)  # the first alert of a key always goes through
