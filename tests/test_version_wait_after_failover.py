"""After a failover the survivor must not wait for a churn version that only its own batches can make final
(against a real redis-server): the check BatchProcessor makes at once and about once a second while it waits."""
from __future__ import annotations

import uuid

from agents.pipeline import BatchProcessor
from online_models.purchase_history import DAY_MS
from streams.config import Settings
from streams.redis_store import RedisStore


async def test_a_version_held_back_by_a_partition_taken_over_behind_the_clock_is_not_waited_for(redis_server):
    settings = Settings.from_env({}, redis_prefix=f"v{uuid.uuid4().hex[:8]}:", partitions=2)
    store = RedisStore.from_url(redis_server.url, settings.redis_prefix, settings.partitions)
    processor = BatchProcessor(store, settings, topics={})
    purchases = settings.topic("purchases")
    store.fence_tokens = {f"{purchases}:0": 1, f"{purchases}:1": 1}  # both owned: partition 1 just taken over
    for partition in (0, 1):
        await store.client.hset(store.part(partition) + "watermark", f"{purchases}:{partition}", 100 * DAY_MS)
    await store.client.zadd(store.wheel_key(0), {"caught-up": 101 * DAY_MS})
    await store.client.zadd(store.wheel_key(1), {"left-behind": 80 * DAY_MS})  # its dead owner's clock
    target_ms = 92 * DAY_MS  # the clock less the 7-day score lag, floored to the version grid

    async def held_back() -> bool:
        return processor._own_partitions_hold_back(target_ms, await processor.wheel.standing_progress({0, 1}))

    try:
        assert await held_back()  # only this worker can move partition 1
        assert not await processor._nudge(target_ms)  # so a wait for it ends at once
        processor._example_progress_sent[1] = 93 * DAY_MS  # reported by its own batch: the trainer will follow
        assert not await held_back()
        del processor._example_progress_sent[1]
        await store.client.zadd(store.wheel_key(1), {"left-behind": 101 * DAY_MS})  # its wake-ups replayed
        assert not await held_back()
    finally:
        await store.close()
