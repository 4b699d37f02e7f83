"""Online segmentation on planted segments: river clusterers side by side, stability, drift.

A simulated year (``DISTINCT_SEGMENTS``, bench/README of docs/segments.md) is
folded into customer states in event-time order. As in the pipeline, every buyer
is visited at least daily (the churn wheel) and sends the trainer a sample at
most every ``sample_days``; the trainer publishes a snapshot every
``--snapshot-every`` samples. Per clusterer this prints:

* ARI: adjusted Rand index of the final assignment of every buyer vs the planted segment
  (scikit-learn), next to scikit-learn's batch ``KMeans`` on the same final features and scaling;
* changed: share of recent customers that change segment between consecutive snapshots (median, max
  after the first three snapshots);
* µs per update of the clusterer, and how many clusters it ended with;
* ms per snapshot (matching, names, and the k-means restart check) and how many restarts were taken.

Then the planted drift (bargain hunters shop like VIPs from ``--drift-day``): days until the drifted
customers are assigned to the VIPs' segment, for two rate windows.

Usage: python bench/segments.py [--customers 3000] [--days 365] [--seed 3]
"""
from __future__ import annotations

import argparse
import heapq
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from online_models.customer_state import CustomerState  # noqa: E402
from online_models.purchase_history import DAY_MS  # noqa: E402
from online_models.segment_features import segment_features  # noqa: E402
from online_models.segment_learning import CLUSTERERS  # noqa: E402
from online_models.segment_snapshot import SegmentModel  # noqa: E402
from online_models.segment_training import SegmentSettings, SegmentTraining  # noqa: E402
from schemas.events import Purchase, validate_payload  # noqa: E402
from streams.simulator import DISTINCT_SEGMENTS, SegmentDrift, Simulation, SimulationConfig, simulate  # noqa: E402


def replay(simulation: Simulation, settings: SegmentSettings, snapshot_every: int):
    """Fold the simulation; sample, learn and publish as the pipeline does. Returns the trainer, the final
    states, each customer's assignment history [(day, segment)] and the seconds spent learning and publishing
    (the latter includes the k-means restart check)."""
    training = SegmentTraining(settings)
    states: dict[str, CustomerState] = {}
    due: list[tuple[int, str]] = []
    served: SegmentModel | None = None
    assigned: dict[str, list[tuple[float, int]]] = {}
    learn_s, publish_s, since_publish = 0.0, 0.0, 0

    def visit(customer_id: str, at_ms: int) -> None:
        nonlocal learn_s, publish_s, since_publish, served
        raw = segment_features(states[customer_id], at_ms, settings.window_days)
        if raw is None:
            return
        started = time.perf_counter()
        training.learn(customer_id, raw)
        learn_s += time.perf_counter() - started
        since_publish += 1
        if training.ready and since_publish >= snapshot_every:
            since_publish = 0
            started = time.perf_counter()
            served = SegmentModel.from_snapshot(training.publish(at_ms)[0])
            publish_s += time.perf_counter() - started
        if served is not None:
            history = assigned.setdefault(customer_id, [])
            current = history[-1][1] if history else None
            segment, _ = served.assign(raw, current, settings.hysteresis)
            if segment != current:
                history.append((at_ms / DAY_MS, segment))

    for topic, payload in simulation.events:
        while due and due[0][0] <= payload["ts"]:
            at_ms, customer_id = heapq.heappop(due)
            visit(customer_id, at_ms)
            heapq.heappush(due, (at_ms + int(settings.sample_days * DAY_MS), customer_id))
        event = validate_payload(topic, payload)
        state = states.get(event.customer_id)
        if state is None:
            state = states[event.customer_id] = CustomerState.new(30 * DAY_MS)
        if isinstance(event, Purchase):
            amount, units = event.amount_minor, sum(item.qty for item in event.items)
            was_buyer = state.purchases.orders > 0
            (state.apply_order if event.kind == "order" else state.apply_refund)(event.ts_ms, amount, units)
            if not was_buyer and state.purchases.orders:
                heapq.heappush(due, (event.ts_ms, event.customer_id))
        elif topic == "interactions":
            state.apply_interaction(event.type, event.ts_ms, event.survey, event.score)
        else:
            state.apply_customer_event(event.type, event.ts_ms, event.attributes)
    return training, states, assigned, learn_s, publish_s


def adjusted_rand(truth: list[str], labels: list[int]) -> float:
    from sklearn.metrics import adjusted_rand_score
    return round(float(adjusted_rand_score(truth, labels)), 3)


