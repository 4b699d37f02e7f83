"""Interaction profile of one customer: decayed activity counts, open tickets, latest survey answers.

Counts decay with a half-life in event time (a view last week matters more than
one last year) and are order-insensitive (:class:`DecayedCount`). Survey
answers keep the latest by event time, so a late-arriving older answer does
not overwrite a newer one.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from online_models.decay import DecayedCount

__all__ = ["COUNTED_INTERACTIONS", "COMPLAINT", "COMPLAINT_CSAT", "NPS_DETRACTOR", "is_complaint", "EngagementProfile"]

#: Interaction types kept as decayed counts.
COUNTED_INTERACTIONS = (
    "page_view", "product_view", "add_to_cart", "remove_from_cart", "search", "email_open", "email_click",
    "email_unsubscribe", "support_ticket", "ticket_resolved", "login",
)

#: The decayed count of what customers say against the shop (:func:`is_complaint`).
COMPLAINT = "complaint"
COMPLAINT_CSAT = 2   # CSAT answers 1-2 are complaints
NPS_DETRACTOR = 6    # NPS answers 0-6 are detractors (the standard definition)


def is_complaint(interaction_type: str, survey: str | None = None, score: int | None = None) -> bool:
    """A support ticket, a CSAT of :data:`COMPLAINT_CSAT` or less, a detractor NPS.

    Why one decayed count of them rather than the last answer kept for ever: the churn model learned a
    months-old low CSAT and yesterday's alike, and closed tickets took their signal with them (docs/churn.md).

    >>> is_complaint("support_ticket"), is_complaint("survey", "csat", 2), is_complaint("survey", "nps", 7)
    (True, True, False)
    """
    if interaction_type == "support_ticket":
        return True
    if interaction_type != "survey" or score is None:
        return False
    return (survey == "csat" and score <= COMPLAINT_CSAT) or (survey == "nps" and score <= NPS_DETRACTOR)


@dataclass
class EngagementProfile:
    """Decayed counts per interaction type and of complaints (:data:`COMPLAINT`), ticket balance and
    latest CSAT / NPS.

    >>> profile = EngagementProfile(half_life_ms=1000)
    >>> profile.add("support_ticket", 0)
    >>> profile.add("survey", 500, survey="csat", score=2)
    >>> profile.add("survey", 100, survey="csat", score=5)     # older answer, arrives late
    >>> profile.open_tickets, profile.last_csat, round(profile.decayed("support_ticket", 1000), 3)
    (1, 2, 0.5)
    >>> round(profile.decayed(COMPLAINT, 1000), 3)               # the ticket and the CSAT of 2
    1.207
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
            self._count(interaction_type, ts_ms)
        if is_complaint(interaction_type, survey, score):
            self._count(COMPLAINT, ts_ms)
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

    def _count(self, name: str, ts_ms: int) -> None:
        counter = self.counts.get(name)
        if counter is None:
            counter = self.counts[name] = DecayedCount(self.half_life_ms)
        counter.add(ts_ms)

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
