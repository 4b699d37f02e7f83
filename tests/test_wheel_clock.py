"""The worker's purchases clock against a real redis-server: which ticks a batch decides, and what it lets the
alert detector judge."""
from __future__ import annotations

import uuid
from types import SimpleNamespace

import pytest

from agents.churn_scoring import WheelClock
from agents.ingest import SourceMessage
from online_models.purchase_history import DAY_MS
from streams.config import Settings
from streams.redis_store import RedisStore


def accepted(topic: str, partition: int, ts_ms: int) -> tuple:
    return SourceMessage(f"crm.{topic}", topic, partition, 0, None, None), SimpleNamespace(ts_ms=ts_ms), None


@pytest.mark.parametrize("lag_days, decided_until_day", [(7.0, 29), (0.0, 19)])
async def test_score_progress_waits_for_the_interactions_still_on_time(redis_server, lag_days, decided_until_day):
    """Interactions read days behind the purchases (the aligner does not wait for a topic read to its end):
    by event time, ticks are decided up to the purchases watermark (batching-independent); the newest version
    waits for both. Either way no score change can come before the progress sent: an interaction of day 19 is
    still on time, and applied to a customer whose quiet ticks were skipped it re-decides those after it."""
    store = RedisStore.from_url(redis_server.url, f"w{uuid.uuid4().hex[:8]}:")
    settings = Settings.from_env({}, lateness_ms=DAY_MS, churn_score_lag_days=lag_days)
    clock = WheelClock(store, settings)
    await clock.due([accepted("purchases", 0, 30 * DAY_MS + 3_600_000), accepted("interactions", 0, 20 * DAY_MS)],
                    {0, 1})
    assert clock.tick_bounds == {0: decided_until_day * DAY_MS, 1: decided_until_day * DAY_MS}
    assert clock.score_progress({}) == {0: 19 * DAY_MS, 1: 19 * DAY_MS}
    assert clock.score_progress({"c1": (1, 12 * DAY_MS)}) == {0: 19 * DAY_MS, 1: 12 * DAY_MS}  # a wake-up it wrote
    await store.close()
