"""Planted churn shocks through the real stack, over several seeds: detection delay, precision and recall of
the aggregate alerts, and the baseline detectors compared on the same series.

Each seed simulates a shop (tests/alert_scenario.py: four distinct segments, natural churn) where 60% of
the VIP segment's customers complain and stop buying on day 240; days 120-240 are the calm control period.
A worker (embedded broker + redis-server) scores it with frozen churn and segment models; the alert
detector judges daily buckets. Afterwards the per-segment daily series of customers entering the alert band
are fed to other detectors: the EWMA + Poisson CUSUM of online_models/spike_detection.py with other
parameters, river's ADWIN and Page-Hinkley (upward changes only).

    .venv/bin/python bench/alert_scenario.py --seeds 1 2 3 4 5
    .venv/bin/python bench/alert_scenario.py --seeds 1 2 3 --live-models

With ``--live-models`` the churn model is not frozen: the worker's trainer learns the backlog as it drains and
publishes snapshots, each moving many scores at once. Score changes a new version made are marked
``model_change`` and the served detector does not count them; the scenario's detector is also run on the
series that counts them, to print the false alarms with and without that rule side by side.

An alert is *true* when it names the shocked segment (its series, or the top contributor of an overall
alert) within --max-delay-days after the shock; recall = seeds with a true segment alert; precision = true
alerts / all aggregate alerts after the 120-day warm-up.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import orjson
import pandas as pd
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from online_models.purchase_history import DAY_MS  # noqa: E402
from online_models.spike_alerts import is_entry  # noqa: E402
from online_models.spike_detection import RateShiftDetector  # noqa: E402
from streams.embedded import EmbeddedBroker, EmbeddedRedis  # noqa: E402
from tests.alert_scenario import (  # noqa: E402
    FROZEN, SCENARIO_SETTINGS, frozen_models, judge, run_worker_over, scenario, stored_alerts,
)
from tests.stack import read_topic, unique_settings  # noqa: E402

WARMUP_DAYS, SHOCK_DAY = 120, 240


def run_seed(seed: int, broker, redis_url: str, models: dict[str, bytes], args, logs: Path) -> dict:
    frozen = {**FROZEN, "churn_min_examples": 2000} if args.live_models else FROZEN
    settings = unique_settings(broker.bootstrap, redis_url, **SCENARIO_SETTINGS, **frozen)
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    for key, blob in models.items():
        if not (args.live_models and key.startswith("model:churn")):
            client.set(settings.redis_prefix + key, blob)
    simulation = scenario(seed, args.customers, args.days, SHOCK_DAY)
    took = run_worker_over(settings, client, [simulation.events], logs / f"alert-scenario-{seed}.log")
    outcome = judge(settings, simulation, stored_alerts(settings, client), args.max_delay_days,
                    calm_days=SHOCK_DAY - WARMUP_DAYS, warmup_days=WARMUP_DAYS)
    changes = [orjson.loads(m.value) for m in read_topic(settings.kafka_bootstrap, settings.topic("score-changes"))]
    return {"seed": seed, "seconds": took, "events": len(simulation.events), "outcome": outcome,
            "changes": [c for c in changes if c.get("type") != "progress"], "start_ms": simulation.config.start_ms,
            "band": settings.alert_entry_band}


def daily_series(changes: list[dict], start_ms: int, days: int, band: str,
                 count_model_changes: bool = False) -> dict[str, list[int]]:
    """Distinct customers entering ``band`` per day, overall and per behaviour segment (what the monitor counts;
    with ``count_model_changes``, also the entries a new model version made)."""
    if count_model_changes:
        changes = [{**c, "model_change": False} for c in changes]
    entries = pd.DataFrame([c for c in changes if is_entry(c, band)])
    entries["day"] = (entries.as_of_ms - start_ms) // DAY_MS
    entries = entries.drop_duplicates(["day", "customer_id"])
    series = {"all": entries.groupby("day").size()}
    for segment, group in entries[entries.segment_id.notna()].groupby("segment_id"):
        series[f"segment:{int(segment)}"] = group.groupby("day").size()
    return {name: [int(counts.get(day, 0)) for day in range(days)] for name, counts in series.items()}


class Cusum:
    def __init__(self, **params) -> None:
        self.detector = RateShiftDetector(**params)

    def update(self, count: int) -> bool:
        return self.detector.observe(count).alert


class RiverUpward:
    """A river drift detector on the counts; an alarm only when the level after the change is higher."""

    def __init__(self, make) -> None:
        self.detector = make()
        self.seen: list[int] = []

    def update(self, count: int) -> bool:
        before = sum(self.seen[-14:]) / max(len(self.seen[-14:]), 1)
        self.seen.append(count)
        self.detector.update(count)
        return bool(self.detector.drift_detected) and sum(self.seen[-7:]) / 7 > before


def detectors() -> dict[str, callable]:
    from river import drift

    return {
        "EWMA+CUSUM (scenario: h 6, x2, min 0.2)": lambda: Cusum(alpha=0.05, warmup=30, shift=2.0, threshold=6.0,
                                                                 min_rate=0.2),
        "EWMA+CUSUM h 8, x2": lambda: Cusum(alpha=0.05, warmup=30, shift=2.0, threshold=8.0, min_rate=0.2),
        "EWMA+CUSUM h 6, x3": lambda: Cusum(alpha=0.05, warmup=30, shift=3.0, threshold=6.0, min_rate=0.2),
        "EWMA+CUSUM h 4, x3": lambda: Cusum(alpha=0.05, warmup=30, shift=3.0, threshold=4.0, min_rate=0.2),
        "EWMA+CUSUM h 10, x2 (hourly defaults)": lambda: Cusum(alpha=0.05, warmup=30, shift=2.0, threshold=10.0,
                                                              min_rate=1.0),
        "EWMA z > 4": lambda: ZScore(4.0),
        "river ADWIN (delta 0.002)": lambda: RiverUpward(lambda: drift.ADWIN(delta=0.002)),
        "river ADWIN (delta 0.05)": lambda: RiverUpward(lambda: drift.ADWIN(delta=0.05)),
        "river PageHinkley (up, threshold 10)": lambda: RiverUpward(
            lambda: drift.PageHinkley(min_instances=30, delta=0.05, threshold=10.0, mode="up")),
        "river PageHinkley (up, threshold 20)": lambda: RiverUpward(
            lambda: drift.PageHinkley(min_instances=30, delta=0.05, threshold=20.0, mode="up")),
    }


class ZScore:
    """The naive rule: an EWMA mean and variance, alarm when a bucket is more than ``z`` sigmas above."""

    def __init__(self, z: float, alpha: float = 0.05, warmup: int = 30) -> None:
        self.z, self.alpha, self.warmup, self.mean, self.var, self.n = z, alpha, warmup, 0.0, 0.0, 0

    def update(self, count: int) -> bool:
        alarm = self.n >= self.warmup and count > self.mean + self.z * max(self.var, 0.05) ** 0.5
        diff = count - self.mean
        self.mean += self.alpha * diff
        self.var = (1 - self.alpha) * (self.var + self.alpha * diff * diff)
        self.n += 1
        return alarm


def evaluate(runs: list[dict], args) -> list[dict]:
    """Every detector on every run's daily series (``run["series"]``, ``run["shocked_segment"]``)."""
    rows = []
    for name, make in detectors().items():
        true = false = calm = detected = 0
        delays = []
        started = time.perf_counter()
        updates = 0
        for run in runs:
            shocked, series = run["shocked_segment"], run["series"]
            first_hit = None
            for series_name, counts in series.items():
                detector, last_alarm = make(), -10**9
                for day, count in enumerate(counts):
                    updates += 1
                    if not detector.update(count) or day < WARMUP_DAYS or day - last_alarm < 7:
                        continue
                    last_alarm = day
                    names_shock = series_name == f"segment:{shocked}" and SHOCK_DAY <= day <= SHOCK_DAY + args.max_delay_days
                    true += names_shock
                    false += not names_shock
                    calm += day < SHOCK_DAY
                    if names_shock and first_hit is None:
                        first_hit = day - SHOCK_DAY + 1  # the bucket's end
            if first_hit is not None:
                detected += 1
                delays.append(first_hit)
        per_update_us = (time.perf_counter() - started) / max(updates, 1) * 1e6
        rows.append({"detector": name, "recall": detected / len(runs), "precision": true / (true + false) if true + false else None,
                     "calm_alarms": calm, "false_alarms": false, "delays_days": sorted(delays),
                     "us_per_bucket": round(per_update_us, 2)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--customers", type=int, default=800)
    parser.add_argument("--days", type=int, default=330)
    parser.add_argument("--max-delay-days", type=float, default=60.0)
    parser.add_argument("--live-models", action="store_true",
                        help="churn model learnt live by the worker's trainer (segments stay frozen)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "out" / "alert_scenario.json"))
    parser.add_argument("--evaluate-only", action="store_true",
                        help="compare the detectors on the series saved in --out by an earlier run")
    args = parser.parse_args()
    if args.evaluate_only:
        saved = orjson.loads(Path(args.out).read_bytes())
        print_detectors(evaluate(saved["runs"], args), saved["band"])
        return
    logs = ROOT / "bench" / "out" / "logs"
    started = time.perf_counter()
    models = frozen_models()
    print(f"frozen churn and segment models learnt from another shop in {time.perf_counter() - started:.1f} s"
          + (" (the churn model is not published: it is learnt live)" if args.live_models else ""))
    runs = []
    with EmbeddedBroker(logs) as broker, EmbeddedRedis(logs) as redis_server:
        for seed in args.seeds:
            run = run_seed(seed, broker, redis_server.url, models, args, logs)
            outcome = run["outcome"]
            print(f"seed {seed}: {run['events']:,} events in {run['seconds']:.0f} s; shocked segment "
                  f"{outcome.shocked_segment}; served detector: detected={outcome.detected} "
                  f"delay={outcome.delay_days} days, calm-period alerts={len(outcome.calm_alerts)}, "
                  f"true={len(outcome.true_alerts)} false={len(outcome.false_alerts)}")
            run["series"] = daily_series(run["changes"], run["start_ms"], args.days, run["band"])
            run["series_counting_model_changes"] = daily_series(run["changes"], run["start_ms"], args.days,
                                                                run["band"], count_model_changes=True)
            run["model_changes"] = sum(bool(c.get("model_change")) for c in run["changes"])
            run["shocked_segment"] = outcome.shocked_segment
            runs.append(run)
    served_true = sum(len(r["outcome"].true_alerts) for r in runs)
    served_all = sum(len(r["outcome"].aggregate) for r in runs)
    delays = sorted(r["outcome"].delay_days for r in runs if r["outcome"].detected)
    print(f"\nserved detector through the stack ({len(runs)} seeds): recall {sum(r['outcome'].detected for r in runs)}"
          f"/{len(runs)}, precision {served_true}/{served_all}, calm-period alerts "
          f"{sum(len(r['outcome'].calm_alerts) for r in runs)}, delays (days after the shock) {delays}")
    rows = evaluate(runs, args)
    print_detectors(rows, runs[0]["band"])
    if args.live_models:
        scenario_detector = next(iter(detectors()))
        counting = evaluate([{**r, "series": r["series_counting_model_changes"]} for r in runs], args)
        print(f"\nmodels learning live: {sum(r['model_changes'] for r in runs)} score changes marked model_change; "
              f"{scenario_detector}:")
        for label, row in (("model changes not counted (served)", rows[0]), ("model changes counted", counting[0])):
            print(f"  {label:<36} false alarms {row['false_alarms']}, calm-period alarms {row['calm_alarms']}, "
                  f"recall {row['recall']:.2f}, delays {row['delays_days']}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_bytes(orjson.dumps(
        {"served": {"delays": delays, "true": served_true, "all": served_all}, "detectors": rows,
         "band": runs[0]["band"],
         "runs": [{"seed": r["seed"], "shocked_segment": r["shocked_segment"], "series": r["series"]} for r in runs]},
        option=orjson.OPT_INDENT_2))


def print_detectors(rows: list[dict], band: str) -> None:
    print(f"\ndetectors on the same daily series ({band} band entries per segment and overall):")
    print(f"{'detector':<40} {'recall':>6} {'precision':>9} {'calm':>5} {'false':>5} {'µs/bucket':>9}  delays (days)")
    for row in rows:
        precision = "-" if row["precision"] is None else f"{row['precision']:.2f}"
        print(f"{row['detector']:<40} {row['recall']:>6.2f} {precision:>9} {row['calm_alarms']:>5} "
              f"{row['false_alarms']:>5} {row['us_per_bucket']:>9}  {row['delays_days']}")


if __name__ == "__main__":
    main()
