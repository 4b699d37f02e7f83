"""Read customer profiles from Redis (what the API and CLI serve).

Reads the customer hash, the population sketches and the event-time clock, and
hands them to the pure :func:`online_models.customer_profile.build_profile`.
The sketches change with every batch but ranks move slowly, so they are cached
for ``sketch_ttl_s`` (one second by default) to keep a profile read to one
Redis round trip.
"""
from __future__ import annotations

import time

import redis.asyncio as aioredis

from agents.customer_state import sketch_hash
from online_models.customer_profile import ProfileSettings, build_profile
from online_models.customer_state import CustomerState
from online_models.quantiles import QuantileSketch
from online_models.rfm import POPULATION_SKETCHES, population_sketches

__all__ = ["CustomerReader"]


class CustomerReader:
    def __init__(self, client: aioredis.Redis, prefix: str, settings: ProfileSettings = ProfileSettings(),
                 sketch_ttl_s: float = 1.0) -> None:
        self.client = client
        self.prefix = prefix
        self.settings = settings
        self.sketch_ttl_s = sketch_ttl_s
        self._population: tuple[float, dict[str, QuantileSketch], int] | None = None

    async def population(self) -> tuple[dict[str, QuantileSketch], int]:
        """Population sketches and the event-time clock (newest event time of any partition)."""
        cached = self._population
        if cached is not None and time.monotonic() - cached[0] < self.sketch_ttl_s:
            return cached[1], cached[2]
        async with self.client.pipeline(transaction=False) as pipe:
            for name in POPULATION_SKETCHES:
                pipe.hgetall(self.prefix + sketch_hash(name))
            pipe.hvals(self.prefix + "watermark")
            *sketch_counts, clocks = await pipe.execute()
        sketches = population_sketches(sketch_counts)
        as_of_ms = max((int(clock) for clock in clocks), default=0)
        self._population = (time.monotonic(), sketches, as_of_ms)
        return sketches, as_of_ms

    async def profile(self, customer_id: str) -> dict | None:
        blob = await self.client.hget(f"{self.prefix}c:{{{customer_id}}}", "state")
        if blob is None:
            return None
        sketches, as_of_ms = await self.population()
        return build_profile(customer_id, CustomerState.from_json(blob), sketches, as_of_ms, self.settings)
