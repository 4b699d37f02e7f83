"""Read customers from Redis (what the API and CLI serve): profiles, search, the churn-risk distribution.

A profile reads the customer hash, the population sketches, the served segment names and the event-time
clock, and hands them to the pure :func:`online_models.customer_profile.build_profile`. The sketches change
with every batch but ranks move slowly, so they (and the segment names) are cached for ``sketch_ttl_s``
(one second by default) to keep a profile read to one Redis round trip.

Search reads the index the pipeline keeps in the same commit as the states (``idx:*``,
online_models/customer_index.py): customers by churn band, behaviour segment and value, a page at a time.
"""
from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass

import orjson
import redis.asyncio as aioredis

from agents.customer_state import sketch_hash
from agents.segment_stage import SNAPSHOT_KEY
from online_models.customer_index import BANDS
from online_models.customer_profile import ProfileSettings, build_profile
from online_models.customer_state import CustomerState
from online_models.quantiles import FrozenRanks
from online_models.rfm import POPULATION_SKETCHES, population_sketches
from schemas.events import ID_PATTERN
from streams.keyspace import KeySpace, event_clock_ms, sum_hashes
from streams.redis_store import lua_script

__all__ = ["CustomerReader", "Population", "check_customer_id", "MAX_PAGE"]

MAX_PAGE = 500
SORTS = ("value", "churn")
_ID_RE = re.compile(ID_PATTERN)


def check_customer_id(customer_id: str, name: str = "customer_id") -> str:
    """The id, if a customer (or, named ``sku``, an item) can have it: it becomes part of a Redis key.

    >>> check_customer_id("cust-000001")
    'cust-000001'
    >>> check_customer_id("a b")
    Traceback (most recent call last):
    ...
    ValueError: customer_id must match ^[A-Za-z0-9_.:@/-]{1,128}$
    """
    if not isinstance(customer_id, str) or not _ID_RE.match(customer_id):
        raise ValueError(f"{name} must match {ID_PATTERN}")
    return customer_id


@dataclass(frozen=True)
class Population:
    sketches: dict[str, FrozenRanks]  # frozen at read: a rank is a binary search, not a sum over buckets
    as_of_ms: int  # the event-time clock: the newest event time of any partition
    segment_names: dict[int, str]  # behaviour segments of the served snapshot


