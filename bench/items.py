"""Item co-occurrence: cost per basket by basket size, and lookup latency against a large matrix.

Part 1 counts baskets of 3, 10, 30 and 100 distinct items from a 10,000-item
catalogue (Zipf popularity) the way the pipeline does: the item stage folds
them into increments (Python) and the batch commit script applies them in
Redis (one script call per 100 baskets). The 100-item row is measured with the
default cap (30 items sampled) and without it, side by side.

Part 2 builds a matrix of at least 10,000 items and 1,000,000 pair entries
through the same commit path, stores 1,000 customers with 20 recent items each,
and times also-bought, viewed-then-bought and recommendations as the API runs
them (one Redis round trip for an item, two for a customer), sequentially.

Usage: python bench/items.py [--pairs 1000000] [--queries 2000]
"""
from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import numpy as np
import redis
import redis.asyncio as aioredis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agents.item_stage import ItemStage  # noqa: E402
from api.customers import CustomerReader  # noqa: E402
from api.items import ItemReader  # noqa: E402
from online_models.customer_state import CustomerState  # noqa: E402
from schemas.events import Interaction, Item, Purchase  # noqa: E402
from streams.config import Settings  # noqa: E402
from streams.embedded import EmbeddedRedis  # noqa: E402
from streams.redis_store import BatchWrite, RedisStore  # noqa: E402

CATALOGUE = 10_000
DAY_MS = 86_400_000
START_MS = 1_735_689_600_000  # 2025-01-01
TP = "bench.purchases:0"


