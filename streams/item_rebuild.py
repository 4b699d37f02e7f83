"""Rebuild the item matrices from history: after changing the caps, the view window or the decay.

The live pipeline only ever adds to the counts, and it will not count a
replayed order again (its order id was seen). To recompute them, this folds a
history file through the same code the pipeline runs (contract validation,
de-duplication by order id, :class:`agents.item_stage.ItemStage`) in one
process, then replaces every partition's ``item:*`` keys (each partition's orders counted in its own slot,
streams/keyspace.py). Stop the workers first and give
the whole history the pipeline has applied: the live increments continue from
where the file ends. Per-segment best-sellers are attributed with the current
population in Redis (the live run used the population as it was then).
"""
from __future__ import annotations

from typing import Callable, Iterable

import redis.asyncio as aioredis

from agents.ingest import dedup_identity
from agents.item_stage import ItemStage
from online_models.cooccurrence import ItemCounts
from online_models.customer_state import CustomerState
from online_models.purchase_history import DAY_MS
from schemas.events import CustomerEvent, Event, Interaction, InvalidEvent, Purchase, validate_payload
from streams.config import Settings
from streams.keyspace import KeySpace, partition_of

__all__ = ["count_history", "replace_item_keys"]


def count_history(records: Iterable[tuple[str, dict]], settings: Settings,
                  segment_of: Callable[[CustomerState], str]) -> tuple[dict[int, ItemCounts], int]:
    """The counts a pipeline would hold after ``records`` ((topic, event) pairs), by input partition; also how
    many were invalid."""
    events: list[Event] = []
    invalid = 0
    for topic, payload in records:
        try:
            events.append(validate_payload(topic, payload))
        except InvalidEvent:
            invalid += 1
    events.sort(key=lambda event: event.ts_ms)  # the join is order-insensitive; this is one valid order
    stages: dict[int, ItemStage] = {}
    half_life_ms = settings.engagement_half_life_days * DAY_MS
    states: dict[str, CustomerState] = {}
    seen: set[tuple[str, str, str]] = set()
    for event in events:
        identity = (event.customer_id, event.topic, dedup_identity(event))
        if identity in seen:
            continue
        seen.add(identity)
        if isinstance(event, CustomerEvent):
            if event.type == "erase":
                states.pop(event.customer_id, None)
            continue
        state = states.get(event.customer_id)
        if state is None:
            state = states[event.customer_id] = CustomerState.new(half_life_ms)
        partition = partition_of(event.customer_id, settings.partitions)
        stage = stages.get(partition)
        if stage is None:
            stage = stages[partition] = ItemStage(settings.item_settings(), settings.lateness_ms, segment_of)
        if isinstance(event, Purchase) and event.kind == "order":
            stage.before_event(event.customer_id, state, event, 0)
            state.apply_order(event.ts_ms, event.amount_minor, sum(item.qty for item in event.items))
            stage.after_event(event.customer_id, state, event)
        elif isinstance(event, Interaction):
            stage.after_event(event.customer_id, state, event)
    return {partition: stage.counts for partition, stage in sorted(stages.items())}, invalid


async def replace_item_keys(client: aioredis.Redis, keys: KeySpace, counts: dict[int, ItemCounts],
                            settings: Settings, chunk: int = 10_000) -> int:
    """Delete every partition's ``item:*`` keys and write ``counts`` (by partition) instead; returns the number
    of keys written."""
    stale = [key async for key in client.scan_iter(match=keys.pattern("item:*"), count=1000)]
    async with client.pipeline(transaction=False) as pipe:  # one key a command: a cluster spreads them
        for key in stale:
            pipe.unlink(key)
        await pipe.execute()
    written = 0
    async with client.pipeline(transaction=False) as pipe:
        queued = 0
        for partition, partition_counts in counts.items():
            for key, members in partition_counts.sorted_set_increments(settings.item_settings().decay).items():
                written += 1
                items = list(members.items())
                for first in range(0, len(items), chunk):
                    pipe.zadd(keys.part(partition) + key,
                              {member: float(amount) for member, amount in items[first:first + chunk]})
                    queued += 1
                    if queued % 100 == 0:
                        await pipe.execute()
        await pipe.execute()
    return written
