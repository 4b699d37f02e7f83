"""Per-key rate limits shared by every API process and replica.

A limit kept in each process would let a key make N times its rate against N processes (``CRM_API_WORKERS``,
replicas behind a balancer). The budget lives in Redis instead, as one "theoretical arrival time" per key
(GCRA, ``streams/lua/rate_limit.lua``, on Redis's clock; a silent key's entry expires once its budget is full).

Asking Redis on every request cost ~180 µs of a ~460 µs profile request (docs/api.md, "Load"), so a process
reserves a lease of up to a tenth of a second of the key's rate (at most a quarter of its burst; one request
for low limits, which stay exact) and spends it locally. A lease unused after ``lease_ttl_s`` lapses: a key
never gets more than its budget, and at most one lease per process less.
"""
from __future__ import annotations

import time

import redis.asyncio as aioredis

from streams.redis_store import lua_script

__all__ = ["RateLimiter"]


class RateLimiter:
    """``burst`` requests at once per key name, then ``rate_per_s``, across every limiter on one Redis."""

    def __init__(self, client: aioredis.Redis, prefix: str, rate_per_s: float, burst: int, lease_s: float = 0.1,
                 lease_ttl_s: float = 1.0) -> None:
        self.prefix, self.burst, self.lease_ttl_s = prefix, burst, lease_ttl_s
        self.interval_us = max(1, round(1_000_000 / rate_per_s))
        self.lease = max(1, min(burst // 4, int(rate_per_s * lease_s)))
        self._leases: dict[str, tuple[int, float]] = {}  # key name -> (requests left, lapses at)
        self._refused_until: dict[str, float] = {}  # key name -> when Redis said there is room again
        self._reserve = client.register_script(lua_script("rate_limit.lua"))

    async def take(self, name: str) -> float:
        """Take one request from the key's budget: 0.0 if there was room, else the seconds until there is."""
        left, lapses_at = self._leases.get(name, (0, 0.0))
        now = time.monotonic()
        if left > 0 and now < lapses_at:
            self._leases[name] = (left - 1, lapses_at)
            return 0.0
        refused_until = self._refused_until.get(name, 0.0)
        if now < refused_until:  # nothing refills sooner, whoever spends: no need to ask
            return refused_until - now
        granted = int(await self._reserve(keys=[f"{self.prefix}ratelimit:{name}"],
                                          args=[self.interval_us, self.burst, self.lease]))
        if granted < 1:
            wait_s = -granted / 1_000_000
            self._refused_until[name] = now + wait_s
            return wait_s
        left, lapses_at = self._leases.get(name, (0, 0.0))  # another request may have leased meanwhile
        now = time.monotonic()
        self._leases[name] = ((left if now < lapses_at else 0) + granted - 1, now + self.lease_ttl_s)
        return 0.0
