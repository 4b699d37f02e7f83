"""Ingest throughput and latency, side by side with bare aiokafka and bare Faust.

Phase 1 (throughput): N valid events are produced to the three input topics
first; then each consumer drains that backlog alone, and events/s is measured
from its first to its last event (group joins are excluded).
Phase 2 (latency): events are produced at a fixed rate while the consumer runs;
latency is send() -> received (baselines) or send() -> the offset is committed
in Redis, i.e. the event's effect is readable (pipeline).

Usage: python bench/throughput.py [--events 60000] [--rate 2000] [--seconds 8]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np
import orjson
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from streams.embedded import EmbeddedBroker, EmbeddedRedis  # noqa: E402
from streams.keyspace import merged  # noqa: E402
from tests.stack import WorkerProcess, accepted_total, prepare_topics, unique_settings  # noqa: E402

BASE_TS_MS = 1_709_290_800_000


def simulated_events(count: int, start: int) -> list[tuple[str, str, bytes]]:
    """Realistic traffic: the simulator's history (sessions of several events per customer)."""
    from streams.simulator import SimulationConfig, simulate

    customers = max(100, count // 60)
    events = simulate(SimulationConfig(customers=customers, days=365, seed=1 + start)).events
    while len(events) < count:  # top up with a further seed (other customer ids via the seed prefix)
        events += simulate(SimulationConfig(customers=customers, days=365, seed=len(events) + start)).events
    return [(topic, event["customer_id"], orjson.dumps(event)) for topic, event in events[:count]]


def synthetic_events(count: int, start: int, customers: int = 5000) -> list[tuple[str, str, bytes]]:
    """(contract topic, customer id, value): 10% purchases, 85% interactions, 5% profile updates."""
    rng = np.random.default_rng(start)
    events = []
    for i in range(start, start + count):
        customer_id = f"c{int(rng.integers(customers))}"
        ts = BASE_TS_MS + i * 1000
        roll = i % 20
        if roll < 2:
            events.append(("purchases", customer_id, orjson.dumps({
                "event_id": f"e{i}", "customer_id": customer_id, "order_id": f"o{i}", "ts": ts, "currency": "EUR",
                "kind": "order", "schema_version": 1,
                "items": [{"sku": f"s{int(rng.integers(1000))}", "qty": 1, "unit_price": "12.50"}]})))
        elif roll < 19:
            events.append(("interactions", customer_id, orjson.dumps({
                "event_id": f"e{i}", "customer_id": customer_id, "ts": ts, "type": "product_view",
                "sku": f"s{int(rng.integers(1000))}", "session_id": f"s{i // 10}", "schema_version": 1})))
        else:
            events.append(("customers", customer_id, orjson.dumps({
                "event_id": f"e{i}", "customer_id": customer_id, "ts": ts, "type": "profile",
                "attributes": {"country": "DE"}, "schema_version": 1})))
    return events


async def _produce(settings, events, rate: float | None) -> list[tuple[str, float]]:
    """Send events; returns ("topic:partition:offset", send time) for each."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all",
                                linger_ms=0 if rate else 10, max_batch_size=512 * 1024)
    await producer.start()
    started = time.monotonic()
    pending = []
    try:
        for index, (topic, customer_id, value) in enumerate(events):
            if rate:
                ahead_s = index / rate - (time.monotonic() - started)
                if ahead_s > 0:
                    await asyncio.sleep(ahead_s)
            sent_at = time.time()
            pending.append((await producer.send(settings.topic(topic), value, key=customer_id.encode()), sent_at))
        results = []
        for future, sent_at in pending:
            meta = await future
            results.append((f"{meta.topic}:{meta.partition}:{meta.offset}", sent_at))
        return results
    finally:
        await producer.stop()


def produce(settings, events, rate=None):
    return asyncio.run(_produce(settings, events, rate))


def percentiles_ms(latencies_s: list[float]) -> tuple[float, float]:
    values = np.array(latencies_s) * 1000
    return float(np.percentile(values, 50)), float(np.percentile(values, 99))


def run_baseline(mode: str, settings, backlog, paced_events, rate, logs: Path) -> dict:
    out = Path(tempfile.mkstemp(suffix=".json")[1])
    topics = [settings.topic(t) for t in ("purchases", "interactions", "customers")]
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "bare_consumers.py"), mode, "--bootstrap", settings.kafka_bootstrap,
         "--group", f"bench-{mode}-{os.getpid()}", "--out", str(out), "--batch", str(settings.batch_size), *topics],
        stdout=open(logs / f"bench-{mode}.log", "wb"), stderr=subprocess.STDOUT)
    try:
        _wait_for_count(process, Path(str(out) + ".count"), len(backlog), mode)
        sent = produce(settings, paced_events, rate)
        time.sleep(2)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)
    received = orjson.loads(out.read_bytes())
    out.unlink()
    backlog_times = sorted(received[key] for key, _ in backlog if key in received)
    assert len(backlog_times) == len(backlog), f"{mode} received {len(backlog_times)} of {len(backlog)}"
    latencies = [received[key] - sent_at for key, sent_at in sent if key in received]
    assert len(latencies) == len(sent), f"{mode} missed paced events"
    return _summary(backlog_times, latencies)


def _wait_for_count(process, count_file: Path, expected: int, mode: str, timeout_s: float = 180) -> None:
    """Wait until the baseline reports having received the whole backlog."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{mode} baseline exited early")
        if count_file.exists() and count_file.read_text().strip() and int(count_file.read_text()) >= expected:
            count_file.unlink()
            return
        time.sleep(0.2)
    raise TimeoutError(f"{mode} baseline did not drain the backlog in {timeout_s}s")


