"""Exponentially time-decayed event counts, in event time.

``value`` is Σ 2^(-(t_ref - t_i) / half_life) over the events seen, held at the
newest event time ``t_ref``. Adding an older event decays its contribution to
``t_ref`` instead of moving the reference, so the result does not depend on
arrival order (up to float rounding).
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DecayedCount"]


@dataclass
class DecayedCount:
    """Event count with a half-life.

    >>> views = DecayedCount(half_life_ms=1000)
    >>> for ts in (0, 1000, 2000):
    ...     views.add(ts)
    >>> views.value_at(2000)
    1.75
    >>> late_first = DecayedCount(half_life_ms=1000)
    >>> for ts in (2000, 0, 1000):
    ...     late_first.add(ts)
    >>> late_first.value_at(3000)
    0.875
    """

    half_life_ms: float
    value: float = 0.0
    reference_ms: int | None = None

    def add(self, ts_ms: int, weight: float = 1.0) -> None:
        if self.reference_ms is None:
            self.value, self.reference_ms = weight, ts_ms
        elif ts_ms >= self.reference_ms:
            self.value = self.value * self._factor(ts_ms - self.reference_ms) + weight
            self.reference_ms = ts_ms
        else:
            self.value += weight * self._factor(self.reference_ms - ts_ms)

    def value_at(self, now_ms: int) -> float:
        """The count decayed to ``now_ms`` (never grows for times before the reference)."""
        if self.reference_ms is None:
            return 0.0
        return self.value * self._factor(max(0, now_ms - self.reference_ms))

    def _factor(self, elapsed_ms: float) -> float:
        return 2.0 ** (-elapsed_ms / self.half_life_ms)

    def to_dict(self) -> dict:
        return {"half_life_ms": self.half_life_ms, "value": self.value, "reference_ms": self.reference_ms}

    @classmethod
    def from_dict(cls, data: dict) -> "DecayedCount":
        return cls(**data)
