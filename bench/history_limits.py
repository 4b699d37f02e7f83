"""What a history's orders can give at the cutoff: the ceilings issue 24's targets are judged against.

Two questions, for one history (default: the public CDNOW sample, bench/histories.py):

1. **Ranking.** ROC AUC of P(no order within the horizon) at the cutoff for models *fitted to the cutoff's own
   outcomes* (cross-validated, 5 folds, 10 shuffles): logistic regression and gradient-boosted trees on what the
   order history says of each buyer (days since the last order, repeat orders, age, span, mean gap, orders in the
   last 90 and 180 days; logs). They see the very labels they are judged on, which no model learning from the past
   can: an upper bound, give or take. Beside them: recency alone and its bootstrap standard error.
2. **Calibration.** The worst decile of 90-day risk, pooled over the cutoffs bench/churn_cutoff.py pools
   (cutoff -90, -45, 0, +30 days), for the streaming learner as served (the version of each day less the score
   lag), for scikit-learn logistic regression refitted on every example closed by that same version's time (the
   batch optimum with the same information), and for BG/NBD fitted at each day itself (no lag).

Usage: python bench/history_limits.py [--history cdnow] [--customers N] [--days D] [--cutoff-day C]
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.churn_cutoff import (Replay, _one_line_rules, _scores, _worst_gap, batch_churn_p,  # noqa: E402
                                one_history)
from bench.histories import HISTORIES  # noqa: E402
from online_models.churn_model import scorer_from_snapshot  # noqa: E402
from online_models.prequential import roc_auc  # noqa: E402
from online_models.purchase_history import DAY_MS  # noqa: E402
from streams.config import Settings  # noqa: E402

ORDER_COLUMNS = ("days_silent", "repeats", "age_days", "span_days", "mean_gap_days", "orders_90d", "orders_180d")


def order_columns(orders: dict[str, list[int]], buyers: list[str], as_of_ms: int) -> np.ndarray:
    """Per buyer, what its orders before ``as_of_ms`` say (:data:`ORDER_COLUMNS`), as log1p."""
    rows = []
    for customer_id in buyers:
        before = sorted(t for t in orders[customer_id] if t <= as_of_ms)
        first, last, repeats = before[0], before[-1], len(before) - 1
        span = (last - first) / DAY_MS
        rows.append([(as_of_ms - last) / DAY_MS, repeats, (as_of_ms - first) / DAY_MS, span,
                     span / max(repeats, 1), sum(t > as_of_ms - 90 * DAY_MS for t in before),
                     sum(t > as_of_ms - 180 * DAY_MS for t in before)])
    return np.log1p(np.array(rows, dtype=float))


def ranking_ceiling(columns: np.ndarray, churned: np.ndarray, shuffles: int = 10) -> dict[str, tuple[float, float]]:
    """Cross-validated ROC AUC (mean, sd over shuffles) of models fitted to the outcomes themselves."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    recency_frequency_age = [ORDER_COLUMNS.index(name) for name in ("days_silent", "repeats", "age_days")]
    models = {
        "logistic regression, recency + repeats + age": (
            make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)), recency_frequency_age),
        "logistic regression, every column": (
            make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)), list(range(len(ORDER_COLUMNS)))),
        "gradient-boosted trees, every column": (
            HistGradientBoostingClassifier(max_iter=200, learning_rate=0.05, max_depth=3),
            list(range(len(ORDER_COLUMNS)))),
    }
    found = {}
    for name, (model, used) in models.items():
        aucs = [roc_auc(cross_val_predict(model, columns[:, used], churned, method="predict_proba",
                                          cv=StratifiedKFold(5, shuffle=True, random_state=seed))[:, 1], churned)
                for seed in range(shuffles)]
        found[name] = (float(np.mean(aucs)), float(np.std(aucs)))
    return found


