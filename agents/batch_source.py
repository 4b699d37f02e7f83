"""Partition batches straight from aiokafka, inside the Faust worker.

Why not a Faust agent with ``stream.take_events``? Faust's stream machinery costs
~170 µs per event here (bare aiokafka: ~4 µs, bench/throughput.py), more than
the whole state pipeline. Our exactly-once effect does not need Faust's offset
tracking at all: offsets live in Redis, committed with the state. So the input
topics are read with ``getmany`` by a consumer of their own group, run as a Faust
service (the worker, the trainer agent and the timers stay Faust), and the
rebalance listener does what the Faust signals did: release revoked partitions,
claim (fence) assigned ones and seek each to its first offset not yet applied.
Kafka offsets are still committed after every batch, for lag monitoring only.

Fetched records go through an :class:`~agents.alignment.EventTimeAligner` before they are processed, so
partitions and topics advance together in event time (record timestamps: our producers set them to the
event's time) and a partition far ahead is paused until the others catch up.
"""
from __future__ import annotations

import logging
import time
from typing import Awaitable, Callable, Sequence

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition

from agents.alignment import EventTimeAligner
from agents.ingest import SourceMessage
from agents.metrics import CONSUMER_LAG
from agents.retrying import until_done
from streams.config import Settings
from streams.redis_store import RedisStore, tp_name

__all__ = ["consumer_group", "BatchSource", "LOG_END_KEY", "lag_of"]

#: Each partition's log end (the high watermark its worker last fetched): lag = log end - applied offset.
LOG_END_KEY = "health:log_end"

logger = logging.getLogger(__name__)


def consumer_group(settings: Settings) -> str:
    """The input topics' consumer group (the Faust app's own group keeps the trainer's topic)."""
    return f"{settings.app_id}-pipeline"


def lag_of(log_end: int, applied_offset: int | None) -> int:
    """Records of a partition not applied yet: its log end minus the next offset to apply (nothing applied
    yet: counted from offset 0).

    >>> lag_of(120, 99), lag_of(120, 119), lag_of(120, None), lag_of(120, -1)
    (20, 0, 120, 120)
    """
    applied = -1 if applied_offset is None else applied_offset
    return max(log_end - (applied + 1), 0)


class _Fencing(ConsumerRebalanceListener):
    def __init__(self, source: "BatchSource") -> None:
        self.source = source

    async def on_partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        self.source.aligner.drop(revoked)
        self.source.store.release(tp_name(tp.topic, tp.partition) for tp in revoked)

    async def on_partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        store, consumer = self.source.store, self.source.consumer
        owned = {tp_name(tp.topic, tp.partition): tp for tp in assigned}
        store.release([tp for tp in list(store.fence_tokens) if tp not in owned])
        await _claim_until_done(store, owned)
        # Records buffered before the rebalance are dropped and read again, from the offset Redis holds (the truth:
        # Kafka's commit may lag). Every partition is sought, one with nothing applied too (to offset 0: before
        # the log start, the consumer resets to the earliest): records fetched while `claim` awaited Redis were
        # buffered and are dropped here, and the position had moved past them (3 Redis Cluster round trips made
        # that window wide enough to lose a partition's first records for good, bench/scale.py).
        self.source.aligner.drop(assigned)
        for tp in assigned:
            self.source.aligner.track(tp)
        for name, tp in owned.items():
            consumer.seek(tp, store.applied_offsets.get(name, -1) + 1)


async def _claim_until_done(store: RedisStore, owned: Sequence[str]) -> None:
    """Claim the assigned partitions, retrying until Redis answers: a partition assigned but not claimed would
    never be processed (a failed listener is only logged by aiokafka). Seen: Redis away during a rebalance, and
    redis-py's cluster client failing the first concurrent commands of a connection it was still opening
    (``'NoneType' object has no attribute 'writelines'``, bench/scale.py). A retry bumps the tokens again: harmless,
    a zombie's are older still."""
    await until_done(lambda: store.claim(owned), logger, "claiming partitions failed", logging.WARNING)


