"""Replay a generated history through the real worker; every customer must equal a pandas recount.

The history has over a thousand customers, refunds (partial), arrivals out of order
within the allowed lateness and duplicate deliveries of the same event ids.
"""
from __future__ import annotations

import asyncio

import numpy as np
import pandas as pd
import pytest

from api.customers import CustomerReader
from online_models.clv import estimate_clv
from online_models.purchase_history import DAY_MS
from streams.keyspace import summed
from streams.simulator import SimulationConfig, simulate
from tests.reference import purchases_frame
from tests.stack import WorkerProcess, accepted_total, event_messages, prepare_topics, produce, wait_until

LATENESS_MS = 6 * 3600 * 1000


def delivered_history(seed: int = 21):
    """Simulated events, thinned to keep the test quick, shuffled within lateness, some sent twice."""
    simulation = simulate(SimulationConfig(customers=1200, days=300, seed=seed))
    rng = np.random.default_rng(seed)
    events = [(topic, event) for topic, event in simulation.events
              if topic != "interactions" or rng.random() < 0.08]
    delays = rng.integers(0, LATENESS_MS // 2, size=len(events))
    order = np.argsort([event["ts"] + delay for (_, event), delay in zip(events, delays)], kind="stable")
    delivered = [events[i] for i in order]
    repeats = [delivered[i] for i in sorted(rng.choice(len(delivered), size=len(delivered) // 30, replace=False))]
    for offset, repeat in enumerate(repeats):  # the same events again, a little later in the stream
        delivered.insert(min(len(delivered), (offset + 1) * (len(delivered) // len(repeats))), repeat)
    return events, delivered, len(repeats)


def exact_midranks(values: pd.Series) -> pd.Series:
    return (values.rank(method="average") - 0.5) / len(values)


def test_replayed_history_equals_pandas_field_by_field(settings, redis_client, broker, redis_server, output_dir):
    prepare_topics(settings)
    events, delivered, duplicates = delivered_history()
    produce(broker.bootstrap, event_messages(settings, delivered))
    worker = WorkerProcess(settings, output_dir / "logs" / f"worker-{settings.app_id}.log").start()
    try:
        wait_until(lambda: accepted_total(redis_client, settings, with_duplicates=True) >= len(delivered), 240,
                   "replay not finished", interval_s=0.5, process=worker.process)
    finally:
        worker.stop()
    assert summed(redis_client, settings.key_space(), "stats:ingest")["duplicates"] == duplicates

    frame = purchases_frame(events)
    orders = frame[frame.kind == "order"].sort_values("ts")
    refunds = frame[frame.kind == "refund"].groupby("customer_id")["amount"].sum()
    per_customer = orders.groupby("customer_id").agg(
        orders=("ts", "size"), gross=("amount", "sum"), first=("ts", "min"), last=("ts", "max"),
        days=("ts", lambda ts: (ts // DAY_MS).nunique()))
    gaps = orders.groupby("customer_id")["ts"].diff().dropna() / DAY_MS
    gap_stats = gaps.groupby(orders.loc[gaps.index, "customer_id"]).agg(["mean", lambda g: g.std(ddof=0)])
    gap_stats.columns = ["mean_gap", "std_gap"]
    per_customer = per_customer.join(gap_stats).join(refunds.rename("refunded")).fillna({"refunded": 0})
    per_customer["net"] = per_customer.gross - per_customer.refunded
    as_of_ms = max(event["ts"] for _, event in events)
    recency_day_rank = exact_midranks(per_customer["last"] // DAY_MS)
    frequency_rank = exact_midranks(per_customer["orders"])
    monetary_rank = exact_midranks(per_customer["net"])

    reader = CustomerReader(__import__("redis.asyncio", fromlist=["Redis"]).Redis.from_url(
        redis_server.url, decode_responses=True), settings.key_space(), settings.profile_settings())

    async def read_all() -> dict:
        return {cid: await reader.profile(cid) for cid in per_customer.index}

    profiles = asyncio.run(read_all())
    mismatched_m = 0
    for customer_id, expected in per_customer.iterrows():
        profile = profiles[customer_id]
        assert profile["as_of_ms"] == as_of_ms
        assert profile["orders"] == expected.orders
        assert profile["net_spend_minor"] == expected.net
        assert profile["refunded_minor"] == expected.refunded
        assert profile["first_order_ms"] == expected["first"] and profile["last_order_ms"] == expected["last"]
        assert profile["distinct_purchase_days"] == expected.days
        assert profile["average_order_minor"] == pytest.approx(expected.net / expected.orders, rel=1e-12)
        assert profile["recency_days"] == pytest.approx((as_of_ms - expected["last"]) / DAY_MS, rel=1e-12)
        if expected.orders > 1:
            assert profile["mean_days_between_orders"] == pytest.approx(expected.mean_gap, rel=1e-9)
            assert profile["std_days_between_orders"] == pytest.approx(expected.std_gap, rel=1e-6, abs=1e-9)
            assert profile["expected_next_order_ms"] == int(expected["last"] + expected.mean_gap * DAY_MS)
        rfm = profile["rfm"]
        assert rfm["r"] == 1 + min(4, int(recency_day_rank[customer_id] * 5)), customer_id
        assert rfm["f"] == 1 + min(4, int(frequency_rank[customer_id] * 5)), customer_id
        mismatched_m += rfm["m"] != 1 + min(4, int(monetary_rank[customer_id] * 5))
        clv = estimate_clv(int(expected.orders), (as_of_ms - expected["first"]) / DAY_MS,
                           (expected["last"] - expected["first"]) / DAY_MS, expected.net / expected.orders,
                           settings.profile_settings().clv)
        assert profile["predicted_clv_minor"] == round(clv.predicted_clv_minor)
    # Net spend is ranked through a 1%-relative-error sketch: only customers within 1% of a quintile
    # boundary may land one score off.
    near_boundary = sum(
        any(abs(per_customer.net.quantile(q) / value - 1) <= 0.02 for q in (0.2, 0.4, 0.6, 0.8))
        for value in per_customer.net if value > 0)
    assert mismatched_m <= near_boundary
    assert summed(redis_client, settings.key_space(), "stats:ingest")["customers"] == len({e["customer_id"] for _, e in events})
