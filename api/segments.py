"""Read the behaviour segments from Redis: the served snapshot with each segment's size, revenue share and
mean churn risk, and the migration matrix over event-time days (what the CLI, API and dashboard show)."""
from __future__ import annotations

import orjson
import redis.asyncio as aioredis

from agents.segment_stage import CHURN_SCALE, SNAPSHOT_KEY, STATS_KEY, migrations_key
from streams.keyspace import KeySpace, scan_names, sum_hashes

__all__ = ["read_segments"]


async def read_segments(client: aioredis.Redis, keys: KeySpace, days: list[str] | None = None) -> dict | None:
    """The served snapshot's segments with their totals, and migrations summed over ``days`` (event-time day
    labels, ``YYYY-MM-DD``; all retained days when None). None before the first snapshot.

    Totals count every customer by the segment they are stored with, so a segment that died keeps its
    customers until they are re-assigned; such ids appear under ``retired``.
    """
    blob = await client.get(keys.prefix + SNAPSHOT_KEY)
    stats, = await sum_hashes(client, keys, [STATS_KEY])
    if blob is None:
        return None
    snapshot = orjson.loads(blob)
    totals: dict[int, dict[str, int]] = {}
    for field, value in stats.items():
        name, _, segment = field.partition(":")
        totals.setdefault(int(segment), {})[name] = int(value)
    customers_all = sum(t.get("customers", 0) for t in totals.values())
    revenue_all = sum(max(t.get("net_minor", 0), 0) for t in totals.values())

    def with_totals(segment_id: int, described: dict) -> dict:
        counted = totals.get(segment_id, {})
        customers, revenue, scored = counted.get("customers", 0), counted.get("net_minor", 0), counted.get("scored", 0)
        return {**described, "customers": customers,
                "customer_share": customers / customers_all if customers_all else 0.0,
                "revenue_minor": revenue, "revenue_share": max(revenue, 0) / revenue_all if revenue_all else 0.0,
                "mean_churn_p": counted.get("churn_micro", 0) / CHURN_SCALE / scored if scored else None,
                "scored": scored}

    served = [with_totals(s["id"], {k: s[k] for k in ("id", "name", "description", "profile")})
              for s in snapshot["segments"]]
    served_ids = {s["id"] for s in served}
    retired = [with_totals(segment_id, {"id": segment_id}) for segment_id in sorted(totals)
               if segment_id not in served_ids and totals[segment_id].get("customers", 0)]
    return {"version": snapshot["version"], "algorithm": snapshot["algorithm"], "samples": snapshot["samples"],
            "created_at_ms": snapshot["created_at_ms"], "changed_share": snapshot.get("changed_share"),
            "restarted": snapshot.get("restarted", False), "segments": served, "retired": retired,
            "migrations": await _migrations(client, keys, days)}


async def _migrations(client: aioredis.Redis, keys: KeySpace, days: list[str] | None) -> dict[str, dict[str, int]]:
    """``{from: {to: customers}}`` summed over the days and partitions; ``from`` is ``new`` for a first
    assignment."""
    names = (sorted(await scan_names(client, keys, migrations_key("*"))) if days is None
             else [migrations_key(day) for day in days])
    per_day = await sum_hashes(client, keys, names) if names else []
    matrix: dict[str, dict[str, int]] = {}
    for moves in per_day:
        for move, count in moves.items():
            source, target = move.split(">")
            row = matrix.setdefault(source, {})
            row[target] = row.get(target, 0) + int(count)
    return matrix
