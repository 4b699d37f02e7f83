"""The planted churn-shock scenario through the real stack, shared by tests/test_alerts.py and
bench/alert_scenario.py: simulate a shop with a shock in one segment, run a worker over it, read the alerts.

Which behaviour segment is "the right one" is decided from the data, not assumed: the stored segment id
most of the shocked customers carried when they entered high risk.
"""
from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

import orjson
import redis

from agents.alert_delivery import STATS_KEY, STREAM_KEY
from agents.alert_detector import CHECKPOINT_KEY
from online_models.purchase_history import DAY_MS
from streams.config import Settings
from streams.simulator import DISTINCT_SEGMENTS, ChurnShock, Simulation, SimulationConfig, simulate
from tests.stack import (
    WorkerProcess, accepted_total, by_day, event_messages, prepare_topics, produce_paced, read_topic, wait_until,
)

__all__ = ["SCENARIO_SETTINGS", "SHOCKED_SEGMENT", "FROZEN", "frozen_models", "scenario", "run_worker_over",
           "Outcome", "judge", "shocked_segments", "score_records", "end_offset", "stored_alerts"]

#: What the scenario sets besides the shipped alert defaults (daily buckets, risk entries into medium, the
#: leading indicators: streams/config.py; chosen on seeds 1-10, docs/alerts.md): snapshots of the segment model
#: often (it is frozen, published before the run), and customer alerts on an absolute value floor.
SCENARIO_SETTINGS = dict(segment_snapshot_every=2000, segment_snapshot_interval_s=1.0,
                         # valuable = worth at least 2,500 EUR (about the top decile here): an absolute floor, so
                         # customer alerts do not depend on the population as read (replay = live, exactly)
                         alert_watched_segments=(), alert_value_rank=1.0, alert_min_value_minor=250_000.0)

#: The planted segment each shock kind hits: VIPs complain or fall silent; bargain hunters leave over a price rise.
SHOCKED_SEGMENT = {"complaints": "vip", "silent": "vip", "price": "bargain_hunter"}


#: The distinct planted segments (so behaviour segments can be told apart), with customers who leave now and
#: then: churn must be something the model has seen before a shock can look like it.
SCENARIO_SEGMENTS = tuple(replace(segment, mean_lifetime_days=lifetime)
                          for segment, lifetime in zip(DISTINCT_SEGMENTS, (700, 400, 250, 150)))


def scenario(seed: int, customers: int = 800, days: int = 330, shock_day: int | None = 240,
             kind: str = "complaints") -> Simulation:
    """The shop (every customer is asked for an NPS now and then) with a shock of ``kind`` on ``shock_day``."""
    shock = None if shock_day is None else ChurnShock(SHOCKED_SEGMENT[kind], shock_day, kind=kind)
    return simulate(SimulationConfig(customers=customers, days=days, seed=seed, segments=SCENARIO_SEGMENTS,
                                     rate_shape=8.0, shock=shock, customer_voice=True))


