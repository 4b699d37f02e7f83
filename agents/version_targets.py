"""Which churn model version scores each record of a batch: a point of the stream, not of the wall clock.

Why: a worker that scores with the newest version it has read makes scores depend on when, in wall-clock
time, the trainer published (the same history replayed twice: every buyer's stored ``churn_p`` differed, by up
to 0.68; docs/churn.md). Here a record is scored with the version trained until its *target*: the worker's
purchases clock (the newest purchase event time of its partitions, the clock that wakes silent customers,
agents/churn_scoring.py ``WheelClock``) floored to the version grid, less the score lag, floored again. The clock
depends only on the records in the order the worker applies them (event-time aligned across its partitions,
agents/alignment.py), so every replay, and the live run, picks the same version for the same record.

The target is capped one version period past the clock before the record: after a gap in the history (a shop
closed for a month) the record that ends it is scored with the version of the gap's start. Without the cap it
would need a version trained on the silence examples that only this record closes (the watermark jumps with
it): a batch would wait for itself. With it, the version a record needs is always closed by what the worker has
reported before it, given a lag of at least one period plus the lateness and label delay
(:meth:`streams.config.Settings.churn_score_lag_floor_ms`).

Records before the worker's first purchase need no version (no customer has ordered): None.

>>> DAY = 86_400_000
>>> purchases = [10 * DAY, None, 11 * DAY + 5, 40 * DAY, None, 41 * DAY]
>>> [t // DAY for t in version_targets(purchases, 9 * DAY, DAY, 3 * DAY)]
[7, 7, 8, 9, 37, 38]
>>> version_targets([None, 2 * DAY], -1, DAY, 3 * DAY)
[None, -86400000]
"""
from __future__ import annotations

from typing import Sequence

__all__ = ["version_targets"]


def version_targets(purchases: Sequence[int | None], clock_ms: int, period_ms: int, lag_ms: int) -> list[int | None]:
    """Per record, in the order applied, the event time its scores use the model version trained until.

    ``purchases``: the event time of each record that is a purchase, None for any other; ``clock_ms``: the
    newest purchase event time before them (negative: none yet)."""
    targets: list[int | None] = []
    for purchase_ms in purchases:
        before = clock_ms
        if purchase_ms is not None:
            clock_ms = max(clock_ms, purchase_ms)
        if clock_ms < 0:
            targets.append(None)
            continue
        epoch = clock_ms // period_ms
        if before >= 0:
            epoch = min(epoch, before // period_ms + 1)
        targets.append((epoch * period_ms - lag_ms) // period_ms * period_ms)
    return targets
