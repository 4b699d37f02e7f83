"""SIGKILL the worker mid-stream, repeatedly: the final Redis state must equal an uninterrupted run
key by key, and the per-customer activity must equal a pandas recount."""
from __future__ import annotations

import orjson
import pandas as pd
import pytest
import redis
from redis.crc import key_slot

from streams.keyspace import summed
from streams.simulator import SimulationConfig, simulate
from tests.conftest import OUTPUT_DIR
from tests.stack import (
    WorkerProcess, accepted_total, fence_tokens, event_messages, prepare_topics, process_history, produce, read_state,
    unique_settings, wait_until,
)


def redis_dump(client, settings) -> dict:
    """Every key of a run (key and topic prefixes stripped) with its content."""
    dump = {}
    keys = settings.key_space()
    for key in client.scan_iter(match=settings.redis_prefix + "*", count=1000):
        full_name = key[len(settings.redis_prefix):]
        name = keys.name_of(key) if full_name.startswith("{p") else full_name  # a partition's key, untagged
        # Fence tokens differ by design; which old event ids have been forgotten depends on batch
        # boundaries (the de-duplication window is a lower bound), not on the data.
        # The churn wheel and scores follow the purchases watermark batch by batch; where a batch ends
        # decides which events within the allowed lateness a wake-up sees (docs/churn.md).
        # Model and segment snapshots are published on a wall-clock schedule; segment totals and migrations
        # follow the snapshot a customer was assigned with (docs/segments.md).
        if name == "fence" or ":seen:" in name or name.startswith(("wheel", "model:", "seg:")):
            continue
        # Alerts: stored with their wall-clock arrival, counted with the repeats a crash causes, streamed; which
        # customers count as valuable follows the population of the moment (docs/alerts.md). tests/test_alerts.py
        # checks them, replay against live.
        if name.startswith("alerts:"):
            continue
        # The search index's band, segment and churn entries follow the churn scores and segments above (its
        # value order, idx:value, is compared); consumer lag is a wall-clock report.
        if name.startswith(("idx:churn", "idx:band:", "idx:segment:", "idx:attrs")) or name == "health:log_end":
            continue
        if name.startswith("item:popular:") and name != "item:popular:first_order":
            continue  # a buyer's best-seller segment is ranked against the population of the moment, too
        if client.type(key) == "hash":
            # Per-segment KPI fields ("orders@Champions") depend on when the population was read
            # (docs/customer-state.md); everything else must be identical.
            dump[full_name] = {field.removeprefix(settings.topic_prefix): without_churn(field, value)
                          for field, value in client.hgetall(key).items() if "@" not in field}
        else:
            dump[full_name] = client.zrange(key, 0, -1, withscores=True)
    return dump


def partition_slot(settings, partition: int) -> int:
    return key_slot(settings.key_space().part(partition).encode())


def redirections(cluster) -> int:
    """ASK and TRYAGAIN replies the cluster's masters have sent so far (a slot being moved)."""
    total = 0
    for node in cluster.nodes:
        client = redis.Redis(port=node.port)
        try:
            stats = client.info("errorstats")
        finally:
            client.close()
        total += sum(stats.get(f"errorstat_{kind}", {}).get("count", 0) for kind in ("ASK", "TRYAGAIN"))
    return total


def without_churn(field: str, value: str) -> str | dict:
    if field != "state":
        return value
    state = orjson.loads(value)
    assert "churn_clock" in state and "churn_score" in state
    items = state.pop("items")  # the pending view/order join memory follows the topics' interleaving
    state.pop("segment")  # assigned with the snapshot of the moment, sampled at wake-ups like churn
    state.pop("alerted")  # customer alerts' cool-downs: "valuable" is a rank in the population of the moment
    return {**{name: part for name, part in state.items() if not name.startswith("churn_")},
            "recent_items": items["recent"], "bought": items["bought"]}


@pytest.fixture(scope="module")
def history() -> list:
    """One simulated history for both tests: each interrupted run is compared with one uninterrupted run."""
    return simulate(SimulationConfig(customers=400, days=240, seed=11)).events


@pytest.fixture(scope="module")
def uninterrupted(broker, redis_server, history) -> dict:
    settings = unique_settings(broker.bootstrap, redis_server.url, batch_size=200)
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    process_history(settings, client, history, OUTPUT_DIR / "logs" / f"worker-{settings.app_id}.log", 120)
    return redis_dump(client, settings)


