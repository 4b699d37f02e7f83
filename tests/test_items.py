"""Item co-occurrence through the real stack, checked against pandas / itertools / scipy recomputations."""
from __future__ import annotations

import asyncio
import itertools
import random
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from api.customers import CustomerReader
from api.items import ItemReader
from online_models.cooccurrence import MEASURES, SCORE_DECIMALS, capped_basket
from online_models.item_memory import MAX_BOUGHT
from streams.item_rebuild import count_history, replace_item_keys
from streams.redis_store import redis_client
from tests.events_factory import BASE_TS_MS
from tests.stack import (
    WorkerProcess, accepted_total, event_messages, process_history, produce, wait_until,
)

HOUR_MS = 3_600_000
SKUS = [f"sku-{i:03d}" for i in range(150)]


def basket_history(seed: int, customers: int = 300) -> list[tuple[str, dict]]:
    """Orders from planted affinity groups (some lines repeated, one 40-item basket), refunds, and product
    views / add-to-carts within and outside the 24 h before orders, in event-time order."""
    rng = random.Random(seed)
    groups = [SKUS[g::8] for g in range(8)]
    events: list[tuple[str, dict]] = []
    serial = itertools.count()

    def order(customer_id: str, ts: int, skus: list[str], kind: str = "order", order_id: str | None = None) -> dict:
        items = [{"sku": sku, "qty": rng.randint(1, 3), "unit_price": f"{rng.randint(100, 9000) / 100:.2f}"}
                 for sku in skus]
        return {"event_id": f"p-{next(serial)}", "customer_id": customer_id, "order_id": order_id or f"o-{next(serial)}",
                "ts": ts, "kind": kind, "currency": "EUR", "items": items, "schema_version": 1}

    for c in range(customers):
        customer_id = f"c{c:04d}"
        home = groups[c % 8]
        ts = BASE_TS_MS + rng.randrange(0, 30 * 24) * HOUR_MS
        for nth_order in range(rng.randint(1, 10)):
            ts += rng.randrange(2, 20 * 24) * HOUR_MS
            if c == 7 and nth_order == 0:
                skus = SKUS[:40]  # bigger than the default basket cap
            else:
                skus = [rng.choice(home) if rng.random() < 0.75 else rng.choice(SKUS) for _ in range(rng.randint(1, 6))]
            skus.append(skus[0])  # a repeated line counts once
            for _ in range(rng.randint(0, 4)):
                kind = rng.choice(["product_view", "add_to_cart"])
                viewed_ts = ts - rng.randrange(1, 30 * 60) * 60_000  # up to 30 h before: some outside the window
                events.append(("interactions", {"event_id": f"i-{next(serial)}", "customer_id": customer_id,
                                                "ts": viewed_ts, "type": kind, "schema_version": 1,
                                                "sku": rng.choice(home if rng.random() < 0.6 else SKUS)}))
            placed = order(customer_id, ts, skus)
            events.append(("purchases", placed))
            if rng.random() < 0.1:
                events.append(("purchases", order(customer_id, ts + 5 * 24 * HOUR_MS, skus[:1], "refund",
                                                  placed["order_id"])))
    events.sort(key=lambda pair: pair[1]["ts"])
    return events


# -- the independent computation ------------------------------------------------------------------------


def batch_counts(events, window_ms: int, max_basket: int = 0) -> dict[str, Counter]:
    """Exact counts with pandas / itertools: what the stream must serve. With ``max_basket``, a bigger order
    counts the items the cap samples (which ones is the cap's business, tested in test_item_models.py)."""
    orders = pd.DataFrame([{"customer_id": e["customer_id"], "order_id": e["order_id"], "ts": e["ts"], "sku": sku}
                           for topic, e in events if topic == "purchases" and e["kind"] == "order"
                           for sku in capped_basket(e["order_id"], [item["sku"] for item in e["items"]],
                                                    max_basket)])
    baskets = orders.groupby("order_id")["sku"].apply(sorted)
    pairs = Counter(pair for skus in baskets for pair in itertools.permutations(skus, 2))
    views = pd.DataFrame([{"customer_id": e["customer_id"], "viewed_ts": e["ts"], "viewed": e["sku"]}
                          for topic, e in events if topic == "interactions"])
    heads = orders[["customer_id", "order_id", "ts"]].drop_duplicates("order_id")
    joined = heads.merge(views, on="customer_id")
    joined = joined[(joined.viewed_ts >= joined.ts - window_ms) & (joined.viewed_ts < joined.ts)]
    viewed = joined[["order_id", "viewed"]].drop_duplicates()
    cross = viewed.merge(orders[["order_id", "sku"]], on="order_id")
    cross = cross[cross.viewed != cross.sku]
    first_orders = heads.sort_values("ts").drop_duplicates("customer_id")
    return {
        "baskets": Counter({"baskets": len(baskets)}),
        "items": Counter(orders.sku.value_counts().to_dict()),
        "pairs": pairs,
        "viewed_before": Counter(viewed.viewed.value_counts().to_dict()),
        "cross": Counter(map(tuple, cross[["viewed", "sku"]].itertuples(index=False))),
        "first_orders": Counter(orders[orders.order_id.isin(first_orders.order_id)].sku.value_counts().to_dict()),
    }


