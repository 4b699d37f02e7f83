"""Population sketch stage of the partition batch: where each customer moved in the population sketches.

A customer loaded by the batch leaves its old bucket (-1) and enters its new one (+1) in each sketch (last order
day, orders, net spend: RFM ranks; predicted value: the "top CLV decile" of customer alerts), so the ranks stay
exact for the live population; only the bucket counts the batch changed are written.
"""
from __future__ import annotations

from collections import Counter

from agents.alert_stage import VALUE_SKETCH, value_inputs, value_of
from agents.batch_stage import BatchStage
from online_models.clv import ClvPrior
from online_models.customer_state import CustomerState, RfmInputs
from online_models.rfm import POPULATION_SKETCHES
from streams.redis_store import BatchWrite

__all__ = ["SketchStage", "sketch_hash"]


def sketch_hash(name: str) -> str:
    """Redis hash (under the prefix) with the bucket counts of one population sketch."""
    return f"rfm:sketch:{name}"


class SketchStage(BatchStage):
    def __init__(self, prior: ClvPrior) -> None:
        self.prior = prior
        self.placed_before: dict[str, tuple[RfmInputs, tuple | None]] = {}
        self.deltas = {name: Counter() for name in POPULATION_SKETCHES}

    def loaded(self, customer_id: str, state: CustomerState) -> None:
        self.placed_before[customer_id] = (state.rfm_inputs(), value_inputs(state))

    def write_into(self, write: BatchWrite, states: dict[str, CustomerState]) -> None:
        for customer_id, state in states.items():
            inputs_before, value_before = self.placed_before[customer_id]
            inputs_after = state.rfm_inputs()
            for name in ("last_order_day", "orders", "net_minor"):
                self._move(name, getattr(inputs_before, name), getattr(inputs_after, name))
            value_after = value_inputs(state)
            if value_after != value_before:
                self._move(VALUE_SKETCH, value_of(value_before, self.prior), value_of(value_after, self.prior))
        for name, changes in self.deltas.items():
            for key, delta in changes.items():
                if delta:
                    write.count(sketch_hash(name), str(key), delta)

    def _move(self, name: str, old: float | None, new: float | None) -> None:
        mapping = POPULATION_SKETCHES[name]
        if old is not None:
            self.deltas[name][mapping.key(old)] -= 1
        if new is not None:
            self.deltas[name][mapping.key(new)] += 1
