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
from typing import Mapping, Sequence

from agents.batch_stage import BatchStage
from agents.chunked import chunked_messages
from agents.metrics import CHURN_SCORED_TIMES, CHURN_SCORINGS
from agents.snapshots import SnapshotView
from online_models import churn_tracking
from online_models.churn_features import engagement_anchor
from online_models.churn_model import HazardScorer, scorer_from_snapshot
from online_models.customer_state import CustomerState
from online_models.hazard import Example
from schemas.events import Event, Purchase
from streams.config import Settings
from streams.redis_store import BatchWrite, RedisStore

__all__ = ["MODEL_KEY", "model_view", "WheelClock", "ChurnStage", "example_messages"]

#: Redis key (under the prefix) of the newest churn model snapshot (JSON).
MODEL_KEY = "model:{churn}:latest"


def model_view(store: RedisStore) -> SnapshotView[HazardScorer]:
    """The newest churn snapshot as a scorer (None: the prior), re-read at most once a second."""
    return SnapshotView(store, MODEL_KEY, scorer_from_snapshot, "churn model")


class WheelClock:
    """The worker's purchases watermark (newest purchase event time over its partitions, minus the allowed
    lateness) and the customers it has made due on each partition's wheel. Only purchases move it: an example
    may close without an order only once no order before its end can still arrive, whatever the other topics are
    doing. One clock for all the worker's partitions, as it applies them in event-time order
    (agents/alignment.py): a partition whose customers are all silent (a sparse shop's history has such days) still
    wakes them, closes their examples and reports its progress, so neither its silent customers nor the churn
    trainer's frontier wait for its next purchase (the trainer's versions are waited for, agents/churn_versions.py).

    It also knows each partition's *score progress*: the event time before which the partition will send
    no more score changes (wake-ups up to the purchases watermark are done, and on-time events are newer
    than their topic's newest minus the lateness). Aggregate alerts judge a bucket once every partition's
    progress has passed it (agents/alert_detector.py)."""

    _SCORING_TOPICS = ("purchases", "interactions")

    def __init__(self, store: RedisStore, settings: Settings, limit: int = 2000) -> None:
        self.store, self.settings, self.limit = store, settings, limit
        # The version grid when scores use the version of their event time (CRM_CHURN_SCORE_LAG_DAYS), else 0.
        self._period_ms = settings.churn_version_period_ms() if settings.churn_score_lag_ms() else 0
        self.newest_ms: dict[tuple[str, int], int] = {}     # (topic, partition) -> newest event time
        self._batch_newest: dict[tuple[str, int], int] = {}  # of the batch being processed, kept once it commits
        self._wheel_bound: dict[int, int] = {}  # partition -> wake-ups at or before this were all replayed
        self.tick_bounds: dict[int, int] = {}   # partition -> report ticks up to this are decided in this batch
        self.purchase_watermarks: dict[int, int] = {}  # partition -> purchases watermark of this batch

    async def due(self, accepted, owned: set[int]) -> dict[str, tuple[int, int]]:
        """customer -> (partition, watermark) for the wheel entries due on the worker's partitions (``owned``,
        and the batch's)."""
        partitions = owned | {message.partition for message, _, _ in accepted}
        await self._load(partitions)
        batch: dict[tuple[str, int], int] = {}
        for message, event, _ in accepted:
            if message.contract in self._SCORING_TOPICS:
                key = (message.contract, message.partition)
                batch[key] = max(batch.get(key, event.ts_ms), event.ts_ms)
        self._batch_newest = batch
        purchases, interactions = (max((max(self.newest_ms[topic, p], batch.get((topic, p), -1)) for p in partitions),
                                       default=-1) for topic in self._SCORING_TOPICS)
        if purchases < 0:
            self.purchase_watermarks, self._wheel_bound, self.tick_bounds = {}, {}, {}
            return {}
        watermark = tick_bound = self._watermark(purchases)
        if interactions >= 0:  # ticks are decided once the interactions before them are in, too
            tick_bound = min(watermark, self._watermark(interactions))
        watermarks = dict.fromkeys(partitions, watermark)
        self.purchase_watermarks = watermarks
        self._wheel_bound = dict(watermarks)
        self.tick_bounds = dict.fromkeys(partitions, tick_bound)
        due_by_partition = await self.store.due_customers(watermarks, self.limit)
        for partition, customers in due_by_partition.items():
            if len(customers) == self.limit:  # the rest of the due wake-ups waits for the next batch
                last_wake = await self.store.client.zscore(self.store.wheel_key(partition), customers[-1])
                self._wheel_bound[partition] = min(watermarks[partition], int(last_wake))
        return {customer_id: (partition, watermarks[partition])
                for partition, customers in due_by_partition.items() for customer_id in customers}

    def _watermark(self, clock_ms: int) -> int:
        """The watermark of a clock (the purchases', the interactions'). With scores by event time it moves a
        version period at a time, so that each of the batches scored with one version
        (agents/version_targets.py) decides the same wake-ups and ticks, however the records were batched.
        Report ticks wait for the interactions' clock too: the aligner does not wait for a topic read to its
        end (agents/alignment.py), so live interactions can come after purchases days newer, and a tick
        decided before them would be scored without them (a replay, aligned, scores it with them)."""
        if self._period_ms:
            clock_ms = clock_ms // self._period_ms * self._period_ms
        return clock_ms - self.settings.lateness_ms

    async def standing_progress(self, partitions: set[int]) -> dict[int, int]:
        """Example progress of ``partitions`` from what is committed (the watermark, less each wheel's earliest
        wake-up): what the last batch reported, or less. Empty before the first purchase."""
        clock = await self.purchases_clock(partitions)
        if clock < 0:
            return {}
        async with self.store.client.pipeline(transaction=False) as pipe:
            for partition in partitions:
                pipe.zrange(self.store.wheel_key(partition), 0, 0, withscores=True)
            earliest = await pipe.execute()
        watermark = self._watermark(clock)
        return {partition: min([watermark] + [int(score) for _, score in first])
                for partition, first in zip(partitions, earliest)}

    async def purchases_clock(self, partitions: set[int]) -> int:
        """The newest purchase event time committed on ``partitions`` (the worker's): -1 when none yet."""
        await self._load(partitions)
        return max((self.newest_ms[("purchases", partition)] for partition in partitions), default=-1)

    async def _load(self, partitions: set[int]) -> None:
        unknown = [(topic, p) for p in partitions for topic in self._SCORING_TOPICS if (topic, p) not in self.newest_ms]
        if unknown:
            async with self.store.client.pipeline(transaction=False) as pipe:
                for topic, p in unknown:
                    pipe.hget(self.store.part(p) + "watermark", f"{self.settings.topic(topic)}:{p}")
                stored = await pipe.execute()
            for key, value in zip(unknown, stored):
                self.newest_ms[key] = -1 if value is None else int(value)

    def example_progress(self, label_wakes: dict[str, tuple[int, int | None]]) -> dict[int, int]:
        """Per partition of the batch :meth:`due` saw: the event time before which it will close no further
        example once the batch commits (the churn trainer's frontier, agents/churn_trainer.py): the wake-ups
        replayed, less the label wake-ups of the customers the batch visited that come before that (``label_wakes``:
        :attr:`ChurnStage.label_wakes`; a customer whose event came early in the batch may have examples ending
        before the batch's watermark, closed by the next batch). A customer's other wake-ups (to report a tick)
        close no example before its label wake-up. A silent customer's open example ends ``label_steps - 1`` steps
        before its label wake-up; the trainer allows for that."""
        return self._least(label_wakes)

    def score_progress(self, scheduled: dict[str, tuple[int, int | None]]) -> dict[int, int]:
        """Per partition: the event time before which no further score change will come from it once the batch
        commits: the wake-ups replayed, less any wake-up the batch schedules before that (``scheduled``: the
        wheel entries it writes), and no later than the report ticks the batch decided (which wait for the
        interactions still on time: applied to a customer whose quiet ticks were skipped, one re-decides the
        ticks after it; deciding up to the purchases watermark alone, the alert test's detector once counted 6
        entries late)."""
        return {partition: min(progress, self.tick_bounds.get(partition, progress))
                for partition, progress in self._least(scheduled).items()}

    def _least(self, wakes: dict[str, tuple[int, int | None]]) -> dict[int, int]:
        progress = dict(self._wheel_bound)
        for partition, wake_ms in wakes.values():
            if wake_ms is not None and partition in progress:
                progress[partition] = min(progress[partition], wake_ms)
        return progress

    def follow(self) -> None:
        """Remember the newest event times of the batch :meth:`due` saw, now that it has been committed."""
        for key, newest in self._batch_newest.items():
            self.newest_ms[key] = max(self.newest_ms.get(key, -1), newest)