def g_squared(k11: float, n_x: float, n_y: float, n: float) -> float:
    """Signed G² = 2 Σ O ln(O / E) over the 2x2 table (not Mahout's entropy form)."""
    observed = np.array([[k11, n_x - k11], [n_y - k11, n - n_x - n_y + k11]], dtype=float)
    expected = observed.sum(axis=1, keepdims=True) * observed.sum(axis=0, keepdims=True) / n
    mask = observed > 0
    g2 = max(2.0 * float((observed[mask] * np.log(observed[mask] / expected[mask])).sum()), 0.0)
    return g2 if k11 * n >= n_x * n_y else -g2


def batch_top(anchor: str, together: Counter, anchor_total: float, item_totals: Counter, n: float, measure: str,
              k: int, min_support: float) -> list[str]:
    scored = []
    for (x, y), k11 in together.items():
        if x != anchor or k11 < min_support:
            continue
        n_y = item_totals[y]
        score = {"count": k11, "cosine": k11 / np.sqrt(anchor_total * n_y), "lift": k11 * n / (anchor_total * n_y),
                 "llr": g_squared(k11, anchor_total, n_y, n)}[measure]
        scored.append((-round(float(score), SCORE_DECIMALS), y))
    return [sku for _, sku in sorted(scored)[:k]]


# -- what the live system serves ------------------------------------------------------------------------


def sorted_set(client, key: str) -> Counter:
    return Counter({member: score for member, score in client.zrange(key, 0, -1, withscores=True)})


def summed_set(client, settings, name: str) -> Counter:
    """One item sorted set summed over the partitions' shares (streams/keyspace.py)."""
    total = Counter()
    for part in settings.key_space().parts():
        total.update(sorted_set(client, part + name))
    return total


def served_pairs(client, settings, matrix: str) -> Counter:
    keys = settings.key_space()
    served = Counter()
    for key in client.scan_iter(match=keys.pattern(f"item:{{*}}:{matrix}"), count=1000):
        anchor = keys.name_of(key)[len("item:{"):-len("}:" + matrix)]
        served.update({(anchor, y): count for y, count in sorted_set(client, key).items()})
    return served


async def ask(settings, question):
    client = redis_client(settings.redis_url, settings.redis_cluster)
    try:
        customers = CustomerReader(client, settings.key_space(), settings.profile_settings())
        return await question(ItemReader(client, settings.key_space(), settings.item_settings(), customers))
    finally:
        await client.aclose()


