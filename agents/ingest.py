"""Ingest stage: decode, validate, de-duplicate, dead-letter, update activity.

It runs inside the partition's batch (not as a separate Kafka hop): the
valid, normalised events are handed straight to the state models of the same
batch, so an event costs one consume instead of consume + produce + consume
(see docs/architecture.md). Everything here is plain Python over plain data;
the Faust agent in :mod:`agents.pipeline` only feeds it batches.
"""
from __future__ import annotations

import base64
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Sequence

import orjson

from online_models.activity import CustomerActivity
from schemas.events import CustomerEvent, Event, InvalidEvent, parse_event
from streams.config import Settings
from streams.redis_store import BatchWrite, CustomerSnapshot, event_digest, tp_name

__all__ = ["SourceMessage", "Rejection", "Triage", "triage", "apply_batch", "AppliedBatch", "STATS_HASH"]

logger = logging.getLogger(__name__)

#: Redis hash (under the prefix) with accepted / rejected / duplicate counters.
STATS_HASH = "stats:ingest"
_DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class SourceMessage:
    """One Kafka message of an input topic, as the ingest stage sees it."""

    topic: str
    contract: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None

    @property
    def tp(self) -> str:
        return tp_name(self.topic, self.partition)


@dataclass(frozen=True, slots=True)
class Rejection:
    """An invalid message on its way to the dead-letter topic."""

    message: SourceMessage
    reason: str
    detail: str

    def deadletter_value(self, rejected_at_ms: int) -> bytes:
        """Dead-letter record: reason, source coordinates and the untouched raw bytes (base64)."""
        message = self.message
        return orjson.dumps({
            "reason": self.reason,
            "detail": self.detail,
            "source": {"topic": message.topic, "partition": message.partition, "offset": message.offset},
            "key_b64": None if message.key is None else base64.b64encode(message.key).decode(),
            "value_b64": None if message.value is None else base64.b64encode(message.value).decode(),
            "rejected_at_ms": rejected_at_ms,
        })

    @property
    def deadletter_key(self) -> bytes:
        """Deterministic id, so a re-sent dead letter (after a crash) can be recognised."""
        return f"{self.message.topic}:{self.message.partition}:{self.message.offset}".encode()


@dataclass
class Triage:
    accepted: list[tuple[SourceMessage, Event]] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)


def triage(messages: Sequence[SourceMessage], settings: Settings, now_ms: int) -> Triage:
    """Split a batch into valid normalised events and rejections; never raises on data."""
    result = Triage()
    for message in messages:
        try:
            event = parse_event(message.contract, message.value, message.key, now_ms=now_ms,
                                max_bytes=settings.max_event_bytes,
                                future_tolerance_ms=settings.future_tolerance_ms)
        except InvalidEvent as exc:
            result.rejected.append(Rejection(message, exc.reason, exc.detail))
        except Exception as exc:  # a validator bug must not kill the worker either
            logger.exception("validator crashed on %s", message.tp)
            result.rejected.append(Rejection(message, "invalid_value", f"validator error: {exc!r}"))
        else:
            result.accepted.append((message, event))
    return result


@dataclass
class AppliedBatch:
    """What a batch did: the Redis write plus the derived events to emit before committing it."""

    write: BatchWrite
    erasures: list[CustomerEvent]
    duplicates: int


def digests_by_customer(accepted: Sequence[tuple[SourceMessage, Event]]) -> dict[str, list[str]]:
    wanted: dict[str, list[str]] = {}
    for _, event in accepted:
        wanted.setdefault(event.customer_id, []).append(event_digest(event.event_id))
    return wanted


def apply_batch(triaged: Triage, snapshots: dict[str, CustomerSnapshot], messages: Sequence[SourceMessage],
                settings: Settings) -> AppliedBatch:
    """Fold a triaged batch into customer activity and build the atomic Redis write.

    Events apply in offset order per partition; an ``erase`` wipes what came
    before it for that customer (state, seen ids) and later events start afresh.
    """
    write = BatchWrite()
    activities: dict[str, CustomerActivity] = {}
    seen: dict[str, set[str]] = {cid: set(s.seen) for cid, s in snapshots.items()}
    new_seen: dict[str, list[str]] = {}
    erasures: list[CustomerEvent] = []
    duplicates = 0
    accepted_by_topic: Counter[str] = Counter()
    max_event_ms: dict[str, int] = {}

    for message, event in triaged.accepted:
        customer_id = event.customer_id
        digest = event_digest(event.event_id)
        if digest in seen.setdefault(customer_id, set()):
            duplicates += 1
            continue
        seen[customer_id].add(digest)
        partition = str(message.partition)
        max_event_ms[partition] = max(max_event_ms.get(partition, event.ts_ms), event.ts_ms)
        accepted_by_topic[message.contract] += 1
        if isinstance(event, CustomerEvent) and event.type == "erase":
            erasures.append(event)
            if customer_id not in write.erase:
                write.erase.append(customer_id)
            activities[customer_id] = CustomerActivity()
            seen[customer_id] = set()
            new_seen[customer_id] = []
            continue
        activity = activities.get(customer_id)
        if activity is None:
            snapshot = snapshots.get(customer_id)
            activity = activities[customer_id] = CustomerActivity.from_redis(snapshot.state if snapshot else {})
        activity.update(message.contract, event.ts_ms)
        if isinstance(event, CustomerEvent):
            if event.type == "signup":
                activity.signed_up(event.ts_ms)
            activity.profile_changed(event.attributes, event.ts_ms)
        new_seen.setdefault(customer_id, []).extend((str(event.ts_ms), digest))

    known_delta = 0
    for customer_id, activity in activities.items():
        fields = activity.to_redis()
        if fields:
            write.states[customer_id] = fields
        snapshot = snapshots.get(customer_id)
        known_delta += bool(fields) - bool(snapshot and snapshot.state)
    if known_delta:
        write.count(STATS_HASH, "customers", known_delta)
    write.seen = new_seen
    watermark_floor = max(max_event_ms.values(), default=0) - settings.lateness_ms
    write.seen_floor_ms = watermark_floor - settings.dedup_window_days * _DAY_MS
    write.watermarks = {partition: ts for partition, ts in max_event_ms.items()}
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
    return AppliedBatch(write, erasures, duplicates)
