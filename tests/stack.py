"""Helpers shared by integration tests and benchmarks: a real broker, Redis and worker processes."""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import orjson
import redis

from online_models.purchase_history import DAY_MS
from schemas.timestamps import record_timestamp_ms
from streams.config import Settings
from streams.embedded import create_topics
from streams.keyspace import merged, summed
from streams.topics import topic_specs

__all__ = ["ApiThread", "WorkerProcess", "unique_settings", "wait_until", "produce", "prepare_topics", "event_messages",
           "accepted_total", "process_history", "read_state", "segment_trainer_caught_up"]


def unique_settings(bootstrap: str, redis_url: str, env: dict[str, str] | None = None, **overrides) -> Settings:
    """Settings with their own topic prefix, Redis prefix and group, so tests do not see each other; ``env``: the
    ``CRM_*`` variables to read them from (none by default)."""
    tag = uuid.uuid4().hex[:8]
    return Settings.from_env(env or {}, kafka_bootstrap=bootstrap, redis_url=redis_url, topic_prefix=f"t{tag}.",
                             redis_prefix=f"t{tag}:", app_id=f"crm-test-{tag}", **overrides)


def suite_settings(bootstrap: str, redis_url: str, **overrides) -> Settings:
    """:func:`unique_settings` for a test whose subject is not where the trainers run: they run inline, one Faust
    process per worker. Why: a second Faust process per worker cost every test its start-up and its idle polling
    on these 2 cores (the suite took 668 s instead of 565 s). tests/test_trainer_process.py,
    tests/test_churn_pipeline.py and tests/test_crash_recovery.py run the default (a child process)."""
    return unique_settings(bootstrap, redis_url, **{"trainers": "inline", **overrides})


def prepare_topics(settings: Settings) -> None:
    asyncio.run(create_topics(settings.kafka_bootstrap, topic_specs(settings)))


@dataclass
class WorkerProcess:
    """``crmstream worker`` as a real child process (so it can be SIGKILLed)."""

    settings: Settings
    log_path: Path
    process: subprocess.Popen | None = None

    def start(self) -> "WorkerProcess":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "worker", "--loglevel", "info"],
            env={**os.environ, **self.settings.to_env()}, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        return self

    def wait_owning(self, client: redis.Redis, partitions: int, timeout_s: float = 120) -> float:
        """Wait until all input partitions have been claimed since start; returns seconds waited."""
        started = time.monotonic()
        before = fence_tokens(client, self.settings)
        def claimed() -> bool:
            now = fence_tokens(client, self.settings)
            changed = [tp for tp, token in now.items() if before.get(tp) != token]
            return len(changed) >= 3 * partitions
        wait_until(claimed, timeout_s, f"worker did not claim partitions; log: {self.log_path}",
                   process=self.process)
        return time.monotonic() - started

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 30) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


def wait_until(predicate, timeout_s: float, message: str | Callable[[], str], interval_s: float = 0.1,
               process=None) -> None:
    """Poll ``predicate`` until it holds; else fail with ``message`` (a callable: what it says then)."""
    def said() -> str:
        return message() if callable(message) else message

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        if process is not None and process.poll() is not None:
            raise AssertionError(f"{said()} (process exited with {process.returncode})")
        time.sleep(interval_s)
    raise AssertionError(said())


def produce(bootstrap: str, messages: Sequence[tuple]) -> None:
    """Send (topic, key, value[, timestamp_ms]) messages and wait for every acknowledgement."""
    produce_paced(bootstrap, [messages])


def produce_paced(bootstrap: str, pieces: Sequence[Sequence[tuple]]) -> None:
    """:func:`produce` piece after piece, each acknowledged before the next is sent (one producer)."""
    from aiokafka import AIOKafkaProducer

    async def send_all() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5,
                                    max_request_size=4 * 1024 * 1024)
        await producer.start()
        try:
            for messages in pieces:
                futures = [await producer.send(topic, value=value, key=key, timestamp_ms=timestamp_ms)
                           for topic, key, value, timestamp_ms in ((*m, None)[:4] for m in messages)]
                await asyncio.gather(*futures)
        finally:
            await producer.stop()

    asyncio.run(send_all())


def by_day(messages: Sequence[tuple]) -> list[list[tuple]]:
    """Consecutive (topic, key, value, timestamp_ms) messages grouped by the day of their timestamp."""
    days: list[list[tuple]] = []
    last_day = None
    for message in messages:
        day = last_day if message[3] is None else message[3] // DAY_MS  # no timestamp: with the one before
        if not days or day != last_day:
            days.append([])
        days[-1].append(message)
        last_day = day
    return days


