"""Read alerts from Redis and set their acknowledgement status (what the CLI, API and dashboard use).

The stream ``alerts:{alerts}:stream`` holds the newest alerts in arrival order (bounded); each alert's hash holds
its status (``open`` or ``acknowledged``, by whom, when) and its webhook state.
"""
from __future__ import annotations

import re
import time

import orjson
import redis.asyncio as aioredis

from agents.alert_delivery import SET_IF_STORED, STATS_KEY, STREAM_KEY, alert_key

__all__ = ["AlertReader", "valid_alert_id"]

_ALERT_ID = re.compile(r"^[A-Za-z0-9_.:\-]{1,200}$")
_STATUSES = ("open", "acknowledged")
_KINDS = ("customer", "aggregate")


def valid_alert_id(alert_id: str) -> str:
    """The id, if it is one an alert can have (it becomes a Redis key).

    >>> valid_alert_id("churn_jump:cust-000001:1700000000000")
    'churn_jump:cust-000001:1700000000000'
    >>> valid_alert_id("x y")
    Traceback (most recent call last):
    ...
    ValueError: not an alert id: 'x y'
    """
    if not isinstance(alert_id, str) or not _ALERT_ID.match(alert_id):
        raise ValueError(f"not an alert id: {alert_id!r}")
    return alert_id


class AlertReader:
    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self.client, self.prefix = client, prefix

    async def recent(self, limit: int = 50, kind: str | None = None, status: str | None = None,
                     severity: str | None = None) -> list[dict]:
        """The newest alerts first, with their status; filters are exact matches."""
        if not 1 <= limit <= 1000:
            raise ValueError("limit must be in 1..1000")
        if kind is not None and kind not in _KINDS or status is not None and status not in _STATUSES \
                or severity is not None and severity not in ("warning", "critical"):
            raise ValueError("kind, status or severity not known")
        found: list[dict] = []
        last = "+"
        while len(found) < limit:
            entries = await self.client.xrevrange(self.prefix + STREAM_KEY, max=last, count=200)
            if last != "+":
                entries = entries[1:]  # the boundary entry was in the previous page
            if not entries:
                break
            last = entries[-1][0]
            ids = [fields["id"] for _, fields in entries]
            for alert in await self._with_status(ids):
                if alert is None or (kind and alert["kind"] != kind) or (status and alert["status"] != status) \
                        or (severity and alert["severity"] != severity):
                    continue
                found.append(alert)
                if len(found) == limit:
                    break
        return found

    async def get(self, alert_id: str) -> dict | None:
        return (await self._with_status([valid_alert_id(alert_id)]))[0]

    async def acknowledge(self, alert_id: str, by: str, note: str = "") -> dict | None:
        """Mark an alert acknowledged (again: the newest acknowledgement wins); None if there is no such alert."""
        if not by or len(by) > 100 or len(note) > 1000:
            raise ValueError("by must be 1..100 characters, note at most 1000")
        key = self.prefix + alert_key(valid_alert_id(alert_id))
        updated = await self.client.eval(SET_IF_STORED, 1, key, "status", "acknowledged", "acked_by", by,
                                         "acked_note", note, "acked_at_ms", int(time.time() * 1000))
        return await self.get(alert_id) if updated else None

    async def stats(self) -> dict[str, int]:
        return {name: int(value) for name, value in (await self.client.hgetall(self.prefix + STATS_KEY)).items()}

    async def _with_status(self, ids: list[str]) -> list[dict | None]:
        async with self.client.pipeline(transaction=False) as pipe:
            for alert_id in ids:
                pipe.hgetall(self.prefix + alert_key(alert_id))
            stored = await pipe.execute()
        alerts: list[dict | None] = []
        for fields in stored:
            if not fields:
                alerts.append(None)  # expired, or erased
                continue
            alert = orjson.loads(fields["alert"])
            alert["status"] = fields["status"]
            alert["webhook"] = fields["webhook"]
            if "acked_by" in fields:
                alert["acknowledged"] = {"by": fields["acked_by"], "note": fields.get("acked_note", ""),
                                         "at_ms": int(fields["acked_at_ms"])}
            alerts.append(alert)
        return alerts
