"""Replay-to-cutoff: streaming churn risk vs batch logistic regression, recency alone and BG/NBD.

A history (the simulator's dense or sparse profile, whose hidden truth is known, or the public CDNOW orders:
bench/histories.py) is replayed in event-time order up to a
cutoff through the same validation and dispatch the pipeline runs
(agents.customer_state.apply_to_state, the churn stage's order hooks,
online_models.churn_tracking): hazard examples open at orders and every step of
silence, close late, and train the online learners prequentially, in event-time order behind the
watermark as the pipeline's trainer learns them (``--unordered``: as they are closed). At the cutoff
every buyer is scored with the version the pipeline would serve (trained until the cutoff less the score
lag, ``--score-lag-days``) and with the newest; the truth is whether they bought in the following horizon.

The batch baseline is scikit-learn ``LogisticRegression`` fitted on the same
closed examples (same features, same labels) and composed into churn risk the
same way; days since the last order and BG/NBD fitted at the cutoff are the
one-line rules a shop could use instead. Also printed: prequential metrics after
warm-up, calibration of the served churn_p by decile (per cutoff and pooled), and
µs per scored customer and per trained example; the histories side by side.

Usage: python bench/churn_cutoff.py [--history dense sparse cdnow cdnow-master] [--customers N] [--days D]
                                    [--cutoff-day C] [--seed 7] [--average-examples N]
                                    [--average-positives K] [--unordered] [--score-lag-days D]
"""
from __future__ import annotations

import argparse
import heapq
import itertools
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agents.churn_scoring import ChurnStage  # noqa: E402
from agents.customer_state import apply_to_state  # noqa: E402
from bench import histories  # noqa: E402
from bench.histories import CDNOW_CUTOFF_DAY, CDNOW_DAYS, HISTORIES  # noqa: E402
from online_models import bgnbd, churn_tracking  # noqa: E402
from online_models.churn_features import FEATURES, silence_paths, with_population_columns  # noqa: E402
from online_models.churn_model import (AVERAGED_EXAMPLES, AVERAGED_POSITIVES, ChurnTrainer, LinearHazardScorer,  # noqa: E402
                                      churn_probabilities, scorer_from_snapshot)
from online_models.customer_state import CustomerState  # noqa: E402
from online_models.engagement import COMPLAINT_CSAT, NPS_DETRACTOR  # noqa: E402
from online_models.example_order import ExampleOrder  # noqa: E402
from online_models.prequential import calibration_by_decile, roc_auc  # noqa: E402
from online_models.purchase_history import DAY_MS  # noqa: E402
from schemas.events import Purchase, validate_payload  # noqa: E402
from streams.config import Settings  # noqa: E402



