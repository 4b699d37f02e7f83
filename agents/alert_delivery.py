"""Alert delivery: the one consumer of the single-partition ``alerts`` topic.

Customer alerts (from the partition batches) and aggregate alerts (from the detector) arrive here with
deterministic ids. Each is stored once (a re-sent alert is recognised by its id and not stored or
streamed again): a hash with its acknowledgement status and webhook state, and an entry in a stream
trimmed to ``CRM_ALERT_STREAM_LENGTH`` that the dashboard and the API read. With a webhook configured,
the alert is POSTed (signed, retried with backoff: agents/webhooks.py); an alert no attempt delivered
goes to ``alerts-deadletter`` with the attempts' outcomes. The webhook state is recorded after the POST,
so a re-sent alert whose POST was not recorded as done is POSTed again (receivers de-duplicate on the
alert id header); a delivered one never is.
"""
from __future__ import annotations

import asyncio
import logging
import time

import faust
import orjson

from agents.snapshots import register_single_partition_trainer
from agents.webhooks import WebhookSender
from streams.config import Settings
from streams.redis_store import RedisStore, lua_script

__all__ = ["DeliveryProcess", "register_alert_delivery", "STREAM_KEY", "STATS_KEY", "alert_key"]

logger = logging.getLogger(__name__)

STREAM_KEY = "alerts:stream"
STATS_KEY = "alerts:stats"
_RETENTION_S = 90 * 86_400
_MAX_CONCURRENT_POSTS = 16


def alert_key(alert_id: str) -> str:
    """Redis hash (under the prefix) of one alert."""
    return f"alert:{alert_id}"


def _valid_alert(alert: object) -> bool:
    return (isinstance(alert, dict) and isinstance(alert.get("id"), str) and 0 < len(alert["id"]) <= 200
            and alert.get("kind") in ("customer", "aggregate") and isinstance(alert.get("ts_ms"), int)
            and alert.get("severity") in ("warning", "critical"))


class DeliveryProcess:
    """Stores, streams and POSTs the alerts of a batch; Faust-free so tests can drive it."""

    def __init__(self, store: RedisStore, settings: Settings, deadletter: faust.TopicT | None,
                 sender: WebhookSender | None = None) -> None:
        self.store, self.settings, self.deadletter = store, settings, deadletter
        self.sender = sender if sender is not None else (WebhookSender(
            settings.alert_webhook_url, settings.alert_webhook_secret, settings.alert_webhook_attempts,
            settings.alert_webhook_backoff_s, settings.alert_webhook_timeout_s) if settings.alert_webhook_url else None)
        self._store_alert = store.client.register_script(lua_script("store_alert.lua"))
        self.pending: list[tuple[int, bytes | None]] = []
        self.owns_topic = False

    async def restore(self) -> None:
        """Nothing to restore: what was stored is recognised by id."""
        self.pending = []

    def learn(self, offset: int, value: bytes | None) -> None:
        self.pending.append((offset, value))

    async def publish_if_due(self) -> None:
        """Nothing happens on a timer."""

    async def after_batch(self) -> None:
        batch, self.pending = self.pending, []
        to_post: list[tuple[str, bytes, int]] = []
        for offset, value in batch:
            try:
                alert = orjson.loads(value)
            except (TypeError, orjson.JSONDecodeError):
                alert = None
            if not _valid_alert(alert):
                await self.store.client.hincrby(self.store.prefix + STATS_KEY, "rejected", 1)
                logger.warning("alert at offset %d refused: not an alert", offset)
                continue
            body = orjson.dumps(alert)
            webhook = "pending" if self.sender is not None else "none"
            known = await self._store_alert(
                keys=[self.store.prefix + alert_key(alert["id"]), self.store.prefix + STREAM_KEY,
                      self.store.prefix + STATS_KEY],
                args=[alert["id"], body, int(time.time() * 1000), webhook, self.settings.alert_stream_length,
                      _RETENTION_S])
            if (known or webhook) == "pending" and self.sender is not None:
                to_post.append((alert["id"], body, offset))
        if to_post:
            limit = asyncio.Semaphore(_MAX_CONCURRENT_POSTS)

            async def post(alert_id: str, body: bytes, offset: int) -> None:
                async with limit:
                    await self._post(alert_id, body, offset)
            await asyncio.gather(*(post(*item) for item in to_post))

    async def _post(self, alert_id: str, body: bytes, offset: int) -> None:
        result = await self.sender.deliver(alert_id, body)
        state = "delivered" if result.delivered else "dead"
        if not result.delivered and self.deadletter is not None:
            letter = {"alert_id": alert_id, "reason": "webhook undeliverable", "attempts": result.attempts,
                      "source_offset": offset, "url": self.settings.alert_webhook_url,
                      "failed_at_ms": int(time.time() * 1000), "alert": orjson.loads(body)}
            await (await self.deadletter.send(key=alert_id.encode(), value=orjson.dumps(letter)))
            logger.warning("alert %s dead-lettered after %s", alert_id, result.attempts)
        async with self.store.client.pipeline(transaction=True) as pipe:
            pipe.hset(self.store.prefix + alert_key(alert_id), mapping={
                "webhook": state, "webhook_attempts": orjson.dumps(result.attempts).decode()})
            pipe.hincrby(self.store.prefix + STATS_KEY, f"webhook_{state}", 1)
            await pipe.execute()


def register_alert_delivery(app: faust.App, settings: Settings, store: RedisStore) -> None:
    deadletter = app.topic(settings.topic("alerts-deadletter"), key_serializer="raw", value_serializer="raw",
                           partitions=1)
    process = DeliveryProcess(store, settings, deadletter)

    def take(messages: list[tuple[int, bytes | None]]) -> None:
        for offset, value in messages:
            process.learn(offset, value)

    register_single_partition_trainer(app, settings, "alerts", "alert-delivery", process, 60.0, take)
