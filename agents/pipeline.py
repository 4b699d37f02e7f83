"""The partition pipeline: take a batch, ingest it, commit it. A recipe, not logic."""
from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections import Counter
from functools import partial
from typing import Sequence

import faust
import mode
import orjson

from agents.alert_delivery import erasure_record
from agents.batch_source import BatchSource
from agents.churn_scoring import WheelClock, example_messages, model_view
from agents.churn_versions import ChurnVersions
from agents.customer_state import AppliedBatch, fold_batch
from agents.ingest import SourceMessage, Triage, digests_by_customer, triage
from agents.kpi_retention import KpiRetention
from agents.metrics import (
    BATCH_SECONDS, CHURN_VERSION_WAITS, DEADLETTERED, EVENTS_IN, EVENTS_OUT, LOOP_LAG_SECONDS, MODEL_VERSION,
    REDIS_SECONDS,
)
from agents.population import PopulationView
from agents.retrying import until_done
from agents.segment_stage import sample_messages, segment_view
from agents.snapshots import task_stacks
from agents.version_targets import version_targets
from online_models.churn_model import HazardScorer
from schemas.events import CustomerEvent
from streams.config import Settings
from streams.redis_store import Fenced, RedisStore, partition_of_tp

__all__ = ["register_pipeline", "BatchProcessor"]

logger = logging.getLogger(__name__)


