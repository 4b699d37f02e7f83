"""Pipeline health, read from what the workers commit to Redis (the API never asks them)."""
from __future__ import annotations

import redis.asyncio as aioredis

from agents.batch_source import LOG_END_KEY, lag_of
from streams.keyspace import KeySpace, merge_hashes, sum_hashes

__all__ = ["read_overview", "read_pipeline_health"]


async def read_overview(client: aioredis.Redis, keys: KeySpace) -> dict:
    """Counters (summed over the partitions), per-partition offsets, log ends and watermarks, as the pipeline
    committed them (the log ends first: a partition's offset is read no earlier than its log end)."""
    log_ends = await client.hgetall(keys.prefix + LOG_END_KEY)
    offsets, watermarks = await merge_hashes(client, keys, ["offsets", "watermark"])
    counters, = await sum_hashes(client, keys, ["stats:ingest"])
    return {
        "customers": counters.get("customers", 0),
        "accepted": {k.removeprefix("accepted:"): v for k, v in counters.items() if k.startswith("accepted:")},
        "rejected": {k.removeprefix("rejected:"): v for k, v in counters.items() if k.startswith("rejected:")},
        "duplicates": counters.get("duplicates", 0),
        "erasures": counters.get("erasures", 0),
        "offsets": {tp: int(offset) for tp, offset in sorted(offsets.items())},
        "log_ends": {tp: int(end) for tp, end in sorted(log_ends.items())},
        "max_event_ms": {tp: int(ts) for tp, ts in sorted(watermarks.items())},
    }


async def read_pipeline_health(client: aioredis.Redis, keys: KeySpace, lateness_ms: int) -> dict:
    """Per input partition: last applied offset, log end (as its worker last fetched it) and lag = log end -
    applied offset (what is not applied yet, held or in flight included), newest event time and the watermark
    (newest - allowed lateness); dead-letter counts by reason."""
    overview = await read_overview(client, keys)
    offsets, log_ends = overview["offsets"], overview["log_ends"]
    lags = {tp: lag_of(end, offsets.get(tp)) for tp, end in log_ends.items()}
    partitions = [{"partition": tp, "offset": offsets.get(tp), "log_end": log_ends.get(tp), "lag": lags.get(tp),
                   "max_event_ms": overview["max_event_ms"].get(tp),
                   "watermark_ms": overview["max_event_ms"][tp] - lateness_ms if tp in overview["max_event_ms"]
                   else None}
                  for tp in sorted(set(offsets) | set(log_ends) | set(overview["max_event_ms"]))]
    return {"partitions": partitions, "total_lag": sum(lags.values()),
            "deadletter": {"total": sum(overview["rejected"].values()), "by_reason": overview["rejected"]},
            "accepted": overview["accepted"], "duplicates": overview["duplicates"], "erasures": overview["erasures"]}