@dataclass
class ChurnStage(BatchStage):
    """What the churn stage decided in one batch.

    Two kinds of scores. *Report ticks* (a fixed event-time grid per customer, daily or twice daily:
    :func:`~online_models.churn_tracking.next_tick_ms`) decide the ``score-changes``: each tick is scored
    with the customer's state as of the tick, before any later event is applied, and a silent customer's
    risk never falls between ticks under one model; so a replay reports what the live run reported, whatever
    the batches. *Fresh scores* at a customer's newest event keep the stored score (what support sees)
    current between ticks; they report nothing.

    A silent customer is not visited at every tick: after each visit a look-ahead
    (:func:`~online_models.churn_tracking.plan_silence`) finds the first future tick whose report would change,
    and the wheel wakes the customer then, or when ``label_steps`` examples have ended (a busy customer's
    look-ahead reaches less far, :func:`~online_models.churn_tracking.look_ahead_until`, and it is woken
    there). The plan is stored with the score; its quiet ticks are skipped (never loaded or scored) while the
    model version is the one it was made with. Under a new version the plan is void and the customer is
    re-scored lazily at its next visit, at its newest tick only: a change found there is marked
    ``model_change`` (the detector does not count it).
    """

    settings: Settings
    scorer: HazardScorer | None = None
    purchase_watermarks: Mapping[int, int] = field(default_factory=dict)  # partition -> purchases watermark
    tick_bounds: Mapping[int, int] = field(default_factory=dict)  # partition -> ticks decided up to (finish)
    examples: list[tuple[str, Example]] = field(default_factory=list)
    score_changes: list[dict] = field(default_factory=list)
    change_states: list[CustomerState] = field(default_factory=list)  # each change's customer as of its tick
    wheel: dict[str, tuple[int, int | None]] = field(default_factory=dict)  # customer -> (partition, wake)
    label_wakes: dict[str, tuple[int, int | None]] = field(default_factory=dict)  # -> (partition, label wake)
    _opens: dict[str, bool] = field(default_factory=dict)
    _seen: dict[str, tuple[CustomerState, int, bool]] = field(default_factory=dict)  # state, partition, touched
    _pending: list[tuple] = field(default_factory=list)  # ticks to score: customer, partition, state, as of, ticks,
    #                                                        and the silence path the customer was on (relative risk)
    _ticked: dict[str, int] = field(default_factory=dict)  # customer -> newest tick noted in this batch
    _planned: set[str] = field(default_factory=set)  # customers whose stored plan this batch has consulted
    _old_plans: dict[str, tuple[int, int | str]] = field(default_factory=dict)  # -> (quiet until, its version)
    tick_scores: dict[tuple[str, int], float] = field(default_factory=dict)  # (customer, tick) -> churn_p

    def __post_init__(self) -> None:
        self.churn = self.settings.churn_settings()
        self.version = churn_tracking.PRIOR_VERSION if self.scorer is None else self.scorer.version
        self._by_event_time = bool(self.settings.churn_score_lag_ms())

    def before_event(self, customer_id: str, state: CustomerState, event: Event, partition: int) -> None:
        self.before_any_event(customer_id, state, event.ts_ms, partition)
        self._note_path(customer_id, state, isinstance(event, Purchase))
        if isinstance(event, Purchase) and event.kind == "order":
            self.before_order(customer_id, state, event.ts_ms)

    def _note_path(self, customer_id: str, state: CustomerState, purchase: bool) -> None:
        """The first event since the customer's newest tick: remember the engagement as of that tick (the silence
        path the customer was on), stored with the score so that any batch cut remembers the same. A purchase
        changes the order columns too, so after one there is no path to compare with until the next tick."""
        if state.purchases.orders == 0 or state.churn_score is None:
            return
        tick = self.last_tick(customer_id, state)
        reported = state.churn_score.get("reported") or {}
        path = reported.get("path")
        if purchase:
            anchor = None
        elif (path is None or path["tick_ms"] != tick) and (state.activity.last_seen_ms or 0) <= tick:
            anchor = engagement_anchor(state, tick)
        else:
            return  # the path of this tick is known (or, an event since it already, unknown: none is kept)
        state.churn_score["reported"] = {**reported, "path": {"tick_ms": tick, "anchor": anchor}}

    def after_event(self, customer_id: str, state: CustomerState, event: Event) -> None:
        if isinstance(event, Purchase) and event.kind == "order":
            self.after_order(customer_id, state, event.ts_ms)

    def before_order(self, customer_id: str, state: CustomerState, ts_ms: int) -> None:
        closed, self._opens[customer_id] = churn_tracking.on_order(state, ts_ms, self.churn)
        self.examples += [(customer_id, example) for example in closed]

    def after_order(self, customer_id: str, state: CustomerState, ts_ms: int) -> None:
        churn_tracking.after_order(state, ts_ms, self._opens.pop(customer_id), self.churn)

    def before_any_event(self, customer_id: str, state: CustomerState, ts_ms: int, partition: int) -> None:
        """An event at ``ts_ms`` is about to be applied: close the examples the purchases watermark has decided
        (their successors' features must not see this event) and report the ticks the customer passed."""
        watermark = self.purchase_watermarks.get(partition)
        if watermark is not None:
            self.examples += [(customer_id, e)
                              for e in churn_tracking.on_clock(state, min(watermark, ts_ms - 1), self.churn)]
        churn_tracking.before_event(state, ts_ms, self.churn)  # checkpoints the watermark has not reached yet
        self._report_ticks(customer_id, state, partition, ts_ms - 1)
        self._seen[customer_id] = (state, partition, True)

    def forget(self, customer_id: str) -> None:
        """An erased customer: nothing of the old state is scored or scheduled."""
        self._seen.pop(customer_id, None)
        self.wheel.pop(customer_id, None)
        self.label_wakes.pop(customer_id, None)
        self._ticked.pop(customer_id, None)
        self._old_plans.pop(customer_id, None)
        self._pending = [p for p in self._pending if p[0] != customer_id]

    def woken(self, customer_id: str, state: CustomerState, partition: int, watermark_ms: int,
              tick_until_ms: int | None = None) -> None:
        """A customer due on the wheel: close the examples the purchases watermark decides, report the ticks
        up to ``tick_until_ms`` (the watermark of every topic that changes a score; default: the purchases')."""
        self.examples += [(customer_id, e) for e in churn_tracking.on_clock(state, watermark_ms, self.churn)]
        self._report_ticks(customer_id, state, partition, watermark_ms if tick_until_ms is None else tick_until_ms)
        touched = self._seen.get(customer_id, (None, None, False))[2]
        self._seen[customer_id] = (state, partition, touched)

    def finish(self, states: Mapping[str, CustomerState] | None = None) -> None:
        """End of the batch: ticks up to each partition's bound for the customers with events (their newest
        event is older); every tick of the batch scored in one model evaluation and reported in order; fresh
        scores as of the newest event (one more evaluation); a look-ahead for every customer visited (one more)
        and their wheel entries."""
        for customer_id, (state, partition, touched) in self._seen.items():
            if touched and partition in self.tick_bounds:
                self._report_ticks(customer_id, state, partition, self.tick_bounds[partition])
        scored = {customer_id for customer_id, *_ in self._pending}
        self._score_ticks()
        fresh = [state for state, _, touched in self._seen.values() if touched]
        CHURN_SCORED_TIMES.labels("event").inc(sum(state.purchases.orders > 0 for state in fresh))
        reported = [(state.churn_score or {}).get("reported") for state in fresh]
        churn_tracking.score_many([(state, [state.activity.last_seen_ms]) for state in fresh], self.scorer,
                                  self.churn)
        for state, kept in zip(fresh, reported):
            if state.churn_score is not None:
                state.churn_score["reported"] = kept
        scored |= self._plan()
        scored |= {customer_id for customer_id, (state, _, touched) in self._seen.items()
                   if touched and state.purchases.orders > 0}
        by_event = sum(self._seen[customer_id][2] for customer_id in scored)
        CHURN_SCORINGS.labels("event").inc(by_event)
        CHURN_SCORINGS.labels("wake").inc(len(scored) - by_event)
        self._seen.clear()
        self._ticked.clear()

    def write_into(self, write: BatchWrite, states: Mapping[str, CustomerState] | None = None) -> None:
        for customer_id, (partition, wake_ms) in self.wheel.items():
            write.schedule(partition, customer_id, wake_ms)

    def _plan(self) -> set[str]:
        """Look ahead along each visited customer's ticks up to its next label wake-up; wake it at the first
        tick whose report would change, or for its labels, whichever comes first. The customers planned."""
        windows = []
        for customer_id, (state, partition, _) in self._seen.items():
            label_wake = churn_tracking.label_wake_ms(state, self.churn)
            after = _chain_from(self.last_tick(customer_id, state), state)
            phase = churn_tracking.tick_phase_ms(customer_id)
            window_end = (label_wake if label_wake is not None
                          else after + self.churn.label_steps * self.churn.hazard.step_ms)
            reach = churn_tracking.look_ahead_until(state, after, window_end, self.churn)
            ticks = churn_tracking.ticks_between(state, self.churn, after, reach, phase)
            if not ticks:  # a window shorter than the grid's interval here: look at least at the next tick
                following = churn_tracking.next_tick_ms(state, self.churn, after, phase)
                if following is not None and following <= window_end:
                    ticks, reach = [following], following
            # Looked short of the labels, or no labels due: come back at the reach to look further (while there
            # are ticks at all).
            revisit = label_wake if not ticks or reach == label_wake else reach
            windows.append((customer_id, partition, state, revisit, ticks, label_wake))
        planned = {customer_id: (state, ticks) for customer_id, _, state, _, ticks, _ in windows
                   if state.churn_score is not None and ticks}
        CHURN_SCORED_TIMES.labels("plan").inc(sum(len(ticks) for _, ticks in planned.values()))
        scores = iter(churn_tracking.raw_scores(list(planned.values()), self.scorer, self.churn)[0])
        for customer_id, partition, state, revisit, ticks, label_wake in windows:
            wake = ticks[0] if ticks else None  # never scored: its first tick is reported
            if customer_id in planned:
                reported = state.churn_score.get("reported")
                plan = churn_tracking.plan_silence(reported, state.activity.last_seen_ms or 0, ticks, next(scores),
                                                   self.version, self.churn.change_threshold)
                state.churn_score["reported"] = {**(reported or {}), "tick_ms": self.last_tick(customer_id, state),
                                                 "plan": plan.to_dict()}
                wake = plan.reports_at_ms
            candidates = [t for t in (wake, revisit) if t is not None]
            self.wheel[customer_id] = (partition, min(candidates) if candidates else None)
            self.label_wakes[customer_id] = (partition, label_wake)
        return set(planned)

    def last_tick(self, customer_id: str, state: CustomerState) -> int:
        """The customer's newest report tick so far (noted in this batch, or reported before it)."""
        if customer_id in self._ticked:
            return self._ticked[customer_id]
        reported = (state.churn_score or {}).get("reported") or {}
        first = state.purchases.first_order_ms
        return reported.get("tick_ms", first if first is not None else 0)

    def _report_ticks(self, customer_id: str, state: CustomerState, partition: int, until_ms: int) -> None:
        """Note the customer's ticks up to ``until_ms`` with a copy of its state as it is now (as of them):
        they are scored together at the end of the batch, after later events changed the state. The first
        time a batch meets a customer, its stored plan skips the quiet ticks once all have passed; when an
        event comes before they have, all but the newest (the plan says they are quiet; the newest is
        scored for what reads it, the survey alerts). Made under another model version, the plan leaves
        the newest tick only, too."""
        if state.purchases.orders == 0:
            return
        after = self.last_tick(customer_id, state)
        plan = self._stored_plan(customer_id, state)
        carrier = (plan or {}).get("carrier")
        if plan is not None and plan["version"] == self.version and carrier and after < carrier["as_of_ms"] <= until_ms:
            # The whole quiet stretch has passed: skip it and carry its last tick's score into the next tick (a
            # stretch only partly passed is scored, so every tick score and carrier is exact; the grid goes on
            # from that tick as it would have).
            state.churn_score["reported"]["tick"] = carrier
            after = carrier["as_of_ms"]
            self._ticked[customer_id] = after
        ticks = churn_tracking.ticks_between(state, self.churn, _chain_from(after, state), until_ms,
                                             churn_tracking.tick_phase_ms(customer_id))
        new_model = plan is not None and plan["version"] != self.version
        if plan is not None and (not self._by_event_time if new_model else _quiet_until(plan, until_ms)):
            # Re-scored lazily under the new model, or quiet by the plan up to the event: as of the newest tick
            # only. Its score is ratcheted to the carrier of the last report, not of the skipped ticks: within
            # the same quiet interval, so it reports nothing either, and after the event no tick reads it.
            # With scores by event time, a new model scores every tick since the last visit: which ticks a visit
            # reaches depends on where batches were cut, what every tick reports does not.
            ticks = ticks[-1:]
        if new_model and self._by_event_time and carrier:  # the ticks it found quiet, before any later event
            self._old_plans[customer_id] = (min(carrier["as_of_ms"], until_ms), plan["version"])
        if ticks:
            as_of_ticks = state.scoring_copy()  # no churn_score: the monotone rule of _score_ticks uses ticks only
            path = ((state.churn_score or {}).get("reported") or {}).get("path")
            self._pending.append((customer_id, partition, state, as_of_ticks, ticks, path))
            self._ticked[customer_id] = ticks[-1]

    def _stored_plan(self, customer_id: str, state: CustomerState) -> dict | None:
        """The plan stored with the score, the first time this batch meets the customer (after that the
        customer's ticks are scored or re-planned in the batch)."""
        if customer_id in self._planned:
            return None
        self._planned.add(customer_id)
        return ((state.churn_score or {}).get("reported") or {}).pop("plan", None)

    def _score_ticks(self) -> None:
        """Score every noted tick in one model evaluation; report, per customer in tick order, those that moved
        the band or more than the threshold since the last report. Only reported ticks and each customer's
        newest (its stored score) are explained."""
        pending, self._pending = self._pending, []
        old_plans, self._old_plans = self._old_plans, {}
        CHURN_SCORED_TIMES.labels("tick").inc(sum(len(ticks) for *_, ticks, _ in pending))
        raw, version = churn_tracking.raw_scores([(as_of, ticks) for *_, as_of, ticks, _ in pending], self.scorer,
                                                 self.churn)
        on_path = []  # (change, as of, its tick, path, carrier): changes after an event, with the path before it
        decided = []  # per noted stretch: [(tick, raw, churn_p, band, change or None)], the reported dict after
        reported_of: dict[str, dict | None] = {}  # a customer's later stretch goes on from its earlier one
        for (customer_id, partition, state, as_of, ticks, path), churn_ps in zip(pending, raw):
            reported = reported_of.get(customer_id, (state.churn_score or {}).get("reported"))
            last_seen = as_of.activity.last_seen_ms or 0
            rows = []
            previous = (reported or {}).get("tick")  # the carrier: the last tick's score
            for tick, raw_p in zip(ticks, churn_ps):
                churn_p, band = churn_tracking.ratchet(previous, raw_p, version, last_seen)
                change = None
                if churn_tracking.changes_report(reported, churn_p, band, self.churn.change_threshold):
                    last = reported and reported.get("churn_p") is not None
                    change = {"customer_id": customer_id, "partition": partition, "as_of_ms": tick,
                              "churn_p": churn_p, "band": band,
                              "previous_churn_p": reported["churn_p"] if last else None,
                              "previous_band": reported["band"] if last else None, "model_version": version}
                    if previous and previous["version"] != version and last_seen <= previous["as_of_ms"]:
                        change |= {"model_change": True, "previous_model_version": previous["version"]}
                    elif (old_plan := old_plans.get(customer_id)) and tick <= old_plan[0]:
                        # A tick the last plan found quiet, re-scored under a new version (scores by event time):
                        # the model moved, not the customer; and the tick is behind what the detector judged.
                        change |= {"model_change": True, "previous_model_version": old_plan[1]}
                    elif (previous and last_seen > previous["as_of_ms"] and path and path["anchor"] is not None
                          and path["tick_ms"] == previous["as_of_ms"] and self.scorer is not None):
                        # The customer did something since the last tick (no purchase): beside the score, the one
                        # its silence path from that tick gives under the same model (relative risk).
                        change["cause"] = "event"
                        on_path.append((change, as_of, tick, path, previous))
                    reported = {"churn_p": churn_p, "band": band, **_path_of(reported)}
                rows.append((tick, raw_p, churn_p, band, change))
                previous = {"churn_p": churn_p, "version": version, "as_of_ms": tick}
            if rows:  # the dict is rebuilt once per stretch, not per tick
                reported = {**(reported or {}), "tick_ms": rows[-1][0], "tick": previous}
            decided.append((rows, reported))
            reported_of[customer_id] = reported
        self._score_paths(on_path, version)
        explained = [[row for i, row in enumerate(rows) if row[4] is not None or i == len(rows) - 1]
                     for rows, _ in decided]
        tops = churn_tracking.explain([(as_of, [row[0] for row in rows], [row[1] for row in rows])
                                       for (*_, as_of, _, _), rows in zip(pending, explained)], self.scorer, self.churn)
        for (customer_id, _, state, as_of, *_), (rows, reported), shown, top in zip(pending, decided, explained, tops):
            top_of = {row[0]: features for row, features in zip(shown, top)}
            for tick, _, churn_p, _, change in rows:
                self.tick_scores[customer_id, tick] = churn_p
                if change is not None:
                    change["top_features"] = top_of[tick]
                    self.score_changes.append(change)
                    self.change_states.append(as_of)
            tick, _, churn_p, band, _ = rows[-1]
            newest = {"churn_p": churn_p, "band": band, "version": version, "as_of_ms": tick,
                      "top_features": top_of[tick]}
            stored = state.churn_score
            if stored is not None and stored["as_of_ms"] > tick:
                newest = stored  # the stored score is newer than the ticks (an event's fresh score)
            state.churn_score = {**newest, "reported": reported}

    def _score_paths(self, on_path: list[tuple], version: int | str) -> None:
        """``path_churn_p`` of each change after an event: its silence path from the tick before, scored in one
        evaluation under the model of the change, held at the carrier's score as a silent customer's is."""
        paths = churn_tracking.path_scores([(as_of, tick, path["anchor"], path["tick_ms"])
                                            for _, as_of, tick, path, _ in on_path], self.scorer, self.churn)
        for (change, _, _, path, carrier), raw_p in zip(on_path, paths):
            change["path_churn_p"] = churn_tracking.ratchet(carrier, raw_p, version, path["tick_ms"])[0]


