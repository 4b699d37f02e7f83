"""Dropping KPI buckets that fell out of retention (a worker chore, idempotent across workers)."""
from __future__ import annotations

import logging
import time

from online_models.kpis import bucket_days, bucket_first_day, bucket_of, day_of
from streams.config import Settings
from streams.redis_store import RedisStore

__all__ = ["KpiRetention"]

logger = logging.getLogger(__name__)


def bucket_last_day(name: str) -> str:
    """Last day (ISO date) of a ``kpi:{granularity}:{label}`` bucket, comparable as text.

    >>> bucket_last_day("kpi:week:2024-02-26"), bucket_last_day("kpi:month:2024-02")
    ('2024-03-03', '2024-02-29')
    """
    _, granularity, label = name.split(":", 2)
    if granularity == "day":
        return label
    _, _, last = bucket_days(granularity, bucket_first_day(granularity, label))
    return bucket_of("day", last)


class KpiRetention:
    def __init__(self, store: RedisStore, settings: Settings) -> None:
        self.store = store
        self.retention_days = settings.kpi_retention_days
        self.interval_s = settings.kpi_prune_interval_s
        self._pruned_at = time.monotonic()
        self._event_clock_ms = 0

    async def maybe_prune(self, batch_event_ms: int) -> None:
        """Drop buckets older than retention, at most every ``interval_s``; never raises (a chore must not
        hold up, or replay, the batch that triggered it).

        The clock is the newest event time this worker has seen, not the batch's: a batch can hold only a
        topic that lags months behind the others (customer sign-ups during a backfill)."""
        self._event_clock_ms = event_clock_ms = max(self._event_clock_ms, batch_event_ms)
        if not self.retention_days or time.monotonic() - self._pruned_at < self.interval_s:
            return
        self._pruned_at = time.monotonic()
        oldest_kept = bucket_of("day", day_of(event_clock_ms) - self.retention_days)
        try:
            dropped = await self.store.drop_buckets(
                "kpi:*:*", expired=lambda name: bucket_last_day(name) < oldest_kept,
                carrying=lambda name: name.startswith("kpi:day:"))
        except Exception:
            logger.exception("dropping expired KPI buckets failed; will try again")
            return
        if dropped:
            logger.info("dropped %d daily KPI buckets older than %s", dropped, oldest_kept)
