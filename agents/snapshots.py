"""What the global trainers share: workers' view of a published snapshot, the trainers' signed checkpoints,
and the wiring of a trainer to its single-partition topic.

Both trainers (churn, segments) consume one single-partition topic, publish versioned JSON snapshots to
Redis that every worker re-reads at most once a second, and may checkpoint themselves as a signed pickle.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any, AsyncIterator, Callable, Generic, Protocol, TypeVar

import faust
import orjson
from faust.types import TP

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
    watch = StallWatch(agent_name)

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
                async with publishing, watch.busy("publish on time"):
                    await process.publish_if_due()
            except Exception:  # a timer's exception stops the whole worker; the next tick tries again
                logger.exception("%s: publishing a snapshot failed", agent_name)

    if interval_s is not None:
        app.timer(interval=interval_s, name=f"{agent_name}-publish")(publish_on_time)

    @app.timer(interval=_WATCH_EVERY_S, name=f"{agent_name}-watch")
    async def look_for_a_stall() -> None:
        try:  # a timer's exception stops the whole worker
            log_end = app.consumer.highwater(TP(full_name, 0)) if process.owns_topic else None
        except Exception:  # not assigned (a rebalance in between): nothing to compare with
            log_end = None
        watch.check(log_end)

    @app.agent(topic, name=agent_name)
    async def train(stream: faust.StreamT) -> None:
        async for events in stream.take_events(1000, within=within_s):
            watch.received(events[-1].message.offset)
            if needs_restore[0]:
                await process.restore()
                needs_restore[0] = False
            process.learn_batch([(event.message.offset, event.message.value) for event in events])
            async with publishing, watch.busy("after a batch"):
                await process.after_batch()


_WATCH_EVERY_S = 10.0
_STALLED_AFTER_S = 30.0


class StallWatch:
    """Says loudly when a trainer stops: a batch's publishing step that does not return, or messages on the broker
    that the agent has not been given for ``stalled_after_s``, with the stacks of the worker's tasks. Why: three
    test runs saw a trainer stop for two minutes with nothing in the log (docs/performance.md); which of the two
    it was, the next occurrence will say.

    >>> watch = StallWatch("trainer", stalled_after_s=30.0, clock=iter([0.0, 0.0, 0.0, 40.0]).__next__)
    >>> watch.check(log_end=12)  # nothing received yet: what a restarted worker had committed is not owed
    >>> watch.received(7)
    >>> watch.check(log_end=8)   # offset 7 was the last: nothing waits
    >>> watch.check(log_end=12)  # offsets 8-11 wait, since 0 s
    >>> watch.check(log_end=12)  # 40 s later: stalled (logged once)
    'offsets 8-11 on the broker not given to the agent for 40 s'
    """

    def __init__(self, name: str, stalled_after_s: float = _STALLED_AFTER_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name, self.stalled_after_s, self.clock = name, stalled_after_s, clock
        self.last_offset = -1
        self.waiting_since: float | None = None   # when messages were first seen waiting past the last offset
        self.busy_since: tuple[str, float] | None = None
        self.reported = False

    def received(self, offset: int) -> None:
        self.last_offset, self.waiting_since, self.reported = offset, None, False

    @contextlib.asynccontextmanager
    async def busy(self, what: str) -> AsyncIterator[None]:
        """``what`` runs now: a stall if it has not returned within ``stalled_after_s``."""
        self.busy_since = (what, self.clock())
        try:
            yield
        finally:
            self.busy_since = None

    def check(self, log_end: int | None) -> str | None:
        """What is stalled now (logged with the tasks' stacks the first time), if anything."""
        now, stalled = self.clock(), None
        if self.busy_since is not None and now - self.busy_since[1] >= self.stalled_after_s:
            stalled = f"{self.busy_since[0]} has not returned for {now - self.busy_since[1]:.0f} s"
        elif log_end is not None and self.last_offset >= 0 and log_end - 1 > self.last_offset:
            # (nothing received since the start: a restarted worker's committed messages are not owed to it)
            if self.waiting_since is None:
                self.waiting_since = now
            elif now - self.waiting_since >= self.stalled_after_s:
                stalled = (f"offsets {self.last_offset + 1}-{log_end - 1} on the broker not given to the agent for "
                           f"{now - self.waiting_since:.0f} s")
        else:
            self.waiting_since = None
        if stalled is not None and not self.reported:
            self.reported = True
            logger.warning("%s stalled: %s; tasks:\n%s", self.name, stalled, task_stacks())
            return stalled
        return None


def task_stacks() -> str:
    """Where each task of the running loop waits (its chain of awaits, outermost first), those in this project's
    code first, for a stall's log."""
    try:
        tasks = asyncio.all_tasks()
    except RuntimeError:  # no running loop (a doctest)
        return ""
    lines = []
    for task in tasks:
        frames, awaited = [], task.get_coro()
        while awaited is not None and len(frames) < 12:
            frame = next((getattr(awaited, a) for a in ("cr_frame", "gi_frame", "ag_frame")
                          if getattr(awaited, a, None) is not None), None)
            if frame is not None:
                frames.append(f"{'/'.join(frame.f_code.co_filename.rsplit('/', 2)[-2:])}:{frame.f_lineno} "
                              f"{frame.f_code.co_name}")
            awaited = next((getattr(awaited, a) for a in ("cr_await", "gi_yieldfrom", "ag_await")
                            if getattr(awaited, a, None) is not None), None)
        lines.append(f"{task.get_name()}: " + " -> ".join(frames))
    return "\n".join(sorted(lines, key=lambda line: ("agents/" not in line and "streams/" not in line, line)))
