"""KPI stage of the partition batch: count each event into the day/week/month KPI buckets.

Counts go to the named RFM segment the customer is in after the event, ranked against the population as this
worker last read it (docs/customer-state.md says what that means for replays); the bucket hashes are
incremented in the batch's atomic commit.
"""
from __future__ import annotations

from typing import Callable

from agents.batch_stage import BatchStage
from online_models import kpis as kpi
from online_models.customer_state import CustomerState
from schemas.events import Event, Interaction, Purchase
from streams.redis_store import BatchWrite

__all__ = ["KpiStage", "kpi_hash"]


def kpi_hash(granularity: str, bucket: str) -> str:
    """Redis hash (under the prefix) with the KPI counters of one bucket."""
    return f"kpi:{granularity}:{bucket}"


class KpiStage(BatchStage):
    def __init__(self, horizon_ms: int, segment_of: Callable[[CustomerState], str]) -> None:
        self.horizon_ms, self.segment_of = horizon_ms, segment_of
        self.deltas = kpi.KpiDeltas()

    def before_event(self, customer_id: str, state: CustomerState, event: Event, partition: int) -> None:
        kpi.count_event(self.deltas, state.kpi_memory, event.ts_ms)
        if isinstance(event, Purchase):
            if event.kind == "order":  # counted against the history before the order
                kpi.count_order(self.deltas, state.kpi_memory, state.purchases, event.ts_ms, event.amount_minor,
                                self.horizon_ms)
            else:
                kpi.count_refund(self.deltas, event.ts_ms, event.amount_minor)
        elif isinstance(event, Interaction):
            kpi.count_interaction(self.deltas, event.ts_ms, event.survey, event.score)

    def after_event(self, customer_id: str, state: CustomerState, event: Event) -> None:
        self.deltas.attribute(self.segment_of(state))

    def write_into(self, write: BatchWrite, states: dict[str, CustomerState]) -> None:
        for (granularity, bucket), changes in self.deltas.changes.items():
            for metric, delta in changes.items():
                if delta:
                    write.count(kpi_hash(granularity, bucket), metric, delta)
