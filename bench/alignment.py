"""Event-time order of a drained backlog: the batch source's aligner vs plain fetch order, side by side.

A simulated year is produced (record timestamps = event time, as streams/producer.py sends them) to
the three input topics, then read twice from the start by the worker's :class:`BatchSource` with a
handler that only records what it is given: once in fetch order (``fetch()``, what the source did
before the aligner), once through ``run_once()`` (the aligner). Printed per mode:

* events/s of reading the backlog (the handler does nothing, so this is the source's own cost);
* how far behind the newest event already handed over each event is, in event-time days
  (p50 / p99 / max), and the share handed over more than a day late: what the global learners
  downstream (segment samples, churn examples, cross-topic item pairs) would see out of order.

Then the whole pipeline, a worker process on the planted-segment year (``DISTINCT_SEGMENTS``), with
alignment on (default) and off (``CRM_ALIGN_MAX_WAIT_MS=0``): events/s through the worker, adjusted Rand
index of the stored segments against the planted ones, and the largest share of customers a snapshot moved.

Usage: ``python bench/alignment.py [--customers 2000] [--days 365] [--partitions 4] [--pipeline-customers 500]``
"""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

import numpy as np
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agents.batch_source import BatchSource  # noqa: E402
from online_models.purchase_history import DAY_MS  # noqa: E402
from streams.embedded import EmbeddedBroker, EmbeddedRedis  # noqa: E402
from streams.redis_store import RedisStore  # noqa: E402
from streams.simulator import DISTINCT_SEGMENTS, SimulationConfig, simulate  # noqa: E402
from tests.stack import (  # noqa: E402
    WorkerProcess, accepted_total, event_messages, prepare_topics, produce, read_state, unique_settings, wait_until,
)


async def drain(settings, total: int, aligned: bool) -> tuple[float, list[int]]:
    """Read every event once; returns (seconds, event times in the order handed over)."""
    handed: list[int] = []

    async def record(messages) -> None:
        handed.extend(orjson.loads(m.value)["ts"] for m in messages)

    topics = [settings.topic(name) for name in ("purchases", "interactions", "customers")]
    store = RedisStore.from_settings(settings)
    source = BatchSource(settings, store, topics, record, {t: t.split(".")[-1] for t in topics})
    await source.start()
    started = time.perf_counter()
    try:
        while len(handed) < total:
            if aligned:
                await source.run_once()
            else:
                fetched = await source.fetch()
                await record([message for records in fetched.values() for message in records])
        return time.perf_counter() - started, handed
    finally:
        await source.stop()


def disorder_days(handed: list[int]) -> np.ndarray:
    times = np.asarray(handed, dtype=np.int64)
    return (np.maximum.accumulate(times) - times) / DAY_MS