def read_topic(bootstrap: str, topic: str, expected: int = 1, timeout_s: float = 30.0) -> list:
    """Every record of ``topic`` from the start: waits (up to ``timeout_s``) for at least ``expected``,
    then reads until nothing more arrives for a second, so records beyond ``expected`` show up too."""
    from aiokafka import AIOKafkaConsumer

    async def run() -> list:
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                    enable_auto_commit=False, group_id=None)
        await consumer.start()
        records: list = []
        deadline = time.monotonic() + timeout_s
        try:
            while len(records) < expected and time.monotonic() < deadline:
                for partition_records in (await consumer.getmany(timeout_ms=500)).values():
                    records.extend(partition_records)
            while batch := await consumer.getmany(timeout_ms=1000):
                for partition_records in batch.values():
                    records.extend(partition_records)
        finally:
            await consumer.stop()
        return records

    return asyncio.run(run())


def segment_trainer_caught_up(settings: Settings, client: redis.Redis, seen: dict | None = None) -> bool:
    """The newest segment snapshot has learnt every distinct sample the workers sent (no newer one is coming
    unless they send more). ``seen``, when given, gets the counts compared (for a failure's message)."""
    blob = client.get(settings.redis_prefix + "seg:{seg}:latest")
    samples = read_topic(settings.kafka_bootstrap, settings.topic("segment-features"), timeout_s=5.0)
    distinct = {s["sample_id"] for m in samples for s in orjson.loads(m.value)["samples"]}
    snapshot = None if blob is None else orjson.loads(blob)
    if seen is not None:
        seen.update(snapshot_samples=None if snapshot is None else snapshot["samples"],
                    snapshot_version=None if snapshot is None else snapshot["version"], distinct_sent=len(distinct),
                    messages=len(samples), last_offset=samples[-1].offset if samples else None)
    return snapshot is not None and snapshot["samples"] >= len(distinct)


def event_messages(settings: Settings, events) -> list[tuple[str, bytes, bytes, int | None]]:
    """(topic, key, value, timestamp_ms) Kafka messages of (contract topic, event) pairs, keyed by customer id
    and stamped with the event time, as streams/producer.py sends them."""
    return [(settings.topic(topic), event["customer_id"].encode(), orjson.dumps(event), record_timestamp_ms(event))
            for topic, event in events]


def fence_tokens(client: redis.Redis, settings: Settings) -> dict[str, str]:
    """Every topic-partition's fence token (each partition's fence hash also counts its commits)."""
    return {tp: token for tp, token in merged(client, settings.key_space(), "fence").items() if tp != "commits"}


def accepted_total(client: redis.Redis, settings: Settings, with_duplicates: bool = False) -> int:
    """Events the pipeline has accepted (optionally plus those it dropped as duplicates)."""
    stats = summed(client, settings.key_space(), "stats:ingest")
    return sum(int(v) for k, v in stats.items() if k.startswith("accepted:") or (with_duplicates and k == "duplicates"))


def process_history(settings: Settings, client: redis.Redis, events, log_path: Path, timeout_s: float = 180) -> float:
    """Create the topics, produce ``events``, run a worker until all are accepted; returns the seconds it took."""
    prepare_topics(settings)
    produce(settings.kafka_bootstrap, event_messages(settings, events))
    started = time.monotonic()
    worker = WorkerProcess(settings, log_path).start()
    try:
        wait_until(lambda: accepted_total(client, settings) >= len(events), timeout_s, "history not processed",
                   interval_s=0.5, process=worker.process)
    finally:
        worker.stop()
    return time.monotonic() - started


def read_state(client: redis.Redis, settings: Settings, customer_id: str):
    """The customer's stored state model (None if there is none)."""
    from online_models.customer_state import CustomerState

    blob = client.hget(settings.key_space().customer(customer_id), "state")
    return None if blob is None else CustomerState.from_json(blob)


class ApiThread:
    """The HTTP API (uvicorn) on a free port in a thread of the test process: real HTTP, one event loop."""

    def __init__(self, settings: Settings) -> None:
        import uvicorn

        from api.server import create_api
        from streams.embedded import free_port

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(create_api(settings), host="127.0.0.1", port=self.port,
                                                    log_level="warning", access_log=False))
        self.thread = None

    def __enter__(self) -> "ApiThread":
        import threading

        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        wait_until(lambda: self.server.started, 30, "API did not start")
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(30)
