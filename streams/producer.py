"""Sending contract events to the input topics (simulator, replay, demo)."""
from __future__ import annotations

import asyncio
import time
from typing import Callable, Sequence

import orjson

from schemas.timestamps import record_timestamp_ms
from streams.config import Settings

__all__ = ["send_to_kafka"]


async def send_to_kafka(events: Sequence[tuple[str, dict]], settings: Settings, rate: float | None = None,
                        progress: Callable[[int, int], None] | None = None) -> int:
    """Send (topic, event) pairs, keyed by customer id, optionally paced to ``rate`` events/s.

    ``progress(sent, total)`` is called every 1,000 acknowledged events and at the end.
    """
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", linger_ms=20,
                                max_batch_size=256 * 1024)
    await producer.start()
    sent = 0
    started = time.monotonic()
    try:
        pending = []
        for topic, event in events:
            pending.append(await producer.send(settings.topic(topic), orjson.dumps(event),
                                               key=event["customer_id"].encode(),
                                               timestamp_ms=record_timestamp_ms(event)))
            sent += 1
            if rate:
                ahead_s = sent / rate - (time.monotonic() - started)
                if ahead_s > 0.01:
                    await asyncio.sleep(ahead_s)
            if len(pending) >= 1_000:
                await asyncio.gather(*pending)
                pending.clear()
                if progress:
                    progress(sent, len(events))
        await asyncio.gather(*pending)
        if progress:
            progress(sent, len(events))
    finally:
        await producer.stop()
    return sent
