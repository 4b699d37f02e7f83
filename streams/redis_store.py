"""The one place that talks to Redis for the pipeline: load a batch, commit a batch.

Exactly-once effect: a partition's batch (its state writes, its share of the aggregates and the last offset
of its topic-partitions) is written by one Lua script, which Redis runs atomically. A restarted or
re-balanced worker reads the offsets and skips what is already applied. A worker that lost a partition (a
zombie after a rebalance) is fenced: on assignment the new owner bumps the partition's fence token, and a
commit whose token is stale is refused as a whole.

Key layout (streams/keyspace.py; prefix ``crm:`` by default, ``{p3}`` standing for the hash tag of input
partition 3, ``partition_tag``, so a partition's batch touches one Redis Cluster slot):
``crm:{p3}:c:{<id>}`` customer hash ·
``crm:{p3}:c:{<id>}:seen:<topic>`` recent event-id digests · ``crm:{p3}:offsets`` · ``crm:{p3}:fence`` ·
``crm:{p3}:watermark`` (newest event time per topic-partition) · ``crm:{p3}:wheel`` · ``crm:{p3}:idx:*`` the
partition's customer search index · ``crm:{p3}:erasure:*`` erasure confirmations · the partition's share of the
aggregates: ``crm:{p3}:stats:*`` counters, ``crm:{p3}:rfm:sketch:*`` population sketches, ``crm:{p3}:kpi:*``,
``crm:{p3}:seg:*`` segment totals, ``crm:{p3}:item:*`` co-occurrence sorted sets (online_models/cooccurrence.py).
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass, field
from importlib import resources
from typing import Callable, Iterable
from urllib.parse import urlparse

import orjson
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError, ResponseError

from streams.keyspace import KeySpace, customer_key, sum_hashes

__all__ = ["Fenced", "BatchWrite", "CustomerSnapshot", "RedisStore", "CUSTOMER_KEY_SUFFIXES", "event_digest",
           "lua_script", "erasure_key", "redis_client", "partition_of_tp"]

logger = logging.getLogger(__name__)

#: Every per-customer key is ``c:{id}`` + one of these; erasure deletes them all.
CUSTOMER_KEY_SUFFIXES = ("", ":seen:purchases", ":seen:interactions", ":seen:customers", ":recent")


def erasure_key(event_id: str) -> str:
    """The key confirming that the erase event ``event_id`` was applied: it names no customer.

    >>> erasure_key("erase-1")
    'erasure:b4eafdf8af2a3a90'
    """
    return "erasure:" + event_digest("erase:" + event_id)


def event_digest(event_id: str) -> str:
    """16 hex chars identifying an event id; bounded size whatever the producer's id scheme.

    >>> event_digest("order-1")
    '2599000e8c1b023d'
    """
    return hashlib.blake2b(event_id.encode(), digest_size=8).hexdigest()


class Fenced(RuntimeError):
    """This worker no longer owns a partition of the batch; the batch was not applied."""


@dataclass
class CustomerSnapshot:
    """What the store holds for one customer at the start of a batch."""

    state: str | None  # the customer's state JSON, None for a customer never seen
    seen: set[tuple[str, str]]  # (topic, event digest): ids are unique per topic
    indexed: str = ""  # the search index's "<band>|<segment>" of the customer ("": not indexed)


@dataclass
class BatchWrite:
    """Everything one partition's batch changes, applied atomically by :meth:`RedisStore.commit_batch`."""

    partition: int = 0
    offsets: dict[str, int] = field(default_factory=dict)
    watermarks: dict[str, int] = field(default_factory=dict)
    states: dict[str, str] = field(default_factory=dict)  # customer id -> state JSON
    seen: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    erase: list[str] = field(default_factory=list)
    seen_floor_ms: dict[str, dict[str, int]] = field(default_factory=dict)
    counters: dict[str, dict[str, int]] = field(default_factory=dict)
    wheel: dict[str, dict[str, list]] = field(default_factory=dict)  # partition -> {"add": [...], "remove": [...]}
    sorted_sets: dict[str, dict[str, str]] = field(default_factory=dict)  # key -> member -> ZINCRBY amount
    index: dict[str, list[str]] = field(default_factory=dict)  # customer id -> search index entry
    indexed_before: dict[str, str] = field(default_factory=dict)  # customer id -> "<band>|<segment>" as loaded
    confirm: list[str] = field(default_factory=list)  # erasure_key of each applied erase event

    def schedule(self, partition: int, customer_id: str, wake_ms: int | None) -> None:
        """Put a customer on its partition's event-time wheel at ``wake_ms`` (None: take it off)."""
        entry = self.wheel.setdefault(str(partition), {"add": [], "remove": []})
        if wake_ms is None:
            entry["remove"].append(customer_id)
        else:
            entry["add"] += [str(wake_ms), customer_id]

    def count(self, hash_name: str, field_name: str, amount: int = 1) -> None:
        bucket = self.counters.setdefault(hash_name, {})
        bucket[field_name] = bucket.get(field_name, 0) + amount

    def is_empty(self) -> bool:
        """Nothing to apply: no offsets and no wheel change (a partition the batch neither read nor woke)."""
        return not self.offsets and not self.wheel


