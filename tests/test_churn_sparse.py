"""Churn risk on a sparse, cohort-shaped history (the simulator's sparse profile: most buyers order once or
twice, arrive in bursts, fall silent for months), replayed to a cutoff through the pipeline's churn stage
(bench/churn_cutoff.py) and compared with independent computations: scikit-learn logistic regression on the same
examples, days since the last order alone, and 90-day outcomes pooled over four cutoffs."""
from __future__ import annotations

import argparse

import pytest

from tests.test_churn import load_cutoff_bench


@pytest.fixture(scope="module")
def sparse():
    args = argparse.Namespace(history="sparse", customers=2000, days=730, cutoff_day=540, seed=7, warmup=2000)
    return load_cutoff_bench().run(args)


def test_streaming_risk_ranks_better_than_recency_alone_and_as_well_as_batch_logistic_regression(sparse):
    assert sparse["auc_streaming"] >= sparse["auc_recency"] + 0.01
    assert sparse["auc_streaming"] >= sparse["auc_batch"] - 0.005


def test_served_churn_p_is_calibrated_by_decile_against_90_day_outcomes(sparse):
    assert sparse["calibration_gap"] <= 0.05