class Catalogue:
    """Zipf-like item popularity with planted affinity: a basket mostly comes from one of 500 themes."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.skus = np.array([f"sku-{i:05d}" for i in range(CATALOGUE)])
        weights = 1.0 / np.arange(1, CATALOGUE + 1) ** 0.8
        self.popularity = weights / weights.sum()
        self.themes = self.rng.permutation(CATALOGUE).reshape(500, 20)

    def basket(self, size: int) -> list[str]:
        theme = self.themes[self.rng.integers(500)]
        from_theme = min(size, int(self.rng.integers(1, 20)))
        picks = set(self.skus[self.rng.choice(theme, size=from_theme, replace=False)])
        while len(picks) < size:
            picks.update(self.skus[self.rng.choice(CATALOGUE, size=size - len(picks), p=self.popularity)])
        return sorted(str(sku) for sku in picks)


def order(n: int, skus: list[str], ts_ms: int, customer_id: str = "c") -> Purchase:
    return Purchase(f"e{n}", customer_id, ts_ms, f"o{n}", "order", "EUR",
                    tuple(Item(sku, 1, 1000) for sku in skus))


async def commit(store: RedisStore, stage: ItemStage, offset: int) -> None:
    write = BatchWrite()
    stage.write_into(write)
    write.offsets[TP] = offset
    await store.commit_batch(write)


async def cost_per_basket(store: RedisStore, settings: Settings, catalogue: Catalogue) -> list[dict]:
    rows = []
    offset = 0
    cases = [(3, 30), (10, 30), (30, 30), (100, 30), (100, 0)]
    for size, cap in cases:
        item_settings = settings.with_(item_max_basket=cap).item_settings()
        baskets = [catalogue.basket(size) for _ in range(3000 if size <= 30 else 600)]
        fold_s = commit_s = 0.0
        pairs = 0
        for first in range(0, len(baskets), 100):
            stage = ItemStage(item_settings, settings.lateness_ms)
            started = time.perf_counter()
            for n, skus in enumerate(baskets[first:first + 100], start=first):
                state = CustomerState.new(30 * DAY_MS)
                state.apply_order(START_MS, 1000, len(skus))
                stage.order(state, order(n, skus, START_MS), "Champions")
            folded = time.perf_counter()
            pairs += len(stage.counts.pairs)
            offset += 1
            await commit(store, stage, offset)
            fold_s += folded - started
            commit_s += time.perf_counter() - folded
        count = len(baskets)
        rows.append({"size": size, "cap": cap or "none", "baskets": count, "pairs": pairs / count,
                     "fold_us": fold_s / count * 1e6, "commit_us": commit_s / count * 1e6,
                     "total_us": (fold_s + commit_s) / count * 1e6})
    return rows


async def build_matrix(store: RedisStore, settings: Settings, catalogue: Catalogue, client: redis.Redis,
                       min_pairs: int) -> dict:
    """Baskets (sizes 2-8) with views before them, until the also-bought matrix has ``min_pairs`` entries."""
    item_settings = settings.item_settings()
    states: dict[str, CustomerState] = {}
    n = offset = 0
    started = time.perf_counter()
    while True:
        stage = ItemStage(item_settings, settings.lateness_ms)
        for _ in range(2000):
            customer_id = f"c{int(catalogue.rng.integers(20_000)):05d}"
            state = states.setdefault(customer_id, CustomerState.new(30 * DAY_MS))
            ts = START_MS + n * 60_000
            skus = catalogue.basket(int(catalogue.rng.integers(2, 9)))
            for sku in catalogue.basket(3):
                stage.view(state, Interaction(f"v{n}-{sku}", customer_id, ts - 600_000, "product_view", sku))
            state.apply_order(ts, 1000, len(skus))
            stage.order(state, order(n, skus, ts, customer_id), "Champions")
            n += 1
        offset += 1
        await commit(store, stage, offset)
        entries = sum(client.zcard(key) for key in client.scan_iter(match=store.part(0) + "item:{*}:co", count=5000)) \
            if offset % 25 == 0 else 0
        if entries >= min_pairs:
            break
    items = client.zcard(store.part(0) + "item:counts")  # the bench commits as partition 0 (TP)
    cross = sum(client.zcard(key) for key in client.scan_iter(match=store.part(0) + "item:{*}:vb", count=5000))
    for customer_id, state in list(states.items())[:1000]:
        client.hset(store.keys.customer(customer_id), "state", state.to_json())
    client.hset(store.part(0) + "watermark", TP, START_MS + n * 60_000)
    return {"baskets": n, "items": items, "pair_entries": entries, "cross_entries": cross,
            "customers": list(states)[:1000], "build_s": time.perf_counter() - started}


async def lookup_latency(settings: Settings, skus: list[str], customers: list[str], queries: int) -> dict:
    client = aioredis.Redis.from_url(settings.redis_url, decode_responses=True)
    reader = ItemReader(client, settings.key_space(), settings.item_settings(),
                        CustomerReader(client, settings.key_space(), settings.profile_settings()))
    rng = np.random.default_rng(7)
    results = {}
    try:
        for name, call, keys in (("also_bought (llr)", reader.also_bought, skus),
                                 ("viewed_then_bought (llr)", reader.viewed_then_bought, skus),
                                 ("recommendations", reader.recommendations, customers)):
            await call(keys[0])  # load the script
            latencies = []
            for key in rng.choice(keys, size=queries):
                started = time.perf_counter()
                answer = await call(str(key))
                latencies.append((time.perf_counter() - started) * 1000)
                assert answer["items"] or name != "recommendations"
            results[name] = (np.percentile(latencies, 50), np.percentile(latencies, 99), np.mean(latencies))
    finally:
        await client.aclose()
    return results


async def main_async(args: argparse.Namespace) -> None:
    logs = ROOT / "bench" / "out"
    logs.mkdir(parents=True, exist_ok=True)
    with EmbeddedRedis(logs) as redis_server:
        settings = Settings.from_env({}, redis_url=redis_server.url, redis_prefix="bench:")
        store = RedisStore.from_url(redis_server.url, settings.redis_prefix)
        await store.claim([TP])
        sync = redis.Redis.from_url(redis_server.url, decode_responses=True)
        catalogue = Catalogue(seed=1)

        print("cost per basket (fold = item stage in Python, commit = batch commit script in Redis; "
              "100 baskets per commit)")
        print(f"{'items':>6} {'cap':>5} {'baskets':>8} {'pairs/basket':>13} {'fold µs':>9} {'commit µs':>10} "
              f"{'total µs':>9}")
        for row in await cost_per_basket(store, settings, catalogue):
            print(f"{row['size']:>6} {row['cap']!s:>5} {row['baskets']:>8} {row['pairs']:>13.0f} "
                  f"{row['fold_us']:>9.0f} {row['commit_us']:>10.0f} {row['total_us']:>9.0f}")

        sync.flushdb()
        store.release([TP])
        await store.claim([TP])
        used_before = sync.info("memory")["used_memory"]
        built = await build_matrix(store, settings, catalogue, sync, args.pairs)
        used = sync.info("memory")["used_memory"] - used_before
        print(f"\nmatrix: {built['items']:,} items, {built['pair_entries']:,} also-bought entries, "
              f"{built['cross_entries']:,} viewed-then-bought entries from {built['baskets']:,} baskets "
              f"(built in {built['build_s']:.0f}s); Redis memory {used / 2**20:,.0f} MiB = "
              f"{used / (built['pair_entries'] + built['cross_entries']):.0f} B per pair entry")
        skus = [sku for sku in sync.zrevrange(store.part(0) + "item:counts", 0, -1)]
        print(f"\nlookup latency, {args.queries:,} sequential queries each (random items / customers, k=10, "
              f"up to {settings.item_candidates} candidates per item, 200 per recent item in recommendations)")
        print(f"{'query':>26} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8}")
        for name, (p50, p99, mean) in (await lookup_latency(settings, skus, built["customers"], args.queries)).items():
            print(f"{name:>26} {p50:>8.2f} {p99:>8.2f} {mean:>8.2f}")
        top_neighbours = sync.zcard(f"{store.part(0)}item:{{{skus[0]}}}:co")
        print(f"(the most popular item has {top_neighbours:,} neighbours; a query scores its "
              f"{min(top_neighbours, settings.item_candidates)} most frequent)")
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pairs", type=int, default=1_000_000, help="also-bought entries to build at least")
    parser.add_argument("--queries", type=int, default=2000)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