def compare(args) -> list[dict]:
    config = SimulationConfig(customers=args.customers, days=args.days, seed=args.seed, segments=DISTINCT_SEGMENTS,
                              rate_shape=8.0)
    simulation = simulate(config)
    truth = {c.customer_id: c.segment for c in simulation.customers}
    rows = []
    for algorithm in CLUSTERERS:
        settings = SegmentSettings(algorithm=algorithm, n_segments=4, warmup=args.warmup)
        training, states, _, learn_s, publish_s = replay(simulation, settings, args.snapshot_every)
        as_of = max(s.activity.last_seen_ms for s in states.values())
        buyers = [c for c, s in states.items() if s.purchases.orders]
        raw = [segment_features(states[c], as_of) for c in buyers]
        model = SegmentModel.from_snapshot(training.served)
        labels = [model.assign(x)[0] for x in raw]
        changed = [s for s in training.changes if s is not None][3:]
        rows.append({"algorithm": algorithm, "ari": adjusted_rand([truth[c] for c in buyers], labels),
                     "clusters": len(model.ids), "snapshots": training.version,
                     "changed_median": statistics.median(changed) if changed else None,
                     "changed_max": max(changed) if changed else None,
                     "us_per_update": round(learn_s / training.learner.samples * 1e6, 1),
                     "ms_per_snapshot": round(publish_s / max(training.version, 1) * 1e3, 1),
                     "restarts": training.learner.restarts,
                     "samples": training.learner.samples})
        if algorithm == "kmeans":
            from sklearn.cluster import KMeans
            points = np.asarray([model.scaler.transform(x) for x in raw])
            batch = KMeans(4, n_init=10, random_state=0).fit_predict(points)
            rows.append({"algorithm": "sklearn KMeans (batch, final features)",
                         "ari": adjusted_rand([truth[c] for c in buyers], list(batch)), "clusters": 4})
    return rows


def drift(args, window_days: float) -> dict:
    """Days from the drift until drifted customers sit in the segment most VIPs are in."""
    config = SimulationConfig(customers=args.customers, days=args.days, seed=args.seed, segments=DISTINCT_SEGMENTS,
                              rate_shape=8.0, drift=SegmentDrift("bargain_hunter", "vip", args.drift_day, share=0.5))
    simulation = simulate(config)
    customers = simulation.customers
    settings = SegmentSettings(warmup=args.warmup, window_days=window_days)
    _, _, assigned, _, _ = replay(simulation, settings, args.snapshot_every)
    vip_segments = [assigned[c.customer_id][-1][1] for c in customers if c.segment == "vip" and c.customer_id in assigned]
    target = max(set(vip_segments), key=vip_segments.count)
    drift_day = config.start_ms / DAY_MS + args.drift_day
    delays, never = [], 0
    for c in customers:
        if c.drifted_to is None or c.customer_id not in assigned or c.signup_ms / DAY_MS > drift_day:
            continue
        moved = [day for day, segment in assigned[c.customer_id] if segment == target and day >= drift_day]
        if moved and assigned[c.customer_id][-1][1] == target:
            delays.append(moved[-1] - drift_day)
        else:
            never += 1
    delays.sort()
    return {"window_days": window_days, "drifted": len(delays) + never, "migrated": len(delays),
            "median_days": round(statistics.median(delays), 1) if delays else None,
            "p80_days": round(delays[int(0.8 * (len(delays) - 1))], 1) if delays else None}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=3000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1000)
    parser.add_argument("--snapshot-every", type=int, default=5000)
    parser.add_argument("--drift-day", type=int, default=240)
    parser.add_argument("--drift-only", action="store_true", help="skip the clusterer comparison")
    args = parser.parse_args(argv)
    rows = compare(args) if not args.drift_only else []
    print(f"{'clusterer':<40} {'ARI':>6} {'clusters':>8} {'changed med/max':>16} {'µs/update':>10} "
          f"{'ms/snapshot':>12} {'restarts':>9}")
    for row in rows:
        changed = ("-" if row.get("changed_median") is None
                   else f"{row['changed_median']:.1%}/{row['changed_max']:.1%}")
        us = f"{row['us_per_update']:.1f}" if "us_per_update" in row else "-"
        ms = f"{row['ms_per_snapshot']:.1f}" if "ms_per_snapshot" in row else "-"
        print(f"{row['algorithm']:<40} {row['ari']:>6.3f} {row['clusters']:>8} {changed:>16} {us:>10} {ms:>12} "
              f"{row.get('restarts', '-'):>9}")
    drifts = [drift(args, window) for window in (180.0, 90.0)]
    for d in drifts:
        print(f"drift bargain_hunter→vip at day {args.drift_day}, rate window {d['window_days']:.0f} d: "
              f"{d['migrated']}/{d['drifted']} migrated, median {d['median_days']} d, p80 {d['p80_days']} d")
    out = ROOT / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "segments.json").write_text(json.dumps({"args": vars(args), "clusterers": rows, "drift": drifts}, indent=1))


if __name__ == "__main__":
    main()
