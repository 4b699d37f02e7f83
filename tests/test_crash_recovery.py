"""SIGKILL the worker mid-stream, repeatedly: the final Redis state must equal a pandas recount."""
from __future__ import annotations

import pandas as pd
import orjson

from streams.simulator import SimulationConfig, simulate
from tests.stack import WorkerProcess, prepare_topics, produce, wait_until


def accepted_total(client, settings) -> int:
    stats = client.hgetall(settings.redis_prefix + "stats:ingest")
    return sum(int(v) for k, v in stats.items() if k.startswith("accepted:"))


def test_sigkill_during_stream_loses_and_doubles_nothing(settings, redis_client, broker, output_dir):
    settings = settings.with_(batch_size=200)
    prepare_topics(settings)
    simulation = simulate(SimulationConfig(customers=400, days=240, seed=11))
    events = simulation.events
    produce(broker.bootstrap, [(settings.topic(topic), e["customer_id"].encode(), orjson.dumps(e))
                               for topic, e in events])
    log = output_dir / "logs" / f"worker-{settings.app_id}.log"

    kills = 0
    for fraction in (0.2, 0.45, 0.7):
        worker = WorkerProcess(settings, log).start()
        wait_until(lambda: accepted_total(redis_client, settings) >= fraction * len(events), 120,
                   "worker made no progress", interval_s=0.02, process=worker.process)
        worker.kill()
        kills += 1
    assert accepted_total(redis_client, settings) < len(events), "the kills all came after the stream ended"

    worker = WorkerProcess(settings, log).start()
    try:
        wait_until(lambda: accepted_total(redis_client, settings) >= len(events), 120, "stream not finished")
    finally:
        worker.stop()

    frame = pd.DataFrame([{"customer_id": e["customer_id"], "topic": t, "ts": e["ts"]} for t, e in events])
    expected = frame.groupby("customer_id").agg(first_seen_ms=("ts", "min"), last_seen_ms=("ts", "max"))
    counts = frame.pivot_table(index="customer_id", columns="topic", values="ts", aggfunc="count", fill_value=0)
    stats = redis_client.hgetall(settings.redis_prefix + "stats:ingest")
    assert kills == 3
    assert int(stats["customers"]) == len(expected)
    assert {k: int(v) for k, v in stats.items() if k.startswith("accepted:")} == \
        {f"accepted:{topic}": int(n) for topic, n in frame["topic"].value_counts().items()}
    assert "duplicates" not in stats  # redelivered messages are skipped by offset, not mistaken for duplicates
    for customer_id, row in expected.iterrows():
        stored = redis_client.hgetall(f"{settings.redis_prefix}c:{{{customer_id}}}")
        assert int(stored["first_seen_ms"]) == row.first_seen_ms
        assert int(stored["last_seen_ms"]) == row.last_seen_ms
        for topic in counts.columns:
            assert int(stored.get(f"events_{topic}", 0)) == counts.loc[customer_id, topic], (customer_id, topic)
