"""Event-time order of a drained backlog: the batch source's aligner vs plain fetch order, side by side.

A simulated year is produced (record timestamps = event time, as streams/producer.py sends them) to
the three input topics, then read twice from the start by the worker's :class:`BatchSource` with a
handler that only records what it is given: once in fetch order (``fetch()``, what the source did
before the aligner), once through ``run_once()`` (the aligner). Printed per mode:

* events/s of reading the backlog (the handler does nothing, so this is the source's own cost);
* how far behind the newest event already handed over each event is, in event-time days
  (p50 / p99 / max), and the share handed over more than a day late: what the global learners
  downstream (segment samples, churn examples, cross-topic item pairs) would see out of order.

Usage: ``python bench/alignment.py [--customers 2000] [--days 365] [--partitions 4]``
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
from streams.simulator import SimulationConfig, simulate  # noqa: E402
from tests.stack import event_messages, prepare_topics, produce, unique_settings  # noqa: E402


async def drain(settings, total: int, aligned: bool) -> tuple[float, list[int]]:
    """Read every event once; returns (seconds, event times in the order handed over)."""
    handed: list[int] = []

    async def record(messages) -> None:
        handed.extend(orjson.loads(m.value)["ts"] for m in messages)

    topics = [settings.topic(name) for name in ("purchases", "interactions", "customers")]
    store = RedisStore.from_url(settings.redis_url, settings.redis_prefix)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--partitions", type=int, default=4)
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
    print(f"\n{len(events):,} events ({args.customers:,} customers, {args.days} days), {args.partitions} partitions "
          f"x 3 topics, {os.cpu_count()} CPUs")
    print(f"{'order':22} {'events/s':>10} {'behind p50 d':>13} {'p99 d':>8} {'max d':>8} {'>1 d late':>10}")
    for name, r in rows.items():
        print(f"{name:22} {r['events_per_s']:>10,.0f} {r['p50']:>13.2f} {r['p99']:>8.1f} {r['max']:>8.1f} "
              f"{r['over_1d']:>10.1%}")
    before, after = rows.values()
    print(f"aligned/fetch-order throughput: {after['events_per_s'] / before['events_per_s']:.2f}")


if __name__ == "__main__":
    main()