class BatchProcessor:
    """Runs one batch end to end; Faust-free so benchmarks can drive it too."""

    def __init__(self, store: RedisStore, settings: Settings, topics: dict[str, faust.TopicT]) -> None:
        self.store = store
        self.settings = settings
        self.outputs = topics
        self.wheel = WheelClock(store, settings)
        self.versions = ChurnVersions(store, model_view(store), settings.churn_version_wait_s)
        self.segments = segment_view(store)
        self.contract_of = {settings.topic(name): name for name in ("purchases", "interactions", "customers")}
        self._purchases_topic = settings.topic("purchases")
        self.population = PopulationView(store)
        self.kpi_retention = KpiRetention(store, settings)
        self._progress_sent: dict[int, int] = {}
        self._example_progress_sent: dict[int, int] = {}

    async def _nudge(self, target_ms: int) -> bool:
        """Called while waiting for the version of ``target_ms`` (at once, then about once a second): whether to
        go on waiting. Not when the worker's own partitions hold it back, checked again each time: a wait that
        began on another worker's partitions may end on this one's, which took them over meanwhile. Else it sends
        the owned partitions' example progress as committed: a worker that has just started has sent none yet,
        a trainer that restarted without a checkpoint has forgotten it, and a waiting worker sends nothing new.
        Idempotent (the trainer keeps each partition's furthest)."""
        standing = await self.wheel.standing_progress(self._owned())
        if self._own_partitions_hold_back(target_ms, standing):
            return False
        if standing:
            await (await self._send("training-examples", key=b"progress", value=orjson.dumps(
                {"progress": {str(p): ms for p, ms in standing.items()}})))
        return True

    def _own_partitions_hold_back(self, target_ms: int, standing: dict[int, int]) -> bool:
        """Whether the version for ``target_ms`` waits on this worker's own partitions: their example progress
        (``standing``: committed, WheelClock.standing_progress; or reported by its batches) short of what the
        trainer needs to make it final. Waiting cannot help then, only this worker's batches move them: so after a
        failover, whose partitions come with wheels behind the survivor's clock (the survivor's batch used to wait
        ``CRM_CHURN_VERSION_WAIT_S``, 120 s, for the wake-ups it was about to replay). Never in a worker's steady
        state (docs/churn.md, "Why it cannot deadlock"). The batch is then scored with the newest version before
        its time, as after a timeout."""
        needed_ms = target_ms + self.settings.churn_label_delay_ms() + 1  # final_until_ms, agents/churn_trainer.py
        behind = sorted(partition for partition, progress_ms in standing.items()
                        if max(progress_ms, self._example_progress_sent.get(partition, -1)) < needed_ms)
        if behind:
            CHURN_VERSION_WAITS.labels("own_partitions_behind").inc()
            logger.warning("the churn version for event time %d waits on this worker's own partitions %s (taken over "
                           "behind its clock): not waiting, scoring with the newest before it; scores may differ "
                           "in a replay", target_ms, behind)
        return bool(behind)

    def _owned(self) -> set[int]:
        """The input partitions this worker owns (their purchases topic's fence)."""
        return {partition_of_tp(tp) for tp in self.store.fence_tokens if tp.rpartition(":")[0] == self._purchases_topic}

    def _progress_to_send(self, scheduled: dict[str, tuple[int, int | None]]) -> list[tuple[int, int]]:
        """Score progress of this batch's partitions, after its score changes (agents/alert_detector.py
        judges a bucket once every partition has passed it); at most one record per event-time minute."""
        due = [(partition, watermark) for partition, watermark in self.wheel.score_progress(scheduled).items()
               if watermark >= self._progress_sent.get(partition, -(2**62)) + 60_000]
        self._progress_sent.update(due)
        return due

    def _example_progress_moved(self, example_progress: dict[int, int]) -> dict[int, int]:
        """The batch's partitions whose example progress moved since last sent: one ``training-examples`` record
        after the batch's examples (the trainer learns what every partition's progress has passed). Noted as
        sent once the batch commits: a batch retried sends it again."""
        return {partition: progress for partition, progress in example_progress.items()
                if progress > self._example_progress_sent.get(partition, -(2**62))}

    async def process_until_applied(self, messages: Sequence[SourceMessage]) -> None:
        """Process a batch, retrying on infrastructure errors (Redis or broker down) until it is applied.

        Skipping a failed batch would lose it for good: the next batch's committed offsets would
        cover it. Blocking gives back-pressure instead, and the partitions stay owned meanwhile.
        """
        await until_done(lambda: self.process(messages), logger, "batch failed")

    async def _send(self, topic: str, key: bytes, value: bytes) -> asyncio.Future:
        EVENTS_OUT.labels(topic).inc()
        return await self.outputs[topic].send(key=key, value=value)

    async def process(self, messages: Sequence[SourceMessage]) -> list[AppliedBatch] | None:
        """Apply the batch's new messages, as one or more batches of their own: one per churn model version
        their event time needs (:meth:`_by_version`), in order. The last one's partition parts, or None."""
        started = time.perf_counter()
        fresh = [m for m in messages if self.store.owns(m.tp) and not self.store.is_applied(m.tp, m.offset)]
        if len(fresh) < len(messages):
            logger.debug("skipped %d already applied / not owned messages", len(messages) - len(fresh))
        if not fresh:
            return None
        now_ms = int(time.time() * 1000)
        applied = None
        for part, triaged, target_ms, wait in await self._by_version(fresh, triage(fresh, self.settings, now_ms)):
            model = await self.versions.for_target(target_ms, partial(self._nudge, target_ms) if wait else None)
            applied = await self._process(part, triaged, model, now_ms)
            if applied is None:  # fenced: partitions moved (a rebalance revokes them all), the rest waits for it
                return None
        BATCH_SECONDS.observe(time.perf_counter() - started)
        return applied

    async def _by_version(self, fresh: list[SourceMessage], triaged: Triage
                          ) -> list[tuple[list[SourceMessage], Triage, int | None, bool]]:
        """The messages split by the event time of the churn model version they are scored with
        (agents/version_targets.py), in that order: each partition's messages stay in order. Records of a
        partition with no purchase yet go with the first; no split when the score lag is 0 (newest version).
        Whether to wait for the version: not for the worker's very first purchases (nothing it could report
        would make a version final; before them, the trainer has no example of this worker's partitions)."""
        lag_ms = self.settings.churn_score_lag_ms()
        if not lag_ms:
            return [(fresh, triaged, None, False)]
        events = {id(message): event for message, event, _ in triaged.accepted}
        clock_ms = await self.wheel.purchases_clock(self._owned() | {message.partition for message in fresh})
        targets = version_targets([events[id(m)].ts_ms if m.contract == "purchases" and id(m) in events else None
                                   for m in fresh], clock_ms, self.settings.churn_version_period_ms(), lag_ms)
        known = sorted({target for target in targets if target is not None})
        if len(known) <= 1:
            return [(fresh, triaged, known[0] if known else None, clock_ms >= 0)]
        target_of = {id(m): known[0] if target is None else target for m, target in zip(fresh, targets)}
        parts = {target: ([], Triage()) for target in known}
        for message in fresh:
            parts[target_of[id(message)]][0].append(message)
        for accepted in triaged.accepted:
            parts[target_of[id(accepted[0])]][1].accepted.append(accepted)
        for rejected in triaged.rejected:
            parts[target_of[id(rejected.message)]][1].rejected.append(rejected)
        return [(part, part_triage, target, clock_ms >= 0 or target != known[0])
                for target, (part, part_triage) in parts.items()]

    async def _process(self, fresh: list[SourceMessage], triaged: Triage, model: HazardScorer | None,
                       now_ms: int) -> list[AppliedBatch] | None:
        """Fold and commit the batch as one write per input partition (each in its own hash slot,
        streams/keyspace.py), after sending what they derived. The worker's clock is the batch's: it may wake
        customers of a partition the batch holds no record of (a wake-ups-only write). None when fenced."""
        wanted = digests_by_customer(triaged.accepted)
        partition_of = {event.customer_id: message.partition for message, event, _ in triaged.accepted}
        due = await self.wheel.due(triaged.accepted, self._owned())
        for customer_id, (partition, _) in due.items():
            wanted.setdefault(customer_id, {})
            partition_of.setdefault(customer_id, partition)
        with REDIS_SECONDS.labels("load_batch").time():
            snapshots = await self.store.load_batch(wanted, partition_of)
        # The fold is the batch's CPU work, pure and given all it reads: in a thread, the event loop meanwhile
        # sends the consumer's heartbeats (a backlog's batch takes seconds, the session timeout is 6 s).
        inputs = (snapshots, self.settings, await self.population.ranks(), model, await self.segments.current(),
                  dict(self.wheel.tick_bounds), dict(self.wheel.purchase_watermarks))
        parts = await asyncio.to_thread(_fold_by_partition, _split_by_partition(fresh, triaged, due), *inputs)
        # Derived events go out (and are acknowledged) before the state commits: after a crash
        # they are sent again with the same keys, never lost.
        progress = await self._send_derived(parts, triaged, min(fresh, key=lambda m: (m.tp, m.offset)), now_ms)
        if not await self._commit(parts, triaged, model):
            return None
        self._example_progress_sent.update(progress)
        return [part for _, part in parts.values()]

    async def _send_derived(self, parts: dict[int, tuple[list[SourceMessage], AppliedBatch]], triaged: Triage,
                            first: SourceMessage, now_ms: int) -> dict[int, int]:
        """Send every part's derived records and wait for their acknowledgements; returns the example progress
        sent (noted once the batch commits)."""
        keys = {partition: _batch_key(part_messages, partition, first)
                for partition, (part_messages, _) in parts.items()}
        applied = [part for _, part in parts.values()]
        erasures = [erasure for part in applied for erasure in part.erasures]
        deliveries = [await self._send("deadletter", key=r.deadletter_key, value=r.deadletter_value(now_ms))
                      for r in triaged.rejected]
        deliveries += [await self._send("erasures", key=e.customer_id.encode(),
                                        value=_erasure_confirmation(e, now_ms)) for e in erasures]
        for partition, (_, part) in parts.items():
            for key, value in example_messages(part.churn.examples, keys[partition]):
                deliveries.append(await self._send("training-examples", key=key, value=value))
        example_progress = self.wheel.example_progress(
            {customer: wake for part in applied for customer, wake in part.churn.label_wakes.items()})
        if progress := self._example_progress_moved(example_progress):
            deliveries.append(await self._send("training-examples", key=f"{keys[min(keys)]}:progress".encode(),
                                               value=orjson.dumps({"progress": {str(p): ms for p, ms in
                                                                                progress.items()}})))
        deliveries += [await self._send("score-changes", key=change["customer_id"].encode(),
                                        value=orjson.dumps(change))
                       for part in applied for change in part.churn.score_changes]
        for partition, (_, part) in parts.items():  # a few records of many signals: one send each cost more
            signals = part.signals
            deliveries += [await self._send("score-changes", key=f"{keys[partition]}:signals:{i}".encode(),
                                            value=orjson.dumps({"type": "signals",
                                                                "signals": signals[i:i + _SIGNALS_PER_RECORD]}))
                           for i in range(0, len(signals), _SIGNALS_PER_RECORD)]
        deliveries += [await self._send("score-changes", key=e.customer_id.encode(), value=orjson.dumps(
            {"type": "erasure", "customer_id": e.customer_id, "requested_ts_ms": e.ts_ms})) for e in erasures]
        scheduled = {customer: wake for part in applied for customer, wake in part.churn.wheel.items()}
        deliveries += [await self._send("score-changes", key=f"progress:{partition}".encode(), value=orjson.dumps(
            {"type": "progress", "partition": partition, "watermark_ms": watermark}))
            for partition, watermark in self._progress_to_send(scheduled)]
        deliveries += [await self._send("alerts", key=alert["id"].encode(), value=orjson.dumps(alert))
                       for part in applied for alert in part.alerts]
        for erased in erasures:
            key, value = erasure_record(erased.customer_id, erased.ts_ms)
            deliveries.append(await self._send("alerts", key=key, value=value))
        for partition, (_, part) in parts.items():
            for key, value in sample_messages(part.segments.samples, keys[partition]):
                deliveries.append(await self._send("segment-features", key=key, value=value))
        if deliveries:
            await asyncio.gather(*deliveries)
        return progress

    async def _commit(self, parts: dict[int, tuple[list[SourceMessage], AppliedBatch]], triaged: Triage,
                      model: HazardScorer | None) -> bool:
        """Commit each partition's write in its own slot, each on its own (RedisStore.commit_batches). False
        when a partition was fenced (the others committed); an infrastructure error is raised after the parts that
        committed are followed (a retried batch skips them: their offsets are applied)."""
        to_commit = [(partition, part_messages, part) for partition, (part_messages, part) in parts.items()
                     if not part.write.is_empty()]
        with REDIS_SECONDS.labels("commit_batch").time():
            outcomes = await self.store.commit_batches([part.write for _, _, part in to_commit])
        failed = fenced = None
        for (partition, part_messages, part), outcome in zip(to_commit, outcomes):
            if isinstance(outcome, Fenced):
                logger.warning("batch of partition %d dropped, it moved to another worker: %s", partition, outcome)
                fenced = outcome
            elif isinstance(outcome, BaseException):
                failed = failed or outcome
            elif outcome:
                for contract, count in Counter(message.contract for message in part_messages).items():
                    EVENTS_IN.labels(contract).inc(count)
                self.population.follow(part.write)
        if failed is not None:
            raise failed
        if model is not None and isinstance(model.version, int):
            MODEL_VERSION.labels("churn").set(model.version)
        self.wheel.follow()
        if fenced is not None:
            return False
        for reason, count in Counter(rejection.reason for rejection in triaged.rejected).items():
            DEADLETTERED.labels(reason).inc(count)
        newest_ms = max((ms for _, _, part in to_commit for ms in part.write.watermarks.values()), default=0)
        await self.kpi_retention.maybe_prune(newest_ms)
        return True


