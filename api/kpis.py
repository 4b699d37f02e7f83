"""Read KPIs by bucket from Redis: counts, rates, churn including open churns, base at period start."""
from __future__ import annotations

import redis.asyncio as aioredis

from agents.customer_state import kpi_hash, sketch_hash
from online_models.kpis import (
    ADDITIVE_METRICS, DISTINCT_METRICS, GRANULARITIES, bucket_first_day, bucket_of, buckets_between, day_of,
    kpi_rates,
)
from streams.keyspace import KeySpace, event_clock_ms, scan_names, sum_hashes

__all__ = ["read_kpis"]


async def read_kpis(client: aioredis.Redis, keys: KeySpace, granularity: str, horizon_days: int,
                    last: int | None = None) -> list[dict]:
    """KPI rows of the ``last`` buckets (all when None), oldest first, as of the event-time clock (every
    bucket summed over the partitions' shares, streams/keyspace.py)."""
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity must be one of {GRANULARITIES}")
    day_prefix = kpi_hash("day", "")
    day_names = sorted(await scan_names(client, keys, day_prefix + "*"))
    clock_ms = await event_clock_ms(client, keys)
    if not day_names or clock_ms is None:
        return []
    as_of_day = day_of(clock_ms)
    *day_counts, last_order_days, base = await sum_hashes(
        client, keys, [*day_names, sketch_hash("last_order_day"), "kpi:base"])
    alive_before_retained = base.get("alive", 0)
    daily: dict[int, dict[str, int]] = {}
    for name, counts in zip(day_names, day_counts):
        daily[bucket_first_day("day", name[len(day_prefix):])] = counts
    first_day = min(daily)  # the oldest retained day; older days were folded into kpi:base
    carried_base = int(alive_before_retained or 0)
    # Open churns: customers whose last order is a full horizon old, on completed days only.
    for last_day, customers in last_order_days.items():
        churn_day = int(last_day) + horizon_days
        if churn_day < as_of_day:
            if churn_day < first_day:
                carried_base -= int(customers)
                continue
            row = daily.setdefault(churn_day, {})
            row["churned"] = row.get("churned", 0) + int(customers)
    last_day = max(max(daily), as_of_day)
    labels = buckets_between(granularity, first_day, last_day)
    labels = labels[-last:] if last else labels
    distinct_counts = await sum_hashes(client, keys, [kpi_hash(granularity, label) for label in labels])

    days_of: dict[str, list[int]] = {}
    for day in daily:
        days_of.setdefault(bucket_of(granularity, day), []).append(day)
    base_change = {day: row.get("new_buyers", 0) + row.get("reactivated", 0) - row.get("churned", 0)
                   for day, row in daily.items()}
    rows = []
    for label, distinct in zip(labels, distinct_counts):
        start = bucket_first_day(granularity, label)
        days = days_of.get(label, [])
        counts = {metric: sum(daily[day].get(metric, 0) for day in days) for metric in ADDITIVE_METRICS}
        counts.update({metric: int(distinct.get(metric, 0)) for metric in DISTINCT_METRICS})
        alive_at_start = carried_base + sum(change for day, change in base_change.items() if day < start)
        rows.append({"bucket": label, "granularity": granularity, **counts, "alive_at_start": alive_at_start,
                     **kpi_rates(counts, alive_at_start),
                     "segments": _by_segment([daily[day] for day in days], distinct)})
    return rows


def _by_segment(day_rows: list[dict[str, int]], distinct: dict[str, str]) -> dict[str, dict]:
    """Per named segment (``metric@segment`` fields): counts and rates. Churn is not split by segment:
    open churns come from the population sketch, which knows no segments."""
    segments: dict[str, dict[str, int]] = {}
    for row in day_rows:
        for field, value in row.items():
            metric, _, segment = field.partition("@")
            if segment and metric in ADDITIVE_METRICS and metric not in ("churned", "reactivated"):
                counts = segments.setdefault(segment, {})
                counts[metric] = counts.get(metric, 0) + value
    for field, value in distinct.items():
        metric, _, segment = field.partition("@")
        if segment and metric in DISTINCT_METRICS:
            segments.setdefault(segment, {})[metric] = int(value)
    return {segment: {**counts, **{k: v for k, v in kpi_rates(counts, None).items() if k != "churn_rate"}}
            for segment, counts in sorted(segments.items())}
