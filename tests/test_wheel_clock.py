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

HOUR_MS = 3_600_000


def accepted(topic: str, partition: int, ts_ms: int) -> tuple:
    return SourceMessage(f"crm.{topic}", topic, partition, 0, None, None), SimpleNamespace(ts_ms=ts_ms), None


@pytest.mark.parametrize("lag_days, decided_until_ms", [(7.0, 19 * DAY_MS), (0.0, 19 * DAY_MS + 5 * HOUR_MS)])
async def test_ticks_and_score_progress_wait_for_the_interactions_still_on_time(redis_server, lag_days,
                                                                               decided_until_ms):
    """Interactions read days behind the purchases (the aligner does not wait for a topic read to its end): an
    interaction of day 19 is still on time, and applied to a customer whose quiet ticks were skipped it
    re-decides those after it, so no tick after it is decided yet and the detector is told nothing past it.
    By event time (a score lag) the clocks are floored to the version grid, so that every batch of a period
    decides the same ticks."""
    store = RedisStore.from_url(redis_server.url, f"w{uuid.uuid4().hex[:8]}:")
    settings = Settings.from_env({}, lateness_ms=DAY_MS, churn_score_lag_days=lag_days)
    clock = WheelClock(store, settings)
    due = await clock.due([accepted("purchases", 0, 30 * DAY_MS + HOUR_MS),
                           accepted("interactions", 0, 20 * DAY_MS + 5 * HOUR_MS)], {0, 1})
    assert due == {}
    wake_ups_until = 29 * DAY_MS if lag_days else 29 * DAY_MS + HOUR_MS  # the purchases watermark
    assert clock.purchase_watermarks == {0: wake_ups_until, 1: wake_ups_until}
    assert clock.tick_bounds == {0: decided_until_ms, 1: decided_until_ms}
    assert clock.score_progress({}) == {0: decided_until_ms, 1: decided_until_ms}
    assert clock.score_progress({"c1": (1, 12 * DAY_MS)}) == {0: decided_until_ms, 1: 12 * DAY_MS}  # a wake it wrote
    await store.close()
