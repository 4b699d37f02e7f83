"""Item queries the API serves: also bought, viewed then bought, recommendations for a customer.

Redis holds counts only (written by the pipeline, online_models/cooccurrence.py);
a query fetches an item's most frequent neighbours with the counts every
measure needs in one round trip (``item_neighbours.lua``) and scores them with
the pure :func:`online_models.cooccurrence.rank_neighbours`. A recommendation
adds one read of the customer's state before it.
"""
from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline

from api.customers import CustomerReader, check_customer_id
from online_models.cooccurrence import (
    FIRST_ORDER, ITEM_COUNTS_KEY, MEASURES, ItemSettings, Neighbour, popular_key, rank_neighbours,
)
from online_models.customer_profile import segment_label
from online_models.customer_state import CustomerState
from online_models.recommendations import Anchor, anchor_weight, recommend
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
    def __init__(self, client: aioredis.Redis, prefix: str, settings: ItemSettings,
                 customers: CustomerReader) -> None:
        self.client = client
        self.prefix = prefix
        self.settings = settings
        self.customers = customers
        self._neighbours = client.register_script(lua_script("item_neighbours.lua"))
        self._best_sellers = client.register_script(lua_script("best_sellers.lua"))

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
        baskets, as_of_ms, [fetched] = await self._fetch(self.client, [(matrix, sku)])
        ranked = rank_neighbours(sku, measure, fetched.neighbours, fetched.together, fetched.anchor_total,
                                 fetched.neighbour_totals, baskets, k, support)
        return {"sku": sku, "measure": measure, "as_of_ms": as_of_ms, "min_support": support,
                "baskets": baskets, "anchor_orders": fetched.anchor_total,
                "items": [_neighbour_json(n) for n in ranked]}

    async def recommendations(self, customer_id: str, k: int = 10, exclude_bought: bool = True) -> dict:
        """What ``customer_id`` should see next, with the recent items behind each pick."""
        check_customer_id(customer_id)
        _check_k(k)
        blob = await self.client.hget(f"{self.prefix}c:{{{customer_id}}}", "state")
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
        async with self.client.pipeline(transaction=False) as pipe:
            await self._fetch(pipe, [(_MATRIX_OF_KIND[kind], sku) for sku, _, kind in recent], per_anchor)
            await self._best_sellers(args=[depth, self.prefix + popular_key(segment), self.prefix + ITEM_COUNTS_KEY],
                                     client=pipe)
            raw, (in_segment, in_shop) = await pipe.execute()
        baskets, as_of_ms, fetched = self._parse(raw)
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

    async def _fetch(self, client, anchors: list[tuple[str, str]], candidates: int | None = None):
        """Run the neighbours script on ``client`` (a pipeline only queues it)."""
        args = [self.prefix, candidates or self.settings.candidates, *(part for anchor in anchors for part in anchor)]
        raw = await self._neighbours(args=args, client=client)
        return None if isinstance(client, Pipeline) else self._parse(raw)

    def _parse(self, raw: list) -> tuple[float, int, list[_Fetched]]:
        """Counts as decayed counts "as of" the event-time clock (the raw counts when decay is off)."""
        as_of_ms = int(float(raw[1]))
        scale = self.settings.decay.scale(as_of_ms)
        fetched = []
        for position in range(2, len(raw), 3):
            anchor_total, scored, totals = raw[position:position + 3]
            fetched.append(_Fetched(float(anchor_total) / scale, scored[0::2],
                                    [float(count) / scale for count in scored[1::2]],
                                    [float(total) / scale for total in totals]))
        return float(raw[0]) / scale, as_of_ms, fetched


def _by_count(flat: list, scale: float) -> list[tuple[str, float]]:
    """[member, score, ...] as (sku, decayed count), most first, ties by sku."""
    return sorted(((sku, float(count) / scale) for sku, count in zip(flat[0::2], flat[1::2])),
                  key=lambda pair: (-pair[1], pair[0]))


def _neighbour_json(neighbour: Neighbour) -> dict:
    return {"sku": neighbour.sku, "score": neighbour.score, "count": round(neighbour.together, 6)}


def _check_k(k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_RESULTS:
        raise ValueError(f"k must be an integer in [1, {MAX_RESULTS}]")
