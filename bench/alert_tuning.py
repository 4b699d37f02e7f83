"""Choose the leading-indicator detector's settings on the tuning seeds, without the worker.

The signal records do not depend on the churn model: they are a function of the events and the (frozen)
segment snapshot. So the partition batch's own fold (``agents.customer_state.fold_batch``) over the scenario's
history gives exactly the records the worker sends, in seconds instead of minutes per seed. They are then fed
to the detector's own ``SpikeMonitor`` under a grid of settings and judged as ``tests/alert_scenario.py`` judges a
run, per shock kind (``--cached``: the records kept by the last run).

    .venv/bin/python bench/alert_tuning.py --seeds 1 2 3 4 5 6 7 8 9 10
    .venv/bin/python bench/alert_tuning.py --records DIR    # the worker's records (risk entries too)

The held-out seeds (41-50; 11-40 were held out before) are never run here: ``bench/alert_scenario.py`` runs them
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agents.customer_state import fold_batch  # noqa: E402
from agents.ingest import SourceMessage, triage  # noqa: E402
from online_models.purchase_history import DAY_MS  # noqa: E402
from online_models.segment_snapshot import SegmentModel  # noqa: E402
from streams.config import Settings  # noqa: E402
from streams.redis_store import CustomerSnapshot  # noqa: E402
from tests.alert_scenario import scenario  # noqa: E402

SHOCK_DAY, BATCH = 240, 5000
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


def with_progress(records: list[dict], start_ms: int, days: int, bucket_ms: int = DAY_MS) -> list[dict]:
    """The fold's signal records in event-time order with a progress record after each bucket: what the
    detector reads from one partition that was never behind."""
    ordered = sorted(records, key=lambda r: (r["as_of_ms"], r["source"], r["offset"]))
    out, bucket_end = [], start_ms + bucket_ms
    for record in ordered:
        while record["as_of_ms"] >= bucket_end:
            out.append({"type": "progress", "partition": 0, "watermark_ms": bucket_end})
            bucket_end += bucket_ms
        out.append(record)
    while bucket_end <= start_ms + days * DAY_MS:
        out.append({"type": "progress", "partition": 0, "watermark_ms": bucket_end})
        bucket_end += bucket_ms
    return out


def with_after_cart(records: list[dict]) -> list[dict]:
    """Records kept before orders said whether a cart came first in the bucket (``after_cart``) get it from their
    own carts records (the customer's first of each day), as the signal stage decides it.

    >>> day = 86_400_000
    >>> [r.get("after_cart") for r in with_after_cart([
    ...     {"type": "signal", "signal": "carts", "customer_id": "a", "as_of_ms": 5},
    ...     {"type": "signal", "signal": "orders", "customer_id": "a", "as_of_ms": 9},
    ...     {"type": "signal", "signal": "orders", "customer_id": "b", "as_of_ms": 9},
    ...     {"type": "signal", "signal": "orders", "customer_id": "a", "as_of_ms": day + 1}])]
    [None, True, False, False]
    """
    if any("after_cart" in r for r in records if r.get("signal") == "orders"):
        return records
    carts = {(r["customer_id"], r["as_of_ms"] // DAY_MS): r["as_of_ms"] for r in records
             if r.get("type") == "signal" and r["signal"] == "carts"}
    return [{**r, "after_cart": carts.get((r["customer_id"], r["as_of_ms"] // DAY_MS), r["as_of_ms"] + 1)
             <= r["as_of_ms"]} if r.get("type") == "signal" and r["signal"] == "orders" else r for r in records]


def summary(outcomes: list) -> str:
    """runs found, precision, calm-period alarms, median and worst delay (days) of one kind's outcomes."""
    delays = [round(o.delay_days) for o in outcomes if o.detected]
    true, total = sum(len(o.true_alerts) for o in outcomes), sum(len(o.aggregate) for o in outcomes)
    return (f"{sum(o.detected for o in outcomes):>2}/{len(outcomes):<3}{true / total if total else 0:>4.2f} "
            f"{sum(len(o.calm_alerts) for o in outcomes):>4} {statistics.median(delays) if delays else '-':>4} "
            f"{max(delays) if delays else '-':>4}")


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
                  "conversion 0.7": replace(default, conversion_drop=0.7)}
    if defaults_only:
        candidates = {"defaults": default}
    runs = []
    for path in sorted(folder.glob("*.json.gz")):
        data = orjson.loads(gzip.decompress(path.read_bytes()))
        runs.append((data["kind"], data["seed"], scenario(data["seed"], days=days, kind=data["kind"]),
                     with_after_cart(data["records"])))
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
    parser.add_argument("--series", default=str(ROOT / "bench" / "out" / "alert_tuning_records.json.gz"),
                        help="where the runs' signal records are kept")
    parser.add_argument("--cached", action="store_true", help="judge the records kept by an earlier run")
    parser.add_argument("--records", metavar="DIR",
                        help="instead: judge the worker's records kept by bench/alert_scenario.py --save-records with "
                             "the whole monitor (risk entries too) under a few settings")
    parser.add_argument("--defaults-only", action="store_true", help="the defaults alone")
    args = parser.parse_args()
    settings = Settings.from_env({})
    if args.records:
        judge_records(Path(args.records), settings, args.days, args.defaults_only)
        return
    cache = Path(args.series)
    if args.cached:
        runs = orjson.loads(gzip.decompress(cache.read_bytes()))
    else:
        started = time.perf_counter()
        model = segment_model()
        print(f"segment snapshot learnt from another shop in {time.perf_counter() - started:.1f} s")
        runs = []
        for kind in args.kinds:
            for seed in args.seeds:
                started = time.perf_counter()
                simulation = scenario(seed, days=args.days, kind=kind)
                records = with_progress(signal_records(simulation, model, settings), simulation.config.start_ms,
                                        args.days)
                runs.append({"kind": kind, "seed": seed, "records": records})
                print(f"{kind} seed {seed}: {len(simulation.events):,} events, {len(records):,} signals, "
                      f"{time.perf_counter() - started:.1f} s", flush=True)
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_bytes(gzip.compress(orjson.dumps(runs)))
    report(runs, settings, args.days, args.defaults_only)


