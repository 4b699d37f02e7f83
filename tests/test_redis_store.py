"""The store's exactly-once rules against a real redis-server: fencing and idempotent commits."""
from __future__ import annotations

import uuid

import pytest

from streams.redis_store import BatchWrite, Fenced, RedisStore


@pytest.fixture()
async def stores(redis_server):
    prefix = f"s{uuid.uuid4().hex[:8]}:"
    first, second = RedisStore.from_url(redis_server.url, prefix), RedisStore.from_url(redis_server.url, prefix)
    yield first, second
    await first.close()
    await second.close()


def batch(offset: int, customer_id: str = "c1", events: int = 1) -> BatchWrite:
    write = BatchWrite(offsets={"crm.purchases:0": offset}, states={customer_id: f'{{"events": {events}}}'})
    write.count("stats:ingest", "accepted:purchases", events)
    return write


async def test_a_stale_owner_is_fenced_and_writes_nothing(stores):
    zombie, new_owner = stores
    await zombie.claim(["crm.purchases:0"])
    assert await zombie.commit_batch(batch(10))
    await new_owner.claim(["crm.purchases:0"])  # the partition moved while the zombie was paused
    with pytest.raises(Fenced):
        await zombie.commit_batch(batch(11, "c2"))
    assert await zombie.client.exists(zombie.part(0) + "c:{c2}") == 0
    assert await zombie.client.hget(zombie.part(0) + "offsets", "crm.purchases:0") == "10"
    assert await new_owner.commit_batch(batch(11, "c3"))
    assert new_owner.applied_offsets["crm.purchases:0"] == 11


async def test_a_retried_commit_is_not_applied_twice(stores):
    store, _ = stores
    await store.claim(["crm.purchases:0"])
    assert await store.commit_batch(batch(5, events=3))
    store.applied_offsets["crm.purchases:0"] = 4  # as if the reply had been lost before the cache update
    assert not await store.commit_batch(batch(5, events=3))
    assert await store.client.hget(store.part(0) + "stats:ingest", "accepted:purchases") == "3"


async def test_claim_resumes_from_the_stored_offsets(stores):
    store, restarted = stores
    await store.claim(["crm.purchases:0"])
    await store.commit_batch(batch(41))
    await restarted.claim(["crm.purchases:0", "crm.purchases:1"])
    assert restarted.is_applied("crm.purchases:0", 41) and not restarted.is_applied("crm.purchases:0", 42)
    assert not restarted.is_applied("crm.purchases:1", 0)


async def test_a_catch_up_batch_larger_than_luas_unpack_limit_commits_whole(stores):
    """A 2,000-event catch-up batch can wake thousands of customers of one partition and bring one busy
    customer thousands of event ids; Lua's unpack() fails beyond ~8,000 values."""
    store, _ = stores
    await store.claim(["crm.purchases:0"])
    write = batch(1)
    for i in range(6000):
        write.schedule(0, f"c{i}", 1_000 + i)
    write.seen = {"c1": {"purchases": [value for i in range(5000) for value in (str(i), f"d{i}")]}}
    write.seen_floor_ms = {"c1": {"purchases": -1}}
    assert await store.commit_batch(write)
    assert await store.client.zcard(store.wheel_key(0)) == 6000
    assert await store.client.zcard(store.part(0) + "c:{c1}:seen:purchases") == 5000
    asked = [f"d{i}" for i in range(9000)]  # 5,000 seen, 4,000 new
    loaded = await store.load_batch({"c1": {"purchases": asked}}, {"c1": 0})
    assert loaded["c1"].seen == {("purchases", f"d{i}") for i in range(5000)}