class BatchSource:
    """Reads batches (:meth:`fetch`) and hands each to ``handle``."""

    def __init__(self, settings: Settings, store: RedisStore, topics: Sequence[str],
                 handle: Callable[[list[SourceMessage]], Awaitable[None]], contract_of: dict[str, str]) -> None:
        self.settings, self.store, self.topics, self.handle, self.contract_of = (
            settings, store, list(topics), handle, contract_of)
        self.consumer: AIOKafkaConsumer | None = None
        self.aligner: EventTimeAligner[TopicPartition, object] = EventTimeAligner()
        self._waiting_since: float | None = None  # held records, nothing released since
        self._stuck_at: float | None = None  # the frontier when waiting was given up
        self._more_releasable = False
        self._lag_reported_at = 0.0

    async def start(self) -> None:
        settings = self.settings
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap.split(","), group_id=consumer_group(settings),
            client_id=f"{settings.app_id}-pipeline", enable_auto_commit=False, auto_offset_reset="earliest",
            session_timeout_ms=settings.session_timeout_ms, heartbeat_interval_ms=settings.heartbeat_interval_ms,
            rebalance_timeout_ms=settings.rebalance_timeout_ms, max_poll_records=settings.batch_size,
            fetch_max_wait_ms=settings.fetch_max_wait_ms, key_deserializer=None, value_deserializer=None)
        self.consumer.subscribe(self.topics, listener=_Fencing(self))
        await self.consumer.start()

    async def fetch(self) -> dict[TopicPartition, list]:
        """What the consumer has fetched: waits at most ``batch_latency_ms`` for a first record (not at all
        when the last release was cut at the batch limit: more is releasable now), then takes
        everything already buffered (up to four catch-up batches). Why drain: aiokafka sends no new fetch
        to a broker while records of one of its partitions wait unread, so a partition the aligner waits
        for would only arrive after the prefetch back-off (bench/alignment.py). The aligner then cuts
        batches of at most ``catch_up_batch_size``: a batch loads each customer it touches once, and a
        backlog wakes many silent customers per event-time day, so bigger batches while catching up cut
        the state round trips per event (317 µs per event at 500, 193 at 2,000 on the simulated history);
        live traffic brings little at a time and keeps small batches and their latency."""
        settings = self.settings
        fetched = await self.consumer.getmany(timeout_ms=0 if self._more_releasable else settings.batch_latency_ms,
                                              max_records=settings.batch_size)
        count = last = sum(len(records) for records in fetched.values())
        while last and count < 4 * settings.catch_up_batch_size:
            more = await self.consumer.getmany(timeout_ms=0, max_records=settings.batch_size)
            for tp, records in more.items():
                fetched.setdefault(tp, []).extend(records)
            last = sum(len(records) for records in more.values())
            count += last
        return fetched

    async def run_once(self) -> int:
        """One batch: fetch, release what is aligned in event time, process it until applied, commit Kafka
        offsets; returns the number of events processed."""
        for tp, records in (await self.fetch()).items():
            self.aligner.add(tp, records, fetched_ms=self._last_fetched_ms(tp) or time.time() * 1000)
        aligned = self.settings.align_max_wait_ms > 0
        released = self.aligner.release(self._caught_up, limit=self.settings.catch_up_batch_size,
                                        force=not aligned or self._stalled(), seen_at_end=self._last_fetched_ms)
        self._note_progress(len(released))
        self._more_releasable = len(released) == self.settings.catch_up_batch_size
        self._pause_partitions_ahead()
        await self._report_lag()
        if not released:
            return 0
        messages = [SourceMessage(tp.topic, self.contract_of[tp.topic], tp.partition, record.offset, record.key,
                                  record.value) for tp, record in released]
        await self.handle(messages)
        owned = {tp: record.offset + 1 for tp, record in released if self.store.owns(tp_name(tp.topic, tp.partition))}
        if owned:
            try:
                await self.consumer.commit(owned)
            except Exception as exc:  # a rebalance in between: Redis holds the truth, the lag figure heals
                logger.info("Kafka offset commit skipped: %s", exc)
        return len(messages)

    async def _report_lag(self, every_s: float = 1.0) -> None:
        """Consumer lag of the owned partitions, at most once every ``every_s``: the log end (the last
        fetch's high watermark) minus the last *applied* offset, as a gauge; the log ends go to Redis
        (``health:log_end``) so the API, which reads Redis only, computes the same lag against the offsets
        committed with the state. Not the fetch position: records fetched and held by the aligner, or in
        a batch still being processed, are not done, and a backlog must not look drained."""
        now = time.monotonic()
        if now - self._lag_reported_at < every_s:
            return
        self._lag_reported_at = now
        log_ends = {}
        for tp in self.consumer.assignment():
            state = self._fetch_state(tp)
            if state is not None and state.highwater is not None:
                name = tp_name(tp.topic, tp.partition)
                log_ends[name] = state.highwater
                CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(
                    lag_of(state.highwater, self.store.applied_offsets.get(name)))
        if log_ends:
            try:
                await self.store.client.hset(self.store.prefix + LOG_END_KEY, mapping=log_ends)
            except Exception as exc:  # lag is a report: a Redis hiccup must not stop the batch
                logger.info("lag report skipped: %s", exc)

    def _caught_up(self, tp: TopicPartition) -> bool:
        """Read up to the high watermark of the last fetch (unknown before the first: not caught up).
        The position comes from the assignment's state: the public ``position()`` waits when it is unknown."""
        state = self._fetch_state(tp)
        if state is None or not state.has_valid_position or state.highwater is None:
            return False
        return state.position >= state.highwater

    def _last_fetched_ms(self, tp: TopicPartition) -> float | None:
        """When the last fetch response for ``tp`` came (its high watermark is as of then): aiokafka's own
        record of it, as :meth:`AIOKafkaConsumer.last_poll_timestamp` reads it, without its assignment check."""
        state = self._fetch_state(tp)
        return None if state is None else state.timestamp

    def _fetch_state(self, tp: TopicPartition):
        """aiokafka's per-partition fetch state (position, high watermark, last response time); None when
        ``tp`` is not assigned. Read directly: the public accessors wait or assert while a rebalance runs."""
        assignment = self.consumer._subscription.subscription.assignment
        return assignment.state_value(tp) if assignment is not None else None

    def _stalled(self) -> bool:
        """A lagging partition that delivers nothing (its leader is away, say) must not stall the others for
        good: once held records have waited ``align_max_wait_ms`` with nothing released, they go without
        it, and keep going until the frontier moves past where it stuck."""
        frontier = self.aligner.frontier(self._caught_up)
        if self._stuck_at is not None:
            if frontier <= self._stuck_at:
                return True
            self._stuck_at = None
        if self._waiting_since is not None and \
                (time.monotonic() - self._waiting_since) * 1000 >= self.settings.align_max_wait_ms:
            logger.warning("event-time alignment: a partition holds the frontier at %s; releasing without it",
                           frontier)
            self._stuck_at, self._waiting_since = frontier, None
            return True
        return False

    def _note_progress(self, released: int) -> None:
        holding = any(self.aligner.buffered(tp) for tp in self.consumer.assignment())
        if released or not holding:
            self._waiting_since = None
        elif self._waiting_since is None:
            self._waiting_since = time.monotonic()

    def _pause_partitions_ahead(self) -> None:
        """Stop fetching partitions whose held records fill a catch-up batch: fetches go to those behind,
        and the aligner's memory stays bounded."""
        assigned = self.consumer.assignment()
        ahead = {tp for tp in assigned if self.aligner.buffered(tp) >= self.settings.catch_up_batch_size}
        paused = self.consumer.paused()
        if ahead - paused:
            self.consumer.pause(*(ahead - paused))
        if (paused & assigned) - ahead:
            self.consumer.resume(*((paused & assigned) - ahead))

    async def stop(self) -> None:
        if self.consumer is not None:
            await self.consumer.stop()
