"""How much of what customers say reaches the churn model (issue 25, "risk that reacts to what customers say").

A simulated history (bench/histories.py; the simulator plants more tickets, lower CSAT and a last NPS answer in
the weeks before a customer leaves) is replayed to the cutoff through the pipeline's churn stage
(bench/churn_cutoff.py's ``Replay``). For each column that carries a complaint (``open_tickets``, ``csat_centered``,
``nps_centered``), over the hazard examples closed by then: how often it is non-zero, the share of examples with an
order within the step when it is below, at and above zero, scikit-learn logistic regression's coefficient on the
standardised column beside the streaming learner's served weight, and the examples' ROC AUC with and without the
complaint columns. Independent of the pipeline's learner: the batch fit says what the examples carry.

Then what is served: at the cutoff, the buyers who complained in the last two weeks (a support ticket, a CSAT of 2
or less, an NPS of 6 or less) against the others: how many of each placed no order within the horizon after the
cutoff (the history says), the mean served ``churn_p``, and the mean ``churn_p`` the same model gives them with
their complaint columns set to zero (what the complaint added).

Usage: python bench/complaint_signal.py [--history dense|voice|sparse] [--customers 2000] [--days 540]
                                        [--cutoff-day 420]
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.churn_cutoff import RECENT_COMPLAINT_MS, Replay, complained_recently, one_history  # noqa: E402
from online_models.churn_features import FEATURES, MODEL_FEATURES  # noqa: E402
from online_models.churn_model import scorer_from_snapshot  # noqa: E402
from online_models.churn_tracking import raw_scores  # noqa: E402
from online_models.prequential import roc_auc  # noqa: E402
from online_models.purchase_history import DAY_MS  # noqa: E402
from streams.config import Settings  # noqa: E402

COMPLAINT_COLUMNS = tuple(name for name in ("open_tickets", "csat_centered", "nps_centered", "log_complaints")
                          if name in FEATURES)


class WithoutComplaints:
    """The served scorer, asked with the complaint columns of every row set to zero."""

    def __init__(self, scorer) -> None:
        self.scorer, self.version = scorer, scorer.version
        self.columns = [FEATURES.index(name) for name in COMPLAINT_COLUMNS]

    def hazards(self, rows: np.ndarray) -> np.ndarray:
        rows = rows.copy()
        rows[..., self.columns] = 0.0
        return self.scorer.hazards(rows)


def served_reaction(replay: Replay, history, cutoff_ms: int, horizon_ms: int) -> None:
    """Observed churn, served churn_p and churn_p without the complaint columns, complainers vs the others."""
    scorer = scorer_from_snapshot(replay.trainer.snapshot(1, cutoff_ms))
    orders = history.orders()
    buyers = [(customer_id, state) for customer_id, state in replay.states.items() if state.purchases.orders > 0]
    asked = [(state, [cutoff_ms]) for _, state in buyers]
    settings = replay.settings
    served = np.array([p[0] for p in raw_scores(asked, scorer, settings)[0]])
    without = np.array([p[0] for p in raw_scores(asked, WithoutComplaints(scorer), settings)[0]])
    churned = np.array([not any(cutoff_ms < t <= cutoff_ms + horizon_ms for t in orders.get(customer_id, ()))
                        for customer_id, _ in buyers])
    recent = np.array([complained_recently(state, cutoff_ms) for _, state in buyers])
    print(f"\nserved at the cutoff ({len(buyers):,} buyers; complaint = ticket, CSAT <= 2 or NPS <= 6 in the last "
          f"{RECENT_COMPLAINT_MS // DAY_MS} days):")
    print(f"{'':>22} {'buyers':>7} {'churned (observed)':>19} {'served churn_p':>15} {'without complaints':>19}")
    for label, where in (("complained recently", recent), ("the others", ~recent)):
        if where.any():
            print(f"{label:>22} {int(where.sum()):>7,} {churned[where].mean():>19.3f} {served[where].mean():>15.3f} "
                  f"{without[where].mean():>19.3f}")


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
    history, cutoff_day = one_history(__doc__, ("dense", "voice", "sparse"), "dense")
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
    print(f"\nbatch logistic regression, in-sample ROC AUC of the examples: {auc:.4f} with the complaint columns, "
          f"{auc_without:.4f} without")
    horizon_ms = int(replay.settings.hazard.horizon_days * DAY_MS)
    served_reaction(replay, history, history.start_ms + cutoff_day * DAY_MS, horizon_ms)


if __name__ == "__main__":
    main()
