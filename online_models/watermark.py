"""Event-time watermark of one partition.

The watermark is the newest event time seen minus the allowed lateness: the
pipeline promises that events older than it may be treated as final
(timers fire, windows close). It only moves forward, so replaying the same
events in any order within the lateness gives the same watermark.
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Watermark"]

_NEVER = -(2**62)


@dataclass
class Watermark:
    """Monotone event-time watermark.

    >>> wm = Watermark(lateness_ms=1000)
    >>> for ts in (5000, 7000, 6500):
    ...     wm.observe(ts)
    >>> wm.max_event_ms, wm.value_ms
    (7000, 6000)
    >>> wm.is_late(5999), wm.is_late(6000)
    (True, False)
    """

    lateness_ms: int
    max_event_ms: int = _NEVER

    def observe(self, ts_ms: int) -> None:
        if ts_ms > self.max_event_ms:
            self.max_event_ms = ts_ms

    def advance_to(self, ts_ms: int) -> None:
        """Move forward without an event (idle partitions in live mode); never backwards."""
        self.observe(ts_ms)

    @property
    def value_ms(self) -> int:
        return self.max_event_ms - self.lateness_ms if self.max_event_ms != _NEVER else _NEVER

    def is_late(self, ts_ms: int) -> bool:
        """True when ``ts_ms`` is behind the watermark (arrived after its window closed)."""
        return ts_ms < self.value_ms

    def to_dict(self) -> dict:
        return {"lateness_ms": self.lateness_ms, "max_event_ms": self.max_event_ms}

    @classmethod
    def from_dict(cls, data: dict) -> "Watermark":
        return cls(int(data["lateness_ms"]), int(data["max_event_ms"]))
