"""Segment stage of the partition batch: assign behaviour segments, count sizes and migrations, sample.

Every customer the batch touches or the wheel wakes (buyers are re-scored at
least daily) is assigned the nearest segment of the newest snapshot, as of its
newest event time, with hysteresis. The stage keeps per-segment totals exact
under the batch's atomic commit by moving each customer out of the totals it
was counted in and into the new ones (size, net spend, churn probability), and
counts migrations per event-time day (``from>to``, ``new>to`` for a first
assignment).

A customer sends the trainer a feature sample every ``sample_days`` of event
time while they are around: at an event that finds the last sample that old
(features as of the event, before it), and along a silence at every period
since the newest activity (the state does not change while silent, so those
samples are exact). Samples therefore follow event time, not batches: a backlog
drained in big batches sends the trainer what live traffic would have. They go
out under a pseudonym (the trainer needs a stable key, not an identity).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Sequence

from agents.batch_stage import BatchStage
from agents.chunked import chunked_messages
from agents.snapshots import SnapshotView
from online_models.customer_state import CustomerState
from online_models.kpis import bucket_of, day_of
from online_models.purchase_history import DAY_MS
from online_models.segment_features import segment_features
from online_models.segment_snapshot import SegmentModel
from online_models.segment_training import SegmentSettings
from schemas.events import Event
from streams.redis_store import BatchWrite, RedisStore

__all__ = ["SNAPSHOT_KEY", "STATS_KEY", "EVENTS_KEY", "CHURN_SCALE", "segment_view", "SegmentStage",
           "migrations_key", "pseudonym", "sample_messages"]

#: Redis keys (under the prefix): newest snapshot (JSON), per-segment totals, birth/death/rename stream.
SNAPSHOT_KEY = "seg:{seg}:latest"
STATS_KEY = "seg:stats"
EVENTS_KEY = "seg:{seg}:events"

#: Segment totals keep churn probabilities as integers of this many parts (``churn_micro:{segment}``).
CHURN_SCALE = 1_000_000
_MAX_SILENT_SAMPLES = 60  # per customer and batch; a longer silence is sampled from where it was left


def migrations_key(day: str) -> str:
    """Hash of one event-time day's migrations (``from>to`` -> customers)."""
    return f"seg:migrations:{day}"


def pseudonym(customer_id: str) -> str:
    """A stable key for a customer that does not name them (what the trainer remembers samples by)."""
    return hashlib.blake2b(customer_id.encode(), digest_size=8).hexdigest()


def segment_view(store: RedisStore) -> SnapshotView[SegmentModel]:
    """The newest segment snapshot as a model (None before the first), re-read at most once a second."""
    return SnapshotView(store, SNAPSHOT_KEY, SegmentModel.from_snapshot, "segment snapshot")


@dataclass
class SegmentStage(BatchStage):
    """What the segment stage decided in one batch: samples for the trainer (at events, and through a silence
    as of the customer's newest score), each customer's nearest segment, migrations and totals."""

    settings: SegmentSettings
    model: SegmentModel | None = None
    samples: list[tuple[str, int, list[float]]] = field(default_factory=list)  # (pseudonym, as_of, features)
    migrations: dict[str, dict[str, int]] = field(default_factory=dict)  # day -> "from>to" -> count
    _counted: dict[str, tuple] = field(default_factory=dict)  # customer -> totals it was counted in before

    def loaded(self, customer_id: str, state: CustomerState) -> None:
        """Note the totals a customer is counted in as loaded (before the batch)."""
        self._counted.setdefault(customer_id, _totals(state))

    def before_event(self, customer_id: str, state: CustomerState, event: Event, partition: int) -> None:
        """Sample the customer as of the event, before it is applied, if a sample is due."""
        sampled = (state.segment or {}).get("sampled_ms")
        if sampled is None or event.ts_ms - sampled >= self._period_ms:
            self._sample(customer_id, state, event.ts_ms)

    def finish(self, states: dict[str, CustomerState]) -> None:
        for customer_id, state in states.items():
            self.assign(customer_id, state)

    def _sample(self, customer_id: str, state: CustomerState, at_ms: int) -> None:
        raw = segment_features(state, at_ms, self.settings.window_days)
        if raw is not None:
            self.samples.append((pseudonym(customer_id), at_ms, raw))
            state.segment = {**(state.segment or {}), "sampled_ms": at_ms}

    @property
    def _period_ms(self) -> int:
        return int(self.settings.sample_days * DAY_MS)

    def assign(self, customer_id: str, state: CustomerState) -> None:
        """Assign the nearest segment as of the customer's newest event (or wake-up); sample its silence."""
        as_of = max(state.activity.last_seen_ms or 0, (state.churn_score or {}).get("as_of_ms") or 0)
        sampled = (state.segment or {}).get("sampled_ms")
        if sampled is not None:
            tick = max(sampled + self._period_ms, state.activity.last_seen_ms or 0)
            for _ in range(_MAX_SILENT_SAMPLES):
                if tick > as_of:
                    break
                self._sample(customer_id, state, tick)
                tick += self._period_ms
        raw = segment_features(state, as_of, self.settings.window_days)
        if raw is None:
            return
        current = dict(state.segment or {})
        if self.model is not None:
            segment, distance = self.model.assign(raw, current.get("id"), self.settings.hysteresis)
            if segment != current.get("id"):
                day = bucket_of("day", day_of(as_of))
                move = f"{current.get('id', 'new')}>{segment}"
                by_move = self.migrations.setdefault(day, {})
                by_move[move] = by_move.get(move, 0) + 1
                current["since_ms"] = as_of
            current.update(id=segment, distance=distance, version=self.model.version)
        if "sampled_ms" not in current:  # a first order ends the batch: its first sample
            current["sampled_ms"] = as_of
            self.samples.append((pseudonym(customer_id), as_of, raw))
        state.segment = current

    def write_into(self, write: BatchWrite, states: dict[str, CustomerState]) -> None:
        totals: dict[str, int] = {}
        for customer_id, state in states.items():
            for sign, counted in ((-1, self._counted.get(customer_id)), (1, _totals(state))):
                if counted is None or counted[0] is None:
                    continue
                segment, net_minor, churn_micro, scored = counted
                for name, amount in (("customers", 1), ("net_minor", net_minor), ("churn_micro", churn_micro),
                                     ("scored", scored)):
                    key = f"{name}:{segment}"
                    totals[key] = totals.get(key, 0) + sign * amount
        for key, delta in totals.items():
            if delta:
                write.count(STATS_KEY, key, delta)
        for day, moves in self.migrations.items():
            for move, count in moves.items():
                write.count(migrations_key(day), move, count)


def _totals(state: CustomerState) -> tuple:
    """(segment, net spend, churn_p in millionths, scored?) a customer adds to its segment's totals."""
    segment = (state.segment or {}).get("id")
    score = state.churn_score or {}
    churn_p = score.get("churn_p")
    return (segment, state.purchases.net_minor, 0 if churn_p is None else round(churn_p * CHURN_SCALE),
            int(churn_p is not None))


def sample_messages(samples: Sequence[tuple[str, int, list[float]]], batch_key: str) -> list[tuple[bytes, bytes]]:
    """The batch's samples as ``segment-features`` messages (:func:`agents.chunked.chunked_messages`); a sample's
    id is its pseudonym and time, by which a re-sent one is recognised."""
    return chunked_messages([{"sample_id": f"{key}:{as_of_ms}", "key": key, "as_of_ms": as_of_ms, "features": features}
                             for key, as_of_ms, features in samples], "samples", batch_key)
