"""Bytes per customer in Redis after a simulated history, measured with MEMORY USAGE.

Usage: python bench/memory.py [--customers 2000] [--days 365]
"""
from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from streams.embedded import EmbeddedBroker, EmbeddedRedis  # noqa: E402
from streams.simulator import SimulationConfig, simulate  # noqa: E402
from tests.stack import process_history, unique_settings  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--days", type=int, default=365)
    args = parser.parse_args()
    logs = ROOT / "bench" / "out"
    logs.mkdir(parents=True, exist_ok=True)
    events = simulate(SimulationConfig(customers=args.customers, days=args.days, seed=1)).events
    with EmbeddedBroker(logs) as broker, EmbeddedRedis(logs) as redis_server:
        settings = unique_settings(broker.bootstrap, redis_server.url)
        client = redis.Redis.from_url(redis_server.url, decode_responses=True)
        elapsed = process_history(settings, client, events, logs / "memory-worker.log", 600)
        per_customer: dict[str, int] = defaultdict(int)
        by_kind: dict[str, list[int]] = defaultdict(list)
        shared = 0
        keys = settings.key_space()
        for key in client.scan_iter(match=settings.redis_prefix + "*", count=1000):
            size = client.memory_usage(key, samples=0) or 0
            name = key[len(settings.redis_prefix):]
            name = keys.name_of(key) if name.startswith("{p") else name  # a partition's key
            if name.startswith("c:{"):
                customer_id, suffix = name[3:].split("}", 1)
                per_customer[customer_id] += size
                by_kind[suffix or "hash"].append(size)
            else:
                shared += size
        totals = np.array(list(per_customer.values()))
        print(f"{len(events):,} simulated events, {len(totals):,} customers, {args.days} days "
              f"(processed in {elapsed:.0f}s incl. group join)")
        print(f"bytes per customer: mean {totals.mean():,.0f}  p50 {np.percentile(totals, 50):,.0f}  "
              f"p99 {np.percentile(totals, 99):,.0f}")
        for kind, sizes in sorted(by_kind.items()):
            print(f"  {kind:20} mean {np.mean(sizes):8,.0f} bytes over {len(sizes):,} keys")
        print(f"shared keys (sketches, counters, offsets): {shared:,} bytes in all")


if __name__ == "__main__":
    main()
