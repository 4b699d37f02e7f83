"""The shared per-key rate limit against a real Redis: a burst, then the rate, one budget for every limiter
(API process) on the same Redis, and nothing left behind by a key that falls silent."""
from __future__ import annotations

import asyncio
import time

from api.rate_limit import RateLimiter


async def test_a_burst_then_the_rate_shared_by_every_limiter_on_one_redis(settings, redis_client, redis_async):
    prefix = settings.redis_prefix
    one, other = (RateLimiter(redis_async, prefix, rate_per_s=10.0, burst=4) for _ in range(2))
    started = time.monotonic()
    waits = [await limiter.take("anna") for limiter in (one, other, one, other, one)]
    elapsed = time.monotonic() - started  # a token refills every 100 ms: the fifth waits for what is left of it
    assert waits[:4] == [0.0] * 4 and 0.1 - elapsed - 1e-3 <= waits[4] <= 0.1
    assert await other.take("ben") == 0.0  # budgets are per key
    await asyncio.sleep(waits[4])
    assert await other.take("anna") == 0.0  # the token that refilled, taken through the other limiter...
    wait = await one.take("anna")
    since_refill = time.monotonic() - (started + waits[4])  # that token refilled no earlier than this
    assert 0.1 - since_refill - 1e-3 <= wait <= 0.1  # ...so this one waits for the next: one budget for both
    assert wait > 0.0 or since_refill >= 0.099
    ttl_ms = redis_client.pttl(prefix + "ratelimit:anna")
    assert 0 < ttl_ms <= 502  # at most the time to refill the whole burst (4 x 100 ms), then gone


async def test_leases_let_no_key_exceed_its_budget_across_processes(settings, redis_client, redis_async):
    prefix = settings.redis_prefix
    limiters = [RateLimiter(redis_async, prefix, rate_per_s=100.0, burst=400, lease_s=1.0) for _ in range(3)]
    assert limiters[0].lease == 100  # a second of the rate, a quarter of the burst
    calls_before = int(redis_client.info("commandstats")["cmdstat_evalsha"]["calls"])
    admitted, started = 0, time.monotonic()
    for i in range(600):  # three processes sharing one key, far faster than its rate
        admitted += await limiters[i % 3].take("anna") == 0.0
    refills = 100.0 * (time.monotonic() - started)
    calls = int(redis_client.info("commandstats")["cmdstat_evalsha"]["calls"]) - calls_before
    # The burst plus what refilled meanwhile, never more; a lease per process is the most it falls short.
    assert 400 - 3 * 100 <= admitted <= 400 + refills + 1
    # Four leases spend the burst; after that each process asks again once per refill, not per request.
    assert calls <= 4 + 3 * (2 + refills)
