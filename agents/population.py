"""A worker's view of the RFM population: what all workers committed, plus its own batches since.

Ranking a customer needs the whole population, which every worker changes. Reading it from Redis for every
batch would add a round trip; never re-reading it would ignore the other workers. So the view is re-read at
most every ``max_age_s`` and, in between, follows this worker's own committed changes exactly.
"""
from __future__ import annotations

import time

from agents.customer_state import sketch_hash
from online_models.quantiles import FrozenRanks, QuantileSketch
from online_models.rfm import POPULATION_SKETCHES, population_sketches
from streams.redis_store import BatchWrite, RedisStore

__all__ = ["PopulationView"]


class PopulationView:
    def __init__(self, store: RedisStore, max_age_s: float = 1.0) -> None:
        self.store = store
        self.max_age_s = max_age_s
        self._sketches: dict[str, QuantileSketch] = {}
        self._ranks: dict[str, FrozenRanks] = {}
        self._read_at = -float("inf")

    async def ranks(self) -> dict[str, FrozenRanks]:
        if time.monotonic() - self._read_at > self.max_age_s:
            counts = await self.store.read_hashes([sketch_hash(name) for name in POPULATION_SKETCHES])
            self._sketches = population_sketches(counts)
            self._ranks = {name: sketch.frozen() for name, sketch in self._sketches.items()}
            self._read_at = time.monotonic()
        return self._ranks

    def follow(self, write: BatchWrite) -> None:
        """Apply the sketch changes of a batch this worker has just committed."""
        for name, sketch in self._sketches.items():
            changes = write.counters.get(sketch_hash(name))
            if changes:
                for key, delta in changes.items():
                    sketch.counts[int(key)] += delta
                self._ranks[name] = sketch.frozen()
