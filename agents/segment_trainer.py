"""The global segment trainer: one consumer of the single-partition ``segment-features`` topic.

It learns every sample once (re-sent samples are dropped by id), and once warmed
up publishes a snapshot every ``CRM_SEGMENT_SNAPSHOT_EVERY`` samples or
``CRM_SEGMENT_SNAPSHOT_INTERVAL_S`` seconds: centroids matched to the previous
snapshot (stable ids), names, profiles and ``changed_share``. Births, deaths and
renames go to the ``segment-events`` topic and the bounded ``seg:{seg}:events`` Redis
stream. Workers pick a new snapshot up within a second (agents/segment_stage.py).

With ``CRM_MODEL_SIGNING_KEY`` set, the trainer checkpoints itself after every
batch, signed, and a restarted trainer resumes from it.
"""
from __future__ import annotations

import logging
import random
import time
from collections import OrderedDict
from typing import Awaitable, Callable

import faust
import orjson

from agents.chunked import records_of
from agents.segment_stage import EVENTS_KEY, SNAPSHOT_KEY
from agents.snapshots import load_checkpoint, register_single_partition_trainer, save_checkpoint
from online_models.segment_features import FEATURE_NAMES
from online_models.segment_training import SegmentTraining
from streams.config import Settings
from streams.redis_store import RedisStore

__all__ = ["SegmentTrainerProcess", "register_segment_trainer", "CHECKPOINT_KEY", "HISTORY_KEY"]

logger = logging.getLogger(__name__)

CHECKPOINT_KEY = "seg:{seg}:trainer"
_REMEMBERED_IDS = 200_000
_EVENTS_KEPT = 10_000
_HISTORY_KEPT = 200
HISTORY_KEY = "seg:{seg}:history"  # newest first: version, samples, changed_share of every snapshot


class SegmentTrainerProcess:
    """Trainer state plus what it needs to publish; Faust-free so tests and benchmarks can drive it."""

    def __init__(self, store: RedisStore, settings: Settings,
                 announce: Callable[[dict], Awaitable[None]] | None = None) -> None:
        self.store, self.settings, self.announce = store, settings, announce
        self.key = settings.model_signing_key.encode()
        self.training = SegmentTraining(settings.segment_settings())
        self.seen: OrderedDict[str, None] = OrderedDict()
        self.offset = -1
        self.rejected = 0
        self._published_at_samples = 0
        self._published_at = time.monotonic()
        self.owns_topic = False

    async def restore(self) -> None:
        """Resume from the signed checkpoint, or start afresh (continuing the published version and ids)."""
        self.training, self.seen, self.offset = SegmentTraining(self.settings.segment_settings()), OrderedDict(), -1
        latest = await self.store.client.get(self.store.prefix + SNAPSHOT_KEY)
        if latest is not None:
            served = orjson.loads(latest)
            self.training.version, self.training.served = served["version"], served
        checkpoint = await load_checkpoint(self.store, CHECKPOINT_KEY, self.key, "segment trainer")
        if checkpoint is None:
            return
        self.training, self.seen, self.offset = checkpoint
        logger.info("segment trainer resumed at offset %d, %d samples", self.offset, self.training.learner.samples)

    def learn_batch(self, messages: list[tuple[int, bytes | None]]) -> None:
        """Learn a batch of (offset, value) in a shuffled order (deterministic per batch): workers send a
        customer's samples back to back (a silence of weeks at once), and a constant-rate k-means dragged
        along by one customer's run moved its centroids 0.3-0.9 scaled units between snapshots."""
        fresh = []
        for offset, value in messages:
            if offset <= self.offset:
                continue  # learnt before the last checkpoint
            self.offset = offset
            records = records_of(value, "samples")
            if records is None:
                self.rejected += 1
                continue
            for record in records:
                sample = self._parse(record)
                if sample is not None and sample[0] not in self.seen:
                    self.seen[sample[0]] = None
                    fresh.append(sample)
        while len(self.seen) > _REMEMBERED_IDS:
            self.seen.popitem(last=False)
        random.Random(self.offset).shuffle(fresh)
        for _, key, features in fresh:
            self.training.learn(key, features)

    def _parse(self, sample: object) -> tuple[str, str, list[float]] | None:
        try:
            features = [float(v) for v in sample["features"]]
            if len(features) != len(FEATURE_NAMES):
                raise ValueError("wrong shape")
            return str(sample["sample_id"]), str(sample["key"]), features
        except (ValueError, TypeError, KeyError):
            self.rejected += 1
            return None

    async def publish_if_due(self) -> None:
        samples = self.training.learner.samples
        due = (samples - self._published_at_samples >= self.settings.segment_snapshot_every
               or time.monotonic() - self._published_at >= self.settings.segment_snapshot_interval_s)
        if self.owns_topic and self.training.ready and due and samples > self._published_at_samples:
            await self.publish()

    async def after_batch(self) -> None:
        await self.publish_if_due()
        if self.key:
            await save_checkpoint(self.store, CHECKPOINT_KEY, self.key, (self.training, self.seen, self.offset))

    async def publish(self) -> tuple[dict, list[dict]]:
        snapshot, events = self.training.publish(int(time.time() * 1000))
        snapshot["rejected"] = self.rejected
        async with self.store.client.pipeline(transaction=True) as pipe:
            pipe.set(self.store.prefix + SNAPSHOT_KEY, orjson.dumps(snapshot))
            pipe.lpush(self.store.prefix + HISTORY_KEY, orjson.dumps(
                {k: snapshot[k] for k in ("version", "created_at_ms", "samples", "changed_share", "restarted",
                                          "algorithm", "moved")}
                | {"segments": len(snapshot["segments"]), "events": len(events)}))
            pipe.ltrim(self.store.prefix + HISTORY_KEY, 0, _HISTORY_KEPT - 1)
            for event in events:
                pipe.xadd(self.store.prefix + EVENTS_KEY, {"event": orjson.dumps(event)}, maxlen=_EVENTS_KEPT,
                          approximate=True)
            await pipe.execute()
        if self.announce is not None:
            for event in events:
                await self.announce(event)
        self._published_at_samples, self._published_at = self.training.learner.samples, time.monotonic()
        logger.info("published segments v%d (%d segments, %d samples to offset %d, changed %s)", snapshot["version"],
                    len(snapshot["segments"]), snapshot["samples"], self.offset, snapshot["changed_share"])
        return snapshot, events


def register_segment_trainer(app: faust.App, settings: Settings, store: RedisStore) -> None:
    events_topic = app.topic(settings.topic("segment-events"), key_serializer="raw", value_serializer="raw",
                             partitions=1)

    async def announce(event: dict) -> None:
        await events_topic.send(key=str(event["segment_id"]).encode(), value=orjson.dumps(event))

    process = SegmentTrainerProcess(store, settings, announce)
    register_single_partition_trainer(app, settings, "segment-features", "segment-trainer", process,
                                      settings.segment_snapshot_interval_s)