def bootstrap_se(scores: np.ndarray, churned: np.ndarray, draws: int = 500) -> float:
    rng = np.random.default_rng(0)
    picks = (rng.integers(0, len(churned), len(churned)) for _ in range(draws))
    return float(np.std([roc_auc(scores[pick], churned[pick]) for pick in picks]))


def main() -> None:
    history, cutoff_day = one_history(__doc__, HISTORIES, "cdnow")
    app_settings = Settings.from_env({})
    settings = app_settings.churn_settings()
    horizon_ms = int(settings.hazard.horizon_days * DAY_MS)
    orders = history.orders()
    replay = Replay(app_settings, warmup=5000)
    lag_ms, period_ms = app_settings.churn_score_lag_ms(), app_settings.churn_version_period_ms()
    events, rows = iter(history.events), []
    calibration_days = [day for day in (cutoff_day - 90, cutoff_day - 45, cutoff_day, cutoff_day + 30)
                        if 0 < day <= history.days - settings.hazard.horizon_days]
    for day in calibration_days:
        as_of = history.start_ms + day * DAY_MS
        target = (as_of - lag_ms) // period_ms * period_ms
        for stop in sorted({target, as_of}):
            replay.replay_until(events, stop)
            if stop == target:
                served = scorer_from_snapshot(replay.trainer.snapshot(day, target))  # a version each: no ratchet
                known, population = len(replay.examples), replay.trainer.population
        buyers = [cid for cid, state in replay.states.items() if state.purchases.orders > 0]
        churned = np.array([not any(as_of < t <= as_of + horizon_ms for t in orders[cid]) for cid in buyers], dtype=int)
        rows.append((day, buyers, churned, _scores(replay, buyers, as_of, served, settings),
                     batch_churn_p(replay, replay.examples[:known], population, buyers, as_of, settings),
                     _one_line_rules(buyers, orders, as_of, horizon_ms)))

    day, buyers, churned, *_ = next(row for row in rows if row[0] == cutoff_day)
    cutoff_ms = history.start_ms + cutoff_day * DAY_MS
    columns = order_columns(orders, buyers, cutoff_ms)
    recency = np.expm1(columns[:, 0])
    print(f"history {history.name}, cutoff day {cutoff_day}: {len(buyers):,} buyers, {churned.mean():.1%} without an "
          f"order in the next {settings.hazard.horizon_days:g} days")
    print("\n1. ranking at the cutoff, ROC AUC of P(no order) (cross-validated on the cutoff's own outcomes, "
          "mean ± sd over 10 shuffles of 5 folds):")
    print(f"  recency alone                                   {roc_auc(recency, churned):.4f}  (bootstrap standard "
          f"error {bootstrap_se(recency, churned):.4f})")
    for name, (mean, sd) in ranking_ceiling(columns, churned).items():
        print(f"  {name:47s} {mean:.4f} ± {sd:.4f}")
    streaming = next(row for row in rows if row[0] == cutoff_day)[3]
    print(f"  streaming churn_p as served (for comparison)    {roc_auc(streaming, churned):.4f}")

    print(f"\n2. calibration, worst decile of {settings.hazard.horizon_days:g}-day risk (predicted vs observed):")
    print(f"  {'day':>5} {'streaming, served':>18} {'batch LR, same version':>23} {'BG/NBD at the day':>18}")
    for day, _, y, streaming, batch, rules in rows:
        print(f"  {day:>5} {_worst_gap(streaming, y):>18.3f} {_worst_gap(batch, y):>23.3f} "
              f"{_worst_gap(rules['bgnbd_p'], y):>18.3f}")
    pooled_y = np.concatenate([row[2] for row in rows])
    pooled = [_worst_gap(np.concatenate(part), pooled_y) for part in
              ([row[3] for row in rows], [row[4] for row in rows], [row[5]["bgnbd_p"] for row in rows])]
    print(f"  {'pooled':>5} {pooled[0]:>18.3f} {pooled[1]:>23.3f} {pooled[2]:>18.3f}")


if __name__ == "__main__":
    main()
