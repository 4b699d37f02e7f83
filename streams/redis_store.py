"""The one place that talks to Redis for the pipeline: load a batch, commit a batch.

Exactly-once effect: a batch's state writes, its dead-letter/erasure counters
and the last offset of every partition it covers are written by one Lua
script, which Redis runs atomically. A restarted or re-balanced worker reads
the offsets and skips what is already applied. A worker that lost a partition
(a zombie after a rebalance) is fenced: on assignment the new owner bumps the
partition's fence token, and a commit whose token is stale is refused as a
whole.

Key layout (prefix ``crm:`` by default; ``{customer_id}`` is a hash tag so
Redis Cluster keeps a customer's keys together):

``crm:c:{id}`` customer hash · ``crm:c:{id}:seen:{topic}`` recent event-id digests ·
``crm:offsets`` · ``crm:fence`` · ``crm:watermark`` (newest event time per topic-partition) ·
``crm:stats:*`` counters · ``crm:rfm:sketch:*`` population sketches · ``crm:idx:*`` customer search index ·
``crm:erasure:*`` erasure confirmations · ``crm:item:*`` co-occurrence
sorted sets (online_models/cooccurrence.py).
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from importlib import resources
from typing import Callable, Iterable

import orjson
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

__all__ = ["Fenced", "BatchWrite", "CustomerSnapshot", "RedisStore", "CUSTOMER_KEY_SUFFIXES", "event_digest",
           "lua_script", "erasure_key"]

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


@dataclass
class BatchWrite:
    """Everything one batch changes, applied atomically by :meth:`RedisStore.commit_batch`."""

    offsets: dict[str, int] = field(default_factory=dict)
    watermarks: dict[str, int] = field(default_factory=dict)
    states: dict[str, str] = field(default_factory=dict)  # customer id -> state JSON
    seen: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    erase: list[str] = field(default_factory=list)
    seen_floor_ms: dict[str, dict[str, int]] = field(default_factory=dict)
    counters: dict[str, dict[str, int]] = field(default_factory=dict)
    wheel: dict[str, dict[str, list]] = field(default_factory=dict)  # partition -> {"add": [...], "remove": [...]}
    sorted_sets: dict[str, dict[str, str]] = field(default_factory=dict)  # key -> member -> ZINCRBY amount
    index: dict[str, list[str]] = field(default_factory=dict)  # customer id -> search index entry (commit_batch.lua)
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


def lua_script(name: str) -> str:
    """The source of one of the scripts in ``streams/lua``."""
    return resources.files("streams").joinpath("lua", name).read_text()


def tp_name(topic: str, partition: int) -> str:
    return f"{topic}:{partition}"


class RedisStore:
    """Batch-oriented access to the pipeline state in Redis."""

    def __init__(self, client: aioredis.Redis, prefix: str = "crm:") -> None:
        self.client = client
        self.prefix = prefix
        self._load = client.register_script(lua_script("load_batch.lua"))
        self._commit = client.register_script(lua_script("commit_batch.lua"))
        self._prune = client.register_script(lua_script("prune_kpis.lua"))
        self.fence_tokens: dict[str, int] = {}
        self.applied_offsets: dict[str, int] = {}

    @classmethod
    def from_url(cls, url: str, prefix: str = "crm:") -> "RedisStore":
        return cls(aioredis.Redis.from_url(url, decode_responses=True), prefix)

    async def close(self) -> None:
        await self.client.aclose()

    # -- ownership ---------------------------------------------------------------------------

    async def claim(self, tps: Iterable[str]) -> None:
        """Take ownership of partitions: bump their fence tokens, load their applied offsets."""
        tps = [tp for tp in tps if tp not in self.fence_tokens]
        if not tps:
            return
        async with self.client.pipeline(transaction=True) as pipe:
            for tp in tps:
                pipe.hincrby(self.prefix + "fence", tp, 1)
            pipe.hmget(self.prefix + "offsets", tps)
            *tokens, offsets = await pipe.execute()
        for tp, token, offset in zip(tps, tokens, offsets):
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

    async def load_batch(self, digests: dict[str, dict[str, list[str]]]) -> dict[str, CustomerSnapshot]:
        """State and already-seen event digests (customer -> topic -> digests) of a batch, one round trip."""
        if not digests:
            return {}
        reply = await self._load(args=[self.prefix, orjson.dumps(digests)])
        snapshots = {}
        position = 0
        while position < len(reply):
            customer_id, state = reply[position], reply[position + 1]
            position += 2
            seen = set()
            while reply[position] != "":
                topic, scores = reply[position], reply[position + 1]
                seen.update((topic, digest) for digest, score in zip(digests[customer_id][topic], scores)
                            if score is not None)
                position += 2
            position += 1
            snapshots[customer_id] = CustomerSnapshot(state, seen)
        return snapshots

    async def due_customers(self, until_ms: dict[int, int], limit: int) -> dict[int, list[str]]:
        """Per partition, the customers whose wheel wake-up is at or before ``until_ms[partition]`` (oldest
        first, at most ``limit``); one round trip for all partitions."""
        async with self.client.pipeline(transaction=False) as pipe:
            for partition, until in until_ms.items():
                pipe.zrangebyscore(f"{self.prefix}wheel:{partition}", "-inf", until, 0, limit)
            return dict(zip(until_ms, await pipe.execute()))

    async def read_hashes(self, names: list[str]) -> list[dict[str, str]]:
        """Several hashes (names under the prefix) in one round trip."""
        async with self.client.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.hgetall(self.prefix + name)
            return await pipe.execute()

    async def drop_buckets(self, pattern: str, expired: Callable[[str], bool],
                           carrying: Callable[[str], bool]) -> int:
        """Delete keys matching ``pattern`` (under the prefix) whose name ``expired``; those ``carrying``
        hand their base-of-customers change to ``kpi:base`` atomically. Returns how many were carried."""
        carried, plain = [], []
        async for key in self.client.scan_iter(match=self.prefix + pattern, count=1000):
            name = key[len(self.prefix):]
            if expired(name):
                (carried if carrying(name) else plain).append(key)
        if not carried and not plain:
            return 0
        return int(await self._prune(args=[self.prefix, *carried, "--", *plain]))

    async def commit_batch(self, write: BatchWrite) -> bool:
        """Apply ``write`` atomically; raise :class:`Fenced` if a partition changed owner.

        Returns False when the batch had already been applied (a retry after a lost reply).
        """
        # The partitions read, and those whose wheels (and silent customers) the batch moved without a record of
        # theirs (the worker's clock wakes all its partitions, agents/churn_scoring.py): fenced alike.
        fences = {tp: token for tp, token in self.fence_tokens.items()
                  if tp in write.offsets or tp.rpartition(":")[2] in write.wheel}
        lost = (set(write.wheel) - {tp.rpartition(":")[2] for tp in fences}) | (set(write.offsets) - set(fences))
        if lost:
            raise Fenced(f"{sorted(lost)} no longer owned")
        payload = {
            "fences": fences,
            "offsets": {tp: str(offset) for tp, offset in write.offsets.items()},
            "watermarks": {tp: str(ts) for tp, ts in write.watermarks.items()},
            "erase": write.erase, "customer_key_suffixes": list(CUSTOMER_KEY_SUFFIXES),
            "seen": write.seen,
            "seen_floor_ms": {customer_id: {topic: str(floor) for topic, floor in floors.items()}
                              for customer_id, floors in write.seen_floor_ms.items()},
            "counters": write.counters,
            "wheel": write.wheel,
            "zincr": write.sorted_sets,
            "index": write.index,
            "confirm": write.confirm,
        }
        try:
            states = [part for customer_id, state in write.states.items() for part in (customer_id, state)]
            outcome = await self._commit(args=[self.prefix, orjson.dumps(payload), *states])
        except ResponseError as exc:
            if str(exc).startswith("FENCED"):
                raise Fenced(str(exc)) from None
            raise
        self.applied_offsets.update(write.offsets)
        if outcome == "ALREADY_APPLIED":
            logger.warning("batch up to offsets %s was already applied; not applied again", write.offsets)
            return False
        return True