def pipeline_run(settings, client, simulation, logs: Path) -> dict:
    """Process the simulation with one worker; events/s, segment quality and stability."""
    from sklearn.metrics import adjusted_rand_score

    from agents.segment_trainer import HISTORY_KEY

    events = simulation.events
    prepare_topics(settings)
    produce(settings.kafka_bootstrap, event_messages(settings, events))
    worker = WorkerProcess(settings, logs / f"bench-alignment-{settings.align_max_wait_ms}.log").start()
    started = time.monotonic()
    try:
        wait_until(lambda: accepted_total(client, settings) >= len(events), 900, "backlog not processed",
                   interval_s=0.2, process=worker.process)
        seconds = time.monotonic() - started
        time.sleep(3 * settings.segment_snapshot_interval_s)  # the trainer's last samples and snapshot
    finally:
        worker.stop()
    truth = {c.customer_id: c.segment for c in simulation.customers}
    buyers = sorted({e["customer_id"] for topic, e in events if topic == "purchases"})
    assigned = [(read_state(client, settings, c).segment or {}).get("id", -1) for c in buyers]
    history = [orjson.loads(h) for h in client.lrange(settings.redis_prefix + HISTORY_KEY, 0, -1)]
    changed = [h["changed_share"] for h in history if h["changed_share"] is not None]
    return {"events_per_s": len(events) / seconds, "ari": adjusted_rand_score([truth[c] for c in buyers], assigned),
            "changed_max": max(changed, default=0.0), "snapshots": len(history),
            "restarts": sum(bool(h.get("restarted")) for h in history)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--pipeline-customers", type=int, default=500, help="0: skip the pipeline comparison")
    args = parser.parse_args()
    events = simulate(SimulationConfig(customers=args.customers, days=args.days, seed=5)).events
    logs = ROOT / "bench" / "out"
    logs.mkdir(parents=True, exist_ok=True)
    rows = {}
    with EmbeddedBroker(logs) as broker, EmbeddedRedis(logs) as redis_server:
        settings = unique_settings(broker.bootstrap, redis_server.url, partitions=args.partitions)
        prepare_topics(settings)
        produce(settings.kafka_bootstrap, event_messages(settings, events))
        for name, aligned in (("fetch order (before)", False), ("event-time aligned", True)):
            run_settings = unique_settings(broker.bootstrap, redis_server.url, partitions=args.partitions)
            run_settings = run_settings.with_(topic_prefix=settings.topic_prefix)  # same topics, own group
            seconds, handed = asyncio.run(drain(run_settings, len(events), aligned))
            late = disorder_days(handed)
            rows[name] = {"events_per_s": len(handed) / seconds, "p50": np.percentile(late, 50),
                          "p99": np.percentile(late, 99), "max": late.max(), "over_1d": float((late > 1).mean())}
        pipeline = {}
        if args.pipeline_customers:
            import redis

            client = redis.Redis.from_url(redis_server.url, decode_responses=True)
            planted = simulate(SimulationConfig(customers=args.pipeline_customers, days=args.days, seed=21,
                                                segments=DISTINCT_SEGMENTS, rate_shape=8.0))
            for name, wait_ms in (("fetch order (before)", 0), ("event-time aligned", 5000)):
                run_settings = unique_settings(broker.bootstrap, redis_server.url, partitions=args.partitions).with_(
                    align_max_wait_ms=wait_ms, segment_warmup=1000, segment_snapshot_every=2000,
                    segment_snapshot_interval_s=1.0)
                print(f"pipeline, {name} ...", flush=True)
                pipeline[name] = pipeline_run(run_settings, client, planted, logs)
    print(f"\n{len(events):,} events ({args.customers:,} customers, {args.days} days), {args.partitions} partitions "
          f"x 3 topics, {os.cpu_count()} CPUs")
    print(f"{'order':22} {'events/s':>10} {'behind p50 d':>13} {'p99 d':>8} {'max d':>8} {'>1 d late':>10}")
    for name, r in rows.items():
        print(f"{name:22} {r['events_per_s']:>10,.0f} {r['p50']:>13.2f} {r['p99']:>8.1f} {r['max']:>8.1f} "
              f"{r['over_1d']:>10.1%}")
    before, after = rows.values()
    print(f"aligned/fetch-order throughput: {after['events_per_s'] / before['events_per_s']:.2f}")
    if pipeline:
        print(f"\npipeline, one worker, {len(planted.events):,} events ({args.pipeline_customers} customers, planted "
              f"segments), {args.partitions} partitions")
        print(f"{'order':22} {'events/s':>10} {'segment ARI':>12} {'max changed':>12} {'snapshots':>10} {'restarts':>9}")
        for name, r in pipeline.items():
            print(f"{name:22} {r['events_per_s']:>10,.0f} {r['ari']:>12.3f} {r['changed_max']:>12.1%} "
                  f"{r['snapshots']:>10} {r['restarts']:>9}")
        before, after = pipeline.values()
        print(f"aligned/fetch-order pipeline throughput: {after['events_per_s'] / before['events_per_s']:.2f}")


if __name__ == "__main__":
    main()
