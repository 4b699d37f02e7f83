"""The simulator's promises: deterministic per seed, valid events, truth consistent with the events."""
from __future__ import annotations

from collections import Counter

import orjson
import pandas as pd

from schemas.events import validate_payload
from streams.simulate_cli import write_jsonl
from streams.simulator import DAY_MS, SimulationConfig, simulate, sparse_config


def test_same_seed_same_bytes_other_seed_other_history(tmp_path):
    config = SimulationConfig(customers=60, days=120, seed=5)
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    write_jsonl(simulate(config), first)
    write_jsonl(simulate(config), second)
    assert first.read_bytes() == second.read_bytes()
    assert (tmp_path / "a.jsonl.truth.json").read_bytes() == (tmp_path / "b.jsonl.truth.json").read_bytes()
    assert simulate(SimulationConfig(customers=60, days=120, seed=6)).events != simulate(config).events


def test_every_event_is_valid_and_time_ordered():
    simulation = simulate(SimulationConfig(customers=200, days=200, seed=2))
    for topic, event in simulation.events:
        validate_payload(topic, event)
    stamps = [event["ts"] for _, event in simulation.events]
    assert stamps == sorted(stamps)
    assert len({event["event_id"] for _, event in simulation.events}) == len(simulation.events)


def test_ground_truth_matches_the_events():
    config = SimulationConfig(customers=400, days=365, seed=3)
    simulation = simulate(config)
    orders = pd.DataFrame([{"customer_id": e["customer_id"], "ts": e["ts"]}
                           for topic, e in simulation.events if topic == "purchases" and e["kind"] == "order"])
    per_customer = orders.groupby("customer_id")["ts"].agg(["count", "max"])
    truth = {c.customer_id: c for c in simulation.customers}
    for customer_id, row in per_customer.iterrows():
        assert row["count"] == truth[customer_id].orders
        if truth[customer_id].dropout_ms is not None:
            assert row["max"] < truth[customer_id].dropout_ms  # nobody buys after dropping out
    dropped = [c for c in simulation.customers if c.dropout_ms is not None]
    assert 0.2 * len(simulation.customers) < len(dropped) < 0.9 * len(simulation.customers), "churn must happen"
    segments = Counter(c.segment for c in simulation.customers)
    assert len(segments) == 4 and min(segments.values()) > 0.1 * len(simulation.customers)


def test_support_tickets_and_low_scores_cluster_before_dropout():
    simulation = simulate(SimulationConfig(customers=600, days=365, seed=4))
    dropout = {c.customer_id: c.dropout_ms for c in simulation.customers}
    near, far = [], []
    for topic, event in simulation.events:
        if topic == "interactions" and event["type"] == "survey" and event["survey"] == "csat":
            end = dropout[event["customer_id"]]
            (near if end is not None and end - event["ts"] < 30 * DAY_MS else far).append(event["score"])
    assert near and far
    assert sum(near) / len(near) + 1.0 < sum(far) / len(far)


def test_baskets_come_from_planted_affinity_groups():
    simulation = simulate(SimulationConfig(customers=300, days=200, seed=8))
    group_of = {sku: group for group, skus in simulation.affinity_groups.items() for sku in skus}
    same_group = total = 0
    for topic, event in simulation.events:
        if topic == "purchases" and event["kind"] == "order" and len(event["items"]) > 1:
            groups = Counter(group_of[item["sku"]] for item in event["items"])
            same_group += groups.most_common(1)[0][1]
            total += len(event["items"])
    assert same_group / total > 0.75


def test_truth_file_is_plain_json(tmp_path):
    path = tmp_path / "sim.jsonl"
    truth_path = write_jsonl(simulate(SimulationConfig(customers=10, days=30, seed=1)), path)
    truth = orjson.loads(truth_path.read_bytes())
    assert set(truth) == {"config", "segments", "affinity_groups", "customers"}
    assert len(truth["customers"]) == 10


def test_the_sparse_profile_is_a_real_shops_history():
    """Most buyers order once or twice and arrive in the cohorts' bursts; browsing is thin; events stay valid."""
    config = sparse_config(customers=3000, seed=4)
    simulation = simulate(config)
    for topic, event in simulation.events[::50]:
        validate_payload(topic, event)
    orders = pd.Series([c.orders for c in simulation.customers if c.orders])
    assert (orders <= 2).mean() >= 0.7 and orders.median() == 1 and orders.max() >= 10
    signup_day = pd.Series([(c.signup_ms - config.start_ms) // DAY_MS for c in simulation.customers])
    in_bursts = sum(signup_day.between(c.at * config.days, c.at * config.days + 3 * c.spread_days).sum()
                    for c in config.arrival_cohorts)
    assert in_bursts / len(signup_day) >= 0.9  # a uniform arrival would put ~20% there
    topics = Counter(topic for topic, _ in simulation.events)
    dense = Counter(topic for topic, _ in simulate(SimulationConfig(customers=300, days=730, seed=4)).events)
    assert topics["interactions"] / topics["purchases"] < dense["interactions"] / dense["purchases"] / 2
