"""The store's exactly-once rules against a real redis-server: fencing and idempotent commits."""
from __future__ import annotations

import uuid

import pytest
from redis.exceptions import ResponseError

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


async def test_several_partitions_commit_in_one_call_each_on_its_own(stores):
    """commit_batches pipelines the partitions' scripts on one Redis: each outcome stands alone (applied, a
    retry, fenced by a new owner, never owned), in its place; after a SCRIPT FLUSH the scripts are loaded again."""
    store, new_owner = stores
    await store.claim([f"crm.purchases:{p}" for p in range(3)])

    def write(partition: int, offset: int, customer_id: str) -> BatchWrite:
        return BatchWrite(partition=partition, offsets={f"crm.purchases:{partition}": offset},
                          states={customer_id: '{"events": 1}'}, counters={"stats:ingest": {"accepted": 1}})

    assert await store.commit_batch(write(1, 7, "b1"))
    await new_owner.claim(["crm.purchases:2"])
    await store.client.script_flush()
    store.applied_offsets["crm.purchases:1"] = 6  # as if the first reply had been lost
    applied, retried, fenced, unowned = await store.commit_batches(
        [write(0, 3, "a1"), write(1, 7, "b1"), write(2, 9, "c1"), write(3, 1, "d1")])
    assert applied is True and retried is False
    assert isinstance(fenced, Fenced) and isinstance(unowned, Fenced)
    ingest = [await store.client.hget(store.part(p) + "stats:ingest", "accepted") for p in range(4)]
    assert ingest == ["1", "1", None, None]
    assert store.applied_offsets == {"crm.purchases:0": 3, "crm.purchases:1": 7, "crm.purchases:2": -1}


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


async def test_a_retried_batch_of_wake_ups_only_is_not_applied_twice(stores):
    """A batch can wake a partition's silent customers without a record of that partition (the worker's clock):
    no offset tells a retry it was applied, the partition's commit count does."""
    store, _ = stores
    await store.claim(["crm.purchases:1"])
    wake = BatchWrite(partition=1)
    wake.schedule(1, "c9", 5_000)
    wake.count("kpi:day:2024-01-01", "churned", 1)
    assert await store.commit_batch(wake)
    store.commits[1] -= 1  # as if the reply had been lost before the cache update
    assert not await store.commit_batch(wake)
    assert await store.client.hget(store.part(1) + "kpi:day:2024-01-01", "churned") == "1"
    assert store.commits[1] == 1  # the stored count, for the next batch
    assert await store.commit_batch(wake)


async def test_the_search_index_follows_moves_and_erasure_in_one_batch(stores):
    store, _ = stores
    await store.claim(["crm.purchases:0"])
    part = store.part(0)
    first = batch(1, "c1")
    first.index = {"c1": ["100", "high", "3", "0.9"], "c2": ["50", "low", "", ""]}
    assert await store.commit_batch(first)
    loaded = await store.load_batch({"c1": {}, "c2": {}}, {"c1": 0, "c2": 0})
    assert (loaded["c1"].indexed, loaded["c2"].indexed) == ("high|3", "low|")

    second = batch(2, "c1")  # c1 moves to another band; c2 is erased and comes back in the same batch
    second.index = {"c1": ["120", "medium", "3", "0.5"], "c2": ["7", "medium", "", "0.4"]}
    second.erase = ["c2"]
    second.indexed_before = {"c1": "high|3", "c2": "low|"}
    assert await store.commit_batch(second)
    members = {name: await store.client.smembers(part + f"idx:{name}") for name in
               ("band:high", "band:medium", "band:low", "segment:3")}
    assert members == {"band:high": set(), "band:medium": {"c1", "c2"}, "band:low": set(), "segment:3": {"c1"}}
    assert await store.client.zrange(part + "idx:value", 0, -1, withscores=True) == [("c2", 7.0), ("c1", 120.0)]

    stale = batch(3, "c1")  # attributes as loaded no longer stored: refused whole, the worker reloads
    stale.index = {"c1": ["1", "low", "3", "0.1"]}
    stale.indexed_before = {"c1": "high|3"}
    with pytest.raises(ResponseError, match="INDEX_MOVED"):
        await store.commit_batch(stale)
    assert await store.client.hget(part + "offsets", "crm.purchases:0") == "2"


async def test_a_write_touching_another_partition_is_refused_before_redis(stores):
    store, _ = stores
    await store.claim(["crm.purchases:0", "crm.purchases:1"])
    write = batch(1)
    write.schedule(1, "c1", 10)  # partition 1's wheel in partition 0's write: another slot
    with pytest.raises(ValueError, match="touches partitions"):
        await store.commit_batch(write)


async def test_dropping_expired_kpi_buckets_carries_the_base_in_each_partition(stores):
    store, _ = stores
    for partition, (new_buyers, churned) in enumerate(((3, 1), (2, 0))):
        await store.claim([f"crm.purchases:{partition}"])
        write = BatchWrite(partition=partition, offsets={f"crm.purchases:{partition}": 1})
        write.count("kpi:day:2024-01-01", "new_buyers", new_buyers)
        write.count("kpi:day:2024-01-01", "churned", churned)
        write.count("kpi:day:2024-03-01", "new_buyers", 5)
        write.count("kpi:week:2024-01-01", "orders", 4)
        assert await store.commit_batch(write)
    carried = await store.drop_buckets("kpi:*:*", expired=lambda name: name < "kpi:day:2024-02" or "week" in name,
                                       carrying=lambda name: name.startswith("kpi:day:"))
    assert carried == 2
    assert [await store.client.hget(store.part(p) + "kpi:base", "alive") for p in (0, 1)] == ["2", "2"]
    assert await store.read_hashes(["kpi:day:2024-01-01", "kpi:day:2024-03-01", "kpi:week:2024-01-01"]) == \
        [{}, {"new_buyers": 10}, {}]
