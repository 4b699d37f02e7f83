"""Per-customer activity record kept by the ingest stage.

This is the smallest customer state every later model builds on: when the
customer was first and last seen (event time), how many events of each
topic were accepted, when they signed up and their latest profile. It is
order-insensitive (min / max / counts / latest-by-ts), so events arriving out
of order give the same record as in order.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import orjson

__all__ = ["CustomerActivity"]


@dataclass
class CustomerActivity:
    """Order-insensitive activity summary of one customer.

    >>> activity = CustomerActivity()
    >>> activity.update("interactions", 2_000)
    >>> activity.update("purchases", 3_000)
    >>> activity.update("interactions", 1_000)
    >>> activity.first_seen_ms, activity.last_seen_ms, activity.events
    (1000, 3000, {'interactions': 2, 'purchases': 1})
    >>> CustomerActivity.from_redis(activity.to_redis()) == activity
    True
    """

    first_seen_ms: int | None = None
    last_seen_ms: int | None = None
    events: dict[str, int] = field(default_factory=dict)
    signup_ms: int | None = None
    profile: dict | None = None
    profile_ts_ms: int | None = None

    def update(self, topic: str, ts_ms: int) -> None:
        self.first_seen_ms = ts_ms if self.first_seen_ms is None else min(self.first_seen_ms, ts_ms)
        self.last_seen_ms = ts_ms if self.last_seen_ms is None else max(self.last_seen_ms, ts_ms)
        self.events[topic] = self.events.get(topic, 0) + 1

    def signed_up(self, ts_ms: int) -> None:
        self.signup_ms = ts_ms if self.signup_ms is None else min(self.signup_ms, ts_ms)

    def profile_changed(self, attributes: Mapping | None, ts_ms: int) -> None:
        """Keep the attributes of the newest profile event (latest event time wins)."""
        if attributes is not None and (self.profile_ts_ms is None or ts_ms >= self.profile_ts_ms):
            self.profile = {**(self.profile or {}), **attributes}
            self.profile_ts_ms = ts_ms

    def to_redis(self) -> dict[str, str]:
        """Flat string fields for a Redis hash (readable with ``HGETALL``)."""
        fields = {f"events_{topic}": str(count) for topic, count in self.events.items()}
        for name in ("first_seen_ms", "last_seen_ms", "signup_ms", "profile_ts_ms"):
            value = getattr(self, name)
            if value is not None:
                fields[name] = str(value)
        if self.profile is not None:
            fields["profile"] = orjson.dumps(self.profile).decode()
        return fields

    @classmethod
    def from_redis(cls, fields: Mapping[str, str]) -> "CustomerActivity":
        def optional_int(name: str) -> int | None:
            value = fields.get(name)
            return None if value is None else int(value)

        events = {name[len("events_"):]: int(value) for name, value in fields.items() if name.startswith("events_")}
        profile = fields.get("profile")
        return cls(optional_int("first_seen_ms"), optional_int("last_seen_ms"), events,
                   optional_int("signup_ms"), None if profile is None else orjson.loads(profile),
                   optional_int("profile_ts_ms"))
