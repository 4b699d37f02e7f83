"""Choose the leading-indicator detector's settings on the tuning seeds, without the worker.

The signal records do not depend on the churn model: they are a function of the events and the (frozen)
segment snapshot. So the partition batch's own fold (``agents.customer_state.fold_batch``) over the scenario's
history gives exactly the records the worker sends, in seconds instead of minutes per seed. Their daily
counts per series are then judged by the CUSUM of ``online_models/spike_detection.py`` under a grid of settings
(cool-down, warm-up and the whole-base attribution as ``SpikeMonitor`` does them), per shock kind.

    .venv/bin/python bench/alert_tuning.py --seeds 1 2 3 4 5 6 7 8 9 10

The held-out seeds (31-40; 11-30 were held out before) are never run here: ``bench/alert_scenario.py`` runs them
through the worker with the chosen defaults.
"""
from __future__ import annotations

import argparse
import gzip
import itertools
import statistics
import sys
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import orjson
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agents.customer_state import fold_batch  # noqa: E402
from agents.ingest import SourceMessage, triage  # noqa: E402
from online_models.purchase_history import DAY_MS  # noqa: E402
from online_models.segment_snapshot import SegmentModel  # noqa: E402
from online_models.spike_alerts import (CARTS, CONVERSION, FALLING_SIGNALS, SpikeSettings, driving_segments,  # noqa: E402
                                        measure_of)
from streams.config import Settings  # noqa: E402
from streams.redis_store import CustomerSnapshot  # noqa: E402
from tests.alert_scenario import scenario  # noqa: E402

WARMUP_DAYS, SHOCK_DAY, BATCH = 120, 240, 5000
KINDS = ("complaints", "silent", "price")


def segment_model(seed: int = 99) -> SegmentModel:
    """The scenario's frozen segment snapshot (learnt from another shop of the same kind, as tests do)."""
    from bench.segments import replay
    from online_models.segment_training import SegmentSettings

    training, *_ = replay(scenario(seed, shock_day=None), SegmentSettings(warmup=1000), snapshot_every=2000)
    return SegmentModel.from_snapshot(training.publish(0)[0])


def signal_records(simulation, model: SegmentModel, settings: Settings) -> list[dict]:
    """The signals the partition batches send for this history (one partition, batches of BATCH messages)."""
    messages = [SourceMessage(f"crm.{topic}", topic, 0, offset, payload["customer_id"].encode(), orjson.dumps(payload))
                for offset, (topic, payload) in enumerate(simulation.events)]
    states: dict[str, str] = {}
    records: list[dict] = []
    for start in range(0, len(messages), BATCH):
        batch = messages[start:start + BATCH]
        snapshots = {m.key.decode(): CustomerSnapshot(states.get(m.key.decode()), set()) for m in batch}
        applied = fold_batch(triage(batch, settings, now_ms=2**50), snapshots, batch, settings, segment_model=model)
        states.update(applied.write.states)
        records += applied.signals
    return records


