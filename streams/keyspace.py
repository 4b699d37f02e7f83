"""Where a key lives: the key layout by input partition, and the folds that read it back.

Everything a partition's batch writes atomically carries the partition's hash tag (:func:`partition_tag`,
``crm:{p3.3}:...`` for partition 3 of 4): its
customers' state, dedup ids and search index, its wheel, fence, offsets and watermarks, and its share of the
shared aggregates (population sketches, KPIs, item counts, segment totals, ingest counters). One Lua script per
partition batch then touches one hash slot, on one Redis or on a Redis Cluster alike. A reader of an aggregate
folds the partitions' shares: a sum of hashes or sorted sets (:func:`sum_hashes`, :func:`sum_sorted_sets`), a
union of per-partition hashes (offsets, watermarks) or a scan of every partition's keys. docs/architecture.md,
"One hash slot per input partition", says why.

A customer's partition is the producers' (Kafka's default partitioner: murmur2 of the customer id modulo the
partition count), so a reader finds a customer's keys from its id alone. Changing the partition count moves
customers between partitions: it is a migration (replay into a fresh prefix), as it is for Kafka's ordering.
"""
from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable

from aiokafka.partitioner import murmur2
from redis.crc import REDIS_CLUSTER_HASH_SLOTS as SLOTS, key_slot

__all__ = ["KeySpace", "partition_of", "customer_key"]


def partition_of(customer_id: str, partitions: int) -> int:
    """The input partition of a customer's events, as the producers' default partitioner picks it.

    >>> partition_of("cust-1", 4), partition_of("cust-1", 8)
    (3, 3)
    """
    return (murmur2(customer_id.encode()) & 0x7FFFFFFF) % partitions


def customer_key(part: str, customer_id: str, suffix: str = "") -> str:
    """A customer's key in its partition's slot (``part``: :meth:`KeySpace.part`).

    >>> customer_key("crm:{p3.3}:", "cust-1", ":seen:purchases")
    'crm:{p3.3}:c:{cust-1}:seen:purchases'
    """
    return f"{part}c:{{{customer_id}}}{suffix}"


@lru_cache(maxsize=4096)
def partition_tag(partition: int, partitions: int) -> str:
    """The hash tag of a partition: ``p<N>``, or ``p<N>.<k>`` with the least k whose slot falls in the N-th of
    ``partitions`` equal ranges of the 16,384 slots. A cluster whose masters own equal contiguous ranges (what
    ``redis-cli --cluster create`` assigns) then holds an equal share of the partitions on every master (plain
    ``{p0}``..``{p7}`` put 4 of 8 on one master of 3).

    >>> [partition_tag(p, 4) for p in range(4)]
    ['p0.1', 'p1.3', 'p2.1', 'p3.3']
    """
    if not 0 <= partition < partitions:  # no slot range: the search below would never end
        raise ValueError(f"partition {partition} of {partitions}")
    low, high = partition * SLOTS // partitions, (partition + 1) * SLOTS // partitions
    for k in itertools.count():
        tag = f"p{partition}" if k == 0 else f"p{partition}.{k}"
        if low <= key_slot(tag.encode()) < high:
            return tag
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class KeySpace:
    """Key names under ``prefix`` for ``partitions`` input partitions.

    >>> keys = KeySpace("crm:", 4)
    >>> keys.part(3), keys.customer("cust-1"), keys.customer_of("crm:{p3.3}:c:{cust-1}")
    ('crm:{p3.3}:', 'crm:{p3.3}:c:{cust-1}', 'cust-1')
    >>> keys.name_of("crm:{p3}:kpi:day:2024-01-02")
    'kpi:day:2024-01-02'
    """

    prefix: str
    partitions: int

    def part(self, partition: int) -> str:
        """The key prefix of one partition's slot."""
        return f"{self.prefix}{{{partition_tag(partition, self.partitions)}}}:"

    def parts(self) -> list[str]:
        return [self.part(partition) for partition in range(self.partitions)]

    def customer(self, customer_id: str, suffix: str = "") -> str:
        """A customer's key (``suffix``: one of ``CUSTOMER_KEY_SUFFIXES``). The id stays in braces, so that no
        id followed by a suffix names another customer's key (the partition's tag comes first: it is the hash tag)."""
        return customer_key(self.part(partition_of(customer_id, self.partitions)), customer_id, suffix)

    def customer_of(self, key: str) -> str | None:
        """The customer whose state ``key`` is (None for any other key)."""
        name = self.name_of(key)
        return name[3:-1] if name.startswith("c:{") and name.endswith("}") else None

    def partition_of(self, customer_id: str) -> int:
        return partition_of(customer_id, self.partitions)

    def pattern(self, pattern: str) -> str:
        """A SCAN pattern matching ``pattern`` in every partition's slot."""
        return f"{self.prefix}{{p*}}:{pattern}"

    def name_of(self, key: str) -> str:
        """A partition key's name without prefix and partition tag."""
        return key[len(self.prefix):].split("}:", 1)[1]