def _path_of(reported: dict | None) -> dict:
    """The remembered silence path of a report (:meth:`ChurnStage._note_path`), to carry into the next report."""
    return {"path": reported["path"]} if reported and "path" in reported else {}


def _chain_from(last_tick_ms: int, state: CustomerState) -> int:
    """Where the customer's next ticks are counted from: its last tick, or just before its newest event when
    that is later. The ticks before an event were decided before it was applied, on the grid of the state
    then; an order changes the grid (the interval follows the silence), and counting on from an older tick
    would put ticks before the event, scored with the state after it, behind what was already judged."""
    seen = state.activity.last_seen_ms
    return last_tick_ms if seen is None else max(last_tick_ms, seen - 1)


def _quiet_until(plan: dict, until_ms: int) -> bool:
    """Whether a plan says every tick up to ``until_ms`` is quiet: its carrier is its last quiet tick (the one
    before the tick that reports, or the window's last)."""
    carrier = plan.get("carrier")
    return bool(carrier) and until_ms < carrier["as_of_ms"]


def example_messages(examples: Sequence[tuple[str, Example]], batch_key: str) -> list[tuple[bytes, bytes]]:
    """The batch's closed examples as ``training-examples`` messages (:func:`agents.chunked.chunked_messages`); an
    example's id is its customer and checkpoint; ``closed_ms`` orders the trainer's learning.

    >>> import orjson
    >>> key, value = example_messages([("c1", Example(7, [0.5], False, 1, 9))], "purchases-0:41")[0]
    >>> key, [sorted(example.items()) for example in orjson.loads(value)["examples"]]   # doctest: +NORMALIZE_WHITESPACE
    (b'purchases-0:41:0', [[('checkpoint_ms', 7), ('closed_ms', 9), ('example_id', 'c1:7'), ('features', [0.5]),
                           ('purchased', False), ('weight', 1)]])
    """
    return chunked_messages([{"example_id": f"{customer_id}:{example.checkpoint_ms}",
                              "checkpoint_ms": example.checkpoint_ms, "closed_ms": example.closed_ms,
                              "features": example.features, "purchased": example.purchased, "weight": example.weight}
                             for customer_id, example in examples],
                            "examples", batch_key)