class Replay:
    """Customers, their wheel and the trainer, driven in event-time order through the pipeline's own
    event validation and dispatch (``agents.customer_state.apply_to_state``, the churn stage around orders)."""

    def __init__(self, settings: Settings, warmup: int, ordered: bool = True,
                 order_delay_ms: int | None = None, average_examples: int = AVERAGED_EXAMPLES,
                 average_positives: int = AVERAGED_POSITIVES) -> None:
        self.app_settings, self.settings = settings, settings.churn_settings()
        self.ordered = ExampleOrder() if ordered else None
        hazard = self.settings.hazard
        # The pipeline's trainer (agents/churn_trainer.py) learns an example once every partition's purchases
        # watermark (newest order less the lateness) has passed its window's end and the label delay.
        pipeline_delay_ms = (max(self.settings.label_steps, 1) - 1) * hazard.step_ms + settings.lateness_ms
        self.label_delay_ms = pipeline_delay_ms if order_delay_ms is None else order_delay_ms
        self.states: dict[str, CustomerState] = {}
        self.wheel: list[tuple[int, str]] = []
        self.trainer = ChurnTrainer(step_days=settings.churn_step_days, average_examples=average_examples,
                                    average_positives=average_positives)
        self.examples: list[tuple[list[float], bool]] = []
        self.warmup = warmup
        self.train_s = 0.0
        self.stage = ChurnStage(settings)
        self._pending: tuple[str, dict] | None = None  # the first event past the last stop

    def replay_until(self, events: Iterator[tuple[str, dict]], stop_ms: int) -> None:
        """Apply the events of ``events`` (one iterator, shared between calls) up to ``stop_ms``, then move the
        watermark there; the first event past it waits for the next call."""
        for topic, event in itertools.chain([self._pending] if self._pending else [], events):
            if event["ts"] > stop_ms:
                self._pending = (topic, event)
                break
            self.event(topic, event)
        else:
            self._pending = None
        self.advance(stop_ms)

    def learn(self, closed) -> None:
        """``closed``: (customer id, example) pairs, as the pipeline sends them to the trainer."""
        for customer_id, example in closed:
            self.examples.append((example.features, example.purchased, example.weight))
            if self.ordered is not None:
                self.ordered.add(example.closed_ms,
                                 f"{customer_id}:{example.checkpoint_ms}", (customer_id, example))
            else:
                self._learn_one(customer_id, example)

    def _learn_one(self, customer_id: str, example) -> None:
        started = time.perf_counter()
        self.trainer.learn(dict(zip(FEATURES, example.features)), example.purchased, example.weight,
                           customer_id, example.checkpoint_ms)
        self.train_s += time.perf_counter() - started

    def advance(self, watermark_ms: int) -> None:
        self.as_of_ms = watermark_ms
        while self.wheel and self.wheel[0][0] <= watermark_ms:
            due, customer_id = heapq.heappop(self.wheel)
            state = self.states[customer_id]
            if state.churn_clock.due_ms(self.settings.hazard) == due:
                self.learn((customer_id, example) for example in churn_tracking.on_clock(state, watermark_ms,
                                                                                         self.settings))
                self._schedule(customer_id, state)
        if self.ordered is not None:
            for customer_id, example in self.ordered.release(watermark_ms - self.label_delay_ms):
                self._learn_one(customer_id, example)

    def _schedule(self, customer_id: str, state: CustomerState) -> None:
        due = state.churn_clock.due_ms(self.settings.hazard)
        if due is not None:
            heapq.heappush(self.wheel, (due, customer_id))

    def event(self, topic: str, payload: dict) -> None:
        event = validate_payload(topic, payload)
        half_life_ms = self.app_settings.engagement_half_life_days * DAY_MS
        state = self.states.setdefault(event.customer_id, CustomerState.new(half_life_ms))
        self.advance(event.ts_ms)
        order = isinstance(event, Purchase) and event.kind == "order"
        if order:
            self.stage.before_order(event.customer_id, state, event.ts_ms)
        apply_to_state(state, event)
        if order:
            self.stage.after_order(event.customer_id, state, event.ts_ms)
        self.learn(self.stage.examples)
        self.stage.examples.clear()
        if isinstance(event, Purchase) and event.kind == "order":
            self._schedule(event.customer_id, state)


#: Per history: (customers, days, cutoff day) when not given; CDNOW's are fixed by its file (39-week calibration).
DEFAULTS = {"dense": (2000, 540, 420), "voice": (2000, 540, 420), "sparse": (5000, 730, 540),
            "cdnow": (None, CDNOW_DAYS, CDNOW_CUTOFF_DAY), "cdnow-master": (None, CDNOW_DAYS, CDNOW_CUTOFF_DAY)}


