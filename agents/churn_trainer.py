"""The global churn trainer: one consumer of the single-partition ``training-examples`` topic.

It learns every closed hazard example once (prequentially, both learners), in event-time order: examples wait
(:class:`~online_models.example_order.ExampleOrder`) until every input partition's progress, reported by the
workers with each batch, has passed the event time their label was decided at (less the label delay: a silent
customer's labels may be closed ``CRM_CHURN_LABEL_STEPS`` at a time). So the same history trains the same
sequence of models, whatever the batches, workers and timing that carried it (issue 24). It drops re-sent
examples by id (the pipeline re-sends after a crash).

A version is cut each time the frontier passes a multiple of ``CRM_CHURN_VERSION_DAYS`` (event time) with new
examples learned, once ``CRM_CHURN_MIN_EXAMPLES`` have been (before that, scorers serve the prior), stamped with
``trained_until_ms``: it has learned exactly the examples decided by then. Versions are published to
Redis after the batch that cut them, with how far versions are final; a worker scores a record with the version
trained until the record's event time less the score lag, waiting for it if need be (agents/churn_versions.py).
The newest ``RETAINED_VERSIONS`` snapshots stay in Redis so an operator can hold the served model at one of them
(api/models.py); while held, new versions are retained but not served.

With ``CRM_MODEL_SIGNING_KEY`` set, the trainer also checkpoints itself (its learners, metrics, the examples it
holds, the partitions' progress, recent example ids and the last offset learned) after every batch, signed; a
restarted trainer resumes from it and skips what it has learned.
"""
from __future__ import annotations

import logging
import time
from collections import OrderedDict
from datetime import datetime, timezone

import faust
import orjson

from agents.chunked import records_in
from agents.churn_scoring import MODEL_KEY
from agents.snapshots import load_checkpoint, register_single_partition_trainer, save_checkpoint
from online_models.churn_features import FEATURES, as_current
from online_models.churn_model import ChurnTrainer
from online_models.example_order import ExampleOrder, PartitionFrontier
from online_models.purchase_history import DAY_MS
from streams.config import Settings
from streams.redis_store import RedisStore, lua_script

__all__ = ["TrainerProcess", "register_trainer", "CHECKPOINT_KEY", "METRICS_KEY", "PROGRESS_KEY", "RETAINED_KEY",
           "HOLD_KEY", "UNTIL_KEY", "RETAINED_VERSIONS"]

logger = logging.getLogger(__name__)