def end_offset(bootstrap: str, topic: str) -> int:
    """Records in a single-partition topic (its end offset)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    async def run() -> int:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
        await consumer.start()
        try:
            tp = TopicPartition(topic, 0)
            return (await consumer.end_offsets([tp]))[tp]
        finally:
            await consumer.stop()

    return asyncio.run(run())


def _settled(settings: Settings, client: redis.Redis) -> bool:
    """The detector has applied every score change and delivery has seen every alert."""
    checkpoint = client.get(settings.redis_prefix + CHECKPOINT_KEY)
    changes = end_offset(settings.kafka_bootstrap, settings.topic("score-changes"))
    if changes and (checkpoint is None or orjson.loads(checkpoint)["offset"] < changes - 1):
        return False
    stats = client.hgetall(settings.redis_prefix + STATS_KEY)
    seen = sum(int(stats.get(name, 0)) for name in ("stored", "duplicates", "rejected"))
    return seen >= end_offset(settings.kafka_bootstrap, settings.topic("alerts"))


def run_worker_over(settings: Settings, client: redis.Redis, chunks: list[list], log_path: Path,
                    timeout_s: float = 600) -> float:
    """Produce each chunk of events and wait for it (and the alerts it causes) before the next; seconds taken.

    A chunk is sent a day of event time at a time, each day acknowledged before the next, as live traffic
    arrives. Sent at once, the producer's per-partition batches can leave one partition (or topic) days of event
    time behind another on the broker: a producer lagging a partition by more than the lateness, which no
    consumer can tell from a partition with nothing more to say (docs/churn.md, "Known gaps")."""
    prepare_topics(settings)
    started = time.monotonic()
    worker = WorkerProcess(settings, log_path).start()
    produced = 0
    try:
        for events in chunks:
            produce_paced(settings.kafka_bootstrap, by_day(event_messages(settings, events)))
            produced += len(events)
            wait_until(lambda: accepted_total(client, settings) >= produced, timeout_s, "history not processed",
                       interval_s=0.5, process=worker.process)
            time.sleep(2.0)  # derived events of the last batch are on their way
            wait_until(lambda: _settled(settings, client), 120, "alerts did not settle", interval_s=1.0,
                       process=worker.process)
    finally:
        worker.stop()
    return time.monotonic() - started


def stored_alerts(settings: Settings, client: redis.Redis) -> list[dict]:
    """Every alert in the stream, oldest first."""
    return [orjson.loads(fields["alert"]) for _, fields in client.xrange(settings.redis_prefix + STREAM_KEY)]


@dataclass
class Outcome:
    shock_ms: int | None
    shocked_segments: set[int]       # behaviour segments the shocked customers carried (before; entering risk)
    aggregate: list[dict]            # aggregate alerts after the warm-up
    true_alerts: list[dict]          # naming a shocked segment (or the whole base, led by one) after the shock
    false_alerts: list[dict]
    calm_alerts: list[dict]          # aggregate alerts in the calm control period
    delay_days: float | None         # shock to the end of the bucket of the first true alert
    detected: bool

    @property
    def shocked_segment(self) -> int | None:
        return min(self.shocked_segments) if self.shocked_segments else None


def shocked_segments(simulation: Simulation, records: list[dict]) -> set[int]:
    """Which behaviour segments the shock hit, from the data: the segment most of the shocked customers' signals
    carried before the shock, and the one most of them carried when entering a risk band after it (a customer
    who falls silent drifts toward another segment)."""
    shock = simulation.config.shock
    shocked = {c.customer_id for c in simulation.customers if c.shocked_ms is not None}
    if shock is None:
        return set()
    shock_ms = simulation.config.start_ms + shock.day * DAY_MS
    before = Counter(r["segment_id"] for r in records if r.get("type") == "signal" and r["customer_id"] in shocked
                     and r["as_of_ms"] < shock_ms and r["segment_id"] is not None)
    entering = Counter(r["segment_id"] for r in records if r.get("type") is None and r["customer_id"] in shocked
                       and r["band"] != "low" and r["segment_id"] is not None and r["as_of_ms"] >= shock_ms)
    return {counts.most_common(1)[0][0] for counts in (before, entering) if counts}


def judge(simulation: Simulation, records: list[dict], alerts: list[dict], calm_days: int = 120,
          warmup_days: int = 120) -> Outcome:
    """Score the aggregate alerts of one run against the planted shock (``records``: the score-changes topic).
    An alert is true when it names a shocked segment (its series, or the top segment of a whole-base alert) after
    the shock began."""
    start = simulation.config.start_ms
    shock = simulation.config.shock
    segments = shocked_segments(simulation, records)
    shock_ms = None if shock is None else start + shock.day * DAY_MS
    aggregate = [a for a in alerts if a["kind"] == "aggregate" and a["ts_ms"] >= start + warmup_days * DAY_MS]
    calm_from = (shock_ms or start + simulation.config.days * DAY_MS) - calm_days * DAY_MS

    def names_shock(alert: dict) -> bool:
        if shock_ms is None or alert["bucket_end_ms"] <= shock_ms:
            return False
        tops = alert["evidence"].get("top_segments") or [{}]
        return alert["segment_id"] in segments or alert["scope"] == "all" and tops[0].get("segment_id") in segments

    true_alerts = [a for a in aggregate if names_shock(a)]
    delay = None if not true_alerts else (min(a["bucket_end_ms"] for a in true_alerts) - shock_ms) / DAY_MS
    return Outcome(shock_ms, segments, aggregate, true_alerts, [a for a in aggregate if not names_shock(a)],
                   [a for a in aggregate if calm_from <= a["bucket_end_ms"] < (shock_ms or 2**62)], delay,
                   bool(true_alerts))


def score_records(settings: Settings) -> list[dict]:
    """Everything on the score-changes topic: score changes, signals (out of the messages that carry a batch's),
    progress and erasure records."""
    records = []
    for message in read_topic(settings.kafka_bootstrap, settings.topic("score-changes")):
        record = orjson.loads(message.value)
        records += record["signals"] if record.get("type") == "signals" else [record]
    return records


def frozen_models(seed: int = 99, customers: int = 800, days: int = 300) -> dict[str, bytes]:
    """A churn model and a segment snapshot learnt (by the pipeline's own pure code) from another shop of
    the same kind, to publish before a run: scores and segments then change only with the customers, not
    with a model learning the backlog as it drains (first snapshots move many scores at once, see
    docs/alerts.md), and a replay scores exactly as the live run did."""
    import importlib.util

    from bench.segments import replay as segment_replay
    from online_models.segment_training import SegmentSettings

    simulation = scenario(seed, customers, days, shock_day=None)
    end_ms = simulation.config.start_ms + days * DAY_MS
    spec = importlib.util.spec_from_file_location("churn_cutoff", Path(__file__).resolve().parent.parent
                                                  / "bench" / "churn_cutoff.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    churn = bench.Replay(Settings.from_env({}), warmup=0)
    for topic, payload in simulation.events:
        churn.event(topic, payload)
    churn.advance(end_ms)
    training, *_ = segment_replay(simulation, SegmentSettings(warmup=1000), snapshot_every=2000)
    return {"model:{churn}:latest": orjson.dumps(churn.trainer.snapshot(1, end_ms)),
            "seg:{seg}:latest": orjson.dumps(training.publish(end_ms)[0])}


#: Settings that keep the published frozen models: the trainers never reach their thresholds.
FROZEN = dict(churn_min_examples=10**9, segment_warmup=10**9)
