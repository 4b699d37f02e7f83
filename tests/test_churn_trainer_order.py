"""The churn trainer learns in event-time order behind the partitions' progress: the same examples, carried by
other batches in another interleaving of partitions, train the same versions (issue 24, reproducible scores).

Driven as the worker drives it (agents/churn_trainer.py's TrainerProcess, Faust-free), against a real Redis for
what it publishes."""
from __future__ import annotations

import random
import uuid

import numpy as np
import orjson

from agents.churn_trainer import TrainerProcess
from online_models.churn_features import FEATURES
from online_models.churn_model import ChurnTrainer
from streams.config import Settings
from streams.redis_store import RedisStore

DAY_MS = 86_400_000
STEP_MS = 7 * DAY_MS
PARTITIONS = 3


def history(seed: int = 5, customers: int = 240, days: int = 120) -> dict[int, list[dict]]:
    """Per partition, the examples of its customers with the event time each is closed at: an order closes
    its example at once (before the window ends), silence closes it at the window's end."""
    rng = random.Random(seed)
    by_partition: dict[int, list[dict]] = {p: [] for p in range(PARTITIONS)}
    for number in range(customers):
        first = rng.randrange(0, 30) * DAY_MS
        loyalty = rng.random()
        for checkpoint in range(first, days * DAY_MS - STEP_MS, STEP_MS):
            features = [rng.gauss(0, 1) for _ in FEATURES]
            features[0] = loyalty * 3
            purchased = rng.random() < 0.1 + 0.6 * loyalty
            closed_at = checkpoint + (rng.randrange(1, 7) * DAY_MS if purchased else STEP_MS)
            by_partition[number % PARTITIONS].append({
                "example_id": f"c{number}:{checkpoint}", "checkpoint_ms": checkpoint, "features": features,
                "purchased": purchased, "weight": 1, "closed_ms": closed_at})
    return by_partition


def messages(by_partition: dict[int, list[dict]], seed: int, days: int = 120) -> list[bytes]:
    """What the workers send: per batch, the examples a partition closed since its last batch, then its
    progress. Batches of random event-time length, partitions interleaved in a random order."""
    rng = random.Random(seed)
    clocks = {p: 0 for p in range(PARTITIONS)}
    sent: list[bytes] = []
    while min(clocks.values()) < days * DAY_MS:
        partition = rng.choice([p for p, clock in clocks.items() if clock < days * DAY_MS])
        until = clocks[partition] + rng.randrange(1, 72) * 3_600_000
        batch = [e for e in by_partition[partition] if clocks[partition] <= e["closed_ms"] < until]
        for start in range(0, len(batch), 50):
            sent.append(orjson.dumps({"examples": batch[start:start + 50]}))
        sent.append(orjson.dumps({"progress": {str(partition): until}}))
        clocks[partition] = until
    return sent


def settings() -> Settings:
    tag = uuid.uuid4().hex[:8]
    return Settings.from_env({}, redis_prefix=f"t{tag}:", partitions=PARTITIONS, churn_min_examples=300,
                             churn_version_days=7, churn_label_steps=1)


def train(redis_async, sent: list[bytes], **overrides) -> TrainerProcess:
    chosen = settings().with_(**overrides)
    trainer = TrainerProcess(RedisStore(redis_async, chosen.redis_prefix), chosen)
    trainer.learn_batch(list(enumerate(sent)))
    return trainer


def model_of(snapshot: dict) -> dict:
    """What scores with a version (not when it was made)."""
    return {key: snapshot[key] for key in ("served", "model", "feature_means", "population", "trained_until_ms")}


def numbers(node) -> list[float]:
    if isinstance(node, dict):
        return [x for key in sorted(node) for x in numbers(node[key])]
    if isinstance(node, list):
        return [x for item in node for x in numbers(item)]
    return [float(node)] if isinstance(node, (int, float)) and not isinstance(node, bool) else []


