"""Churn risk on a public order history: CDNOW (a CD retailer, 2,357 buyers, 1997-98, shipped by the lifetimes
package), replayed to the usual 39-week cutoff through the pipeline's churn stage (bench/churn_cutoff.py).

The bounds are what the model holds today, below issue 24's targets (AUC ≥ recency + 0.01, calibration ≤ 0.05):
bench/history_limits.py shows why CDNOW's 2,357 buyers carry little more than recency (models fitted to the
cutoff's own outcomes, cross-validated, reach 0.786 to 0.787 against recency's 0.784, whose bootstrap standard
error is 0.013) and where its calibration fails (the early cutoffs, when no buyer has been seen older than 26
weeks; batch logistic regression refitted at each served version fails there too). They guard against
regressions; the targets stay open (docs/churn.md)."""
from __future__ import annotations

import argparse

import pytest

from tests.test_churn import load_cutoff_bench


@pytest.fixture(scope="module")
def cdnow():
    args = argparse.Namespace(history="cdnow", customers=None, days=546, cutoff_day=273, seed=7, warmup=2000)
    return load_cutoff_bench().run(args)


def test_streaming_risk_ranks_above_recency_alone_and_with_batch_logistic_regression(cdnow):
    assert cdnow["buyers"] == 2357
    assert cdnow["auc_streaming"] >= cdnow["auc_recency"] + 0.003
    assert cdnow["auc_streaming"] >= cdnow["auc_batch"] - 0.005


def test_served_churn_p_calibration_on_cdnow_stays_where_it_is(cdnow):
    assert cdnow["calibration_gap"] <= 0.08