def _summary(backlog_times: list[float], latencies: list[float]) -> dict:
    span = backlog_times[-1] - backlog_times[0]
    p50, p99 = percentiles_ms(latencies)
    return {"events_per_s": (len(backlog_times) - 1) / span, "p50_ms": p50, "p99_ms": p99}


class OffsetWatcher(threading.Thread):
    """Polls the pipeline's committed offsets in Redis and remembers when each offset became visible."""

    def __init__(self, read_offsets: Callable[[], dict[str, str]], interval_s: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.read_offsets = read_offsets  # every partition's committed offsets
        # Coarse while draining the backlog (so the poller does not steal CPU from the worker on a
        # small machine), fine during the latency phase.
        self.interval_s = interval_s
        self.timeline: dict[str, list[tuple[int, float]]] = {}
        self.stop_event = threading.Event()

    def run(self) -> None:
        last: dict[str, int] = {}
        while not self.stop_event.is_set():
            offsets = self.read_offsets()
            now = time.time()
            for tp, offset in offsets.items():
                offset = int(offset)
                if last.get(tp) != offset:
                    last[tp] = offset
                    self.timeline.setdefault(tp, []).append((offset, now))
            time.sleep(self.interval_s)

    def visible_at(self, key: str) -> float | None:
        tp, offset = key.rsplit(":", 1)
        for committed, at in self.timeline.get(tp, []):
            if committed >= int(offset):
                return at
        return None


def run_pipeline(settings, backlog, paced_events, rate, logs: Path, client: redis.Redis) -> dict:
    watcher = OffsetWatcher(lambda: merged(client, settings.key_space(), "offsets"))
    watcher.start()
    worker = WorkerProcess(settings, logs / "bench-pipeline-worker.log").start()
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and accepted_total(client, settings) < len(backlog):
            time.sleep(0.2)
        watcher.interval_s = 0.001
        sent = produce(settings, paced_events, rate)
        # Wait until every paced event is visible (a pipeline slower than the rate falls behind).
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and any(watcher.visible_at(key) is None for key, _ in sent):
            time.sleep(0.2)
    finally:
        watcher.stop_event.set()
        worker.stop()
    backlog_times = sorted(watcher.visible_at(key) for key, _ in backlog)
    latencies = [watcher.visible_at(key) - sent_at for key, sent_at in sent]
    return _summary(backlog_times, latencies)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=60_000, help="backlog size for the throughput phase")
    parser.add_argument("--rate", type=float, default=2000, help="events/s in the latency phase")
    parser.add_argument("--seconds", type=float, default=8, help="length of the latency phase")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--workload", choices=["uniform", "simulated"], default="uniform",
                        help="uniform: every event of a random one of 5,000 customers (worst case: a batch "
                             "touches as many customers as it has events); simulated: the webshop simulator")
    args = parser.parse_args()
    make_events = synthetic_events if args.workload == "uniform" else simulated_events
    logs = ROOT / "bench" / "out"
    logs.mkdir(parents=True, exist_ok=True)
    paced_count = int(args.rate * args.seconds)
    results = {}
    with EmbeddedBroker(logs) as broker, EmbeddedRedis(logs) as redis_server:
        client = redis.Redis.from_url(redis_server.url, decode_responses=True)
        for name in ("bare aiokafka (orjson decode)", "bare Faust (take_events)", "crmstream ingest pipeline"):
            settings = unique_settings(broker.bootstrap, redis_server.url, partitions=args.partitions)
            prepare_topics(settings)
            backlog = produce(settings, make_events(args.events, 0))
            paced = make_events(paced_count, args.events)
            print(f"running {name} ...", flush=True)
            if name.startswith("bare aiokafka"):
                results[name] = run_baseline("aiokafka", settings, backlog, paced, args.rate, logs)
            elif name.startswith("bare Faust"):
                results[name] = run_baseline("faust", settings, backlog, paced, args.rate, logs)
            else:
                results[name] = run_pipeline(settings, backlog, paced, args.rate, logs, client)
    print()
    print(f"{args.workload} workload, {args.events:,} events backlog, {args.partitions} partitions, latency at {args.rate:,.0f} ev/s "
          f"for {args.seconds:.0f}s; one process each, {os.cpu_count()} CPUs")
    print(f"{'consumer':34} {'events/s':>10} {'µs/event':>9} {'p50 ms':>8} {'p99 ms':>8}")
    for name, r in results.items():
        print(f"{name:34} {r['events_per_s']:>10,.0f} {1e6 / r['events_per_s']:>9.1f} "
              f"{r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f}")
    aiokafka_rate, faust_rate, pipeline_rate = (r["events_per_s"] for r in results.values())
    print(f"ratios: pipeline / bare Faust = {pipeline_rate / faust_rate:.2f}, "
          f"pipeline / bare aiokafka = {pipeline_rate / aiokafka_rate:.2f}, "
          f"bare Faust / bare aiokafka = {faust_rate / aiokafka_rate:.2f}")
    print(f"Faust overhead per event vs bare aiokafka: {1e6 / faust_rate - 1e6 / aiokafka_rate:.1f} µs; "
          f"pipeline work per event beyond bare Faust: {1e6 / pipeline_rate - 1e6 / faust_rate:.1f} µs")


if __name__ == "__main__":
    main()