def lua_script(name: str) -> str:
    """The source of one of the scripts in ``streams/lua``."""
    return resources.files("streams").joinpath("lua", name).read_text()


def tp_name(topic: str, partition: int) -> str:
    return f"{topic}:{partition}"


def partition_of_tp(tp: str) -> int:
    """The partition number of a ``<topic>:<partition>`` name.

    >>> partition_of_tp("crm.purchases:3")
    3
    """
    return int(tp.rpartition(":")[2])


class _Keys:
    """The KEYS of one script call: each key once, named by its index (1-based, as in Lua)."""

    def __init__(self, fixed: list[str]) -> None:
        self.names = list(fixed)
        self._index = {name: i + 1 for i, name in enumerate(fixed)}

    def __call__(self, name: str) -> int:
        index = self._index.get(name)
        if index is None:
            self.names.append(name)
            index = self._index[name] = len(self.names)
        return index


class RedisStore:
    """Batch-oriented access to the pipeline state in Redis (one Redis or a Redis Cluster)."""

    def __init__(self, client, prefix: str = "crm:", partitions: int = 4) -> None:
        self.client = client
        self.prefix = prefix
        self.keys = KeySpace(prefix, partitions)
        self._load = client.register_script(lua_script("load_batch.lua"))
        self._commit = client.register_script(lua_script("commit_batch.lua"))
        self._prune = client.register_script(lua_script("prune_kpis.lua"))
        self._claim = client.register_script(lua_script("claim_partition.lua"))
        self.fence_tokens: dict[str, int] = {}
        self.applied_offsets: dict[str, int] = {}
        self.commits: dict[int, int] = {}  # partition -> its commit count (commit_batch.lua)

    @classmethod
    def from_url(cls, url: str, prefix: str = "crm:", partitions: int = 4, cluster: bool = False) -> "RedisStore":
        return cls(redis_client(url, cluster), prefix, partitions)

    @classmethod
    def from_settings(cls, settings) -> "RedisStore":
        return cls.from_url(settings.redis_url, settings.redis_prefix, settings.partitions, settings.redis_cluster)

    async def close(self) -> None:
        await self.client.aclose()

    def part(self, partition: int) -> str:
        """The key prefix of a partition's slot."""
        return self.keys.part(partition)

    def wheel_key(self, partition: int) -> str:
        return self.keys.part(partition) + "wheel"

    # -- ownership ---------------------------------------------------------------------------

    async def claim(self, tps: Iterable[str]) -> None:
        """Take ownership of partitions: bump their fence tokens, load their applied offsets and commit counts."""
        tps = [tp for tp in tps if tp not in self.fence_tokens]
        if not tps:
            return
        by_partition: dict[int, list[str]] = {}
        for tp in tps:
            by_partition.setdefault(partition_of_tp(tp), []).append(tp)
        replies = await asyncio.gather(*(
            self._claim(keys=[self.part(partition) + "fence", self.part(partition) + "offsets"], args=owned)
            for partition, owned in by_partition.items()))
        for (partition, owned), reply in zip(by_partition.items(), replies):
            self.commits[partition] = int(reply[0])
            for i, tp in enumerate(owned):
                token, offset = reply[1 + 2 * i], reply[2 + 2 * i]
                self.fence_tokens[tp] = int(token)
                self.applied_offsets[tp] = -1 if offset is None else int(offset)
        logger.info("claimed partitions %s", sorted(tps))

    def release(self, tps: Iterable[str]) -> None:
        """Forget partitions that were revoked; a batch still holding their events is dropped."""
        for tp in tps:
            self.fence_tokens.pop(tp, None)
            self.applied_offsets.pop(tp, None)

    def owns(self, tp: str) -> bool:
        return tp in self.fence_tokens

    def is_applied(self, tp: str, offset: int) -> bool:
        return offset <= self.applied_offsets.get(tp, -1)

    # -- batches ------------------------------------------------------------------------------

    async def load_batch(self, digests: dict[str, dict[str, list[str]]],
                         partition_of: dict[str, int]) -> dict[str, CustomerSnapshot]:
        """State, search-index attributes and already-seen event digests (customer -> topic -> digests) of a
        batch's customers (``partition_of``: each one's partition); one script call per partition, concurrently."""
        if not digests:
            return {}
        by_partition: dict[int, list[str]] = {}
        for customer_id in digests:
            by_partition.setdefault(partition_of[customer_id], []).append(customer_id)
        calls = []
        for partition, customers in by_partition.items():
            part = self.part(partition)
            keys = _Keys([part + "idx:attrs"])
            wanted = [[customer_id, keys(customer_key(part, customer_id)),
                       [[topic, keys(customer_key(part, customer_id, f":seen:{topic}")), asked]
                        for topic, asked in digests[customer_id].items()]] for customer_id in customers]
            calls.append(self._load(keys=keys.names, args=[orjson.dumps(wanted)]))
        snapshots = {}
        for reply in await asyncio.gather(*calls):
            position = 0
            while position < len(reply):
                customer_id, state, indexed = reply[position], reply[position + 1], reply[position + 2]
                position += 3
                seen = set()
                while reply[position] != "":
                    topic, scores = reply[position], reply[position + 1]
                    seen.update((topic, digest) for digest, score in zip(digests[customer_id][topic], scores)
                                if score is not None)
                    position += 2
                position += 1
                snapshots[customer_id] = CustomerSnapshot(state, seen, indexed or "")
        return snapshots

    async def due_customers(self, until_ms: dict[int, int], limit: int) -> dict[int, list[str]]:
        """Per partition, the customers whose wheel wake-up is at or before ``until_ms[partition]`` (oldest
        first, at most ``limit``); one round trip for all partitions."""
        async with self.client.pipeline(transaction=False) as pipe:
            for partition, until in until_ms.items():
                pipe.zrangebyscore(self.wheel_key(partition), "-inf", until, 0, limit)
            return dict(zip(until_ms, await pipe.execute()))

    async def read_hashes(self, names: list[str]) -> list[dict[str, int]]:
        """Several aggregate hashes (names under a partition's tag), each summed over the partitions."""
        return await sum_hashes(self.client, self.keys, names)

    async def drop_buckets(self, pattern: str, expired: Callable[[str], bool],
                           carrying: Callable[[str], bool]) -> int:
        """Delete the partitions' keys matching ``pattern`` (a name under a partition's tag) whose name
        ``expired``; those ``carrying`` hand their base-of-customers change to the partition's ``kpi:base``
        atomically. Returns how many were carried."""
        carried = 0
        for partition in range(self.keys.partitions):
            part = self.part(partition)
            carry, plain = [], []
            async for key in self.client.scan_iter(match=part + pattern, count=1000):
                name = key[len(part):]
                if expired(name):
                    (carry if carrying(name) else plain).append(key)
            if carry or plain:
                carried += int(await self._prune(keys=[part + "kpi:base", *carry, *plain], args=[len(carry)]))
        return carried

    async def commit_batch(self, write: BatchWrite) -> bool:
        """Apply one partition's ``write`` atomically; raise :class:`Fenced` if the partition changed owner.

        Returns False when the batch had already been applied (a retry after a lost reply).
        """
        outcome, = await self.commit_batches([write])
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    async def commit_batches(self, writes: list[BatchWrite]) -> list[bool | BaseException]:
        """Apply several partitions' writes, each atomically in its own slot and on its own (as
        :meth:`commit_batch`): the outcome of each, its exception (:class:`Fenced`, say) in its place.

        One round trip on one Redis: a pipeline of the script calls, not a transaction (a partition's commit
        stands alone, as when they were sent concurrently; one worker with the default score lag, 8 partitions:
        +3% events/s, -4% worker CPU, bench/scale.py). Concurrent calls on a cluster, one per partition's node.
        A connection lost mid-pipeline is every sent part's outcome: a retry finds those that were applied."""
        calls: list[tuple[list[str], list] | BaseException] = []
        for write in writes:
            try:
                calls.append(self._commit_call(write))
            except (Fenced, ValueError) as exc:
                calls.append(exc)
        sent = [call for call in calls if not isinstance(call, BaseException)]
        if len(sent) > 1 and not isinstance(self.client, RedisCluster):
            async with self.client.pipeline(transaction=False) as pipe:
                for keys, args in sent:
                    await self._commit(keys=keys, args=args, client=pipe)
                try:
                    replies = iter(await pipe.execute(raise_on_error=False))
                except (RedisError, OSError) as exc:
                    replies = iter([exc] * len(sent))
        else:
            replies = iter(await asyncio.gather(*(self._commit(keys=keys, args=args) for keys, args in sent),
                                                return_exceptions=True))
        return [call if isinstance(call, BaseException) else self._commit_outcome(write, next(replies))
                for write, call in zip(writes, calls)]

    def _commit_call(self, write: BatchWrite) -> tuple[list[str], list]:
        """The KEYS and ARGV of ``commit_batch.lua`` for one partition's write."""
        partition = write.partition
        # Every topic-partition of the partition is fenced, those the write has no record of too: a write of
        # wake-ups only (the worker's clock wakes all its partitions, agents/churn_scoring.py) has no offset.
        fences = [[tp, token] for tp, token in self.fence_tokens.items() if partition_of_tp(tp) == partition]
        stray = ({partition_of_tp(tp) for tp in write.offsets} | {int(p) for p in write.wheel}) - {partition}
        if stray:
            raise ValueError(f"a batch write of partition {partition} touches partitions {sorted(stray)}")
        if not fences or set(write.offsets) - {tp for tp, _ in fences}:
            raise Fenced(f"partition {partition} no longer owned")
        part = self.part(partition)
        keys = _Keys([part + name for name in
                      ("fence", "offsets", "watermark", "wheel", "idx:value", "idx:churn", "idx:attrs")])
        payload = {
            "fences": fences, "commits": self.commits.get(partition, 0),
            "offsets": [[tp, str(offset)] for tp, offset in write.offsets.items()],
            "watermarks": [[tp, str(ts)] for tp, ts in write.watermarks.items()],
            "del": [keys(customer_key(part, customer_id, suffix))
                    for customer_id in write.erase for suffix in CUSTOMER_KEY_SUFFIXES],
            "confirm": [keys(part + name) for name in write.confirm],
            "seen": [[keys(customer_key(part, customer_id, f":seen:{topic}")),
                      str(write.seen_floor_ms[customer_id][topic]), *members]
                     for customer_id, by_topic in write.seen.items() for topic, members in by_topic.items()],
            "counters": [[keys(part + name), *(value for item in increments.items() for value in item)]
                         for name, increments in write.counters.items() if increments],
            "zincr": [[keys(part + name), *(value for item in increments.items() for value in item)]
                      for name, increments in write.sorted_sets.items() if increments],
            "wheel": write.wheel.get(str(partition), {"add": [], "remove": []}),
            **self._index_ops(part, write, keys),
        }
        payload["states"] = [[keys(customer_key(part, customer_id)), i + 2]
                             for i, customer_id in enumerate(write.states)]
        return keys.names, [orjson.dumps(payload), *write.states.values()]

    def _commit_outcome(self, write: BatchWrite, reply) -> bool | BaseException:
        """Follow one commit's reply: True (applied), False (applied before: a retry), or its error."""
        if isinstance(reply, ResponseError) and str(reply).startswith("FENCED"):
            return Fenced(str(reply))
        if isinstance(reply, BaseException):
            return reply
        outcome = int(reply)
        self.commits[write.partition] = abs(outcome) - 1 if outcome < 0 else outcome
        self.applied_offsets.update(write.offsets)
        if outcome < 0:
            logger.warning("batch of partition %d up to offsets %s was already applied; not applied again",
                           write.partition, write.offsets)
            return False
        return True

    @staticmethod
    def _index_ops(part: str, write: BatchWrite, keys: _Keys) -> dict[str, list]:
        """The search index's changes: erased customers leave it, indexed ones move between the band and segment
        sets when their attributes change (the attributes as loaded are checked by the script)."""
        attrs, srem, sadd = [], [], []

        def sets_of(indexed: str) -> set[str]:
            band, _, segment = indexed.partition("|")
            return {f"{part}idx:{name}:{value}" for name, value in (("band", band), ("segment", segment)) if value}

        erased = set(write.erase)
        final = {customer_id: "" for customer_id in write.erase}
        final.update((customer_id, f"{entry[1]}|{entry[2]}") for customer_id, entry in write.index.items())
        for customer_id, after in final.items():
            before = write.indexed_before.get(customer_id, "")
            if before == after and customer_id not in erased:
                continue
            attrs.append([customer_id, before, after])
            leave, join = sets_of(before), sets_of(after)
            if customer_id not in erased:
                leave, join = leave - join, join - leave
            srem += [[keys(key), customer_id] for key in sorted(leave)]
            sadd += [[keys(key), customer_id] for key in sorted(join)]
        return {"attrs": attrs, "srem": srem, "sadd": sadd, "zrem": list(write.erase),
                "zadd": [[customer_id, entry[0], entry[3]] for customer_id, entry in write.index.items()]}


def redis_client(url: str, cluster: bool = False):
    """An asyncio Redis client: a :class:`~redis.asyncio.cluster.RedisCluster` when ``cluster`` or when
    ``url`` names several nodes (``redis://a:7000,redis://b:7001``), else a plain one."""
    urls = [part.strip() for part in url.split(",") if part.strip()]
    if cluster or len(urls) > 1:
        from redis.asyncio.cluster import ClusterNode

        nodes = []
        for node_url in urls:
            parsed = urlparse(node_url)
            nodes.append(ClusterNode(parsed.hostname or "localhost", parsed.port or 6379))
        return RedisCluster(startup_nodes=nodes, decode_responses=True)
    return aioredis.Redis.from_url(url, decode_responses=True)
