"""Churn through the real stack: the pipeline emits hazard examples and scores every buyer, the trainer
learns them from Kafka and publishes a snapshot that the pipeline then scores with."""
from __future__ import annotations

import asyncio

import orjson

from online_models.hazard import band_of
from streams.simulator import SimulationConfig, simulate
from tests.stack import (
    WorkerProcess, accepted_total, event_messages, prepare_topics, produce, read_state, read_topic, wait_until,
)


def test_examples_train_a_model_that_scores_every_buyer(settings, redis_client, output_dir):
    settings = settings.with_(trainers="process",  # the default: snapshots come from the worker's child process
                              churn_min_examples=1500, churn_rescore_days=7.0, model_signing_key="test-key")
    prepare_topics(settings)
    simulation = simulate(SimulationConfig(customers=300, days=365, seed=4))
    half = len(simulation.events) // 2
    prefix = settings.redis_prefix
    worker = WorkerProcess(settings, output_dir / "logs" / f"worker-{settings.app_id}.log").start()
    try:
        produce(settings.kafka_bootstrap, event_messages(settings, simulation.events[:half]))
        wait_until(lambda: redis_client.exists(prefix + "model:{churn}:latest"), 180, "no model snapshot published",
                   interval_s=0.5, process=worker.process)
        produce(settings.kafka_bootstrap, event_messages(settings, simulation.events[half:]))
        wait_until(lambda: accepted_total(redis_client, settings) >= len(simulation.events), 180,
                   "history not processed", interval_s=0.5, process=worker.process)
        examples = read_topic(settings.kafka_bootstrap, settings.topic("training-examples"))
        distinct = {e["example_id"] for m in examples for e in orjson.loads(m.value).get("examples", [])}

        def learned_or_held() -> int:
            report = orjson.loads(redis_client.get(prefix + "model:{churn}:progress") or b'{"learned": 0, "held": 0}')
            return report["learned"] + report["held"]
        # Every distinct example is learned exactly once (re-sent ones are dropped by id), or held: its window
        # ends after the slowest partition's progress (the trainer learns in event-time order).
        wait_until(lambda: learned_or_held() >= len(distinct), 60, "trainer did not catch up", interval_s=0.5)
        assert learned_or_held() == len(distinct)
    finally:
        worker.stop()

    snapshot = orjson.loads(redis_client.get(prefix + "model:{churn}:latest"))
    metrics = orjson.loads(redis_client.get(prefix + "model:{churn}:metrics"))
    assert snapshot["version"] >= 1 and metrics["examples"] >= 1500
    assert redis_client.exists(prefix + "model:{churn}:trainer")  # signed checkpoint

    assert metrics["learners"]["logistic"]["overall"]["roc_auc"] > 0.7
    buyers = {e["customer_id"] for topic, e in simulation.events if topic == "purchases"}
    scores = {cid: read_state(redis_client, settings, cid).churn_score for cid in buyers}
    assert all(score is not None and 0 <= score["churn_p"] <= 1 for score in scores.values())
    assert any(isinstance(score["version"], int) for score in scores.values()), "the snapshot was never used"
    assert all(len(score["top_features"]) >= 1 for score in scores.values())
    wheel = sum(redis_client.zcard(part + "wheel") for part in settings.key_space().parts())
    assert wheel > 0

    records = [orjson.loads(m.value) for m in read_topic(settings.kafka_bootstrap, settings.topic("score-changes"))]
    changes = [r for r in records if r.get("type") is None]  # not progress, not leading-indicator signals
    progress = [r for r in records if r.get("type") == "progress"]
    assert {p["partition"] for p in progress} == set(range(settings.partitions))
    assert {c["customer_id"] for c in changes} == buyers  # a first score is a change
    assert all(c["band"] in ("low", "medium", "high") for c in changes)
    newest = {}
    for change in changes:  # one partition: in order; the newest change per customer is what it reported
        newest[change["customer_id"]] = change
    ticks = {cid: scores[cid]["reported"]["tick"] for cid in buyers}  # changes are decided at report ticks
    assert all(abs(ticks[cid]["churn_p"] - newest[cid]["churn_p"]) <= settings.churn_change_threshold
               and band_of(ticks[cid]["churn_p"]) == newest[cid]["band"] for cid in buyers)
    assert all(newest[cid]["as_of_ms"] <= ticks[cid]["as_of_ms"] for cid in buyers)

    card = asyncio.run(read_profile(settings, sorted(buyers)[0]))["churn"]  # what support sees
    stored = scores[sorted(buyers)[0]]
    assert card["churn_p"] == stored["churn_p"] and card["band"] == stored["band"]
    assert card["is_prior"] == (stored["version"] == "prior") and len(card["top_features"]) >= 1


async def read_profile(settings, customer_id: str) -> dict:
    import redis.asyncio as aioredis

    from api.customers import CustomerReader
    client = aioredis.Redis.from_url(settings.redis_url)
    try:
        return await CustomerReader(client, settings.key_space(), settings.profile_settings()).profile(customer_id)
    finally:
        await client.aclose()
