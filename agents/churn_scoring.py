"""Churn stage of the partition batch: close and open hazard examples, score, wake silent customers.

Per batch: orders close the open examples they decide (before the order is
folded) and open their own; customers due on the event-time wheel
(``crm:wheel:{partition}``: customer -> next wake-up, event time) have their
examples closed without an order as the partition's purchases watermark passes
them, and their report ticks scored, so a silent customer's risk rises without
any event. Customers with events get a fresh score as of their newest (one model
evaluation for the whole batch). Closed examples and score changes (decided at
the report ticks) leave as derived events, sent before the commit with
deterministic keys.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping

import orjson

from agents.metrics import CHURN_SCORINGS
from agents.snapshots import SnapshotView
from online_models import churn_tracking
from online_models.churn_model import HazardScorer, scorer_from_snapshot
from online_models.customer_state import CustomerState
from online_models.hazard import Example, band_of
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
        self.tick_bounds: dict[int, int] = {}   # partition -> report ticks up to this are decided in this batch

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
        self.tick_bounds = {partition: min(watermark, interactions - self.settings.lateness_ms)
                            if (interactions := newest.get(("interactions", partition), -1)) >= 0 else watermark
                            for partition, watermark in watermarks.items()}
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
            progress[partition] = min(wheel_bound, self.tick_bounds.get(partition, wheel_bound))
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
    """What the churn stage decided in one batch.

    Two kinds of scores. *Report ticks* (a fixed event-time grid per customer, daily or twice daily:
    :func:`~online_models.churn_tracking.next_tick_ms`) decide the ``score-changes``: each tick is scored
    with the customer's state as of the tick, before any later event is applied, and a silent customer's
    risk never falls between ticks under one model; so a replay reports what the live run reported, whatever
    the batches. *Fresh scores* at a customer's newest event keep the stored score (what support sees)
    current between ticks; they report nothing.
    """

    settings: Settings
    scorer: HazardScorer | None = None
    describe: Callable[[str, CustomerState, int], dict] | None = None  # enrichment of a change, as of its tick
    examples: list[tuple[str, Example]] = field(default_factory=list)
    score_changes: list[dict] = field(default_factory=list)
    wheel: dict[str, tuple[int, int | None]] = field(default_factory=dict)  # customer -> (partition, wake)
    _opens: dict[str, bool] = field(default_factory=dict)
    _seen: dict[str, tuple[CustomerState, int, bool]] = field(default_factory=dict)  # state, partition, touched
    _pending: list[tuple] = field(default_factory=list)  # ticks to score: customer, partition, state, as of, ticks
    _ticked: dict[str, int] = field(default_factory=dict)  # customer -> newest tick noted in this batch
    tick_scores: dict[tuple[str, int], float] = field(default_factory=dict)  # (customer, tick) -> churn_p

    def __post_init__(self) -> None:
        self.churn = self.settings.churn_settings()

    def before_order(self, customer_id: str, state: CustomerState, ts_ms: int) -> None:
        closed, self._opens[customer_id] = churn_tracking.on_order(state, ts_ms, self.churn)
        self.examples += [(customer_id, example) for example in closed]

    def after_order(self, customer_id: str, state: CustomerState, ts_ms: int) -> None:
        churn_tracking.after_order(state, ts_ms, self._opens.pop(customer_id), self.churn)

    def before_event(self, customer_id: str, state: CustomerState, ts_ms: int, partition: int) -> None:
        """An event at ``ts_ms`` is about to be applied: report the ticks the customer passed before it."""
        self._report_ticks(customer_id, state, partition, ts_ms - 1)
        self._seen[customer_id] = (state, partition, True)

    def forget(self, customer_id: str) -> None:
        """An erased customer: nothing of the old state is scored or scheduled."""
        self._seen.pop(customer_id, None)
        self.wheel.pop(customer_id, None)
        self._ticked.pop(customer_id, None)
        self._pending = [p for p in self._pending if p[0] != customer_id]

    def wake(self, customer_id: str, state: CustomerState, partition: int, watermark_ms: int,
             tick_until_ms: int | None = None) -> None:
        """A customer due on the wheel: close the examples the purchases watermark decides, report the ticks
        up to ``tick_until_ms`` (the watermark of every topic that changes a score; default: the purchases')."""
        self.examples += [(customer_id, e) for e in churn_tracking.on_clock(state, watermark_ms, self.churn)]
        self._report_ticks(customer_id, state, partition, watermark_ms if tick_until_ms is None else tick_until_ms)
        touched = self._seen.get(customer_id, (None, None, False))[2]
        self._seen[customer_id] = (state, partition, touched)

    def finish(self, tick_bounds: Mapping[int, int]) -> None:
        """End of the batch: ticks up to each partition's bound for the customers with events (their newest
        event is older); every tick of the batch scored in one model evaluation and reported in order; fresh
        scores as of the newest event (one more evaluation); wheel entries."""
        for customer_id, (state, partition, touched) in self._seen.items():
            if touched and partition in tick_bounds:
                self._report_ticks(customer_id, state, partition, tick_bounds[partition])
        self._score_ticks()
        fresh = [state for state, _, touched in self._seen.values() if touched]
        CHURN_SCORINGS.labels("event").inc(sum(state.purchases.orders > 0 for state in fresh))
        reported = [(state.churn_score or {}).get("reported") for state in fresh]
        churn_tracking.score_many([(state, [state.activity.last_seen_ms]) for state in fresh], self.scorer,
                                  self.churn)
        for state, kept in zip(fresh, reported):
            if state.churn_score is not None:
                state.churn_score["reported"] = kept
        for customer_id, (state, partition, _) in self._seen.items():
            self.wheel[customer_id] = (partition, churn_tracking.next_wake_ms(
                state, self.churn, self.last_tick(customer_id, state), churn_tracking.tick_phase_ms(customer_id)))
        self._seen.clear()
        self._ticked.clear()

    def last_tick(self, customer_id: str, state: CustomerState) -> int:
        """The customer's newest report tick so far (noted in this batch, or reported before it)."""
        if customer_id in self._ticked:
            return self._ticked[customer_id]
        reported = (state.churn_score or {}).get("reported") or {}
        first = state.purchases.first_order_ms
        return reported.get("tick_ms", first if first is not None else 0)

    def _report_ticks(self, customer_id: str, state: CustomerState, partition: int, until_ms: int) -> None:
        """Note the customer's ticks up to ``until_ms`` with a copy of its state as it is now (as of them):
        they are scored together at the end of the batch, after later events changed the state."""
        if state.purchases.orders == 0:
            return
        phase = churn_tracking.tick_phase_ms(customer_id)
        ticks, tick = [], churn_tracking.next_tick_ms(state, self.churn, self.last_tick(customer_id, state), phase)
        while tick is not None and tick <= until_ms:
            ticks.append(tick)
            tick = churn_tracking.next_tick_ms(state, self.churn, tick, phase)
        if ticks:
            as_of_ticks = CustomerState.from_dict(state.to_dict())
            as_of_ticks.churn_score = None  # raw scores: the monotone rule of _score_ticks uses ticks only
            self._pending.append((customer_id, partition, state, as_of_ticks, ticks))
            self._ticked[customer_id] = ticks[-1]

    def _score_ticks(self) -> None:
        """Score every noted tick in one model evaluation; report, per customer in tick order, those that moved
        the band or more than the threshold since the last report."""
        pending, self._pending = self._pending, []
        CHURN_SCORINGS.labels("tick").inc(sum(len(ticks) for *_, ticks in pending))
        scored = churn_tracking.score_many([(as_of, ticks) for _, _, _, as_of, ticks in pending], self.scorer,
                                           self.churn)
        threshold = self.settings.churn_change_threshold
        for (customer_id, partition, state, as_of, _), scores in zip(pending, scored):
            stored = state.churn_score
            reported = (stored or {}).get("reported")
            last_seen = as_of.activity.last_seen_ms or 0
            for new in scores:
                previous = (reported or {}).get("tick")
                if previous and previous["version"] == new["version"] and last_seen <= previous["as_of_ms"]:
                    new["churn_p"] = max(new["churn_p"], previous["churn_p"])  # silent since: risk does not fall
                    new["band"] = band_of(new["churn_p"])
                last = reported and reported.get("churn_p") is not None
                if not last or reported["band"] != new["band"] or abs(new["churn_p"] - reported["churn_p"]) > threshold:
                    change = {"customer_id": customer_id, "partition": partition, "as_of_ms": new["as_of_ms"],
                              "churn_p": new["churn_p"], "band": new["band"],
                              "previous_churn_p": reported["churn_p"] if last else None,
                              "previous_band": reported["band"] if last else None,
                              "model_version": new["version"], "top_features": new["top_features"]}
                    if self.describe is not None:
                        change |= self.describe(customer_id, as_of, new["as_of_ms"])
                    self.score_changes.append(change)
                    reported = {"churn_p": new["churn_p"], "band": new["band"]}
                self.tick_scores[customer_id, new["as_of_ms"]] = new["churn_p"]
                reported = {**(reported or {}), "tick_ms": new["as_of_ms"],
                            "tick": {"churn_p": new["churn_p"], "version": new["version"], "as_of_ms": new["as_of_ms"]}}
            newest = scores[-1]
            if stored is not None and stored["as_of_ms"] > newest["as_of_ms"]:
                newest = stored  # the stored score is newer than the ticks (an event's fresh score)
            state.churn_score = {**newest, "reported": reported}


def example_message(customer_id: str, example: Example) -> tuple[bytes, bytes]:
    """Key (the example's id: customer and checkpoint, so a re-sent example is recognised) and value."""
    example_id = f"{customer_id}:{example.checkpoint_ms}"
    return example_id.encode(), orjson.dumps({
        "example_id": example_id, "checkpoint_ms": example.checkpoint_ms, "features": example.features,
        "purchased": example.purchased})
