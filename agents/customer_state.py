"""Customer-state stage: fold a batch of valid events into customer states and one atomic write.

Per customer, in offset order: drop repeated event ids, apply the event to the
pure :class:`CustomerState`, and note how the customer moves in the population
sketches (old bucket -1, new bucket +1) so RFM ranks stay exact for the live
population. An ``erase`` wipes the customer (state, seen ids, sketch entries);
later events of the same batch start afresh.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

from agents.alert_stage import VALUE_SKETCH, AlertStage, value_inputs, value_of
from agents.churn_scoring import ChurnStage
from agents.ingest import STATS_HASH, SourceMessage, Triage
from agents.item_stage import ItemStage
from agents.segment_stage import SegmentStage
from online_models import kpis as kpi
from online_models.churn_model import HazardScorer
from online_models.cooccurrence import FIRST_ORDER
from online_models.customer_index import index_entry
from online_models.customer_profile import segment_label
from online_models.customer_state import CustomerState, RfmInputs
from online_models.quantiles import FrozenRanks
from online_models.kpis import NO_SEGMENT, KpiDeltas
from online_models.purchase_history import DAY_MS
from online_models.rfm import POPULATION_SKETCHES
from online_models.segment_snapshot import SegmentModel
from schemas.events import CustomerEvent, Event, Interaction, Purchase
from streams.config import Settings
from streams.redis_store import BatchWrite, CustomerSnapshot, erasure_key

__all__ = ["AppliedBatch", "fold_batch", "sketch_hash", "kpi_hash", "best_sellers_segment"]


def sketch_hash(name: str) -> str:
    """Redis hash (under the prefix) with the bucket counts of one population sketch."""
    return f"rfm:sketch:{name}"


@dataclass
class AppliedBatch:
    """What a batch did: the Redis write plus the derived events to emit before committing it."""

    write: BatchWrite
    erasures: list[CustomerEvent]
    duplicates: int
    churn: ChurnStage
    segments: SegmentStage
    alerts: list[dict] = field(default_factory=list)  # customer alerts, to send before committing


class SegmentOf:
    """Named segment of a customer against a fixed population, memoised on the RFM inputs (an interaction
    leaves them unchanged, so most events cost a dictionary look-up)."""

    def __init__(self, population: Mapping[str, FrozenRanks]) -> None:
        self.population = population
        self.known: dict[RfmInputs, str] = {}

    def __call__(self, state: CustomerState) -> str:
        inputs = state.rfm_inputs()
        segment = self.known.get(inputs)
        if segment is None:
            segment = self.known[inputs] = segment_label(state, self.population)
        return segment


def apply_event(state: CustomerState, event: Event, kpis: KpiDeltas, horizon_ms: int,
                segment_of: SegmentOf, churn: ChurnStage, items: ItemStage | None = None,
                segments: SegmentStage | None = None) -> None:
    """Dispatch one valid event to the state model, the KPI counters and the item counts.

    KPI contributions go to the named segment the customer is in after the event, ranked against the
    population as this worker last read it (see docs/customer-state.md on what that means for replays);
    an order adds to the best-sellers of the segment the customer was in before it.
    """
    kpi.count_event(kpis, state.kpi_memory, event.ts_ms)
    if segments is not None:
        segments.touch(event.customer_id, state, event.ts_ms)
    if isinstance(event, Purchase):
        units = sum(item.qty for item in event.items)
        amount = event.amount_minor
        if event.kind == "order":
            segment_before = best_sellers_segment(state, segment_of)
            kpi.count_order(kpis, state.kpi_memory, state.purchases, event.ts_ms, amount, horizon_ms)
            churn.before_order(event.customer_id, state, event.ts_ms)
            state.apply_order(event.ts_ms, amount, units)
            churn.after_order(event.customer_id, state, event.ts_ms)
            if items is not None:
                items.order(state, event, segment_before)
        else:
            kpi.count_refund(kpis, event.ts_ms, amount)
            state.apply_refund(event.ts_ms, amount, units)
    elif isinstance(event, Interaction):
        kpi.count_interaction(kpis, event.ts_ms, event.survey, event.score)
        state.apply_interaction(event.type, event.ts_ms, event.survey, event.score)
        if items is not None:
            items.view(state, event)
    else:
        state.apply_customer_event(event.type, event.ts_ms, event.attributes)
    kpis.attribute(segment_of(state))


def best_sellers_segment(state: CustomerState, segment_of: Callable[[CustomerState], str]) -> str | None:
    """Whose best-sellers an order adds to: first orders' own list, else the buyer's segment (None while the
    population is not ranked yet)."""
    if state.purchases.orders == 0:
        return FIRST_ORDER
    segment = segment_of(state)
    return None if segment == NO_SEGMENT else segment


def kpi_hash(granularity: str, bucket: str) -> str:
    """Redis hash (under the prefix) with the KPI counters of one bucket."""
    return f"kpi:{granularity}:{bucket}"


class _SketchDeltas:
    """Bucket count changes of the population sketches caused by this batch."""

    def __init__(self) -> None:
        self.deltas = {name: Counter() for name in POPULATION_SKETCHES}

    def move(self, before: RfmInputs, after: RfmInputs) -> None:
        for name in ("last_order_day", "orders", "net_minor"):
            self.move_one(name, getattr(before, name), getattr(after, name))

    def move_one(self, name: str, old: float | None, new: float | None) -> None:
        mapping = POPULATION_SKETCHES[name]
        if old is not None:
            self.deltas[name][mapping.key(old)] -= 1
        if new is not None:
            self.deltas[name][mapping.key(new)] += 1

    def write_into(self, write: BatchWrite) -> None:
        for name, changes in self.deltas.items():
            for key, delta in changes.items():
                if delta:
                    write.count(sketch_hash(name), str(key), delta)


_FOREVER_MS = -(2**53)


def _forget_ids_before(settings: Settings, topic: str, newest_event_ms: int) -> int:
    """Event time before which a topic's ids are forgotten (purchases: forever by default)."""
    window_days = settings.purchase_dedup_window_days if topic == "purchases" else settings.dedup_window_days
    if window_days == 0:
        return _FOREVER_MS
    return newest_event_ms - settings.lateness_ms - window_days * DAY_MS