def one_history(doc: str, choices: Sequence[str], default: str) -> tuple[histories.History, int]:
    """A bench's command line on one history (``--history --customers --days --cutoff-day --seed``): the history
    loaded, and its cutoff day (the history's default unless given)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--history", choices=choices, default=default)
    parser.add_argument("--customers", type=int, default=None)
    parser.add_argument("--days", type=int, default=None)
    parser.add_argument("--cutoff-day", type=int, default=None)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    customers, days, cutoff_day = DEFAULTS[args.history]
    history = histories.load(args.history, args.customers or customers, args.days or days, args.seed)
    return history, args.cutoff_day or cutoff_day


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--history", nargs="+", choices=HISTORIES, default=["dense", "sparse", "cdnow"],
                        help="simulated profiles and the public CDNOW sample (lifetimes), run one after the other")
    parser.add_argument("--customers", type=int, default=None, help="simulated histories (default per profile)")
    parser.add_argument("--days", type=int, default=None)
    parser.add_argument("--cutoff-day", type=int, default=None)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--thin-every", type=int, default=None,
                        help="CRM_CHURN_THIN_EVERY for this run (default: the setting's default)")
    parser.add_argument("--average-examples", type=int, default=AVERAGED_EXAMPLES,
                        help="examples the served linear model is averaged over at least (0: the last iterate)")
    parser.add_argument("--average-positives", type=int, default=AVERAGED_POSITIVES,
                        help="or over as many examples as hold this many orders, if more (0: average-examples)")
    parser.add_argument("--unordered", action="store_true",
                        help="learn examples as they are closed (the trainer before it learned in event-time order)")
    parser.add_argument("--order-delay-days", type=float, default=None,
                        help="how far behind the watermark examples are released (default: as the pipeline's "
                             "trainer, the label delay plus the lateness)")
    parser.add_argument("--warmup", type=int, default=5000, help="examples before prequential figures count")
    parser.add_argument("--score-lag-days", type=float, default=None,
                        help="CRM_CHURN_SCORE_LAG_DAYS: the served scores use the version this much older (default: "
                             "the setting's; 0: the newest version)")
    args = parser.parse_args()
    rows = []
    for name in args.history:
        customers, days, cutoff_day = DEFAULTS[name]
        one = argparse.Namespace(**{**vars(args), "history": name, "customers": args.customers or customers,
                                    "days": args.days or days, "cutoff_day": args.cutoff_day or cutoff_day})
        print(f"\n=== {name} ===")
        rows.append((name, run(one, echo=print)))
    print("\nside by side (ROC AUC of P(no order within the horizon) at the cutoff; calibration: pooled worst decile):")
    print(f"{'history':>12} {'buyers':>7} {'streaming':>9} {'batch LR':>8} {'recency':>8} {'BG/NBD':>8} "
          f"{'stream-rec':>10} {'stream-LR':>9} {'calib':>6} {'BG/NBD cal':>10} {'newest':>7} {'calib':>6}")
    for name, r in rows:
        print(f"{name:>12} {r['buyers']:>7,} {r['auc_streaming']:>9.4f} {r['auc_batch']:>8.4f} "
              f"{r['auc_recency']:>8.4f} {r['auc_bgnbd']:>8.4f} {r['auc_streaming'] - r['auc_recency']:>+10.4f} "
              f"{r['auc_streaming'] - r['auc_batch']:>+9.4f} {r['calibration_gap']:>6.3f} "
              f"{r['bgnbd_calibration_gap']:>10.3f} {r['auc_newest']:>7.4f} {r['calibration_gap_newest']:>6.3f}")
    print(f"streaming and its calibration: the version the pipeline serves (score lag {rows[0][1]['score_lag_days']:g} "
          "days); newest: the version of the cutoff itself")


def run(args, echo=lambda *_: None) -> dict:
    """Replay, score at the cutoffs, compare; returns the headline numbers."""
    print = echo  # noqa: A001 - the report goes wherever the caller wants it
    history = histories.load(getattr(args, "history", "dense"), args.customers, args.days, args.seed)
    start_ms = history.start_ms
    thin_every = getattr(args, "thin_every", None)
    env = {} if thin_every is None else {"CRM_CHURN_THIN_EVERY": str(thin_every)}
    if getattr(args, "score_lag_days", None) is not None:
        env["CRM_CHURN_SCORE_LAG_DAYS"] = str(args.score_lag_days)
    app_settings = Settings.from_env(env)
    settings = app_settings.churn_settings()
    horizon_ms = int(settings.hazard.horizon_days * DAY_MS)
    cutoff_ms = start_ms + args.cutoff_day * DAY_MS
    calibration_days = sorted({day for day in (args.cutoff_day - 90, args.cutoff_day - 45, args.cutoff_day,
                                               args.cutoff_day + 30)
                               if 0 < day <= history.days - settings.hazard.horizon_days})
    orders = history.orders()

    delay_days = getattr(args, "order_delay_days", None)
    replay = Replay(app_settings, args.warmup, ordered=not getattr(args, "unordered", False),
                    order_delay_ms=None if delay_days is None else int(delay_days * DAY_MS),
                    average_examples=getattr(args, "average_examples", AVERAGED_EXAMPLES),
                    average_positives=getattr(args, "average_positives", AVERAGED_POSITIVES))
    # The pipeline scores event time t with the version trained until t less the score lag, on the version grid
    # (CRM_CHURN_SCORE_LAG_DAYS; agents/version_targets.py): the served figures use that version, the newest's
    # are printed beside them.
    lag_ms, period_ms = app_settings.churn_score_lag_ms(), app_settings.churn_version_period_ms()
    events, cutoffs, served_at = iter(history.events), [start_ms + day * DAY_MS for day in calibration_days], {}
    started, newest_at = time.perf_counter(), {}
    # Each snapshot its own version, as the pipeline's: a silent customer's score is ratcheted (never falls)
    # only under one version; with one number for all, every cutoff's scores were raised to the last one's.
    versions = itertools.count(1)
    for as_of in cutoffs:
        target = (as_of - lag_ms) // period_ms * period_ms if lag_ms else as_of
        for stop in sorted({target, as_of}):
            replay.replay_until(events, stop)
            if stop == target:
                lagged = scorer_from_snapshot(replay.trainer.snapshot(next(versions), target))
        buyers = [cid for cid, state in replay.states.items() if state.purchases.orders > 0]
        churned = np.array([not any(as_of < ts <= as_of + horizon_ms for ts in orders[cid]) for cid in buyers],
                           dtype=int)
        newest = scorer_from_snapshot(replay.trainer.snapshot(next(versions), as_of))
        snapshot_started = time.perf_counter()
        scores = _scores(replay, buyers, as_of, lagged, settings)
        score_us = (time.perf_counter() - snapshot_started) / max(len(buyers), 1) * 1e6
        newest_at[as_of] = _scores(replay, buyers, as_of, newest, settings)
        served_at[as_of] = (buyers, churned, scores,
                            np.array([history.truth(cid, as_of, horizon_ms) if history.truth else np.nan
                                      for cid in buyers]), score_us)
        if as_of == cutoff_ms:
            at_cutoff = _at_cutoff(replay, buyers, settings)
            at_cutoff.update(_one_line_rules(buyers, orders, as_of, horizon_ms))
    replay_s = time.perf_counter() - started

    buyers, churned, streaming, truth_p, score_us = served_at[cutoff_ms]
    labels = at_cutoff["labels"]
    report = replay.trainer.report()
    cutoff_date = datetime.fromtimestamp(cutoff_ms / 1000, timezone.utc).date().isoformat()
    print(f"history {history.name}: {len(orders):,} buyers in {history.days} days, cutoff day {args.cutoff_day} "
          f"({cutoff_date}); {len(labels)} hazard examples by then "
          f"({labels.mean():.1%} purchased within {settings.hazard.step_days:g} days); {len(buyers)} buyers scored, "
          f"{churned.mean():.1%} churned in the next {settings.hazard.horizon_days:g} days")
    print(f"served learner: {report['served']}; drifts detected: {report['drifts_detected']}")
    print("\nchurn_p at the cutoff vs who bought in the next horizon (ROC AUC):")
    auc_stream, auc_batch = roc_auc(streaming, churned), roc_auc(at_cutoff["batch_p"], churned)
    auc_recency, auc_bgnbd = roc_auc(at_cutoff["recency"], churned), roc_auc(at_cutoff["bgnbd_p"], churned)
    auc_newest = roc_auc(newest_at[cutoff_ms], churned)
    print(f"  streaming (served: version of the cutoff less {lag_ms / DAY_MS:g} days)   {auc_stream:.4f}")
    print(f"  streaming (the newest version, no score lag)   {auc_newest:.4f}")
    print(f"  batch sklearn LR, same data   {auc_batch:.4f}")
    print(f"  recency alone (days silent)   {auc_recency:.4f}")
    print(f"  BG/NBD fitted at the cutoff   {auc_bgnbd:.4f}  ({at_cutoff['bgnbd_params']})")
    print(f"  cold-start prior              {roc_auc(at_cutoff['prior'], churned):.4f}")
    print(f"  streaming - batch             {auc_stream - auc_batch:+.4f}")
    print(f"  streaming - recency           {auc_stream - auc_recency:+.4f}")
    if history.truth:
        print(f"  (simulator truth: hidden rate and dropout known: {roc_auc(truth_p, churned):.4f})")

    print("\ncalibration of the served churn_p by decile (predicted / observed), served at each day below "
          "and pooled;\nthe simulator's truth (each customer's hidden rate and dropout) shows the sampling noise:")
    for as_of in cutoffs:
        _, y, p, truth, _ = served_at[as_of]
        batch = f", batch LR {_worst_gap(at_cutoff['batch_p'], y):.3f}" if as_of == cutoff_ms else ""
        batch += f", BG/NBD {_worst_gap(at_cutoff['bgnbd_p'], y):.3f}" if as_of == cutoff_ms else ""
        print(f"  day {(as_of - start_ms) // DAY_MS:4d} ({len(y)} buyers): max gap {_worst_gap(p, y):.3f} "
              f"({_truth_gap(truth, y)}{batch})")
        deciles = calibration_by_decile(p, y)
        print("      " + " ".join(f"{row['predicted']:.2f}/{row['observed']:.2f}" for row in deciles))
    pooled_y = np.concatenate([served_at[t][1] for t in cutoffs])
    pooled_p = np.concatenate([served_at[t][2] for t in cutoffs])
    pooled_truth = np.concatenate([served_at[t][3] for t in cutoffs])
    for row in calibration_by_decile(pooled_p, pooled_y):
        print(f"  {row['decile']:2d}: {row['predicted']:.3f} / {row['observed']:.3f}  (n={row['count']})")
    worst = _worst_gap(pooled_p, pooled_y)
    truth_worst = _worst_gap(pooled_truth, pooled_y) if history.truth else float("nan")
    worst_newest = _worst_gap(np.concatenate([newest_at[t] for t in cutoffs]), pooled_y)
    print(f"  pooled max |predicted - observed| = {worst:.3f} ({_truth_gap(pooled_truth, pooled_y)}; the newest "
          f"version: {worst_newest:.3f})")
    print("\nprequential, per learner (overall | last 5,000 examples):")
    for name, metrics in report["learners"].items():
        overall, window = metrics["overall"], metrics["window"]
        print(f"  {name:15s} AUC {overall['roc_auc']:.4f} | {window['roc_auc']:.4f}   log loss "
              f"{overall['log_loss']:.4f} | {window['log_loss']:.4f}   "
              f"Brier {overall['brier']:.4f} | {window['brier']:.4f}")
        print(f"  {'':15s} window calibration: max decile gap {_worst(window['calibration']):.3f}")
    print(f"\ncost: {replay.train_s / max(len(replay.examples), 1) * 1e6:.0f} µs per trained example "
          f"(both learners, prequential metrics included); {score_us:.0f} µs per scored customer "
          f"({settings.hazard.steps}-step silence path + explanation, batches of 500); whole replay {replay_s:.1f} s")
    complained = np.array([complained_recently(replay.states[cid], cutoff_ms) for cid in buyers], dtype=bool)
    complainers = {"complainers": int(complained.sum())}
    if complained.any():
        complainers |= {"complainers_observed": float(churned[complained].mean()),
                        "complainers_served": float(streaming[complained].mean()),
                        "complainers_batch": float(at_cutoff["batch_p"][complained].mean())}
        print(f"\nbuyers who complained in the {RECENT_COMPLAINT_MS // DAY_MS} days before the cutoff: "
              f"{complained.sum()}; churned {complainers['complainers_observed']:.3f}, mean churn_p served "
              f"{complainers['complainers_served']:.3f}, batch LR {complainers['complainers_batch']:.3f}")
    window = report["learners"][report["served"]]["window"]
    return {**complainers, "buyers": len(buyers), "auc_streaming": auc_stream, "auc_batch": auc_batch,
            "auc_recency": auc_recency,
            "auc_bgnbd": auc_bgnbd, "bgnbd_calibration_gap": _worst_gap(at_cutoff["bgnbd_p"], churned),
            "churn_p": dict(zip(buyers, streaming.tolist())), "calibration_gap": worst,
            "auc_newest": auc_newest, "calibration_gap_newest": worst_newest, "score_lag_days": lag_ms / DAY_MS,
            "truth_calibration_gap": truth_worst, "prequential_auc": window["roc_auc"],
            "prequential_calibration_gap": _worst(window["calibration"])}


#: How recent a complaint counts in the cutoff's "complainers" (a ticket, a CSAT of 2 or less, an NPS of 6 or less).
RECENT_COMPLAINT_MS = 14 * DAY_MS


def complained_recently(state: CustomerState, at_ms: int) -> bool:
    """A support ticket, a CSAT of 2 or less or an NPS of 6 or less within :data:`RECENT_COMPLAINT_MS` before
    ``at_ms`` (as the latest answers and ticket show)."""
    engagement, since = state.engagement, at_ms - RECENT_COMPLAINT_MS
    return any(ts is not None and since < ts <= at_ms and bad for ts, bad in (
        (engagement.last_ticket_ms, True),
        (engagement.last_csat_ms, engagement.last_csat is not None and engagement.last_csat <= COMPLAINT_CSAT),
        (engagement.last_nps_ms, engagement.last_nps is not None and engagement.last_nps <= NPS_DETRACTOR)))


def _scores(replay: Replay, buyers: list[str], as_of: int, scorer, settings) -> np.ndarray:
    """Every buyer's churn_p as of ``as_of`` under ``scorer``, 500 at a time as the pipeline's batches."""
    scores = []
    for first in range(0, len(buyers), 500):
        scores += churn_tracking.score_many([(replay.states[cid], [as_of]) for cid in buyers[first:first + 500]],
                                            scorer, settings)
    return np.array([s[-1]["churn_p"] for s in scores])


def batch_churn_p(replay: Replay, examples: list, population, buyers: list[str], as_of_ms: int,
                  settings) -> np.ndarray:
    """Every buyer's churn_p as of ``as_of_ms`` under scikit-learn logistic regression fitted on ``examples``
    (same features, labels and weights, the population columns under ``population``), composed as the pipeline
    composes hazards."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    step_days = settings.hazard.step_days
    features = with_population_columns(np.array([f for f, _, _ in examples]), population, step_days)
    labels = np.array([y for _, y, _ in examples], dtype=int)
    weights = np.array([w for _, _, w in examples], dtype=float)  # thinned deep silence stands for more
    scaler = StandardScaler().fit(features, sample_weight=weights)
    fitted = LogisticRegression(max_iter=2000).fit(scaler.transform(features), labels, sample_weight=weights)
    scorer = LinearHazardScorer(0, scaler.mean_, scaler.scale_, fitted.coef_[0], float(fitted.intercept_[0]))
    plain = silence_paths([(replay.states[cid], [as_of_ms]) for cid in buyers], settings.hazard.step_ms,
                          settings.hazard.steps)
    return churn_probabilities(scorer, with_population_columns(plain, population, step_days), settings.hazard)


