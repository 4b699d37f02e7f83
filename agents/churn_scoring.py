"""Churn stage of the partition batch: close and open hazard examples, score, wake silent customers.

Per batch: orders close the open examples they decide (before the order is
folded) and open their own; customers due on the event-time wheel
(``crm:wheel:{partition}``: customer -> next wake-up, event time) have their
examples closed without an order as the partition's purchases watermark passes
them, and are re-scored so a silent customer's risk rises without any event.
Every touched customer is scored with the newest model snapshot (one model
evaluation for the whole batch). Closed examples and big score moves leave as
derived events, sent before the commit with deterministic keys.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import orjson

from agents.snapshots import SnapshotView
from online_models import churn_tracking
from online_models.churn_model import HazardScorer, scorer_from_snapshot
from online_models.customer_state import CustomerState
from online_models.hazard import Example
from streams.config import Settings
from streams.redis_store import RedisStore

__all__ = ["MODEL_KEY", "model_view", "WheelClock", "ChurnStage", "example_message"]

#: Redis key (under the prefix) of the newest churn model snapshot (JSON).
MODEL_KEY = "model:churn:latest"


def model_view(store: RedisStore) -> SnapshotView[HazardScorer]:
    """The newest churn snapshot as a scorer (None: the prior), re-read at most once a second."""
    return SnapshotView(store, MODEL_KEY, scorer_from_snapshot, "churn model")


class WheelClock:
    """Each partition's purchases watermark (newest purchase event time minus the allowed lateness) and
    the customers it has made due. Only purchases move it: an example may close without an order only
    once no order before its end can still arrive, whatever the other topics are doing.

    It also knows each partition's *score progress*: the event time before which the partition will send
    no more score changes (wake-ups up to the purchases watermark are done, and on-time events are newer
    than their topic's newest minus the lateness). Aggregate alerts judge a bucket once every partition's
    progress has passed it (agents/alert_detector.py)."""

    _SCORING_TOPICS = ("purchases", "interactions")

    def __init__(self, store: RedisStore, settings: Settings, limit: int = 2000) -> None:
        self.store, self.settings, self.limit = store, settings, limit
        self.newest_ms: dict[tuple[str, int], int] = {}     # (topic, partition) -> newest event time
        self._batch_newest: dict[tuple[str, int], int] = {}  # of the batch being processed, kept once it commits
        self._wheel_bound: dict[int, int] = {}  # partition -> wake-ups at or before this were all replayed

    async def due(self, accepted) -> dict[str, tuple[int, int]]:
        """customer -> (partition, watermark) for the wheel entries due in this batch's partitions."""
        partitions = {message.partition for message, _, _ in accepted}
        unknown = [(topic, p) for p in partitions for topic in self._SCORING_TOPICS if (topic, p) not in self.newest_ms]
        if unknown:
            stored = await self.store.client.hmget(
                self.store.prefix + "watermark", [f"{self.settings.topic(topic)}:{p}" for topic, p in unknown])
            for key, value in zip(unknown, stored):
                self.newest_ms[key] = -1 if value is None else int(value)
        batch: dict[tuple[str, int], int] = {}
        for message, event, _ in accepted:
            if message.contract in self._SCORING_TOPICS:
                key = (message.contract, message.partition)
                batch[key] = max(batch.get(key, event.ts_ms), event.ts_ms)
        self._batch_newest = batch
        newest = {key: max(self.newest_ms[key], batch.get(key, -1)) for key in self.newest_ms}
        watermarks = {partition: purchases - self.settings.lateness_ms for partition in partitions
                      if (purchases := newest.get(("purchases", partition), -1)) >= 0}
        self._wheel_bound = dict(watermarks)
        if not watermarks:
            return {}
        due_by_partition = await self.store.due_customers(watermarks, self.limit)
        for partition, customers in due_by_partition.items():
            if len(customers) == self.limit:  # the rest of the due wake-ups waits for the next batch
                last_wake = await self.store.client.zscore(f"{self.store.prefix}wheel:{partition}", customers[-1])
                self._wheel_bound[partition] = min(watermarks[partition], int(last_wake))
        return {customer_id: (partition, watermarks[partition])
                for partition, customers in due_by_partition.items() for customer_id in customers}

    def score_progress(self, scheduled: dict[str, tuple[int, int | None]]) -> dict[int, int]:
        """Per partition of the batch :meth:`due` saw: the event time before which no further score change
        will come from it once the batch commits. ``scheduled``: the wheel entries the batch writes (a
        customer scored early in a catch-up batch may be due again before its end, next batch)."""
        progress = {}
        for partition, wheel_bound in self._wheel_bound.items():
            interactions = max(self.newest_ms.get(("interactions", partition), -1),
                               self._batch_newest.get(("interactions", partition), -1))
            on_time = wheel_bound if interactions < 0 else min(wheel_bound, interactions - self.settings.lateness_ms)
            progress[partition] = on_time
        for partition, wake_ms in scheduled.values():
            if wake_ms is not None and partition in progress:
                progress[partition] = min(progress[partition], wake_ms)
        return progress

    def follow(self) -> None:
        """Remember the newest event times of the batch :meth:`due` saw, now that it has been committed."""
        for key, newest in self._batch_newest.items():
            self.newest_ms[key] = max(self.newest_ms.get(key, -1), newest)


@dataclass
class ChurnStage:
    """What the churn stage decided in one batch."""

    settings: Settings
    examples: list[tuple[str, Example]] = field(default_factory=list)
    score_changes: list[dict] = field(default_factory=list)
    wheel: dict[str, tuple[int, int | None]] = field(default_factory=dict)  # customer -> (partition, wake)
    _opens: dict[str, bool] = field(default_factory=dict)
    _as_of: dict[str, tuple[CustomerState, set[int], int]] = field(default_factory=dict)  # to score

    def __post_init__(self) -> None:
        self.churn = self.settings.churn_settings()

    def before_order(self, customer_id: str, state: CustomerState, ts_ms: int) -> None:
        closed, self._opens[customer_id] = churn_tracking.on_order(state, ts_ms, self.churn)
        self.examples += [(customer_id, example) for example in closed]

    def after_order(self, customer_id: str, state: CustomerState, ts_ms: int) -> None:
        churn_tracking.after_order(state, ts_ms, self._opens.pop(customer_id), self.churn)

    def wake(self, customer_id: str, state: CustomerState, partition: int, watermark_ms: int) -> None:
        """A customer due on the wheel: replay its wake-ups up to the watermark in event time (close the
        examples each decides, note a score at each), so a backfill emits the same examples and score
        changes as live traffic whatever the batch boundaries. Wake-ups before the customer's newest
        event (applied in this batch) are not scored: that event's own score supersedes them."""
        times = self._as_of.setdefault(customer_id, (state, set(), partition))[1]
        last_activity = max(state.purchases.last_order_ms or 0, state.activity.last_seen_ms or 0)
        wake = churn_tracking.next_wake_ms(state, self.churn)
        while wake is not None and wake <= watermark_ms:
            self.examples += [(customer_id, e) for e in churn_tracking.on_clock(state, wake, self.churn)]
            if wake >= last_activity:
                times.add(wake)
            following = churn_tracking.next_wake_ms(state, self.churn, scored_ms=wake)
            wake = following if following is not None and following > wake else None
        self.wheel[customer_id] = (partition, wake)

    def touched(self, customer_id: str, state: CustomerState, partition: int) -> None:
        """A customer with events in this batch: score as of the newest."""
        self._as_of.setdefault(customer_id, (state, set(), partition))[1].add(state.activity.last_seen_ms)

    def score_all(self, scorer: HazardScorer | None) -> None:
        """Score every noted (customer, as-of time) with one model evaluation, in event-time order per
        customer; note wheel entries and changes. A change is measured against the last score reported
        (kept in the score), so a slow climb through daily re-scores is reported once it adds up."""
        ids = list(self._as_of)
        before = {cid: self._as_of[cid][0].churn_score for cid in ids}
        scores = churn_tracking.score_many([(state, sorted(times)) for state, times, _ in self._as_of.values()],
                                           scorer, self.churn)
        threshold = self.settings.churn_change_threshold
        for cid, customer_scores in zip(ids, scores):
            state, _, partition = self._as_of[cid]
            self.wheel[cid] = (partition, churn_tracking.next_wake_ms(state, self.churn))
            reported = before[cid] and before[cid].get("reported")  # the last score sent as a change
            for new in customer_scores:
                if (reported is None or reported["band"] != new["band"]
                        or abs(new["churn_p"] - reported["churn_p"]) > threshold):
                    self.score_changes.append({
                        "customer_id": cid, "partition": partition, "as_of_ms": new["as_of_ms"], "churn_p": new["churn_p"],
                        "band": new["band"], "previous_churn_p": None if reported is None else reported["churn_p"],
                        "previous_band": None if reported is None else reported["band"],
                        "model_version": new["version"], "top_features": new["top_features"]})
                    reported = {"churn_p": new["churn_p"], "band": new["band"]}
                new["reported"] = reported
        self._as_of.clear()


def example_message(customer_id: str, example: Example) -> tuple[bytes, bytes]:
    """Key (the example's id: customer and checkpoint, so a re-sent example is recognised) and value."""
    example_id = f"{customer_id}:{example.checkpoint_ms}"
    return example_id.encode(), orjson.dumps({
        "example_id": example_id, "checkpoint_ms": example.checkpoint_ms, "features": example.features,
        "purchased": example.purchased})
