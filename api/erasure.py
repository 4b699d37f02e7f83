"""Customer erasure requested over the API: an ``erase`` event on the customers topic, confirmed by the
pipeline.

Why through the pipeline and not a direct delete: a worker may be in the middle of a batch that holds the
customer's state, and would write it back after a direct delete. The erase event is ordered with the
customer's other events (same key, same partition), and the batch that applies it deletes every key of the
customer and writes ``erasure:<digest of the event id>`` in the same atomic commit: a confirmation that
names no customer. The customer's alerts go next, when the alert delivery reads the erasure record.
"""
from __future__ import annotations

import asyncio
import time
import uuid

import orjson

from agents.alert_delivery import customer_alerts_key
from api.customers import CustomerReader
from streams.config import Settings
from streams.redis_store import erasure_key

__all__ = ["Eraser"]


class Eraser:
    def __init__(self, settings: Settings, customers: CustomerReader) -> None:
        self.settings, self.customers = settings, customers
        self._producer = None
        self._starting = asyncio.Lock()

    async def request(self, customer_id: str) -> str:
        """Send the erase event; returns the erasure id (the event id) to confirm it with."""
        producer = await self._started()
        erasure_id = f"erase-{uuid.uuid4().hex}"
        now_ms = int(time.time() * 1000)
        event = {"event_id": erasure_id, "customer_id": customer_id, "ts": now_ms, "type": "erase",
                 "schema_version": 1}
        await producer.send_and_wait(self.settings.topic("customers"), orjson.dumps(event),
                                     key=customer_id.encode(), timestamp_ms=now_ms)
        return erasure_id

    async def confirmed(self, erasure_id: str, wait_s: float = 0.0, customer_id: str | None = None) -> bool:
        """Whether the pipeline applied the erasure (and, given ``customer_id``, the alert delivery removed the
        customer's alerts: it follows the pipeline by one of its batches), waiting up to ``wait_s``."""
        deadline = time.monotonic() + wait_s
        while True:
            if await self.customers.erasure_confirmed(erasure_key(erasure_id)) and (
                    customer_id is None or not await self.customers.client.exists(
                        self.customers.prefix + customer_alerts_key(customer_id))):
                return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.05)

    async def _started(self):
        async with self._starting:
            if self._producer is None:
                if not self.settings.kafka_bootstrap:
                    raise RuntimeError("CRM_KAFKA_BOOTSTRAP is not set: erasure needs the customers topic")
                from aiokafka import AIOKafkaProducer

                producer = AIOKafkaProducer(bootstrap_servers=self.settings.kafka_bootstrap, acks="all")
                await producer.start()
                self._producer = producer
        return self._producer

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
