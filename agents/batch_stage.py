"""What a stage of the partition batch is: the hooks ``fold_batch`` calls, in this order.

A stage is one concern of the batch (KPIs, churn, items, segments, alerts, population sketches).
``agents.customer_state.fold_batch`` applies the batch's events to the customer states itself (de-duplication,
erasure, the state and its index) and calls every stage, in the order of its list, at these moments:

* ``loaded``: the first time the batch meets a customer, before anything changes it;
* ``before_event`` and ``after_event``: around each event applied to the customer's state (offset order per
  customer), so a stage sees the state both as it was and as it is;
* ``woken``: a customer due on the event-time wheel (its partition's purchases watermark passed its wake-up);
* ``forget``: the customer is erased (nothing of the old state may be written or sent);
* ``finish``: the end of the batch (a stage may read the results of one earlier in the list);
* ``write_into``: what the stage adds to the batch's one atomic Redis write.

Every hook is a no-op here, so a stage implements only what it needs; a new stage is one new file and one
entry in ``fold_batch``'s list.
"""
from __future__ import annotations

from online_models.customer_state import CustomerState
from schemas.events import Event
from streams.redis_store import BatchWrite

__all__ = ["BatchStage"]


class BatchStage:
    """A stage of the partition batch; see the module docstring for when each hook runs."""

    def loaded(self, customer_id: str, state: CustomerState) -> None:
        """The customer as loaded, before the batch changes it."""

    def before_event(self, customer_id: str, state: CustomerState, event: Event, partition: int) -> None:
        """``event`` is about to be applied to ``state``."""

    def after_event(self, customer_id: str, state: CustomerState, event: Event) -> None:
        """``event`` has been applied to ``state``."""

    def woken(self, customer_id: str, state: CustomerState, partition: int, watermark_ms: int,
              tick_until_ms: int) -> None:
        """The wheel woke the customer: ``watermark_ms`` of purchases, score ticks decided up to ``tick_until_ms``."""

    def forget(self, customer_id: str) -> None:
        """The customer is erased."""

    def finish(self, states: dict[str, CustomerState]) -> None:
        """The batch's events and wake-ups are all applied."""

    def write_into(self, write: BatchWrite, states: dict[str, CustomerState]) -> None:
        """Add this stage's part to the batch's atomic write."""
