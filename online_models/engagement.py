"""Interaction profile of one customer: decayed activity counts, open tickets, latest survey answers.

Counts decay with a half-life in event time (a view last week matters more than
one last year) and are order-insensitive (:class:`DecayedCount`). Survey
answers keep the latest by event time, so a late-arriving older answer does
not overwrite a newer one.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from online_models.decay import DecayedCount

__all__ = ["COUNTED_INTERACTIONS", "EngagementProfile"]

#: Interaction types kept as decayed counts.
COUNTED_INTERACTIONS = (
    "page_view", "product_view", "add_to_cart", "remove_from_cart", "search", "email_open", "email_click",
    "email_unsubscribe", "support_ticket", "ticket_resolved", "login",
)


@dataclass
class EngagementProfile:
    """Decayed counts per interaction type, ticket balance and latest CSAT / NPS.

    >>> profile = EngagementProfile(half_life_ms=1000)
    >>> profile.add("support_ticket", 0)
    >>> profile.add("survey", 500, survey="csat", score=2)
    >>> profile.add("survey", 100, survey="csat", score=5)     # older answer, arrives late
    >>> profile.open_tickets, profile.last_csat, round(profile.decayed("support_ticket", 1000), 3)
    (1, 2, 0.5)
    """

    half_life_ms: float
    counts: dict[str, DecayedCount] = field(default_factory=dict)
    tickets_opened: int = 0
    tickets_resolved: int = 0
    last_csat: int | None = None
    last_csat_ms: int | None = None
    last_nps: int | None = None
    last_nps_ms: int | None = None
    last_ticket_ms: int | None = None   # newest support ticket (a low CSAT soon after it is an alert)

    def add(self, interaction_type: str, ts_ms: int, survey: str | None = None, score: int | None = None) -> None:
        if interaction_type in COUNTED_INTERACTIONS:
            counter = self.counts.get(interaction_type)
            if counter is None:
                counter = self.counts[interaction_type] = DecayedCount(self.half_life_ms)
            counter.add(ts_ms)
        if interaction_type == "support_ticket":
            self.tickets_opened += 1
            self.last_ticket_ms = ts_ms if self.last_ticket_ms is None else max(self.last_ticket_ms, ts_ms)
        elif interaction_type == "ticket_resolved":
            self.tickets_resolved += 1
        elif interaction_type == "survey" and survey == "csat":
            if self.last_csat_ms is None or ts_ms >= self.last_csat_ms:
                self.last_csat, self.last_csat_ms = score, ts_ms
        elif interaction_type == "survey" and survey == "nps":
            if self.last_nps_ms is None or ts_ms >= self.last_nps_ms:
                self.last_nps, self.last_nps_ms = score, ts_ms

    @property
    def open_tickets(self) -> int:
        return max(self.tickets_opened - self.tickets_resolved, 0)

    def decayed(self, interaction_type: str, now_ms: int) -> float:
        counter = self.counts.get(interaction_type)
        return 0.0 if counter is None else counter.value_at(now_ms)

    def to_dict(self) -> dict:
        return {**self.__dict__, "counts": {name: c.to_dict() for name, c in self.counts.items()}}

    @classmethod
    def from_dict(cls, data: dict) -> "EngagementProfile":
        counts = {name: DecayedCount.from_dict(c) for name, c in data["counts"].items()}
        return cls(**{**data, "counts": counts})
