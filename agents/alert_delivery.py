"""Alert delivery: the one consumer of the single-partition ``alerts`` topic.

Customer alerts (from the partition batches) and aggregate alerts (from the detector) arrive here with
deterministic ids. Each is stored once (a re-sent alert is recognised by its id and not stored or
streamed again): a hash with its acknowledgement status and webhook state, and an entry in a stream
trimmed to ``CRM_ALERT_STREAM_LENGTH`` that the dashboard and the API read. With a webhook configured,
the alert is POSTed (signed, retried with backoff: agents/webhooks.py); an alert no attempt delivered
goes to ``alerts-deadletter`` with the attempts' outcomes. The webhook state is recorded after the POST,
so a re-sent alert whose POST was not recorded as done is POSTed again (receivers de-duplicate on the
alert id header); a delivered one never is.

Erasure: the pipeline sends ``{"type": "erasure", "customer_id"}`` to ``alerts`` after the customer's last
alerts (one partition owns a customer, so its records keep their order). Delivery then deletes every stored
alert of the customer (hash, stream entry; found through ``alerts:{alerts}:customer:<id>``) and tells the webhook, so
receivers can forget the customer too. A batch re-processed after a crash re-sends both, in the same order.
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

__all__ = ["DeliveryProcess", "register_alert_delivery", "STREAM_KEY", "STATS_KEY", "alert_key",
           "customer_alerts_key", "named_customers", "erasure_record", "SET_IF_STORED"]

logger = logging.getLogger(__name__)

STREAM_KEY = "alerts:{alerts}:stream"
STATS_KEY = "alerts:{alerts}:stats"
_RETENTION_S = 90 * 86_400
_MAX_CONCURRENT_POSTS = 16
#: HSET on a stored alert only: a webhook outcome or an acknowledgement must not bring back an alert that was
#: erased or expired meanwhile as a hash holding only those fields.
SET_IF_STORED = "if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end redis.call('HSET', KEYS[1], unpack(ARGV)) return 1"


def alert_key(alert_id: str) -> str:
    """Redis hash (under the prefix) of one alert. Every alert key has the ``{alerts}`` hash tag: a script
    storing or erasing alerts touches one Redis Cluster slot."""
    return f"alerts:{{alerts}}:alert:{alert_id}"


def customer_alerts_key(customer_id: str) -> str:
    """Redis set (under the prefix) of a customer's stored alerts (``<hash key> <stream entry id>``)."""
    return f"alerts:{{alerts}}:customer:{customer_id}"


def erasure_record(customer_id: str, requested_ts_ms: int) -> tuple[bytes, bytes]:
    """What the pipeline sends to ``alerts`` when a customer is erased."""
    return f"erasure:{customer_id}".encode(), orjson.dumps(
        {"type": "erasure", "customer_id": customer_id, "requested_ts_ms": requested_ts_ms})


def named_customers(alert: dict) -> list[str]:
    """The customers an alert names: a customer alert's own, an aggregate alert's most affected. An erasure of
    any of them deletes the alert (its index entries lead there).

    >>> named_customers({"kind": "customer", "customer_id": "c1"})
    ['c1']
    >>> named_customers({"kind": "aggregate", "evidence": {"top_customers": [{"customer_id": "c2"}, {}]}})
    ['c2']
    """
    if alert["kind"] == "customer":
        return [alert["customer_id"]] if isinstance(alert.get("customer_id"), str) else []
    tops = (alert.get("evidence") or {}).get("top_customers") or []
    return [top["customer_id"] for top in tops if isinstance(top, dict) and isinstance(top.get("customer_id"), str)]


def _is_erasure(record: object) -> bool:
    return (isinstance(record, dict) and record.get("type") == "erasure"
            and isinstance(record.get("customer_id"), str) and 0 < len(record["customer_id"]) <= 200)


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
        self._erase_alerts = store.client.register_script(lua_script("erase_alerts.lua"))
        self.pending: list[tuple[int, bytes | None]] = []
        self.owns_topic = False

    async def restore(self) -> None:
        """Nothing to restore: what was stored is recognised by id."""
        self.pending = []

    def learn_batch(self, messages: list[tuple[int, bytes | None]]) -> None:
        self.pending += messages

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
            if _is_erasure(alert):
                await self._erase(alert, offset, to_post)
                continue
            if not _valid_alert(alert):
                await self.store.client.hincrby(self.store.prefix + STATS_KEY, "rejected", 1)
                logger.warning("alert at offset %d refused: not an alert", offset)
                continue
            body = orjson.dumps(alert)
            webhook = "pending" if self.sender is not None else "none"
            known = await self._store_alert(
                keys=[self.store.prefix + alert_key(alert["id"]), self.store.prefix + STREAM_KEY,
                      self.store.prefix + STATS_KEY,
                      *(self.store.prefix + customer_alerts_key(customer) for customer in named_customers(alert))],
                args=[alert["id"], body, int(time.time() * 1000), webhook, self.settings.alert_stream_length,
                      _RETENTION_S, self.store.prefix])
            if (known or webhook) == "pending" and self.sender is not None \
                    and all(alert["id"] != posting for posting, _, _ in to_post):  # a repeat in the same batch
                to_post.append((alert["id"], body, offset))
        if to_post:
            limit = asyncio.Semaphore(_MAX_CONCURRENT_POSTS)

            async def post(alert_id: str, body: bytes, offset: int) -> None:
                async with limit:
                    await self._post(alert_id, body, offset)
            await asyncio.gather(*(post(*item) for item in to_post))

    async def _erase(self, erasure: dict, offset: int, to_post: list[tuple[str, bytes, int]]) -> None:
        """Delete the customer's stored alerts; alerts of the batch still to be POSTed are not POSTed."""
        customer_id = erasure["customer_id"]
        index = self.store.prefix + customer_alerts_key(customer_id)
        erased = -1
        while erased < 0:  # every key the script deletes is declared: read the index, then erase what it named
            members = sorted(await self.store.client.smembers(index))
            erased = await self._erase_alerts(
                keys=[index, self.store.prefix + STREAM_KEY, self.store.prefix + STATS_KEY,
                      *(self.store.prefix + member.partition(" ")[0] for member in members)], args=members)
        to_post[:] = [item for item in to_post if orjson.loads(item[1]).get("customer_id") != customer_id]
        logger.info("erased %d alerts of an erased customer", erased)
        if self.sender is not None:
            notice = orjson.dumps({"type": "erasure", "customer_id": customer_id})
            to_post.append((f"erasure:{customer_id}:{erasure.get('requested_ts_ms', 0)}", notice, offset))

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
            if not alert_id.startswith("erasure:"):  # (an erasure notice has no hash)
                pipe.eval(SET_IF_STORED, 1, self.store.prefix + alert_key(alert_id), "webhook", state,
                          "webhook_attempts", orjson.dumps(result.attempts).decode())
            pipe.hincrby(self.store.prefix + STATS_KEY, f"webhook_{state}", 1)
            await pipe.execute()


def register_alert_delivery(app: faust.App, settings: Settings, store: RedisStore) -> None:
    deadletter = app.topic(settings.topic("alerts-deadletter"), key_serializer="raw", value_serializer="raw",
                           partitions=1)
    process = DeliveryProcess(store, settings, deadletter)
    register_single_partition_trainer(app, settings, "alerts", "alert-delivery", process, 60.0)