def _split_by_partition(fresh: list[SourceMessage], triaged: Triage, due: dict[str, tuple[int, int]]
                        ) -> dict[int, tuple[list[SourceMessage], Triage, dict[str, tuple[int, int]]]]:
    """The batch's records, triage and wake-ups by input partition (each partition's records in their order)."""
    parts: dict[int, tuple[list[SourceMessage], Triage, dict[str, tuple[int, int]]]] = {}

    def part(partition: int):
        if partition not in parts:
            parts[partition] = ([], Triage(), {})
        return parts[partition]

    for message in fresh:
        part(message.partition)[0].append(message)
    for accepted in triaged.accepted:
        part(accepted[0].partition)[1].accepted.append(accepted)
    for rejected in triaged.rejected:
        part(rejected.message.partition)[1].rejected.append(rejected)
    for customer_id, wake in due.items():
        part(wake[0])[2][customer_id] = wake
    return dict(sorted(parts.items()))


def _fold_by_partition(parts, snapshots, settings, ranks, model, segment_model, tick_bounds, purchase_watermarks
                       ) -> dict[int, tuple[list[SourceMessage], AppliedBatch]]:
    return {partition: (messages, fold_batch(triaged, snapshots, messages, settings, ranks, model, due, segment_model,
                                             tick_bounds, purchase_watermarks, partition=partition))
            for partition, (messages, triaged, due) in parts.items()}