def daily_counts(records: list[dict], start_ms: int, days: int) -> dict[str, list[int]]:
    """Customers per day and series ("<signal>:all", "<signal>:segment:<id>"), as the monitor counts them."""
    frame = pd.DataFrame([(r["signal"], r["segment_id"], (r["as_of_ms"] - start_ms) // DAY_MS) for r in records],
                         columns=["signal", "segment", "day"])
    series = {}
    for signal, group in frame.groupby("signal"):
        series[f"{signal}:all"] = group.groupby("day").size()
        for segment, by_segment in group[group.segment.notna()].groupby("segment"):
            series[f"{signal}:segment:{int(segment)}"] = by_segment.groupby("day").size()
    return {name: [int(counts.get(day, 0)) for day in range(days)] for name, counts in series.items()}


def alerts_of(series: dict[str, list[int]], settings: SpikeSettings, cooldown_days: int = 7) -> list[dict]:
    """Every alert the monitor would raise on these daily series: (day, series, top segment of a whole-base one).
    Customers filling carts are not judged alone: with the orders of the same scope they make its conversion."""
    judged = {name: counts for name, counts in series.items() if not name.startswith(f"{CARTS}:")}
    judged |= {f"{CONVERSION}:{name.split(':', 1)[1]}": counts for name, counts in series.items()
               if name.startswith(f"{CARTS}:")}
    verdicts: dict[str, list] = {}
    for name, counts in judged.items():
        measure, scope = measure_of(name)
        first = next((day for day, count in enumerate(counts) if count), None)
        detector = settings.detector(measure, scope)
        verdicts[name] = [None] * len(counts)
        orders = series.get(f"orders:{scope}", [0] * len(counts))
        for day in range(first or 0, len(counts)) if first is not None else ():
            verdicts[name][day] = (detector.observe(orders[day], counts[day]) if measure == CONVERSION
                                   else detector.observe(counts[day]))
    alerts = []
    for name, by_day in verdicts.items():
        last = -10**9
        for day, verdict in enumerate(by_day):
            if verdict is None or not verdict.alert or day + 1 - last < cooldown_days:
                continue
            last = day + 1
            signal, scope = measure_of(name)
            top = None
            if scope == "all":
                falling = signal in FALLING_SIGNALS or signal == CONVERSION
                driving = driving_segments(signal, {other: v[day] for other, v in verdicts.items()
                                                    if v[day] is not None}, falling, 1)  # as the monitor names them
                if driving:
                    top = driving[0]["segment_id"]
            segment = int(scope.split(":")[1]) if scope.startswith("segment:") else None
            alerts.append({"day": day + 1, "series": name, "segment": segment, "top": top})
    return alerts


def judge(alerts: list[dict], shocked: set[int]) -> dict:
    after = [a for a in alerts if a["day"] > WARMUP_DAYS]
    true = [a for a in after if a["day"] > SHOCK_DAY and (a["segment"] in shocked or a["top"] in shocked)]
    calm = [a for a in after if a["day"] <= SHOCK_DAY]
    return {"detected": bool(true), "delay": min((a["day"] - SHOCK_DAY for a in true), default=None),
            "true": len(true), "all": len(after), "calm": len(calm),
            "first": min(true, key=lambda a: a["day"])["series"] if true else None}


def judge_records(folder: Path, settings: Settings, days: int, defaults_only: bool = False) -> None:
    """The monitor itself (``SpikeMonitor``, as the detector runs it) on each kept run, under the defaults and a
    few changes of the risk-entry and signal settings: calm-period alarms, false alarms, recall and delays."""
    from bench.alert_scenario import replay_monitor
    from tests.alert_scenario import judge as judge_run

    default = settings.spike_settings()
    candidates = {"defaults": default, "risk h 8": replace(default, threshold=8.0),
                  "risk h 10": replace(default, threshold=10.0), "risk band high": replace(default, entry_band="high"),
                  "trend 0.02": replace(default, trend=0.02), "trend 0.05": replace(default, trend=0.05),
                  "trend .02 h 8": replace(default, trend=0.02, threshold=8.0),
                  "trend .02 h 10": replace(default, trend=0.02, threshold=10.0),
                  "signals off": replace(default, signals=False),
                  "relative off": replace(default, relative_rise=0.0),
                  "relative floor 0.5": replace(default, relative_min_rate=0.5),
                  "relative rise 0.15": replace(default, relative_rise=0.15),
                  "seg drop h 12": replace(default, segment_drop_threshold=12.0),
                  "seg drop h 14": replace(default, segment_drop_threshold=14.0),
                  "seg drop h 16": replace(default, segment_drop_threshold=16.0)}
    if defaults_only:
        candidates = {"defaults": default}
    runs = []
    for path in sorted(folder.glob("*.json.gz")):
        data = orjson.loads(gzip.decompress(path.read_bytes()))
        runs.append((data["kind"], data["seed"], scenario(data["seed"], days=days, kind=data["kind"]), data["records"]))
    print(f"{'settings':<16} {'kind':<11} {'recall':>6} {'true':>4} {'false':>5} {'calm':>4}  "
          "delays; calm alarms by series")
    if defaults_only:  # each run, as bench/alert_scenario.py prints it
        for kind, seed, simulation, records in runs:
            o = judge_run(simulation, records, replay_monitor(records, default))
            first = min(o.true_alerts, key=lambda a: a["ts_ms"])["series"] if o.true_alerts else "-"
            print(f"{kind:<11} {seed:>4}  delay {o.delay_days if o.detected else '-'}  true {len(o.true_alerts)}  "
                  f"false {len(o.false_alerts)}  calm {len(o.calm_alerts)}  first {first}  "
                  f"calm/false: {[a['series'] for a in o.false_alerts]}", flush=True)
    for label, candidate in candidates.items():
        for kind in dict.fromkeys(run[0] for run in runs):
            outcomes = [judge_run(simulation, records, replay_monitor(records, candidate))
                        for k, _, simulation, records in runs if k == kind]
            calm = Counter(a["series"] for o in outcomes for a in o.calm_alerts)
            print(f"{label:<16} {kind:<11} {sum(o.detected for o in outcomes):>3}/{len(outcomes):<2} "
                  f"{sum(len(o.true_alerts) for o in outcomes):>4} {sum(len(o.false_alerts) for o in outcomes):>5} "
                  f"{sum(len(o.calm_alerts) for o in outcomes):>4}  "
                  f"{sorted(round(o.delay_days) for o in outcomes if o.detected)}; {dict(calm)}", flush=True)
    complaint_reaction(runs)


#: The churn features that carry what customers say (online_models/churn_features.py).
VOICE_FEATURES = ("open_tickets", "csat_centered", "nps_centered", "log_complaints")


def complaint_reaction(runs: list[tuple]) -> None:
    """How the served churn_p reacts to the shock's complaints (runs of kind ``complaints``): of the customers who
    complained, how many had a score change reported within 3 days, how far churn_p rose against the last one
    before, and how many of those changes name a complaint feature among the reasons raising the risk."""
    reported = rose = named = shocked_total = 0
    rises = []
    for kind, _, simulation, records in runs:
        if kind != "complaints":
            continue
        complaints = {r["customer_id"]: r["as_of_ms"] for r in records if r.get("type") == "signal"
                      and r["signal"] == "ticket" and r["customer_id"] in
                      {c.customer_id for c in simulation.customers if c.shocked_ms is not None}
                      and r["as_of_ms"] >= simulation.config.start_ms + SHOCK_DAY * DAY_MS}
        changes = [r for r in records if r.get("type") is None and r["customer_id"] in complaints]
        shocked_total += len(complaints)
        for customer, at in complaints.items():
            before = [c for c in changes if c["customer_id"] == customer and c["as_of_ms"] < at]
            after = [c for c in changes if c["customer_id"] == customer and at <= c["as_of_ms"] < at + 3 * DAY_MS]
            if not after:
                continue
            reported += 1
            last = before[-1]["churn_p"] if before else after[0].get("previous_churn_p") or 0.0
            rises.append(after[0]["churn_p"] - last)
            rose += after[0]["churn_p"] > last
            named += any(t["feature"] in VOICE_FEATURES and (t["contribution"] or 0) > 0
                         for t in after[0].get("top_features") or [])
    if shocked_total:
        rises.sort()
        print(f"\ncomplaints of the shock: {shocked_total} customers; a score change reported within 3 days for "
              f"{reported}; churn_p rose for {rose} (median change {rises[len(rises) // 2] if rises else 0:+.3f}); "
              f"a complaint feature among the reasons raising it for {named}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(1, 11)))
    parser.add_argument("--kinds", nargs="+", default=list(KINDS))
    parser.add_argument("--days", type=int, default=330)
    parser.add_argument("--series", default=str(ROOT / "bench" / "out" / "alert_tuning_series.json"),
                        help="where the runs' daily series are kept")
    parser.add_argument("--cached", action="store_true", help="judge the series kept by an earlier run")
    parser.add_argument("--records", metavar="DIR",
                        help="instead: judge the worker's records kept by bench/alert_scenario.py --save-records with "
                             "the whole monitor (risk entries too) under a few settings")
    parser.add_argument("--defaults-only", action="store_true", help="with --records: the defaults alone")
    args = parser.parse_args()
    settings = Settings.from_env({})
    if args.records:
        judge_records(Path(args.records), settings, args.days, args.defaults_only)
        return
    if args.cached:
        runs = [{**run, "shocked": set(run["shocked"])} for run in orjson.loads(Path(args.series).read_bytes())]
        report(runs, settings, args.kinds)
        return
    started = time.perf_counter()
    model = segment_model()
    print(f"segment snapshot learnt from another shop in {time.perf_counter() - started:.1f} s")
    runs = []
    for kind in args.kinds:
        for seed in args.seeds:
            started = time.perf_counter()
            simulation = scenario(seed, days=args.days, kind=kind)
            records = signal_records(simulation, model, settings)
            shocked_ids = {c.customer_id for c in simulation.customers if c.shocked_ms is not None}
            shock_ms = simulation.config.start_ms + SHOCK_DAY * DAY_MS
            carried = Counter(r["segment_id"] for r in records if r["customer_id"] in shocked_ids
                              and r["as_of_ms"] < shock_ms and r["segment_id"] is not None)
            runs.append({"kind": kind, "seed": seed, "shocked": {carried.most_common(1)[0][0]},
                         "series": daily_counts(records, simulation.config.start_ms, args.days)})
            print(f"{kind} seed {seed}: {len(simulation.events):,} events, {len(records):,} signals, "
                  f"{time.perf_counter() - started:.1f} s", flush=True)
    Path(args.series).parent.mkdir(parents=True, exist_ok=True)
    Path(args.series).write_bytes(orjson.dumps([{**run, "shocked": sorted(run["shocked"])} for run in runs]))
    report(runs, settings, args.kinds)


def report(runs: list[dict], settings: Settings, kinds: list[str]) -> None:
    """The grid's table per shock kind, then the calm-period alarms of the defaults, by series."""
    default = settings.spike_settings()
    grid = [default.__class__(**{**default.__dict__, "signal_threshold": h, "signal_rise": 3.0, "signal_drop": drop,
                                 "signal_min_drop_rate": 5.0, "trend": trend, "conversion_drop": conversion,
                                 "segment_drop_threshold": h})
            for trend, h, drop, conversion in itertools.product((0.0, 0.02), (8.0, 10.0, 12.0), (0.5, 0.6),
                                                                (0.5, 0.7, 0.8))]
    grid += [replace(default, segment_drop_threshold=h) for h in (10.0, 12.0, 14.0, 16.0)
             if h != default.segment_drop_threshold]  # the chosen row, with a segment's drops judged apart
    print(f"\n{'trend':>5} {'h':>4} {'drop':>4} {'conv':>5} {'seg':>4} | " + " | ".join(
        f"{kind:<10} rec prec calm  med  max" for kind in kinds))
    for candidate in grid:
        cells = []
        for kind in kinds:
            outcomes = [judge(alerts_of(r["series"], candidate), r["shocked"]) for r in runs if r["kind"] == kind]
            delays = [o["delay"] for o in outcomes if o["detected"]]
            true, total = sum(o["true"] for o in outcomes), sum(o["all"] for o in outcomes)
            cells.append(f"{'':<10} {sum(o['detected'] for o in outcomes):>2}/{len(outcomes):<3}"
                         f"{true / total if total else 0:>4.2f} {sum(o['calm'] for o in outcomes):>4} "
                         f"{statistics.median(delays) if delays else '-':>4} {max(delays) if delays else '-':>4}")
        mark = " <- default" if candidate == default else ""
        print(f"{candidate.trend:>5.2f} {candidate.signal_threshold:>4.0f} {candidate.signal_drop:>4.1f} "
              f"{candidate.conversion_drop:>5.1f} {candidate.segment_drop_threshold:>4.0f} | " + " | ".join(cells)
              + mark)
    calm = Counter(a["series"].split(":")[0] for run in runs if run["kind"] == kinds[0]
                   for a in alerts_of(run["series"], default) if WARMUP_DAYS < a["day"] <= SHOCK_DAY)
    false_after = Counter(a["series"].split(":")[0] for run in runs for a in alerts_of(run["series"], default)
                          if a["day"] > SHOCK_DAY and not ({a["segment"], a["top"]} & run["shocked"]))
    print(f"\ndefaults: calm-period alarms by signal {dict(calm)}; false alarms after the shock {dict(false_after)}")


if __name__ == "__main__":
    main()
