"""Leading-indicator stage of the partition batch: what customers do and say, one record per customer, kind and
alert bucket, for the aggregate alert detector (online_models/spike_alerts.py).

Why here: the partition owns the customer, so it knows whether this is the customer's first order (or ticket,
or visit) of the bucket from the state before the event, without a set of customers per bucket anywhere.
The record says where the customer stood just before the event (behaviour segment, RFM segment, value, as a
score change does) and its source offset, so the detector counts a record sent again (a batch re-processed after
a crash) once. An event older than the customer's newest of its kind is not counted (a late event cannot be told from
one already counted in its bucket); a low CSAT (a detractor NPS) counts only when it is the customer's first
answer on that scale in the bucket (the state keeps the newest answer, not the newest low one). An order's record
says whether the customer filled a cart earlier in the bucket (``after_cart``): the conversion's successes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from agents.alert_stage import AlertStage
from agents.batch_stage import BatchStage
from online_models.customer_state import CustomerState
from online_models.engagement import NPS_DETRACTOR
from schemas.events import Event, Interaction, Purchase

__all__ = ["SignalStage", "signal_of", "BROWSING"]

#: Interactions that count as browsing.
BROWSING = ("page_view", "product_view")


def signal_of(event: Event, low_csat: int) -> str | None:
    """Which leading indicator an event is, if any (tests/test_signals.py)."""
    if isinstance(event, Purchase):
        return "orders" if event.kind == "order" else None
    if not isinstance(event, Interaction):
        return None
    if event.type in BROWSING:
        return "browsing"
    if event.type == "add_to_cart":
        return "carts"
    if event.type == "support_ticket":
        return "ticket"
    if event.type == "email_unsubscribe":
        return "unsubscribe"
    if event.type == "survey" and event.score is not None:
        if event.survey == "csat" and event.score <= low_csat:
            return "low_csat"
        if event.survey == "nps" and event.score <= NPS_DETRACTOR:
            return "detractor"
    return None


def _newest_of(signal: str, state: CustomerState) -> int | None:
    """The customer's newest event of the signal's kind (before the one being applied)."""
    engagement = state.engagement
    if signal == "orders":
        return state.purchases.last_order_ms
    if signal == "ticket":
        return engagement.last_ticket_ms
    if signal == "low_csat":
        return engagement.last_csat_ms
    if signal == "detractor":
        return engagement.last_nps_ms
    kinds = BROWSING if signal == "browsing" else ("add_to_cart",) if signal == "carts" else ("email_unsubscribe",)
    times = [engagement.counts[kind].reference_ms for kind in kinds
             if kind in engagement.counts and engagement.counts[kind].reference_ms is not None]
    return max(times, default=None)


@dataclass
class SignalStage(BatchStage):
    """The batch's signal records, in source order per input partition (the detector's de-duplication)."""

    alerts: AlertStage                           # describes a customer as a score change is described
    bucket_ms: int                               # the alert bucket (0: signals off)
    low_csat: int
    sources: Mapping[int, tuple[str, int]]       # id(event) -> (input topic-partition, offset)
    signals: list[dict] = field(default_factory=list)
    _pending: tuple[int, dict] | None = None

    def before_event(self, customer_id: str, state: CustomerState, event: Event, partition: int) -> None:
        """The record, described as the customer stood before the event: an order moves its customer to another
        segment, and its conversion (``after_cart``) must count where the cart that preceded it was counted."""
        self._pending = None
        signal = signal_of(event, self.low_csat) if self.bucket_ms else None
        if signal is None:
            return
        newest = _newest_of(signal, state)
        bucket = event.ts_ms - event.ts_ms % self.bucket_ms
        if newest is not None and newest - newest % self.bucket_ms >= bucket:
            return  # counted already in this bucket (or a late event behind the newest)
        source, offset = self.sources[id(event)]
        record = {"type": "signal", "signal": signal, "customer_id": customer_id, "as_of_ms": event.ts_ms,
                  "source": source, "offset": offset, **self.alerts.describe(customer_id, state, event.ts_ms)}
        if signal == "orders":  # a conversion: the customer filled a cart earlier in the bucket
            cart_ms = _newest_of("carts", state)
            record["after_cart"] = cart_ms is not None and bucket <= cart_ms <= event.ts_ms
        self._pending = (id(event), record)

    def after_event(self, customer_id: str, state: CustomerState, event: Event) -> None:
        """The event was applied (not refused): its record goes out."""
        if self._pending is not None and self._pending[0] == id(event):
            self.signals.append(self._pending[1])
        self._pending = None

    def forget(self, customer_id: str) -> None:
        self.signals = [s for s in self.signals if s["customer_id"] != customer_id]

    def finish(self, states: dict[str, CustomerState]) -> None:
        self.signals.sort(key=lambda s: (s["source"], s["offset"]))
