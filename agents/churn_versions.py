"""The churn model version for an event time, as the worker's scorers use it (agents/version_targets.py).

The trainer (agents/churn_trainer.py) publishes each version with the event time it was trained until
(``model:{churn}:until``: a sorted set, version by ``trained_until_ms``) and, after every batch, how far its
versions are final (``final_until_ms`` in its progress report: every version trained until then has been
published; none will be cut before it any more). The version for a target is the newest trained until it, once
the trainer is final past it. Until then the batch waits: the partitions behind are still closing the examples
it needs.

Waited for also while the trainer has not reported yet, or not heard from every partition (a partition no worker
owns is left out as idle after ``CRM_CHURN_IDLE_PARTITION_S``). Not waited for (and so not reproducible): while an
operator holds a version (it is served as held), when the worker's own partitions hold the version back (the
pipeline's nudge says so, checked at once and about once a second while waiting:
``BatchProcessor._own_partitions_hold_back``), and past
``CRM_CHURN_VERSION_WAIT_S`` (logged, counted in ``crm_churn_version_waits_total{outcome="timed_out"}``; no
further wait until the trainer's report changes: a trainer that is down costs one timeout, not one per batch).
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from typing import Awaitable, Callable

import orjson

from agents.churn_trainer import HOLD_KEY, PROGRESS_KEY, RETAINED_KEY, UNTIL_KEY
from agents.metrics import CHURN_VERSION_WAIT_SECONDS, CHURN_VERSION_WAITS
from agents.snapshots import SnapshotView
from online_models.churn_model import HazardScorer, scorer_from_snapshot
from streams.redis_store import RedisStore

__all__ = ["ChurnVersions"]

logger = logging.getLogger(__name__)

_NEVER = object()
_BUILT = 8  # scorers kept built: the versions of the few targets a worker's partitions are at


class ChurnVersions:
    """Scorers by target event time; ``None`` stands for the cold-start prior."""

    def __init__(self, store: RedisStore, served: SnapshotView[HazardScorer], max_wait_s: float) -> None:
        self.store, self.served, self.max_wait_s = store, served, max_wait_s
        self.progress_key, self.retained_key, self.hold_key, self.until_key = (
            store.prefix + key for key in (PROGRESS_KEY, RETAINED_KEY, HOLD_KEY, UNTIL_KEY))
        self._final: dict[int, int | None] = {}  # target -> version, once final (bounded below)
        self._built: OrderedDict[int, HazardScorer] = OrderedDict()
        self._given_up_on: object = _NEVER  # the trainer report a wait timed out on

    async def for_target(self, target_ms: int | None,
                         nudge: Callable[[], Awaitable[bool]] | None = None) -> HazardScorer | None:
        """The scorer for records whose target is ``target_ms`` (None: any, the newest served). Without ``nudge``
        the newest version before it is taken without waiting; a wait awaits ``nudge`` at once and about once a
        second (the pipeline sends its partitions' committed progress), and ends when it returns False (waiting
        cannot help: the worker's own partitions hold the version back, a failover's)."""
        if target_ms is None:
            return await self.served.current()
        held, report = await self.store.client.mget(self.hold_key, self.progress_key)
        if held is not None:
            return await self.served.current()  # an operator's choice wins, reproducible or not
        if target_ms in self._final:
            return await self._scorer(self._final[target_ms])
        started = time.monotonic()
        nudged = started - 1.0  # at once: nothing may have been reported yet
        pause = 0.005
        while nudge is not None and not _final_past(report, target_ms) and report != self._given_up_on:
            waited = time.monotonic() - started
            if waited >= self.max_wait_s:
                CHURN_VERSION_WAITS.labels("timed_out").inc()
                logger.warning("no churn model final for event time %d after %.0f s (trainer report: %s); scoring "
                               "with the newest before it, not waiting again until the trainer moves; scores may "
                               "differ in a replay", target_ms, waited, report)
                self._given_up_on = report
                break
            if time.monotonic() - nudged >= 1.0:
                nudged = time.monotonic()
                if not await nudge():
                    break
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.02)
            held, report = await self.store.client.mget(self.hold_key, self.progress_key)
            if held is not None:
                return await self.served.current()
        if (waited := time.monotonic() - started) > 0.001:
            CHURN_VERSION_WAITS.labels("waited").inc()
            CHURN_VERSION_WAIT_SECONDS.inc(waited)
        found = await self.store.client.zrevrangebyscore(self.until_key, target_ms, "-inf",
                                                         start=0, num=1)
        version = int(found[0]) if found else None
        if _final_past(report, target_ms):
            if len(self._final) > 4 * _BUILT:
                self._final.pop(min(self._final))
            self._final[target_ms] = version
        return await self._scorer(version)

    async def _scorer(self, version: int | None) -> HazardScorer | None:
        if version is None:
            # No version trained until then: the prior, unless the served model was published without
            # ``trained_until_ms`` (a model learnt elsewhere and published as it is, tests/alert_scenario.py):
            # it holds for every event time.
            served = await self.served.current()
            return served if served is not None and "trained_until_ms" not in self.served.fields else None
        if version in self._built:
            self._built.move_to_end(version)
            return self._built[version]
        blob = await self.store.client.hget(self.retained_key, str(version))
        if blob is None:  # retired from the retained set: a partition far behind the others
            logger.warning("churn model version %d no longer retained; scoring with the served one", version)
            return await self.served.current()
        scorer = scorer_from_snapshot(orjson.loads(blob))
        self._built[version] = scorer
        if len(self._built) > _BUILT:
            self._built.popitem(last=False)
        return scorer


def _final_past(report: bytes | str | None, target_ms: int) -> bool:
    """Whether the trainer's report says every version trained until ``target_ms`` is published."""
    final_ms = orjson.loads(report).get("final_until_ms") if report else None
    return final_ms is not None and final_ms >= target_ms
