"""The global churn trainer: one consumer of the single-partition ``training-examples`` topic.

It learns every closed hazard example once (prequentially, both learners), drops
re-sent examples by id (the pipeline re-sends after a crash), and publishes the
served model as a versioned snapshot to Redis every ``CRM_CHURN_SNAPSHOT_EVERY``
examples or ``CRM_CHURN_SNAPSHOT_INTERVAL_S`` seconds, once it has seen
``CRM_CHURN_MIN_EXAMPLES`` (before that, scorers serve the prior). Scorers on
every worker pick new versions up within a second (agents/churn_scoring.py).
The newest ``RETAINED_VERSIONS`` snapshots stay in Redis so an operator can hold
the served model at one of them (api/models.py); while held, new versions are
retained but not served.

With ``CRM_MODEL_SIGNING_KEY`` set, the trainer also checkpoints itself (its
learners, metrics, recent example ids and the last offset learned) after every
batch, signed; a restarted trainer resumes from it and skips what it has learned.
"""
from __future__ import annotations

import logging
import time
from collections import OrderedDict

import faust
import orjson

from agents.chunked import records_of
from agents.churn_scoring import MODEL_KEY
from agents.snapshots import load_checkpoint, register_single_partition_trainer, save_checkpoint
from online_models.churn_features import FEATURES
from online_models.churn_model import ChurnTrainer
from streams.config import Settings
from streams.redis_store import RedisStore, lua_script

__all__ = ["TrainerProcess", "register_trainer", "CHECKPOINT_KEY", "METRICS_KEY", "RETAINED_KEY", "HOLD_KEY",
           "RETAINED_VERSIONS"]

logger = logging.getLogger(__name__)

CHECKPOINT_KEY = "model:churn:trainer"
METRICS_KEY = "model:churn:metrics"  # the trainer's report on its newest version, served or held back
RETAINED_KEY = "model:churn:versions"  # hash: version -> snapshot, the newest RETAINED_VERSIONS and a held one
HOLD_KEY = "model:churn:hold"  # the version an operator holds the served model at
RETAINED_VERSIONS = 10
_REMEMBERED_IDS = 200_000


class TrainerProcess:
    """Trainer state plus what it needs to publish; Faust-free so tests and benchmarks can drive it."""

    def __init__(self, store: RedisStore, settings: Settings) -> None:
        self.store, self.settings = store, settings
        self.key = settings.model_signing_key.encode()
        self.trainer = ChurnTrainer(step_days=settings.churn_step_days)
        self.seen: OrderedDict[str, None] = OrderedDict()
        self.offset = -1
        self.version = 0
        self.rejected = 0
        self.duplicates = 0
        self._published_at_examples = 0
        self._published_at = time.monotonic()
        self.owns_topic = False  # only the owner of the training partition publishes
        self._publish = store.client.register_script(lua_script("publish_model.lua"))

    async def restore(self) -> None:
        """Resume from the signed checkpoint if there is one (and continue version numbers anyway);
        without one, start afresh: what this process learned while another worker held the topic is stale."""
        self.trainer = ChurnTrainer(step_days=self.settings.churn_step_days)
        self.seen, self.offset = OrderedDict(), -1
        served, report = await self.store.client.mget(self.store.prefix + MODEL_KEY, self.store.prefix + METRICS_KEY)
        # Served may be an older version an operator holds; the report is always of the newest published.
        self.version = max((orjson.loads(blob)["version"] for blob in (served, report) if blob), default=0)
        checkpoint = await load_checkpoint(self.store, CHECKPOINT_KEY, self.key, "churn trainer")
        if checkpoint is None:
            return
        self.trainer, self.seen, self.offset, self.version = checkpoint
        logger.info("trainer resumed at offset %d, %d examples", self.offset, self.trainer.examples)

    def learn_batch(self, messages: list[tuple[int, bytes | None]]) -> None:
        for offset, value in messages:
            self.learn(offset, value)

    def learn(self, offset: int, value: bytes | None) -> None:
        """One ``training-examples`` message: a batch's examples (``{"examples": [...]}``), or one example."""
        if offset <= self.offset:
            return  # learned before the last checkpoint
        self.offset = offset
        examples = records_of(value, "examples")
        if examples is None:
            self.rejected += 1
            return
        for example in examples:
            self._learn_one(example)

    def _learn_one(self, example: object) -> None:
        try:
            features, weight = example["features"], example.get("weight", 1)
            if len(features) != len(FEATURES) or not isinstance(example["purchased"], bool) \
                    or type(weight) is not int or weight < 1:
                raise ValueError("wrong shape")
            example_id = str(example["example_id"])
            x = {name: float(v) for name, v in zip(FEATURES, features)}
            checkpoint_ms = int(example["checkpoint_ms"])
            buyer = example_id.rpartition(":")[0]  # "customer:checkpoint"
        except (ValueError, TypeError, KeyError):
            self.rejected += 1
            return
        if example_id in self.seen:
            self.duplicates += 1
            return
        self.seen[example_id] = None
        if len(self.seen) > _REMEMBERED_IDS:
            self.seen.popitem(last=False)
        self.trainer.learn(x, example["purchased"], weight, buyer, checkpoint_ms)

    async def publish_if_due(self) -> None:
        """Publish a snapshot if enough examples or time have passed since the last one. Called after every
        batch and by a timer: without the timer, the last examples before a lull would wait for the next batch."""
        examples = self.trainer.examples
        due = (examples - self._published_at_examples >= self.settings.churn_snapshot_every
               or time.monotonic() - self._published_at >= self.settings.churn_snapshot_interval_s)
        if self.owns_topic and examples >= self.settings.churn_min_examples and due \
                and examples > self._published_at_examples:
            await self.publish()

    async def after_batch(self) -> None:
        """Publish a snapshot when due, then checkpoint (signed) if a key is configured."""
        await self.publish_if_due()
        if self.key:
            await save_checkpoint(self.store, CHECKPOINT_KEY, self.key, (self.trainer, self.seen, self.offset,
                                                                        self.version))

    async def publish(self) -> dict:
        self.version += 1
        snapshot = self.trainer.snapshot(self.version, int(time.time() * 1000))
        report = snapshot["metrics"] | {"rejected": self.rejected, "duplicates": self.duplicates,
                                        "version": self.version, "created_at_ms": snapshot["created_at_ms"]}
        prefix = self.store.prefix
        served = await self._publish(
            keys=[prefix + MODEL_KEY, prefix + RETAINED_KEY, prefix + HOLD_KEY, prefix + METRICS_KEY],
            args=[self.version, orjson.dumps(snapshot), orjson.dumps(report), RETAINED_VERSIONS])
        self._published_at_examples, self._published_at = self.trainer.examples, time.monotonic()
        logger.info("published churn model v%d (%s, %d examples to offset %d)%s", self.version, snapshot["served"],
                    self.trainer.examples, self.offset,
                    "" if served else "; not served: an operator holds an older version")
        return snapshot


def register_trainer(app: faust.App, settings: Settings, store: RedisStore) -> None:
    process = TrainerProcess(store, settings)
    register_single_partition_trainer(app, settings, "training-examples", "churn-trainer", process,
                                      settings.churn_snapshot_interval_s)
