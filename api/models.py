"""Model status and the operator's one model operation: hold the served churn model at a retained version.

A churn model that suddenly scores badly (a bad batch of labels, a drifted feature) should not be served until
someone understands why. The trainer retains its newest snapshots (agents/churn_trainer.py); an admin holds
the served model at one of them (rolling back), and releases the hold to serve the newest again. Both are one
Lua script each, atomic with the trainer's publishing, and the scorers on every worker follow within a second.
Scores are event-time deterministic for a given served model; a hold is an operator's decision, logged and
visible in ``GET /models``, not something a replay repeats.
"""
from __future__ import annotations

import logging

import orjson
import redis.asyncio as aioredis

from agents.churn_scoring import MODEL_KEY
from agents.churn_trainer import HOLD_KEY, METRICS_KEY, PROGRESS_KEY, RETAINED_KEY
from agents.segment_stage import SNAPSHOT_KEY
from agents.segment_trainer import HISTORY_KEY
from streams.redis_store import lua_script

__all__ = ["ModelOps"]

logger = logging.getLogger("crmstream.api")


class ModelOps:
    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self.client, self.prefix = client, prefix
        self._hold = client.register_script(lua_script("hold_model.lua"))

    async def status(self, history: int = 10) -> dict:
        """The churn model: the trainer's newest version with its prequential metrics, the version served, the
        held version if any and the retained ones, and the trainer's progress (examples learned and held back,
        its event-time frontier, idle partitions); the behaviour-segment snapshot (version, recent history).
        None where a trainer has not published yet."""
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.get(self.prefix + METRICS_KEY)
            pipe.get(self.prefix + HOLD_KEY)
            pipe.hkeys(self.prefix + RETAINED_KEY)
            pipe.get(self.prefix + SNAPSHOT_KEY)
            pipe.lrange(self.prefix + HISTORY_KEY, 0, history - 1)
            pipe.get(self.prefix + PROGRESS_KEY)
            report, held, retained, segments, segment_history, progress = await pipe.execute()
        churn = None
        if report:
            churn = orjson.loads(report)
            churn["serving"] = {"version": int(held) if held else churn["version"],
                                "held": held is not None, "retained_versions": sorted(map(int, retained))}
            churn["trainer"] = orjson.loads(progress) if progress else None
        segment_snapshot = orjson.loads(segments) if segments else None
        return {
            "churn": churn,
            "segments": None if segment_snapshot is None else {
                **{k: segment_snapshot.get(k) for k in ("version", "created_at_ms", "algorithm", "samples",
                                                        "changed_share")},
                "segments": len(segment_snapshot["segments"]),
                "history": [orjson.loads(entry) for entry in segment_history]},
        }

    async def hold_churn(self, version: int, by: str) -> int | None:
        """Serve retained ``version`` and keep serving it; None if it is not retained."""
        served = await self._run(str(version))
        if served is not None:
            logger.warning("churn model held at version %d by key %s", served, by)
        return served

    async def release_churn(self, by: str) -> int | None:
        """Serve the newest retained version again, and new ones as they come; None if none is retained."""
        served = await self._run("")
        if served is not None:
            logger.warning("churn model hold released by key %s; serving version %d", by, served)
        return served

    async def _run(self, version: str) -> int | None:
        served = await self._hold(keys=[self.prefix + MODEL_KEY, self.prefix + RETAINED_KEY, self.prefix + HOLD_KEY],
                                  args=[version])
        return None if served is None else int(served)