def fold_batch(triaged: Triage, snapshots: dict[str, CustomerSnapshot], messages: Sequence[SourceMessage],
               settings: Settings, population: Mapping[str, FrozenRanks] | None = None,
               scorer: HazardScorer | None = None, due: Mapping[str, tuple[int, int]] | None = None,
               segment_model: SegmentModel | None = None, watermarks: Mapping[int, int] | None = None,
               purchase_watermarks: Mapping[int, int] | None = None) -> AppliedBatch:
    """Fold a triaged batch into customer states and build the atomic Redis write.

    ``due``: customers the event-time wheel wakes (customer -> (partition, purchases watermark)).
    ``watermarks``: per partition, the event time up to which report ticks are decided in this batch (the
    watermark of purchases and interactions, the topics that change a score).
    ``purchase_watermarks``: per partition, the purchases watermark (examples it has decided close before an event).
    ``segment_model``: the newest segment snapshot (None: none published yet; customers are still sampled).
    """
    half_life_ms = settings.engagement_half_life_days * DAY_MS
    horizon_ms = settings.horizon_days * DAY_MS
    kpis = KpiDeltas()
    churn = ChurnStage(settings, scorer, purchase_watermarks=purchase_watermarks or {})
    items = ItemStage(settings.item_settings(), settings.lateness_ms)
    segments = SegmentStage(settings.segment_settings(), segment_model)
    partition_of: dict[str, int] = {}
    segment_of = SegmentOf(population or {})
    write = BatchWrite()
    states: dict[str, CustomerState] = {}
    placed_before: dict[str, tuple[RfmInputs, tuple | None]] = {}
    prior = settings.profile_settings().clv
    alerts = AlertStage(settings.customer_alert_rules(), settings.retention_catalogue(), prior, population or {},
                        segment_of, segment_model, settings.segment_window_days)
    churn.describe, alerts.last_tick_of = alerts.describe, churn.last_tick
    seen: dict[str, set[tuple[str, str]]] = {cid: set(s.seen) for cid, s in snapshots.items()}
    new_seen: dict[str, dict[str, list[str]]] = {}
    erasures: list[CustomerEvent] = []
    duplicates = 0
    accepted_by_topic: Counter[str] = Counter()
    max_event_ms: dict[str, int] = {}  # per topic-partition: topics of one partition drain at different speeds
    tp_of: dict[tuple[str, str], str] = {}

    def state_of(customer_id: str) -> CustomerState:
        state = states.get(customer_id)
        if state is None:
            snapshot = snapshots.get(customer_id)
            state = CustomerState.from_json(snapshot.state if snapshot else None, half_life_ms)
            states[customer_id] = state
            placed_before[customer_id] = (state.rfm_inputs(), value_inputs(state))
            segments.remember(customer_id, state)
        return state

    for message, event, digest in triaged.accepted:
        customer_id = event.customer_id
        topic = message.contract
        if (topic, digest) in seen.setdefault(customer_id, set()):
            duplicates += 1
            continue
        seen[customer_id].add((topic, digest))
        max_event_ms[message.tp] = max(max_event_ms.get(message.tp, event.ts_ms), event.ts_ms)
        accepted_by_topic[message.contract] += 1
        if isinstance(event, CustomerEvent) and event.type == "erase":
            state_of(customer_id)  # remember where the customer sat in the sketches
            erasures.append(event)
            write.confirm.append(erasure_key(event.event_id))
            if customer_id not in write.erase:
                write.erase.append(customer_id)
            states[customer_id] = CustomerState.new(half_life_ms)
            churn.forget(customer_id)
            seen[customer_id] = set()
            new_seen[customer_id] = {}
            write.schedule(message.partition, customer_id, None)
            partition_of.pop(customer_id, None)
            continue
        partition_of[customer_id] = message.partition
        state = state_of(customer_id)
        churn.before_event(customer_id, state, event.ts_ms, message.partition)
        apply_event(state, event, kpis, horizon_ms, segment_of, churn, items, segments)
        if isinstance(event, Interaction) and event.survey == "csat" and event.score is not None:
            alerts.survey(customer_id, state, event.ts_ms, event.score)
        new_seen.setdefault(customer_id, {}).setdefault(topic, []).extend((str(event.ts_ms), digest))
        tp_of[customer_id, topic] = message.tp

    for customer_id, (partition, watermark_ms) in (due or {}).items():
        if customer_id in write.erase:
            continue
        snapshot = snapshots.get(customer_id)
        if customer_id in partition_of or (snapshot is not None and snapshot.state is not None):
            churn.wake(customer_id, state_of(customer_id), partition, watermark_ms,
                       (watermarks or {}).get(partition, watermark_ms))
        else:
            write.schedule(partition, customer_id, None)  # nothing left of this customer
    churn.finish(watermarks or {})
    alerts.resolve(churn.tick_scores)
    for change in churn.score_changes:
        alerts.score_change(change, states[change["customer_id"]])
    for customer_id, (partition, wake_ms) in churn.wheel.items():
        write.schedule(partition, customer_id, wake_ms)
    for customer_id, state in states.items():
        segments.assign(customer_id, state)

    sketches = _SketchDeltas()
    known_delta = 0
    for customer_id, state in states.items():
        inputs_before, value_before = placed_before[customer_id]
        sketches.move(inputs_before, state.rfm_inputs())
        value_after = value_inputs(state)
        if value_after != value_before:
            sketches.move_one(VALUE_SKETCH, value_of(value_before, prior), value_of(value_after, prior))
        stored = state.activity.last_seen_ms is not None
        if stored:
            write.states[customer_id] = state.to_json()
            entry = index_entry(state)
            write.index[customer_id] = [str(entry.value_minor), entry.band, entry.segment,
                                        "" if entry.churn_p is None else repr(entry.churn_p)]
        snapshot = snapshots.get(customer_id)
        known_delta += stored - bool(snapshot and snapshot.state is not None)
    sketches.write_into(write)
    items.write_into(write)
    segments.write_into(write, states)
    for (granularity, bucket), changes in kpis.changes.items():
        for metric, delta in changes.items():
            if delta:
                write.count(kpi_hash(granularity, bucket), metric, delta)
    if known_delta:
        write.count(STATS_HASH, "customers", known_delta)

    write.seen = new_seen
    # Forget ids older than the dedup window behind their own topic-partition's event time: when a
    # backlog drains, partitions (and the topics of one partition) can be months apart in event time.
    write.seen_floor_ms = {
        customer_id: {topic: _forget_ids_before(settings, topic, max_event_ms[tp_of[customer_id, topic]])
                      for topic in by_topic}
        for customer_id, by_topic in new_seen.items()}
    write.watermarks = dict(max_event_ms)
    for message in messages:
        write.offsets[message.tp] = max(write.offsets.get(message.tp, -1), message.offset)
    for topic, count in accepted_by_topic.items():
        write.count(STATS_HASH, f"accepted:{topic}", count)
    for rejection in triaged.rejected:
        write.count(STATS_HASH, f"rejected:{rejection.reason}")
    if duplicates:
        write.count(STATS_HASH, "duplicates", duplicates)
    if erasures:
        write.count(STATS_HASH, "erasures", len(erasures))
    return AppliedBatch(write, erasures, duplicates, churn, segments, alerts.alerts)