def _batch_key(messages: list[SourceMessage], partition: int, first: SourceMessage) -> str:
    """What names the derived records of one partition's part of a batch (its first record; a part of
    wake-ups only: the partition and the batch's first record)."""
    if messages:
        head = min(messages, key=lambda m: m.offset)
        return f"{head.tp}:{head.offset}"
    return f"wake:{partition}:{first.tp}:{first.offset}"


#: Signal records per ``signals`` message on ``score-changes`` (about 250 bytes each: 125 KB messages).
_SIGNALS_PER_RECORD = 500


def _erasure_confirmation(event: CustomerEvent, now_ms: int) -> bytes:
    return orjson.dumps({"customer_id": event.customer_id, "erase_event_id": event.event_id,
                         "requested_ts_ms": event.ts_ms, "erased_at_ms": now_ms, "status": "erased"})


def register_pipeline(app: faust.App, settings: Settings, input_topics: list[str]) -> None:
    """Run the partition batches in ``app``'s worker: a :class:`BatchSource` service reads the input topics
    (its rebalance listener fences partitions), the derived topics are Faust's."""
    store = RedisStore.from_settings(settings)
    outputs = {name: app.topic(settings.topic(name), key_serializer="raw", value_serializer="raw", partitions=1)
               for name in ("deadletter", "erasures", "training-examples", "score-changes", "segment-features",
                           "alerts")}
    processor = BatchProcessor(store, settings, outputs)
    source = BatchSource(settings, store, input_topics, processor.process_until_applied, processor.contract_of)
    app.crm_store = store  # type: ignore[attr-defined]

    class PipelineService(mode.Service):
        """Started before Faust's own consumer, so both groups join at once (joining one after the other
        doubled a worker's start-up, bench/rebalance.py)."""

        async def on_start(self) -> None:
            # `kill -USR1 <worker>` logs where every task waits (a stalled worker's await chains).
            asyncio.get_running_loop().add_signal_handler(
                signal.SIGUSR1, lambda: logger.warning("tasks on SIGUSR1:\n%s", task_stacks()))
            await source.start()

        async def on_stop(self) -> None:
            await source.stop()

        @mode.Service.task
        async def _loop_lag(self) -> None:
            """How late a 0.25 s timer fires, observed continuously: the loop's responsiveness (heartbeats,
            fetches, the web page) while batches are processed."""
            while not self.should_stop:
                before = time.perf_counter()
                await asyncio.sleep(0.25)
                LOOP_LAG_SECONDS.observe(max(time.perf_counter() - before - 0.25, 0.0))

        @mode.Service.task
        async def _consume(self) -> None:
            while not app.producer.started and not self.should_stop:  # derived events need Faust's producer
                await self.sleep(0.05)
            while not self.should_stop:
                try:
                    await source.run_once()
                except asyncio.CancelledError:
                    raise
                except Exception:  # the broker went away mid-fetch, say: nothing was applied, fetch again
                    logger.exception("fetching a batch failed, retrying in 1 s")
                    await self.sleep(1.0)

    app.add_dependency(PipelineService())