def test_sigkill_during_stream_loses_and_doubles_nothing(settings, redis_client, broker, history, uninterrupted,
                                                        output_dir):
    settings = settings.with_(batch_size=200, trainers="process")  # the trainers' child is SIGKILLed with it
    prepare_topics(settings)
    events = history
    produce(broker.bootstrap, event_messages(settings, events))
    log = output_dir / "logs" / f"worker-{settings.app_id}.log"

    kills = 0
    for fraction in (0.15, 0.35, 0.55):
        worker = WorkerProcess(settings, log).start()
        wait_until(lambda: accepted_total(redis_client, settings) >= fraction * len(events), 120,
                   "worker made no progress", interval_s=0.02, process=worker.process)
        worker.kill()
        kills += 1
    assert accepted_total(redis_client, settings) < len(events), "the kills all came after the stream ended"

    worker = WorkerProcess(settings, log).start()
    try:
        wait_until(lambda: accepted_total(redis_client, settings) >= len(events), 120, "stream not finished")
    finally:
        worker.stop()

    assert redis_dump(redis_client, settings) == uninterrupted

    frame = pd.DataFrame([{"customer_id": e["customer_id"], "topic": t, "ts": e["ts"]} for t, e in events])
    expected = frame.groupby("customer_id").agg(first_seen_ms=("ts", "min"), last_seen_ms=("ts", "max"))
    counts = frame.pivot_table(index="customer_id", columns="topic", values="ts", aggfunc="count", fill_value=0)
    stats = summed(redis_client, settings.key_space(), "stats:ingest")
    assert kills == 3
    assert int(stats["customers"]) == len(expected)
    assert {k: int(v) for k, v in stats.items() if k.startswith("accepted:")} == \
        {f"accepted:{topic}": int(n) for topic, n in frame["topic"].value_counts().items()}
    assert "duplicates" not in stats  # redelivered messages are skipped by offset, not mistaken for duplicates
    for customer_id, row in expected.iterrows():
        activity = read_state(redis_client, settings, customer_id).activity
        assert (activity.first_seen_ms, activity.last_seen_ms) == (row.first_seen_ms, row.last_seen_ms)
        for topic in counts.columns:
            assert activity.events.get(topic, 0) == counts.loc[customer_id, topic], (customer_id, topic)


def test_partitions_moving_between_workers_mid_stream_lose_and_double_nothing(
        cluster_settings, cluster_client, redis_cluster, broker, history, uninterrupted, output_dir):
    """On a 3-master Redis Cluster: a second worker joins while events flow (partitions move to it), two
    partitions' hash slots move to another master with their keys (a reshard: the scripts meet ASK and TRYAGAIN
    replies, then MOVED), then the second worker is SIGKILLed (its partitions move back after its session times
    out); the result must equal one uninterrupted worker's on a single Redis, key by key."""
    # The killed worker's partitions come back with wheels behind the survivor's clock: a version its next batch
    # needs may wait on their wake-ups, which only that batch replays; it must not wait for it (it did, for
    # CRM_CHURN_VERSION_WAIT_S, 120 s: BatchProcessor._own_partitions_hold_back).
    settings = cluster_settings.with_(batch_size=200, trainers="process")
    redis_client = cluster_client  # the trainers' child is SIGKILLed with it
    prepare_topics(settings)
    events = history
    thirds = [events[: len(events) // 3], events[len(events) // 3: 2 * len(events) // 3],
              events[2 * len(events) // 3:]]
    logs = output_dir / "logs"

    moved, second, redirected = {}, None, redirections(redis_cluster)
    first = WorkerProcess(settings, logs / f"worker-{settings.app_id}-a.log").start()
    try:
        produce(broker.bootstrap, event_messages(settings, thirds[0]))
        wait_until(lambda: accepted_total(redis_client, settings) >= len(thirds[0]) // 2, 120,
                   "first worker made no progress", interval_s=0.05, process=first.process)
        claimed_alone = fence_tokens(redis_client, settings)
        second = WorkerProcess(settings, logs / f"worker-{settings.app_id}-b.log").start()
        produce(broker.bootstrap, event_messages(settings, thirds[1]))  # flows while the group rebalances
        # Revoking is eager: after the join, each partition is claimed again, by the first worker or the second.
        wait_until(lambda: sum(int(token) for token in fence_tokens(redis_client, settings).values())
                   >= sum(int(token) for token in claimed_alone.values()) + len(claimed_alone), 120,
                   "the second worker never took partitions", interval_s=0.05, process=second.process)
        for partition in (0, settings.partitions - 1):  # while both workers write; and back at the end
            slot = partition_slot(settings, partition)
            # A key at a time: the workers' scripts meet the slot half moved (bench/out: ~100 TRYAGAIN replies)
            moved[partition] = redis_cluster.move_slot(slot, to=(redis_cluster.owner_of(slot) + 1) % 3, batch=1,
                                                       pause_s=0.002)
        produce(broker.bootstrap, event_messages(settings, thirds[2]))
        second.kill()
        assert accepted_total(redis_client, settings) < len(events), "the kill came after the stream ended"
        wait_until(lambda: accepted_total(redis_client, settings) >= len(events), 180, "stream not finished",
                   process=first.process)
        redirected = redirections(redis_cluster) - redirected
    finally:
        for worker in (first, second):
            if worker is not None:
                worker.stop()
        for partition, owner in moved.items():
            redis_cluster.move_slot(partition_slot(settings, partition), to=owner)

    assert redirected > 0, "no script met a slot being moved"
    survivor_log = (logs / f"worker-{settings.app_id}-a.log").read_text()
    assert "no churn model final" not in survivor_log, "the survivor waited out CRM_CHURN_VERSION_WAIT_S"
    assert "duplicates" not in summed(redis_client, settings.key_space(), "stats:ingest")
    assert redis_dump(redis_client, settings) == uninterrupted