def report(runs: list[dict], settings: Settings, days: int, defaults_only: bool = False) -> None:
    """The grid's table per shock kind (the monitor itself over each run's records, judged as
    tests/alert_scenario.py judges a run), then the defaults' calm-period alarms by series."""
    from bench.alert_scenario import replay_monitor
    from tests.alert_scenario import judge as judge_run

    default = replace(settings.spike_settings(), partitions=1, delay_ms=0)
    grid = [replace(default, signal_threshold=h, conversion_drop=conversion, segment_drop_threshold=segment_h)
            for h, conversion, segment_h in itertools.product((8.0, 10.0, 12.0), (0.5, 0.7, 0.8), (10.0, 12.0, 14.0))
            if segment_h >= h and not defaults_only] or [default]
    kinds = list(dict.fromkeys(run["kind"] for run in runs))
    simulations = {(run["kind"], run["seed"]): scenario(run["seed"], days=days, kind=run["kind"]) for run in runs}
    print(f"\n{'h':>4} {'conv':>5} {'seg':>4} | " + " | ".join(f"{kind:<10} rec prec calm  med  max" for kind in kinds))
    calm_of_default: Counter = Counter()
    for candidate in grid:
        cells = []
        for kind in kinds:
            outcomes = [judge_run(simulations[kind, run["seed"]], run["records"],
                                  replay_monitor(run["records"], candidate)) for run in runs if run["kind"] == kind]
            cells.append(f"{'':<10} {summary(outcomes)}")
            if candidate == default:
                calm_of_default.update(a["series"] for o in outcomes for a in o.calm_alerts)
        mark = " <- default" if candidate == default else ""
        print(f"{candidate.signal_threshold:>4.0f} {candidate.conversion_drop:>5.1f} "
              f"{candidate.segment_drop_threshold:>4.0f} | " + " | ".join(cells) + mark, flush=True)
    print(f"\ndefaults: calm-period alarms by series (all kinds) {dict(calm_of_default)}")


if __name__ == "__main__":
    main()
