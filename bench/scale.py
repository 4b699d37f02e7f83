"""How throughput grows with workers, on one Redis and on a 3-master Redis Cluster (issue 26).

One simulated backlog is produced to 8-partition input topics; then 1, 2 and 4 worker processes drain it together
(a fresh topic and key prefix per run), against a single ``redis-server`` and against an embedded 3-master
cluster (streams/embedded.py), side by side in one run. Printed per run: events/s (from the first applied event
to the last), the ratio to one worker on the same backend and the *ceiling* of that ratio on this machine (the
run's CPU seconds, every process's, spread over all cores: on 2 cores, where one worker's stack already takes
more than one core, a ratio of 2 is out of reach whatever the design), CPU seconds per process kind over the
drain (the workers, their trainers' children, the broker, each Redis node), each worker's busy share, the
machine's share used, and CPU µs per event of the workers (trainers included) and of each Redis node
(``INFO cpu`` before/after).

The aggregates are kept per partition and folded when read (streams/keyspace.py): printed too, the time of one
fold of what the worker reads (the population sketches, at most once a second per worker) and of an API read
(the weekly KPIs), on each backend, and the fold's cost per event in the worker (folds per second x fold time /
events per second).

On a machine with few cores, every process shares them: the per-process CPU says how much of a ratio below the
worker count is the machine, not the design.

Usage: python bench/scale.py [--customers 1500] [--days 240] [--workers 1 2 4] [--partitions 8]
                             [--backends single cluster3] [--score-lag-days 0]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from api.kpis import read_kpis  # noqa: E402
from bench.backfill import children_cpu_s, own_cpu_s, redis_cpu_s  # noqa: E402
from online_models.rfm import POPULATION_SKETCHES  # noqa: E402
from agents.sketch_stage import sketch_hash  # noqa: E402
from streams.embedded import EmbeddedBroker, EmbeddedRedis, EmbeddedRedisCluster  # noqa: E402
from streams.keyspace import sum_hashes  # noqa: E402
from streams.redis_store import redis_client  # noqa: E402
from streams.simulator import SimulationConfig, simulate  # noqa: E402
from tests.stack import (  # noqa: E402
    WorkerProcess, accepted_total, event_messages, prepare_topics, produce, unique_settings,
)


def node_clients(backend) -> list[redis.Redis]:
    nodes = backend.nodes if isinstance(backend, EmbeddedRedisCluster) else [backend]
    return [redis.Redis(port=node.port, decode_responses=True) for node in nodes]


def reader_client(backend) -> redis.Redis:
    if isinstance(backend, EmbeddedRedisCluster):
        return redis.RedisCluster(startup_nodes=[redis.cluster.ClusterNode("127.0.0.1", node.port)
                                                 for node in backend.nodes], decode_responses=True)
    return redis.Redis(port=backend.port, decode_responses=True)


def drain(settings, events, workers: int, backend, broker: EmbeddedBroker, logs: Path) -> dict:
    """Produce ``events``, start ``workers`` processes, measure from the first applied event to the last."""
    prepare_topics(settings)
    produce(settings.kafka_bootstrap, event_messages(settings, events))
    client, nodes = reader_client(backend), node_clients(backend)
    processes = [WorkerProcess(settings, logs / f"scale-{settings.app_id}-{i}.log").start() for i in range(workers)]
    try:
        deadline = time.monotonic() + 600
        while accepted_total(client, settings) == 0:
            if time.monotonic() > deadline:
                raise TimeoutError("no event applied")
            time.sleep(0.01)
        started, first = time.monotonic(), accepted_total(client, settings)
        own_before = [own_cpu_s(p.process.pid) for p in processes]
        children_before = [children_cpu_s(p.process.pid) for p in processes]
        broker_before, redis_before = own_cpu_s(broker.process.pid), [redis_cpu_s(node) for node in nodes]
        while accepted_total(client, settings) < len(events):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{accepted_total(client, settings)} of {len(events)} applied")
            time.sleep(0.05)
        seconds = time.monotonic() - started
        own_cpu = [own_cpu_s(p.process.pid) - before for p, before in zip(processes, own_before)]
        trainers_cpu = sum(children_cpu_s(p.process.pid) for p in processes) - sum(children_before)
        broker_cpu = own_cpu_s(broker.process.pid) - broker_before
        redis_cpu = [redis_cpu_s(node) - before for node, before in zip(nodes, redis_before)]
    finally:
        for worker in processes:
            worker.stop()
        client.close()
        for node in nodes:
            node.close()
    applied = len(events) - first
    return {"events_s": applied / seconds, "seconds": seconds, "applied": applied, "own_cpu": own_cpu,
            "trainers_cpu": trainers_cpu, "broker_cpu": broker_cpu, "redis_cpu": redis_cpu}


async def fold_costs(settings, repeat: int = 50) -> tuple[float, float]:
    """Milliseconds of one fold of the population sketches (the worker's read) and of the weekly KPIs (an API
    read) over every partition, on the backend ``settings`` name (its keys of the last run)."""
    client = redis_client(settings.redis_url, settings.redis_cluster)
    keys = settings.key_space()
    try:
        started = time.perf_counter()
        for _ in range(repeat):
            await sum_hashes(client, keys, [sketch_hash(name) for name in POPULATION_SKETCHES])
        sketches_ms = (time.perf_counter() - started) / repeat * 1000
        started = time.perf_counter()
        for _ in range(max(repeat // 10, 1)):
            await read_kpis(client, keys, "week", settings.horizon_days, 12)
        kpis_ms = (time.perf_counter() - started) / max(repeat // 10, 1) * 1000
    finally:
        await client.aclose()
    return sketches_ms, kpis_ms


def print_runs(rows: list, base_workers: int) -> None:
    """The runs' table: events/s and the ratio to one worker; beside it the ratio the machine allowed (the
    ceiling: every CPU second the run spent, spread over all cores, against the one-worker run's events/s) and
    where the CPU went, per process kind; each worker's busy share (its own CPU over the drain: below 100%, it
    waited, for Redis, the broker or a churn version)."""
    cores = os.cpu_count()
    print()
    print(f"{'backend':<10} {'workers':>7} {'events/s':>9} {'ratio':>6} {'ceiling':>8} {'worker µs/ev':>12} "
          f"{'Redis µs/ev per node':>22}  {'CPU s: workers / trainers / broker / Redis':>43} "
          f"{'each worker busy':>18} {'machine used':>12}")
    base = {name: run["events_s"] for name, workers, run, _ in rows if workers == base_workers}
    for name, workers, run, _ in rows:
        per_node = " ".join(f"{cpu / run['applied'] * 1e6:6.1f}" for cpu in run["redis_cpu"])
        total = sum(run["own_cpu"]) + run["trainers_cpu"] + run["broker_cpu"] + sum(run["redis_cpu"])
        ceiling = run["applied"] / (total / cores) / base[name]
        busy = " ".join(f"{cpu / run['seconds']:.0%}" for cpu in run["own_cpu"])
        print(f"{name:<10} {workers:>7} {run['events_s']:>9,.0f} {run['events_s'] / base[name]:>6.2f} "
              f"{ceiling:>8.2f} {(sum(run['own_cpu']) + run['trainers_cpu']) / run['applied'] * 1e6:>12.1f} "
              f"{per_node:>22}  {sum(run['own_cpu']):>13.1f} / {run['trainers_cpu']:>8.1f} / "
              f"{run['broker_cpu']:>6.1f} / {sum(run['redis_cpu']):>5.1f} {busy:>18} "
              f"{total / run['seconds'] / cores:>12.0%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=1500)
    parser.add_argument("--days", type=int, default=240)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--backends", nargs="+", choices=("single", "cluster3"), default=["single", "cluster3"])
    parser.add_argument("--score-lag-days", type=float, default=None,
                        help="CRM_CHURN_SCORE_LAG_DAYS (default: the shipped 7; 0: scores use the newest version "
                             "and no batch waits for the trainer's)")
    args = parser.parse_args()
    logs = ROOT / "bench" / "out"
    events = simulate(SimulationConfig(customers=args.customers, days=args.days, seed=7)).events
    print(f"{len(events):,} simulated events ({args.customers} customers, {args.days} days), "
          f"{args.partitions} partitions, {os.cpu_count()} CPUs; all processes share them; score lag "
          f"{'7 (default)' if args.score_lag_days is None else args.score_lag_days} days")
    rows = []
    with EmbeddedBroker(logs) as broker, EmbeddedRedis(logs) as single, EmbeddedRedisCluster(logs) as cluster:
        for name, backend, url in (("single", single, single.url), ("cluster3", cluster, cluster.url)):
            if name not in args.backends:
                continue
            for workers in args.workers:
                lag = {} if args.score_lag_days is None else {"churn_score_lag_days": args.score_lag_days}
                settings = unique_settings(broker.bootstrap, url, partitions=args.partitions,
                                           redis_cluster=name != "single", **lag)
                run = drain(settings, events, workers, backend, broker, logs)
                rows.append((name, workers, run, settings))
                print(f"... {name} x{workers}: {run['events_s']:,.0f} ev/s", flush=True)
        print_runs(rows, min(args.workers))
        single_redis = {workers: sum(run["redis_cpu"]) / run["applied"] for name, workers, run, _ in rows
                        if name == "single"}
        print()
        for name, workers, run, _ in rows:
            if name != "single" and workers in single_redis:
                shares = [cpu / run["applied"] / single_redis[workers] for cpu in run["redis_cpu"]]
                print(f"cluster x{workers}: Redis CPU per event on each node / single Redis's: "
                      + ", ".join(f"{share:.2f}" for share in shares))
        print()
        for name, workers, run, settings in rows:
            if workers != max(args.workers):
                continue
            sketches_ms, kpis_ms = asyncio.run(fold_costs(settings))
            per_event_us = sketches_ms * 1000 * workers / run["events_s"]  # at most one fold a second per worker
            print(f"{name}: folding {args.partitions} partitions: population sketches {sketches_ms:.2f} ms a read "
                  f"(the worker's, at most 1/s: {per_event_us:.2f} µs per event at {workers} workers), "
                  f"weekly KPIs {kpis_ms:.1f} ms a read (API)")


if __name__ == "__main__":
    main()