async def test_other_batches_and_interleavings_train_the_same_versions(redis_async):
    by_partition = history()
    first, second = messages(by_partition, seed=1), messages(by_partition, seed=2)
    assert first != second  # other batches, in another order

    a, b = train(redis_async, first), train(redis_async, second)
    assert len(a.unpublished) >= 8
    assert [s["trained_until_ms"] for s in a.unpublished] == [s["trained_until_ms"] for s in b.unpublished]
    assert all(s["trained_until_ms"] % (7 * DAY_MS) == 0 for s in a.unpublished)
    largest = max(float(np.max(np.abs(np.subtract(numbers(model_of(x)), numbers(model_of(y))))))
                  for x, y in zip(a.unpublished, b.unpublished))
    print(f"largest difference between the two runs' versions: {largest}")
    assert [model_of(s) for s in a.unpublished] == [model_of(s) for s in b.unpublished]
    assert a.order.late == b.order.late == 0
    # Each version learned exactly the examples decided by its boundary.
    examples = [e for partition in by_partition.values() for e in partition]
    for snapshot in a.unpublished:
        decided = sum(e["closed_ms"] <= snapshot["trained_until_ms"] for e in examples)
        assert snapshot["metrics"]["examples"] == decided

    # The check has teeth: learning in arrival order, the two runs' models differ.
    def arrival_order(sent: list[bytes]) -> dict:
        trainer = ChurnTrainer()
        for value in sent:
            for e in orjson.loads(value).get("examples", []):
                trainer.learn(dict(zip(FEATURES, e["features"])), e["purchased"], 1, e["example_id"].split(":")[0],
                              e["checkpoint_ms"])
        return trainer.snapshot(1, 0)["model"]
    assert arrival_order(first) != arrival_order(second)


async def test_the_frontier_waits_for_every_partition_and_publishes_in_order(redis_async, redis_client):
    by_partition = history(customers=90, days=60)
    sent = messages(by_partition, seed=3, days=60)
    silent = [m for m in sent if orjson.loads(m).get("progress", {}).keys() != {"2"}]  # partition 2 never reports
    trainer = train(redis_async, silent)
    assert trainer.unpublished == [] and trainer.trainer.examples == 0  # held: partition 2 may still send some
    assert trainer.report()["held"] > 0 and trainer.report()["frontier_ms"] is None

    trainer = train(redis_async, sent)
    trainer.owns_topic = True
    cut = [s["version"] for s in trainer.unpublished]
    await trainer.after_batch()
    prefix = trainer.store.prefix
    served = orjson.loads(redis_client.get(prefix + "model:{churn}:latest"))
    report = orjson.loads(redis_client.get(prefix + "model:{churn}:metrics"))
    assert served["version"] == cut[-1] == report["version"] and trainer.unpublished == []
    assert report["trained_until_ms"] == served["trained_until_ms"]
    progress = orjson.loads(redis_client.get(prefix + "model:{churn}:progress"))
    assert progress["learned"] + progress["held"] == sum(len(p) for p in by_partition.values())
    assert progress["learned"] >= report["learned"] and progress["frontier_ms"] >= 60 * DAY_MS


async def test_a_frontier_stopping_on_a_boundary_cuts_the_version_one_jumping_past_it_does(redis_async):
    by_partition = history(customers=60, days=60)
    examples = [orjson.dumps({"examples": [e for e in p if e["closed_ms"] < 60 * DAY_MS]})
                for p in by_partition.values()]

    def progress(ms: int) -> bytes:
        return orjson.dumps({"progress": {str(p): ms for p in range(PARTITIONS)}})
    sent = [progress(20 * DAY_MS), progress(21 * DAY_MS), progress(60 * DAY_MS)]  # stops on 21 days, then jumps
    stepwise = train(redis_async, examples + sent, churn_min_examples=10)
    at_once = train(redis_async, examples + [progress(60 * DAY_MS)], churn_min_examples=10)
    assert [model_of(s) for s in stepwise.unpublished] == [model_of(s) for s in at_once.unpublished]
    assert 21 * DAY_MS in [s["trained_until_ms"] for s in at_once.unpublished]