def test_served_counts_and_top_neighbours_equal_a_batch_recount(settings, redis_client, output_dir):
    settings = settings.with_(item_max_basket=0)  # every item of the 40-item basket counts
    events = basket_history(seed=3)
    process_history(settings, redis_client, events, output_dir / "logs" / f"worker-{settings.app_id}.log")
    prefix = settings.redis_prefix
    expected = batch_counts(events, settings.item_settings().view_window_ms)
    assert max(len({item["sku"] for item in e["items"]}) for topic, e in events if topic == "purchases") == 40

    assert summed_set(redis_client, settings, "item:totals") == expected["baskets"]
    assert summed_set(redis_client, settings, "item:counts") == expected["items"]
    assert served_pairs(redis_client, settings, "co") == expected["pairs"]
    assert sum(expected["cross"].values()) > 500, "the history must exercise viewed-then-bought"
    assert summed_set(redis_client, settings, "item:viewed_before") == expected["viewed_before"]
    assert served_pairs(redis_client, settings, "vb") == expected["cross"]
    assert summed_set(redis_client, settings, "item:popular:first_order") == expected["first_orders"]

    n = expected["baskets"]["baskets"]

    async def all_answers(reader: ItemReader) -> dict:
        answers = {}
        for sku, measure, min_support in itertools.product(SKUS, MEASURES, (1, 2)):
            answers["co", sku, measure, min_support] = await reader.also_bought(sku, measure, 10, min_support)
            answers["vb", sku, measure, min_support] = await reader.viewed_then_bought(sku, measure, 10, min_support)
        return answers

    answers = asyncio.run(ask(settings, all_answers))
    compared = 0
    for (matrix, sku, measure, min_support), answer in answers.items():
        together, anchor_total = (expected["pairs"], expected["items"][sku]) if matrix == "co" else \
            (expected["cross"], expected["viewed_before"][sku])
        wanted = batch_top(sku, together, anchor_total, expected["items"], n, measure, 10, min_support)
        assert [row["sku"] for row in answer["items"]] == wanted, (matrix, sku, measure, min_support)
        for row in answer["items"]:
            assert row["count"] == together[sku, row["sku"]]
        compared += bool(wanted)
    assert compared > 1000

    # A rebuild from the same history writes the same keys (first-order best-sellers included; a buyer's
    # segment is ranked against the population of the moment, so those lists are left out).
    rebuilt = settings.with_(redis_prefix=prefix + "rebuilt:")
    counts, invalid = count_history(events, rebuilt, lambda state: "any")
    asyncio.run(rebuild_into(rebuilt, counts))
    assert invalid == 0
    assert item_dump(redis_client, rebuilt) == item_dump(redis_client, settings)


async def rebuild_into(settings, counts) -> None:
    client = redis_client(settings.redis_url, settings.redis_cluster)
    try:
        await replace_item_keys(client, settings.key_space(), counts, settings)
    finally:
        await client.aclose()


def item_dump(client, settings) -> dict:
    keys, prefix = settings.key_space(), settings.redis_prefix
    return {key[len(prefix):]: sorted_set(client, key) for key in client.scan_iter(match=keys.pattern("item:*"))
            if not keys.name_of(key).startswith("item:popular:") or key.endswith(":first_order")}


def test_decayed_counts_are_served_as_of_the_event_time_clock(settings, redis_client):
    """Forward-decayed counts, divided by the weight of "now", equal counts decayed by the half-life."""
    settings = settings.with_(item_decay_half_life_days=14.0, item_max_basket=0)
    events = basket_history(seed=4, customers=80)
    counts, _ = count_history(events, settings, lambda state: "any")
    asyncio.run(rebuild_into(settings, counts))
    now_ms = max(e["ts"] for _, e in events)
    redis_client.hset(settings.key_space().part(0) + "watermark", "crm.purchases:0", now_ms)
    half_life_ms = 14 * 24 * HOUR_MS

    decayed_pairs: Counter = Counter()
    decayed_items: Counter = Counter()
    for topic, e in events:
        if topic == "purchases" and e["kind"] == "order":
            weight = 2.0 ** (-(now_ms - e["ts"]) / half_life_ms)
            skus = sorted({item["sku"] for item in e["items"]})
            decayed_items.update({sku: weight for sku in skus})
            decayed_pairs.update({pair: weight for pair in itertools.permutations(skus, 2)})
    anchor = max(decayed_items, key=decayed_items.get)

    answer = asyncio.run(ask(settings, lambda reader: reader.also_bought(anchor, "count", 100, min_support=0.0)))
    assert answer["as_of_ms"] == now_ms
    assert answer["anchor_orders"] == pytest.approx(decayed_items[anchor], rel=1e-9)
    served = {row["sku"]: row["count"] for row in answer["items"]}
    wanted = {y: count for (x, y), count in decayed_pairs.items() if x == anchor}
    assert served.keys() == wanted.keys()
    assert all(served[sku] == pytest.approx(wanted[sku], rel=1e-6, abs=1e-6) for sku in wanted)
    raw_orders = sum(1 for topic, e in events if topic == "purchases" and e["kind"] == "order"
                     and anchor in {item["sku"] for item in e["items"]})
    assert decayed_items[anchor] < 0.5 * raw_orders, "the history must be long enough for decay to matter"


