"""What the global trainers share: workers' view of a published snapshot, the trainers' signed checkpoints,
and the wiring of a trainer to its single-partition topic.

Both trainers (churn, segments) consume one single-partition topic, publish versioned JSON snapshots to
Redis that every worker re-reads at most once a second, and may checkpoint themselves as a signed pickle.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Callable, Generic, Protocol, TypeVar

import faust
import orjson

from online_models import signed_pickle
from online_models.signed_pickle import UntrustedSnapshot
from streams.config import Settings
from streams.redis_store import RedisStore

__all__ = ["SnapshotView", "save_checkpoint", "load_checkpoint", "register_single_partition_trainer"]

logger = logging.getLogger(__name__)


class _Versioned(Protocol):
    version: Any


V = TypeVar("V", bound=_Versioned)


class SnapshotView(Generic[V]):
    """The newest snapshot under ``key``, built by ``build`` and re-read at most every ``max_age_s``;
    None before the first. A snapshot ``build`` refuses keeps the current one."""

    def __init__(self, store: RedisStore, key: str, build: Callable[[dict], V], what: str,
                 max_age_s: float = 1.0) -> None:
        self.store, self.key, self.build, self.what, self.max_age_s = store, key, build, what, max_age_s
        self._current: V | None = None
        self.fields: frozenset[str] = frozenset()  # the current snapshot's top-level fields
        self._read_at = -float("inf")

    async def current(self) -> V | None:
        if time.monotonic() - self._read_at > self.max_age_s:
            self._read_at = time.monotonic()
            blob = await self.store.client.get(self.store.prefix + self.key)
            if blob is not None:
                snapshot = orjson.loads(blob)
                if self._current is None or snapshot["version"] != self._current.version:
                    try:
                        self._current = self.build(snapshot)
                        self.fields = frozenset(snapshot)
                        logger.info("using %s version %s", self.what, snapshot["version"])
                    except (ValueError, KeyError, TypeError) as exc:
                        logger.error("%s snapshot refused, keeping the current one: %s", self.what, exc)
        return self._current


async def save_checkpoint(store: RedisStore, key: str, signing_key: bytes, state: Any) -> None:
    """Store ``state`` as a signed pickle (only ever loaded when the signature verifies)."""
    await store.client.set(store.prefix + key, orjson.dumps(signed_pickle.sign(state, signing_key)))


async def load_checkpoint(store: RedisStore, key: str, signing_key: bytes, what: str) -> Any | None:
    """The checkpointed state, or None when there is none, no key, or its signature does not verify."""
    blob = await store.client.get(store.prefix + key)
    if blob is None or not signing_key:
        return None
    try:
        return signed_pickle.load(orjson.loads(blob), signing_key)
    except UntrustedSnapshot:
        logger.error("%s checkpoint signature does not verify; starting from scratch", what)
        return None


class SnapshotTrainer(Protocol):
    owns_topic: bool

    async def restore(self) -> None: ...

    def learn_batch(self, messages: list[tuple[int, bytes | None]]) -> None: ...

    async def publish_if_due(self) -> None: ...

    async def after_batch(self) -> None: ...


def register_single_partition_trainer(app: faust.App, settings: Settings, topic_name: str, agent_name: str,
                                      process: SnapshotTrainer, interval_s: float | None,
                                      within_s: float = 0.5) -> None:
    """Run ``process`` as the consumer of the single-partition ``topic_name``: restore when the partition
    is (re)assigned (another worker may have trained meanwhile), publish only while owning it, on every
    batch and, every ``interval_s`` when given, on a timer (a trainer that publishes by wall clock: the last
    samples before a lull must not wait for the next batch). A batch is what arrived within ``within_s`` (or 1,000
    messages): the churn trainer's is short, as workers wait for its versions."""
    full_name = settings.topic(topic_name)
    topic = app.topic(full_name, key_serializer="raw", value_serializer="raw", partitions=1)
    needs_restore = [True]
    publishing = asyncio.Lock()  # timer and agent both publish: one snapshot version at a time

    def holds_partition(tps) -> bool:
        return any(tp.topic == full_name for tp in tps)

    @app.on_partitions_assigned.connect
    async def on_assigned(app: faust.App, assigned, **_) -> None:
        if holds_partition(assigned):
            needs_restore[0] = True
            process.owns_topic = True

    @app.on_partitions_revoked.connect
    async def on_revoked(app: faust.App, revoked, **_) -> None:
        if holds_partition(revoked):
            process.owns_topic = False

    async def publish_on_time() -> None:
        if not needs_restore[0]:
            try:
                async with publishing:
                    await process.publish_if_due()
            except Exception:  # a timer's exception stops the whole worker; the next tick tries again
                logger.exception("%s: publishing a snapshot failed", agent_name)

    if interval_s is not None:
        app.timer(interval=interval_s, name=f"{agent_name}-publish")(publish_on_time)

    @app.agent(topic, name=agent_name)
    async def train(stream: faust.StreamT) -> None:
        async for events in stream.take_events(1000, within=within_s):
            if needs_restore[0]:
                await process.restore()
                needs_restore[0] = False
            process.learn_batch([(event.message.offset, event.message.value) for event in events])
            async with publishing:
                await process.after_batch()
