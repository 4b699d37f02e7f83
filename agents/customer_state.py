"""The partition batch: fold valid events into customer states, run the batch's stages, build one atomic write.

Per customer, in offset order: drop repeated event ids, apply the event to the pure :class:`CustomerState`,
and let every stage (agents/batch_stage.py: KPIs, churn, items, segments, alerts, population sketches) see the
customer before and after it. An ``erase`` wipes the customer (state, seen ids, sketch entries); later events
of the same batch start afresh. Customers due on the event-time wheel are woken; then each stage finishes and
adds its part to the write, in the order of :func:`batch_stages`.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Mapping, Sequence

from agents.alert_stage import AlertStage
from agents.churn_scoring import ChurnStage
from agents.ingest import STATS_HASH, SourceMessage, Triage
from agents.item_stage import ItemStage
from agents.kpi_stage import KpiStage, kpi_hash
from agents.segment_stage import SegmentStage
from agents.signal_stage import SignalStage
from agents.sketch_stage import SketchStage, sketch_hash
from online_models.churn_model import HazardScorer
from online_models.customer_index import index_entry
from online_models.customer_profile import segment_label
from online_models.customer_state import CustomerState, RfmInputs
from online_models.purchase_history import DAY_MS
from online_models.quantiles import FrozenRanks
from online_models.segment_snapshot import SegmentModel
from schemas.events import CustomerEvent, Event, Interaction, Purchase
from streams.config import Settings
from streams.redis_store import BatchWrite, CustomerSnapshot, erasure_key

__all__ = ["AppliedBatch", "BatchStages", "batch_stages", "fold_batch", "apply_to_state", "sketch_hash", "kpi_hash",
           "SegmentOf"]


@dataclass
class AppliedBatch:
    """What a batch did: the Redis write plus the derived events to emit before committing it."""

    write: BatchWrite
    erasures: list[CustomerEvent]
    duplicates: int
    churn: ChurnStage
    segments: SegmentStage
    alerts: list[dict] = field(default_factory=list)  # customer alerts, to send before committing
    signals: list[dict] = field(default_factory=list)  # leading indicators for the aggregate alerts


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


def apply_to_state(state: CustomerState, event: Event) -> None:
    """Apply one valid event to the customer's state (the stages see it before and after)."""
    if isinstance(event, Purchase):
        units = sum(item.qty for item in event.items)
        if event.kind == "order":
            state.apply_order(event.ts_ms, event.amount_minor, units)
        else:
            state.apply_refund(event.ts_ms, event.amount_minor, units)
    elif isinstance(event, Interaction):
        state.apply_interaction(event.type, event.ts_ms, event.survey, event.score)
    else:
        state.apply_customer_event(event.type, event.ts_ms, event.attributes)


@dataclass
class BatchStages:
    """The stages of one batch, in the order their hooks run; named for the derived events the pipeline sends."""

    churn: ChurnStage
    alerts: AlertStage
    signals: SignalStage
    kpis: KpiStage
    segments: SegmentStage
    items: ItemStage
    sketches: SketchStage

    def __iter__(self):
        return iter((self.churn, self.alerts, self.signals, self.kpis, self.segments, self.items, self.sketches))