def _at_cutoff(replay: Replay, buyers: list[str], settings) -> dict:
    """Batch logistic regression on the examples closed by the cutoff (the population columns under the
    trainer's BG/NBD fit of the cutoff), and the cold-start prior."""
    prior = np.array([churn_tracking.score(_fresh(replay.states[cid]), replay.as_of_ms, None, settings)["churn_p"]
                      for cid in buyers])
    return {"labels": np.array([y for _, y, _ in replay.examples], dtype=int), "prior": prior,
            "batch_p": batch_churn_p(replay, replay.examples, replay.trainer.population, buyers, replay.as_of_ms,
                                     settings)}


def _one_line_rules(buyers: list[str], orders: dict[str, list[int]], as_of_ms: int, horizon_ms: int) -> dict:
    """What a shop could rank with instead, recomputed from the raw order times: days since the last order, and
    BG/NBD fitted on every buyer's (repeat orders, last order's age, age) at the cutoff."""
    first = np.array([min(t for t in orders[cid] if t <= as_of_ms) for cid in buyers], dtype=float)
    last = np.array([max(t for t in orders[cid] if t <= as_of_ms) for cid in buyers], dtype=float)
    repeats = np.array([sum(t <= as_of_ms for t in orders[cid]) - 1 for cid in buyers], dtype=float)
    t_x, age = (last - first) / DAY_MS, (as_of_ms - first) / DAY_MS
    params = bgnbd.fit(repeats, t_x, age)
    rounded = ", ".join(f"{k} {v:.3g}" for k, v in params.to_dict().items())
    return {"recency": (as_of_ms - last) / DAY_MS, "bgnbd_params": rounded,
            "bgnbd_p": bgnbd.p_no_order_within(params, repeats, t_x, age, horizon_ms / DAY_MS)}


def _truth_gap(truth: np.ndarray, observed: np.ndarray) -> str:
    return "no hidden truth" if np.isnan(truth).any() else f"simulator truth {_worst_gap(truth, observed):.3f}"


def _worst_gap(predicted: np.ndarray, observed: np.ndarray) -> float:
    return _worst(calibration_by_decile(predicted, observed))


def _worst(calibration: list[dict]) -> float:
    """The largest |predicted - observed| over calibration rows (deciles)."""
    return max(abs(row["predicted"] - row["observed"]) for row in calibration)


def _fresh(state: CustomerState) -> CustomerState:
    """A copy without a stored score, so the prior is not ratcheted by the served score."""
    copy = CustomerState.from_dict(state.to_dict())
    copy.churn_score = None
    return copy


if __name__ == "__main__":
    main()