CHECKPOINT_KEY = "model:{churn}:trainer"
METRICS_KEY = "model:{churn}:metrics"  # the trainer's report on its newest version, served or held back
PROGRESS_KEY = "model:{churn}:progress"  # what the trainer has learned and holds, after every batch
RETAINED_KEY = "model:{churn}:versions"  # hash: version -> snapshot, the newest RETAINED_VERSIONS and a held one
HOLD_KEY = "model:{churn}:hold"  # the version an operator holds the served model at
UNTIL_KEY = "model:{churn}:until"  # sorted set: retained version by the event time it was trained until
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
        self._reset_order()
        self.unpublished: list[dict] = []  # versions cut, published after the batch
        self.owns_topic = False  # only the owner of the training partition publishes
        self._publish = store.client.register_script(lua_script("publish_model.lua"))

    @property
    def _step_ms(self) -> int:
        return int(self.settings.churn_step_days * DAY_MS)

    def _reset_order(self) -> None:
        settings = self.settings
        self.order: ExampleOrder[tuple] = ExampleOrder()
        self.frontier = PartitionFrontier(settings.partitions, settings.churn_idle_partition_s)
        self.trained_until_ms: int | None = None  # the last version boundary passed
        self._learned_since_cut = 0

    async def restore(self) -> None:
        """Resume from the signed checkpoint if there is one (and continue version numbers anyway);
        without one, start afresh: what this process learned while another worker held the topic is stale."""
        self.trainer = ChurnTrainer(step_days=self.settings.churn_step_days)
        self.seen, self.offset = OrderedDict(), -1
        self._reset_order()
        self.unpublished = []
        served, report = await self.store.client.mget(self.store.prefix + MODEL_KEY, self.store.prefix + METRICS_KEY)
        # Served may be an older version an operator holds; the report is always of the newest published.
        self.version = max((orjson.loads(blob)["version"] for blob in (served, report) if blob), default=0)
        checkpoint = await load_checkpoint(self.store, CHECKPOINT_KEY, self.key, "churn trainer")
        if checkpoint is None:
            return
        if len(checkpoint) != 8:
            logger.warning("churn trainer checkpoint of an older release; starting from scratch")
            return
        (self.trainer, self.seen, self.offset, self.version, self.order, self.frontier, self.trained_until_ms,
         self._learned_since_cut) = checkpoint
        logger.info("trainer resumed at offset %d, %d examples learned, %d held", self.offset, self.trainer.examples,
                    len(self.order))

    def learn_batch(self, messages: list[tuple[int, bytes | None]]) -> None:
        for offset, value in messages:
            self.learn(offset, value)

    def learn(self, offset: int, value: bytes | None) -> None:
        """One ``training-examples`` message: a batch's examples (``{"examples": [...]}``), or one example, or
        the progress of the batch's partitions (``{"progress": {"3": ms, ...}}``), which may release examples."""
        if offset <= self.offset:
            return  # learned before the last checkpoint
        self.offset = offset
        try:
            payload = orjson.loads(value)
        except (TypeError, orjson.JSONDecodeError):
            self.rejected += 1
            return
        progress = _progress_of(payload)
        if progress is not None:
            for partition, progress_ms in progress.items():
                self.frontier.advance(partition, progress_ms)
            self._release()
            return
        for example in records_in(payload, "examples"):
            self._hold(example)

    def _release(self) -> None:
        """Learn, in order, the held examples the frontier has passed, cutting a version at each multiple of
        ``churn_version_days`` passed with examples learned since the last one."""
        frontier = self.frontier.frontier_ms()
        if frontier is None:
            return
        # a window ending at a partition's progress may still close:
        frontier -= self.settings.churn_label_delay_ms() + 1
        period = self.settings.churn_version_period_ms()
        while (boundary := self._next_boundary(period)) is not None and boundary <= frontier:
            for args in self.order.release(boundary):
                self._learn(*args)
            self._cut(boundary)
        for args in self.order.release(frontier):
            self._learn(*args)

    def _next_boundary(self, period: int) -> int | None:
        """The next version boundary: after the last one, skipping those with nothing to learn before them."""
        held = self.order.next_decided_ms()
        if self._learned_since_cut:
            # After the last cut; before any, the boundary at or after what was learned (ceil: a frontier that
            # stopped exactly on a boundary cuts there, as one that jumped past it would).
            return self.trained_until_ms + period if self.trained_until_ms is not None else \
                -(-self.order.frontier_ms // period) * period
        if held is None:
            return None
        return -(-held // period) * period  # the boundary at or after the next example

    def _cut(self, boundary: int) -> None:
        self.trained_until_ms = boundary
        if self._learned_since_cut and self.trainer.examples >= self.settings.churn_min_examples:
            self.version += 1
            snapshot = self.trainer.snapshot(self.version, int(time.time() * 1000))
            snapshot["trained_until_ms"] = boundary
            self.unpublished.append(snapshot)
            self._learned_since_cut = 0

    def _learn(self, features: list[float], purchased: bool, weight: int, buyer: str, checkpoint_ms: int) -> None:
        if len(features) != len(FEATURES):  # held under an earlier feature list (a checkpoint from before)
            features = as_current(features)
        self.trainer.learn(dict(zip(FEATURES, features)), purchased, weight, buyer, checkpoint_ms)
        self._learned_since_cut += 1

    def _hold(self, example: object) -> None:
        try:
            features, weight = example["features"], example.get("weight", 1)
            if not isinstance(example["purchased"], bool) or type(weight) is not int or weight < 1:
                raise ValueError("wrong shape")
            example_id = str(example["example_id"])
            # Held as a list (a third of a dict's memory); one made under an earlier feature list is read by name.
            features = as_current([float(v) for v in features])
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
        closed_ms = example.get("closed_ms")
        if not isinstance(closed_ms, int):  # sent by an older release: its window's end
            closed_ms = checkpoint_ms + self._step_ms
        self.order.add(closed_ms, example_id, (features, example["purchased"], weight, buyer, checkpoint_ms))

    async def publish_if_due(self) -> None:
        """Publish the versions cut since the last call, oldest first (only while owning the topic)."""
        unpublished, self.unpublished = self.unpublished, []
        if self.owns_topic:
            for snapshot in unpublished:
                await self.publish(snapshot)

    async def after_batch(self) -> None:
        """Publish the versions the batch cut and report progress, then checkpoint (signed) if a key is
        configured."""
        await self.publish_if_due()
        if self.owns_topic:
            await self.store.client.set(self.store.prefix + PROGRESS_KEY, orjson.dumps(self.report()))
        if self.key:
            await save_checkpoint(self.store, CHECKPOINT_KEY, self.key, (
                self.trainer, self.seen, self.offset, self.version, self.order, self.frontier, self.trained_until_ms,
                self._learned_since_cut))

    def report(self) -> dict:
        """The trainer's figures beside its newest version's: what it holds back and why, how far its versions
        are final (``final_until_ms``: every version trained until then is published, no other will be cut before
        it; None while some partition has not reported, agents/churn_versions.py), and the last
        ``training-examples`` offset it has read (``offset``: how far behind the workers it is)."""
        frontier_ms = self.frontier.frontier_ms()
        return {"rejected": self.rejected, "duplicates": self.duplicates, "held": len(self.order),
                "late": self.order.late, "frontier_ms": frontier_ms,
                "final_until_ms": None if frontier_ms is None else self.order.frontier_ms,
                "idle_partitions": sorted(self.frontier.idle()), "learned": self.trainer.examples,
                "offset": self.offset}

    async def publish(self, snapshot: dict) -> dict:
        report = snapshot["metrics"] | self.report() | {
            "version": snapshot["version"], "created_at_ms": snapshot["created_at_ms"],
            "trained_until_ms": snapshot["trained_until_ms"]}
        prefix = self.store.prefix
        served = await self._publish(
            keys=[prefix + MODEL_KEY, prefix + RETAINED_KEY, prefix + HOLD_KEY, prefix + METRICS_KEY,
                  prefix + UNTIL_KEY],
            args=[snapshot["version"], orjson.dumps(snapshot), orjson.dumps(report), RETAINED_VERSIONS,
                  snapshot["trained_until_ms"]])
        logger.info("published churn model v%d (%s, %d examples to offset %d, trained until %s)%s",
                    snapshot["version"], snapshot["served"], snapshot["metrics"]["examples"], self.offset,
                    _iso(snapshot["trained_until_ms"]),
                    "" if served else "; not served: an operator holds an older version")
        return snapshot


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat(timespec="seconds")


def _progress_of(message: object) -> dict[int, int] | None:
    """A decoded progress message's partitions and event times, or None when the message is not one."""
    if not isinstance(message, dict) or not isinstance(message.get("progress"), dict):
        return None
    try:
        return {int(partition): int(progress_ms) for partition, progress_ms in message["progress"].items()}
    except (ValueError, TypeError):
        return None


def register_trainer(app: faust.App, settings: Settings, store: RedisStore) -> None:
    process = TrainerProcess(store, settings)
    # No publish timer: versions are cut by progress messages and published after the batch that cut them, soon:
    # workers wait for the version of their event time (agents/churn_versions.py).
    register_single_partition_trainer(app, settings, "training-examples", "churn-trainer", process, None,
                                      within_s=0.05)
