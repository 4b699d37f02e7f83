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
    >>> CustomerActivity.from_dict(activity.to_dict()) == activity
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

    def to_dict(self) -> dict:
        return {"first_seen_ms": self.first_seen_ms, "last_seen_ms": self.last_seen_ms, "events": dict(self.events),
                "signup_ms": self.signup_ms, "profile": self.profile, "profile_ts_ms": self.profile_ts_ms}

    @classmethod
    def from_dict(cls, data: Mapping) -> "CustomerActivity":
        return cls(**data)
