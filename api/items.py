"""Item queries the API serves: also bought, viewed then bought, recommendations for a customer.

Redis holds counts only, each input partition its share (written by the pipeline,
online_models/cooccurrence.py; streams/keyspace.py): a query sums the partitions' neighbours of an item
(``item_neighbours.lua``, one call per partition, concurrently), keeps the most frequent, reads their totals
(a second round trip) and scores them with the pure :func:`online_models.cooccurrence.rank_neighbours`. A
recommendation adds one read of the customer's state before it, and the summed best-sellers.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass

import redis.asyncio as aioredis

from api.customers import CustomerReader, check_customer_id
from online_models.cooccurrence import (
    FIRST_ORDER, ITEM_COUNTS_KEY, MEASURES, TOTALS_KEY, VIEWED_BEFORE_KEY, ItemSettings, Neighbour, co_key,
    popular_key, rank_neighbours, viewed_bought_key,
)
from online_models.customer_profile import segment_label
from online_models.customer_state import CustomerState
from online_models.recommendations import Anchor, anchor_weight, recommend
from streams.keyspace import KeySpace, event_clock_ms, sum_sorted_sets
from streams.redis_store import lua_script

__all__ = ["ItemReader", "MAX_RESULTS"]

MAX_RESULTS = 100
#: Which matrix a recent item votes with: what was bought goes with what is bought with it; what was
#: looked at leads to what people bought after looking at it.
_MATRIX_OF_KIND = {"bought": "co", "carted": "vb", "viewed": "vb"}


@dataclass(frozen=True)
class _Fetched:
    anchor_total: float
    neighbours: list[str]
    together: list[float]
    neighbour_totals: list[float]


class ItemReader:
    def __init__(self, client: aioredis.Redis, keys: KeySpace, settings: ItemSettings,
                 customers: CustomerReader) -> None:
        self.client = client
        self.keys = keys
        self.settings = settings
        self.customers = customers
        self._neighbours = client.register_script(lua_script("item_neighbours.lua"))

    async def also_bought(self, sku: str, measure: str = "llr", k: int = 10,
                          min_support: float | None = None) -> dict:
        """Items bought in the same orders as ``sku``, best first by ``measure``."""
        return await self._related("co", sku, measure, k, min_support)

    async def viewed_then_bought(self, sku: str, measure: str = "llr", k: int = 10,
                                 min_support: float | None = None) -> dict:
        """Items bought in orders that a view (or add-to-cart) of ``sku`` preceded, best first."""
        return await self._related("vb", sku, measure, k, min_support)

    async def _related(self, matrix: str, sku: str, measure: str, k: int, min_support: float | None) -> dict:
        check_customer_id(sku, "sku")
        if measure not in MEASURES:
            raise ValueError(f"measure must be one of {MEASURES}, got {measure!r}")
        _check_k(k)
        support = self.settings.min_support if min_support is None else float(min_support)
        if support < 0:
            raise ValueError("min_support must be >= 0")
        baskets, as_of_ms, [fetched] = await self._fetch([(matrix, sku)])
        ranked = rank_neighbours(sku, measure, fetched.neighbours, fetched.together, fetched.anchor_total,
                                 fetched.neighbour_totals, baskets, k, support)
        return {"sku": sku, "measure": measure, "as_of_ms": as_of_ms, "min_support": support,
                "baskets": baskets, "anchor_orders": fetched.anchor_total,
                "items": [_neighbour_json(n) for n in ranked]}

    async def recommendations(self, customer_id: str, k: int = 10, exclude_bought: bool = True) -> dict:
        """What ``customer_id`` should see next, with the recent items behind each pick."""
        check_customer_id(customer_id)
        _check_k(k)
        blob = await self.client.hget(self.keys.customer(customer_id), "state")
        state = CustomerState.from_json(blob)
        sketches, _ = await self.customers.population()
        segment = FIRST_ORDER if state.purchases.orders == 0 else segment_label(state, sketches)
        memory = state.items
        recent = list(reversed(memory.recent))  # newest first
        exclude = set(memory.bought) if exclude_bought else set()
        depth = k + len(exclude)
        # Each recent item's indicators are its best 50 by LLR among its 200 most frequent neighbours
        # (all of them for a single-item query): 20 anchors x 500 candidates took 21 ms (bench/items.py).
        per_anchor = min(self.settings.candidates, 4 * self.settings.indicators_per_item)
        (baskets, as_of_ms, fetched), (in_segment, in_shop) = await asyncio.gather(
            self._fetch([(_MATRIX_OF_KIND[kind], sku) for sku, _, kind in recent], per_anchor),
            self._best_sellers(depth, [popular_key(segment), ITEM_COUNTS_KEY]))
        scale = self.settings.decay.scale(as_of_ms)
        anchors = [
            Anchor(sku, kind, anchor_weight(kind, ts_ms, as_of_ms, self.settings.recent_half_life_ms),
                   rank_neighbours(sku, "llr", item.neighbours, item.together, item.anchor_total,
                                   item.neighbour_totals, baskets, self.settings.indicators_per_item,
                                   self.settings.min_support))
            for (sku, ts_ms, kind), item in zip(recent, fetched)]
        picks = recommend(anchors, exclude, k, [(f"segment:{segment}", _by_count(in_segment, scale)),
                                                ("popular", _by_count(in_shop, scale))])
        return {"customer_id": customer_id, "known": blob is not None, "as_of_ms": as_of_ms, "segment": segment,
                "recent_items": [{"sku": sku, "kind": kind, "ts_ms": ts_ms} for sku, ts_ms, kind in recent],
                "items": [{"sku": p.sku, "score": round(p.score, 6), "source": p.source, "because": list(p.because)}
                          for p in picks]}

    async def _fetch(self, anchors: list[tuple[str, str]], candidates: int | None = None
                     ) -> tuple[float, int, list[_Fetched]]:
        """Each anchor's ``candidates`` most frequent neighbours (summed over the partitions; a tie in reverse
        name order, as one sorted set orders it) with the counts every measure needs. Counts as decayed counts
        "as of" the event-time clock (the raw counts when decay is off)."""
        candidates = candidates or self.settings.candidates
        matrix_keys = [co_key(sku) if matrix == "co" else viewed_bought_key(sku) for matrix, sku in anchors]
        flat = [part for anchor in anchors for part in anchor]
        *replies, clock_ms = await asyncio.gather(
            *(self._neighbours(keys=[part + TOTALS_KEY, part + ITEM_COUNTS_KEY, part + VIEWED_BEFORE_KEY,
                                     *(part + key for key in matrix_keys)], args=flat) for part in self.keys.parts()),
            event_clock_ms(self.client, self.keys))
        as_of_ms = clock_ms or 0
        scale = self.settings.decay.scale(as_of_ms)
        baskets = sum(float(reply[0]) for reply in replies)
        tops = []
        for i in range(len(anchors)):
            together: dict[str, float] = {}
            for reply in replies:
                scored = reply[2 + 2 * i]
                for member, count in zip(scored[0::2], scored[1::2]):
                    together[member] = together.get(member, 0.0) + float(count)
            top = sorted(together.items(), key=lambda pair: (pair[1], pair[0]), reverse=True)[:candidates]
            tops.append((sum(float(reply[1 + 2 * i]) for reply in replies), top))
        wanted = sorted({member for _, top in tops for member, _ in top})
        totals: dict[str, float] = dict.fromkeys(wanted, 0.0)
        if wanted:
            async with self.client.pipeline(transaction=False) as pipe:
                for part in self.keys.parts():
                    pipe.zmscore(part + ITEM_COUNTS_KEY, wanted)
                for scores in await pipe.execute():
                    for member, score in zip(wanted, scores):
                        totals[member] += score or 0.0
        fetched = [_Fetched(anchor_total / scale, [member for member, _ in top], [count / scale for _, count in top],
                            [totals[member] / scale for member, _ in top]) for anchor_total, top in tops]
        return baskets / scale, as_of_ms, fetched

    async def _best_sellers(self, n: int, names: list[str]) -> list[list]:
        """The top ``n`` of each sorted set summed over the partitions, with every member tied with the n-th, as
        flat [member, score, ...] (the caller breaks ties by name, ascending, like every item ranking)."""
        tops = []
        for counts in await sum_sorted_sets(self.client, self.keys, names):
            ranked = sorted(counts.items(), key=lambda pair: -pair[1])
            cut = ranked[n - 1][1] if len(ranked) >= n else None
            tops.append([value for member, score in ranked if cut is None or score >= cut
                         for value in (member, score)])
        return tops


def _by_count(flat: list, scale: float) -> list[tuple[str, float]]:
    """[member, score, ...] as (sku, decayed count), most first, ties by sku."""
    return sorted(((sku, float(count) / scale) for sku, count in zip(flat[0::2], flat[1::2])),
                  key=lambda pair: (-pair[1], pair[0]))


def _neighbour_json(neighbour: Neighbour) -> dict:
    return {"sku": neighbour.sku, "score": neighbour.score, "count": round(neighbour.together, 6)}


def _check_k(k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_RESULTS:
        raise ValueError(f"k must be an integer in [1, {MAX_RESULTS}]")