def batch_stages(settings: Settings, population: Mapping[str, FrozenRanks], scorer: HazardScorer | None,
                 segment_model: SegmentModel | None, tick_bounds: Mapping[int, int],
                 purchase_watermarks: Mapping[int, int],
                 sources: Mapping[int, tuple[str, int]] | None = None) -> BatchStages:
    """A fresh set of stages for one batch. The churn stage runs first (its ticks are noted before any stage
    changes the state) and finishes right before the alerts stage, which reads its ticks and score changes."""
    segment_of = SegmentOf(population)
    prior = settings.profile_settings().clv
    churn = ChurnStage(settings, scorer, purchase_watermarks=purchase_watermarks, tick_bounds=tick_bounds)
    alerts = AlertStage(churn, settings.customer_alert_rules(), settings.retention_catalogue(), prior, population,
                        segment_of, segment_model, settings.segment_window_days)
    return BatchStages(
        churn=churn,
        alerts=alerts,
        signals=SignalStage(alerts, int(settings.alert_bucket_minutes * 60_000) if settings.alert_signals else 0,
                            settings.alert_low_csat, sources or {}),
        kpis=KpiStage(settings.horizon_days * DAY_MS, segment_of),
        segments=SegmentStage(settings.segment_settings(), segment_model),
        items=ItemStage(settings.item_settings(), settings.lateness_ms, segment_of),
        sketches=SketchStage(prior))


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
               purchase_watermarks: Mapping[int, int] | None = None, partition: int = 0) -> AppliedBatch:
    """Fold one partition's triaged batch into customer states, run the stages, and build its atomic Redis write.

    ``due``: customers the event-time wheel wakes (customer -> (partition, purchases watermark)).
    ``watermarks``: per partition, the event time up to which report ticks are decided in this batch (the
    watermark of purchases and interactions, the topics that change a score).
    ``purchase_watermarks``: per partition, the purchases watermark (examples it has decided close before an event).
    ``segment_model``: the newest segment snapshot (None: none published yet; customers are still sampled).
    ``partition``: the input partition all of the batch's records and wake-ups are of (its write is applied in
    that partition's hash slot, streams/keyspace.py).
    """
    half_life_ms = settings.engagement_half_life_days * DAY_MS
    stages = batch_stages(settings, population or {}, scorer, segment_model, watermarks or {},
                          purchase_watermarks or {},
                          {id(event): (message.tp, message.offset) for message, event, _ in triaged.accepted})
    write = BatchWrite(partition=partition)
    states: dict[str, CustomerState] = {}
    seen: dict[str, set[tuple[str, str]]] = {cid: set(s.seen) for cid, s in snapshots.items()}
    new_seen: dict[str, dict[str, list[str]]] = {}
    erasures: list[CustomerEvent] = []
    duplicates = 0
    accepted_by_topic: Counter[str] = Counter()
    max_event_ms: dict[str, int] = {}  # per topic-partition: topics of one partition drain at different speeds
    tp_of: dict[tuple[str, str], str] = {}
    partition_of: dict[str, int] = {}

    def state_of(customer_id: str) -> CustomerState:
        state = states.get(customer_id)
        if state is None:
            snapshot = snapshots.get(customer_id)
            state = states[customer_id] = CustomerState.from_json(snapshot.state if snapshot else None, half_life_ms)
            for stage in stages:
                stage.loaded(customer_id, state)
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
            state_of(customer_id)  # the stages note where the customer was (sketch buckets)
            erasures.append(event)
            write.confirm.append(erasure_key(event.event_id))
            if customer_id not in write.erase:
                write.erase.append(customer_id)
            states[customer_id] = CustomerState.new(half_life_ms)
            for stage in stages:
                stage.forget(customer_id)
            seen[customer_id] = set()
            new_seen[customer_id] = {}
            write.schedule(message.partition, customer_id, None)
            partition_of.pop(customer_id, None)
            continue
        partition_of[customer_id] = message.partition
        state = state_of(customer_id)
        for stage in stages:
            stage.before_event(customer_id, state, event, message.partition)
        apply_to_state(state, event)
        for stage in stages:
            stage.after_event(customer_id, state, event)
        new_seen.setdefault(customer_id, {}).setdefault(topic, []).extend((str(event.ts_ms), digest))
        tp_of[customer_id, topic] = message.tp

    for customer_id, (partition, watermark_ms) in (due or {}).items():
        if customer_id in write.erase:
            continue
        snapshot = snapshots.get(customer_id)
        if customer_id in partition_of or (snapshot is not None and snapshot.state is not None):
            state, tick_until = state_of(customer_id), (watermarks or {}).get(partition, watermark_ms)
            for stage in stages:
                stage.woken(customer_id, state, partition, watermark_ms, tick_until)
        else:
            write.schedule(partition, customer_id, None)  # nothing left of this customer
    for stage in stages:
        stage.finish(states)
    for stage in stages:
        stage.write_into(write, states)

    known_delta = 0
    for customer_id, state in states.items():
        stored = state.activity.last_seen_ms is not None
        if stored:
            write.states[customer_id] = state.to_json()
            entry = index_entry(state)
            write.index[customer_id] = [str(entry.value_minor), entry.band, entry.segment,
                                        "" if entry.churn_p is None else repr(entry.churn_p)]
        snapshot = snapshots.get(customer_id)
        known_delta += stored - bool(snapshot and snapshot.state is not None)
    if known_delta:
        write.count(STATS_HASH, "customers", known_delta)
    write.indexed_before = {customer_id: snapshots[customer_id].indexed
                            for customer_id in (*write.index, *write.erase)
                            if customer_id in snapshots and snapshots[customer_id].indexed}

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
    return AppliedBatch(write, erasures, duplicates, stages.churn, stages.segments, stages.alerts.alerts,
                        stages.signals.signals)