async def _every_partition(client, keys: KeySpace, names: Iterable[str], read: str, *args, **kwargs) -> list[list]:
    """``read`` (a command: ``hgetall``, ``zrange``) of each name in every partition's slot, one round trip (a
    cluster client sends each node its share); per name, the partitions' replies."""
    names = list(names)
    async with client.pipeline(transaction=False) as pipe:
        for part in keys.parts():
            for name in names:
                getattr(pipe, read)(part + name, *args, **kwargs)
        replies = await pipe.execute()
    return [replies[i::len(names)] for i in range(len(names))]


async def sum_hashes(client, keys: KeySpace, names: Iterable[str]) -> list[dict[str, int]]:
    """Each hash summed over the partitions (counts: KPIs, sketches, ingest counters), one round trip."""
    sums = []
    for replies in await _every_partition(client, keys, names, "hgetall"):
        total: Counter[str] = Counter()
        for reply in replies:
            total.update({field: int(value) for field, value in reply.items()})
        sums.append({field: value for field, value in total.items() if value})
    return sums


async def merge_hashes(client, keys: KeySpace, names: Iterable[str]) -> list[dict[str, str]]:
    """Each hash's fields over the partitions, for hashes whose fields are each partition's own (offsets,
    watermarks by topic-partition)."""
    return [{field: value for reply in replies for field, value in reply.items()}
            for replies in await _every_partition(client, keys, names, "hgetall")]


async def sum_sorted_sets(client, keys: KeySpace, names: Iterable[str]) -> list[dict[str, float]]:
    """Each sorted set summed over the partitions (member -> score, added in partition order), one round trip."""
    sums = []
    for replies in await _every_partition(client, keys, names, "zrange", 0, -1, withscores=True):
        total: dict[str, float] = {}
        for reply in replies:
            for member, score in reply:
                total[member] = total.get(member, 0.0) + score
        sums.append(total)
    return sums


async def event_clock_ms(client, keys: KeySpace) -> int | None:
    """The event-time clock the readers serve "as of": the newest event time any partition committed (None
    before the first)."""
    watermarks = (await merge_hashes(client, keys, ["watermark"]))[0]
    return max((int(ms) for ms in watermarks.values()), default=None)


async def scan_names(client, keys: KeySpace, pattern: str) -> set[str]:
    """Names (without prefix and partition tag) of the keys matching ``pattern`` in any partition's slot."""
    return {keys.name_of(key) async for key in client.scan_iter(match=keys.pattern(pattern), count=1000)}


def summed(client, keys: KeySpace, name: str) -> dict[str, int]:
    """One hash summed over the partitions, with a synchronous client (the demo's progress, tests, benches)."""
    pipe = client.pipeline(transaction=False)
    for part in keys.parts():
        pipe.hgetall(part + name)
    total: Counter[str] = Counter()
    for reply in pipe.execute():
        total.update({field: int(value) for field, value in reply.items()})
    return dict(total)


def merged(client, keys: KeySpace, name: str) -> dict[str, str]:
    """One hash's fields over the partitions (offsets, watermarks), with a synchronous client."""
    pipe = client.pipeline(transaction=False)
    for part in keys.parts():
        pipe.hgetall(part + name)
    fields: dict[str, str] = {}
    for reply in pipe.execute():
        fields.update(reply)
    return fields
