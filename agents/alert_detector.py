"""Aggregate alert detector: the one consumer of the single-partition ``score-changes`` topic.

It feeds every score change and leading-indicator signal to a :class:`~online_models.spike_alerts.SpikeMonitor`
and sends the alerts the judged buckets raise to ``alerts``; an erasure record makes the monitor forget the
customer and goes on to ``alerts`` after any alert that named them, so delivery deletes those too. After each
batch it checkpoints the monitor (plain JSON) with the last offset it applied; a restarted or newly assigned
detector resumes from the checkpoint and skips what it has applied, so a re-consumed change is never counted
twice. Alerts go out before the checkpoint: after a crash they are sent again under the same ids, and delivery
drops the repeats.
"""
from __future__ import annotations

import logging

import faust
import orjson

from agents.segment_stage import SNAPSHOT_KEY
from agents.snapshots import register_single_partition_trainer
from online_models.spike_alerts import SIGNALS, SpikeMonitor
from streams.config import Settings
from streams.redis_store import RedisStore

__all__ = ["DetectorProcess", "register_alert_detector", "CHECKPOINT_KEY"]

logger = logging.getLogger(__name__)

CHECKPOINT_KEY = "alerts:detector"


def _valid_change(change: object) -> bool:
    """The shape the pipeline writes (anything else on the topic is counted and skipped, never crashes)."""
    if isinstance(change, dict) and change.get("type") == "progress":
        return isinstance(change.get("partition"), int) and isinstance(change.get("watermark_ms"), int)
    if isinstance(change, dict) and change.get("type") == "erasure":
        return isinstance(change.get("customer_id"), str)
    if isinstance(change, dict) and change.get("type") == "signal":
        return (change.get("signal") in SIGNALS and isinstance(change.get("customer_id"), str)
                and isinstance(change.get("as_of_ms"), int) and isinstance(change.get("source"), str)
                and isinstance(change.get("offset"), int)
                and isinstance(change.get("segment_id"), (int, type(None)))
                and isinstance(change.get("rfm_segment"), (str, type(None)))
                and isinstance(change.get("value_minor"), (int, float, type(None))))
    if not (isinstance(change, dict) and isinstance(change.get("customer_id"), str) and isinstance(change.get("as_of_ms"), int)
            and isinstance(change.get("partition", 0), int) and isinstance(change.get("band"), str)
            and isinstance(change.get("segment_id"), (int, type(None)))
            and isinstance(change.get("rfm_segment"), (str, type(None)))):
        return False
    top = change.get("top_features") or []
    return isinstance(top, list) and all(
        isinstance(t, dict) and isinstance(t.get("feature"), str) and isinstance(t.get("contribution"), (int, float, type(None)))
        for t in top)


def _key(record: dict) -> bytes:
    return record["id"].encode() if "id" in record else f"erasure:{record['customer_id']}".encode()


class DetectorProcess:
    """Monitor state, the offset it covers, and the alerts to send; Faust-free so tests can drive it."""

    def __init__(self, store: RedisStore, settings: Settings, alerts_topic: faust.TopicT | None) -> None:
        self.store, self.settings, self.alerts_topic = store, settings, alerts_topic
        self.monitor = SpikeMonitor(settings.spike_settings())
        self.offset = -1
        self.rejected = 0
        self.pending: list[dict] = []
        self.owns_topic = False

    async def restore(self) -> None:
        """Resume from the checkpoint (the current settings apply from here on), or start afresh."""
        blob = await self.store.client.get(self.store.prefix + CHECKPOINT_KEY)
        self.pending = []
        if blob is None:
            self.monitor, self.offset, self.rejected = SpikeMonitor(self.settings.spike_settings()), -1, 0
            return
        checkpoint = orjson.loads(blob)
        self.monitor = SpikeMonitor.from_dict(checkpoint["monitor"], self.settings.spike_settings())
        self.offset, self.rejected = checkpoint["offset"], checkpoint["rejected"]
        logger.info("alert detector resumed at offset %d", self.offset)

    def learn_batch(self, messages: list[tuple[int, bytes | None]]) -> None:
        for offset, value in messages:
            self.learn(offset, value)

    def learn(self, offset: int, value: bytes | None) -> None:
        if offset <= self.offset:
            return  # applied before the checkpoint
        self.offset = offset
        try:
            change = orjson.loads(value)
        except (TypeError, orjson.JSONDecodeError):
            change = None
        if isinstance(change, dict) and change.get("type") == "signals" and isinstance(change.get("signals"), list):
            for signal in change["signals"]:  # a batch's leading indicators, in source order
                self._observe(signal)
            return
        self._observe(change)

    def _observe(self, change: object) -> None:
        if not _valid_change(change):
            self.rejected += 1
            return
        self.monitor.observe(change)
        self.pending += self.monitor.close_due()  # judged as soon as the frontier passes: batch-independent
        if change.get("type") == "erasure":
            # after the alerts that may have named the customer: delivery deletes them (the pipeline's own
            # erasure notice can reach delivery before an alert this detector judged earlier)
            self.pending.append({"type": "erasure", "customer_id": change["customer_id"],
                                 "requested_ts_ms": int(change.get("requested_ts_ms") or 0)})

    async def publish_if_due(self) -> None:
        """Nothing to publish on a timer: alerts leave with the batch that judged them."""

    async def after_batch(self) -> None:
        if self.pending:
            names = await self._segment_names()
            alerts = [a for a in self.pending if a.get("type") != "erasure"]
            for alert in alerts:
                alert["segment_name"] = names.get(alert["segment_id"])
                for top in alert["evidence"].get("top_segments", []):
                    top["segment_name"] = names.get(top["segment_id"])
            if self.alerts_topic is not None:
                sent = [await self.alerts_topic.send(key=_key(a), value=orjson.dumps(a)) for a in self.pending]
                for future in sent:
                    await future
            logger.info("raised %d aggregate alerts", len(alerts))
        await self.store.client.set(self.store.prefix + CHECKPOINT_KEY, orjson.dumps(
            {"offset": self.offset, "rejected": self.rejected, "monitor": self.monitor.to_dict()}))
        self.pending = []

    async def _segment_names(self) -> dict[int, str]:
        blob = await self.store.client.get(self.store.prefix + SNAPSHOT_KEY)
        if blob is None:
            return {}
        return {int(s["id"]): s.get("name") for s in orjson.loads(blob).get("segments", [])}


def register_alert_detector(app: faust.App, settings: Settings, store: RedisStore) -> None:
    alerts = app.topic(settings.topic("alerts"), key_serializer="raw", value_serializer="raw", partitions=1)
    process = DetectorProcess(store, settings, alerts)
    register_single_partition_trainer(app, settings, "score-changes", "alert-detector", process, 60.0)