def test_redelivered_and_replayed_orders_change_no_count(settings, redis_client, output_dir):
    events = basket_history(seed=5, customers=120)
    process_history(settings, redis_client, events, output_dir / "logs" / f"worker-{settings.app_id}-1.log")

    def item_keys() -> dict:
        return {key: sorted_set(redis_client, key)
                for key in redis_client.scan_iter(match=settings.key_space().pattern("item:*"))}

    before = item_keys()
    assert summed_set(redis_client, settings, "item:totals")["baskets"] > 300
    orders = [(topic, e) for topic, e in events if topic == "purchases"]
    # The same messages again (a producer retry / a replayed topic), and every order re-sent under a
    # new event id (a second export of the same orders): both must change nothing.
    renamed = [(topic, {**e, "event_id": "again-" + e["event_id"]}) for topic, e in orders if e["kind"] == "order"]
    produce(settings.kafka_bootstrap, event_messages(settings, orders + renamed))
    worker = WorkerProcess(settings, output_dir / "logs" / f"worker-{settings.app_id}-2.log").start()
    try:
        total = len(events) + len(orders) + len(renamed)
        wait_until(lambda: accepted_total(redis_client, settings, with_duplicates=True) >= total, 120,
                   "re-sent orders not processed", interval_s=0.5, process=worker.process)
    finally:
        worker.stop()
    assert accepted_total(redis_client, settings) == len(events)
    assert item_keys() == before


def test_recommendations_exclude_purchases_and_fall_back_to_first_order_best_sellers(settings, redis_client,
                                                                                       output_dir):
    events = basket_history(seed=9, customers=200)
    process_history(settings, redis_client, events, output_dir / "logs" / f"worker-{settings.app_id}.log")
    expected = batch_counts(events, settings.item_settings().view_window_ms, settings.item_max_basket)
    buyers = sorted({e["customer_id"] for topic, e in events if topic == "purchases"})

    async def recommend_all(reader: ItemReader) -> dict:
        answers = {cid: await reader.recommendations(cid, k=10) for cid in buyers}
        answers["nobody"] = await reader.recommendations("nobody", k=10)
        return answers

    answers = asyncio.run(ask(settings, recommend_all))
    bought = {cid: {item["sku"] for topic, e in events if topic == "purchases" and e["customer_id"] == cid
                    and e["kind"] == "order" for item in e["items"]} for cid in buyers}
    personal = excluded_all = 0
    for cid in buyers:
        answer = answers[cid]
        picks = answer["items"]
        assert len(picks) == 10 and len({p["sku"] for p in picks}) == 10
        if len(bought[cid]) <= MAX_BOUGHT:  # a customer's last 50 distinct purchases are remembered
            assert not {p["sku"] for p in picks} & bought[cid], cid
            excluded_all += 1
        recent = {item["sku"] for item in answer["recent_items"]}
        mine = [p for p in picks if p["source"] == "personal"]
        assert all(p["because"] and set(p["because"]) <= recent for p in mine)
        assert [p["score"] for p in mine] == sorted((p["score"] for p in mine), reverse=True)
        personal += bool(mine)
    assert personal > 0.9 * len(buyers) and excluded_all > 0.9 * len(buyers)

    cold = answers["nobody"]
    assert not cold["known"] and cold["segment"] == "first_order"
    best_sellers = sorted(expected["first_orders"].items(), key=lambda kv: (-kv[1], kv[0]))
    assert [(p["sku"], p["score"]) for p in cold["items"]] == \
        sorted(((sku, float(count)) for sku, count in best_sellers[:10]), key=lambda kv: (-kv[1], kv[0]))
    assert {p["source"] for p in cold["items"]} == {"segment:first_order"}


@pytest.mark.parametrize("bad", [{"sku": "a{b}"}, {"measure": "jaccard"}, {"k": 0}, {"k": 101}])
def test_item_queries_reject_bad_input(settings, bad):
    query = {"sku": "sku-001", "measure": "llr", "k": 10, **bad}
    with pytest.raises(ValueError):
        asyncio.run(ask(settings, lambda reader: reader.also_bought(query["sku"], query["measure"], query["k"])))