class CustomerReader:
    def __init__(self, client: aioredis.Redis, keys: KeySpace, settings: ProfileSettings = ProfileSettings(),
                 sketch_ttl_s: float = 1.0) -> None:
        self.client = client
        self.keys = keys
        self.prefix = keys.prefix
        self.settings = settings
        self.sketch_ttl_s = sketch_ttl_s
        self._population: tuple[float, Population] | None = None
        self._search = client.register_script(lua_script("search_customers.lua"))

    async def population(self) -> tuple[dict[str, FrozenRanks], int]:
        """Population sketches and the event-time clock."""
        population = await self.population_view()
        return population.sketches, population.as_of_ms

    async def population_view(self) -> Population:
        cached = self._population
        if cached is not None and time.monotonic() - cached[0] < self.sketch_ttl_s:
            return cached[1]
        sketch_counts = await sum_hashes(self.client, self.keys, [sketch_hash(name) for name in POPULATION_SKETCHES])
        clock_ms = await event_clock_ms(self.client, self.keys)
        segments = await self.client.get(self.prefix + SNAPSHOT_KEY)
        names = {s["id"]: s["name"] for s in orjson.loads(segments)["segments"]} if segments else {}
        sketches = {name: sketch.frozen() for name, sketch in population_sketches(sketch_counts).items()}
        population = Population(sketches, clock_ms or 0, names)
        self._population = (time.monotonic(), population)
        return population

    async def profile(self, customer_id: str) -> dict | None:
        blob = await self.client.hget(self.keys.customer(check_customer_id(customer_id)), "state")
        if blob is None:
            return None
        return self._card(customer_id, blob, await self.population_view())

    def _card(self, customer_id: str, blob: str, population: Population) -> dict:
        return build_profile(customer_id, CustomerState.from_json(blob), population.sketches, population.as_of_ms,
                             self.settings, population.segment_names)

    async def search(self, band: str | None = None, segment: int | None = None, min_value_minor: int | None = None,
                     max_value_minor: int | None = None, sort: str = "value", offset: int = 0,
                     limit: int = 50) -> dict:
        """A page of customers, highest ``sort`` first (net spend, or churn probability; customers never scored
        are left out when sorting by churn), with the total that match. The value bounds filter net spend."""
        if band is not None and band not in BANDS:
            raise ValueError(f"band must be one of {BANDS}")
        if sort not in SORTS:
            raise ValueError(f"sort must be one of {SORTS}")
        if segment is not None and (isinstance(segment, bool) or not 0 <= segment < 10_000):
            raise ValueError("segment must be a segment id in [0, 10000)")
        if not 0 <= offset <= 1_000_000 or not 1 <= limit <= MAX_PAGE:
            raise ValueError(f"offset must be in [0, 1000000], limit in [1, {MAX_PAGE}]")
        if sort == "churn" and (min_value_minor is not None or max_value_minor is not None):
            raise ValueError("value bounds work with sort=value only")
        filters = ([f"idx:band:{band}"] if band else []) + ([f"idx:segment:{segment}"] if segment is not None else [])
        lowest = "-inf" if min_value_minor is None else str(int(min_value_minor))
        highest = "+inf" if max_value_minor is None else str(int(max_value_minor))
        total, page = await self._search_partitions(sort, lowest, highest, offset, limit, filters)
        profiles = await self._summaries(page)
        return {"total": int(total), "offset": offset, "limit": limit, "sort": sort,
                "customers": [p for p in profiles if p is not None]}

    async def _search_partitions(self, sort: str, lowest: str, highest: str, offset: int, limit: int,
                                 filters: list[str]) -> tuple[int, list[str]]:
        """Every partition's first ``offset + limit`` matches, merged highest score first (a tie in reverse
        name order, as one sorted set orders it): the total and the page's ids."""
        replies = await asyncio.gather(*(
            self._search(keys=[part + f"idx:{sort}", part + "idx:scratch", *(part + name for name in filters)],
                         args=[lowest, highest, 0, offset + limit]) for part in self.keys.parts()))
        matches = [(float(score), customer_id) for _, page in replies
                   for customer_id, score in zip(page[0::2], page[1::2])]
        matches.sort(reverse=True)
        page = [customer_id for _, customer_id in matches[offset:offset + limit]]
        return sum(int(total) for total, _ in replies), page

    async def _summaries(self, ids: list[str]) -> list[dict | None]:
        """The search row of each customer: who, value, churn, segments (the full card is one click away)."""
        async with self.client.pipeline(transaction=False) as pipe:
            for customer_id in ids:
                pipe.hget(self.keys.customer(customer_id), "state")
            blobs = await pipe.execute()
        population = await self.population_view()
        rows: list[dict | None] = []
        for customer_id, blob in zip(ids, blobs):
            if blob is None:
                rows.append(None)  # erased between the index read and this one
                continue
            card = self._card(customer_id, blob, population)
            churn = card["churn"] or {}
            rows.append({"customer_id": customer_id, "net_spend_minor": card["net_spend_minor"],
                         "orders": card["orders"], "recency_days": card["recency_days"],
                         "rfm_segment": card["rfm_segment"], "behaviour_segment": card["behaviour_segment"],
                         "churn_p": churn.get("churn_p"), "band": churn.get("band"),
                         "predicted_clv_minor": card["predicted_clv_minor"]})
        return rows

    async def churn_distribution(self, bins: int = 10) -> dict:
        """How many scored customers fall in each of ``bins`` equal churn-probability bins, and per band."""
        if not 2 <= bins <= 100:
            raise ValueError("bins must be in [2, 100]")
        edges = [i / bins for i in range(bins + 1)]
        async with self.client.pipeline(transaction=False) as pipe:
            for part in self.keys.parts():
                for low, high in zip(edges, edges[1:]):
                    pipe.zcount(part + "idx:churn", low, high if high == 1.0 else f"({high}")
                for band in BANDS:
                    pipe.scard(part + f"idx:band:{band}")
            replies = await pipe.execute()
        width = bins + len(BANDS)
        counts = [sum(replies[i::width]) for i in range(width)]
        return {"bins": [{"low": low, "high": high, "customers": count}
                         for low, high, count in zip(edges, edges[1:], counts[:bins])],
                "bands": dict(zip(BANDS, counts[bins:])), "scored": sum(counts[:bins])}

    async def erasure_confirmed(self, key: str) -> bool:
        """Whether a partition confirmed the erase event (the confirmation names no customer: any partition)."""
        async with self.client.pipeline(transaction=False) as pipe:
            for part in self.keys.parts():
                pipe.exists(part + key)
            return any(await pipe.execute())
