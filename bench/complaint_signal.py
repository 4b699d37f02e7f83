"""How much of what customers say reaches the churn model (issue 25, "risk that reacts to what customers say").

A simulated history (bench/histories.py; the simulator plants more tickets, lower CSAT and a last NPS answer in
the weeks before a customer leaves) is replayed to the cutoff through the pipeline's churn stage
(bench/churn_cutoff.py's ``Replay``). For each column that carries a complaint (``open_tickets``, ``csat_centered``,
``nps_centered``), over the hazard examples closed by then: how often it is non-zero, the share of examples with an
order within the step when it is below, at and above zero, scikit-learn logistic regression's coefficient on the
standardised column beside the streaming learner's served weight, and the examples' ROC AUC with and without the
three columns. Independent of the pipeline's learner: the batch fit says what the examples carry.

Usage: python bench/complaint_signal.py [--history dense] [--customers 2000] [--days 540] [--cutoff-day 420]
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.churn_cutoff import Replay, one_history  # noqa: E402
from online_models.churn_features import FEATURES, MODEL_FEATURES  # noqa: E402
from online_models.prequential import roc_auc  # noqa: E402
from online_models.purchase_history import DAY_MS  # noqa: E402
from streams.config import Settings  # noqa: E402

COMPLAINT_COLUMNS = ("open_tickets", "csat_centered", "nps_centered")


def batch_fit(features: np.ndarray, ordered: np.ndarray) -> tuple[np.ndarray, float]:
    """Coefficients on the standardised columns and the in-sample ROC AUC of P(an order within the step)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaled = StandardScaler().fit_transform(features)
    fitted = LogisticRegression(max_iter=3000).fit(scaled, ordered)
    return fitted.coef_[0], roc_auc(fitted.predict_proba(scaled)[:, 1], ordered)


def order_rate(ordered: np.ndarray, where: np.ndarray) -> str:
    return f"{ordered[where].mean():.3f} (n={int(where.sum()):,})" if where.any() else "–"


def main() -> None:
    history, cutoff_day = one_history(__doc__, ("dense", "sparse"), "dense")
    replay = Replay(Settings.from_env({}), warmup=5000)
    replay.replay_until(iter(history.events), history.start_ms + cutoff_day * DAY_MS)
    features = np.array([f for f, _, _ in replay.examples])
    ordered = np.array([y for _, y, _ in replay.examples], dtype=int)
    print(f"history {history.name}: {len(ordered):,} hazard examples by the cutoff, {ordered.mean():.1%} with an "
          f"order within the step")
    coefficients, auc = batch_fit(features, ordered)
    kept = [i for i, name in enumerate(FEATURES) if name not in COMPLAINT_COLUMNS]
    _, auc_without = batch_fit(features[:, kept], ordered)
    served = replay.trainer.snapshot(1, 0, served="logistic")["model"]
    print(f"\n{'column':>14} {'non-zero':>9} {'orders when < 0':>20} {'= 0':>20} {'> 0':>20} {'batch coef':>11} "
          f"{'served weight':>14}")
    for name in COMPLAINT_COLUMNS:
        column, i = features[:, FEATURES.index(name)], FEATURES.index(name)
        print(f"{name:>14} {np.mean(column != 0):>9.1%} {order_rate(ordered, column < 0):>20} "
              f"{order_rate(ordered, column == 0):>20} {order_rate(ordered, column > 0):>20} "
              f"{coefficients[i]:>+11.3f} {served['weights'][MODEL_FEATURES.index(name)]:>+14.3f}")
    print(f"\nbatch logistic regression, in-sample ROC AUC of the examples: {auc:.4f} with the three columns, "
          f"{auc_without:.4f} without")


if __name__ == "__main__":
    main()
