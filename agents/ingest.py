"""Ingest stage: decode, validate and normalise a batch; invalid messages become dead letters.

It runs inside the partition's batch (not as a separate Kafka hop): the
valid, normalised events are handed straight to :mod:`agents.customer_state`
in the same batch, so an event costs one consume instead of consume + produce
+ consume (see docs/architecture.md). The Faust agent in
:mod:`agents.pipeline` only feeds it batches.
"""
from __future__ import annotations

import base64
import logging
from dataclasses import dataclass, field
from typing import Sequence

import orjson

from schemas.events import Event, InvalidEvent, Purchase, parse_event
from streams.config import Settings
from streams.redis_store import event_digest, tp_name

__all__ = ["SourceMessage", "Rejection", "Triage", "triage", "digests_by_customer", "dedup_identity", "STATS_HASH"]

logger = logging.getLogger(__name__)

#: Redis hash (under the prefix) with accepted / rejected / duplicate counters.
STATS_HASH = "stats:ingest"


@dataclass(frozen=True, slots=True)
class SourceMessage:
    """One Kafka message of an input topic, as the ingest stage sees it."""

    topic: str
    contract: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    tp: str = field(init=False)  # "topic:partition", used several times per message: computed once

    def __post_init__(self) -> None:
        object.__setattr__(self, "tp", tp_name(self.topic, self.partition))


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
    """A batch split into valid events (with the digest of their id) and rejections."""

    accepted: list[tuple[SourceMessage, Event, str]] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)


def dedup_identity(event: Event) -> str:
    """What makes two events the same: the event id, except that an order *is* its order id.

    A shop that re-sends an order under a new event id (a retried export, a replay of another file)
    must not count it twice: not in the customer's spend, not in the item co-occurrence counts.
    Refunds keep their event ids (an order can be refunded in several parts).
    """
    if isinstance(event, Purchase) and event.kind == "order":
        return f"order:{event.order_id}"
    return event.event_id


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
            result.accepted.append((message, event, event_digest(dedup_identity(event))))
    return result


def digests_by_customer(accepted: Sequence[tuple[SourceMessage, Event, str]]) -> dict[str, dict[str, list[str]]]:
    """customer -> topic -> event-id digests of a batch (what de-duplication must look up)."""
    wanted: dict[str, dict[str, list[str]]] = {}
    for message, event, digest in accepted:
        wanted.setdefault(event.customer_id, {}).setdefault(message.contract, []).append(digest)
    return wanted
