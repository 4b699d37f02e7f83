"""Redis goes away mid-stream and comes back: the worker waits and retries; nothing is lost or doubled."""
from __future__ import annotations

import time

import orjson
import redis

from streams.keyspace import summed
from streams.embedded import EmbeddedRedis
from tests.events_factory import interaction
from tests.stack import WorkerProcess, prepare_topics, produce, read_state, suite_settings, wait_until


def test_worker_survives_a_redis_restart_without_losing_events(broker, output_dir):
    logs = output_dir / "logs"
    server = EmbeddedRedis(logs).start()
    settings = suite_settings(broker.bootstrap, server.url)
    prepare_topics(settings)
    client = redis.Redis.from_url(server.url, decode_responses=True)
    worker = WorkerProcess(settings, logs / f"worker-{settings.app_id}.log").start()

    def stats() -> dict[str, int]:
        return summed(client, settings.key_space(), "stats:ingest")
    try:
        worker.wait_owning(client, settings.partitions)
        first = [interaction(f"c{i % 50}") for i in range(500)]
        produce(broker.bootstrap, [(settings.topic("interactions"), e["customer_id"].encode(), orjson.dumps(e))
                                   for e in first])
        wait_until(lambda: stats().get("accepted:interactions") == 500, 30, "first wave not applied")

        client.shutdown(save=True)  # Redis is gone (its data saved, as AOF/RDB would in production)
        server.process.wait(10)
        second = [interaction(f"c{i % 50}") for i in range(500)]
        produce(broker.bootstrap, [(settings.topic("interactions"), e["customer_id"].encode(), orjson.dumps(e))
                                   for e in second])
        time.sleep(3)  # the worker meets the outage and retries
        assert worker.process.poll() is None, "worker died with Redis"

        server = EmbeddedRedis(logs, port=server.port).start()
        client = redis.Redis.from_url(server.url, decode_responses=True)
        wait_until(lambda: stats().get("accepted:interactions") == 1000, 60,
                   "events produced during the outage were not applied")
        time.sleep(1)
        assert stats().get("accepted:interactions") == 1000
        assert "duplicates" not in stats()
        assert all(read_state(client, settings, f"c{i}").activity.events["interactions"] == 20 for i in range(50))
    finally:
        worker.stop()
        server.stop()
