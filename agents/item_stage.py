"""Item stage: while a batch is folded into customer states, collect its co-occurrence increments.

Orders add their (capped) basket to the pair counts, item counts, basket count
and their segment's best-sellers; product views and add-to-carts join the
customer's orders for "viewed then bought". The increments go into the batch's
atomic commit with its offsets, so a re-delivered batch adds nothing; a
replayed order is dropped before it gets here (its order id was seen).
"""
from __future__ import annotations

from typing import Callable

from agents.batch_stage import BatchStage
from online_models.cooccurrence import FIRST_ORDER, ItemCounts, ItemSettings, capped_basket, order_counts
from online_models.customer_state import CustomerState
from online_models.item_memory import MAX_VIEWS
from online_models.kpis import NO_SEGMENT
from schemas.events import Event, Interaction, Purchase
from streams.redis_store import BatchWrite

__all__ = ["ItemStage", "VIEW_KINDS", "best_sellers_segment"]

#: Interaction types that say the customer looked at a product, and how the item memory names them.
VIEW_KINDS = {"product_view": "viewed", "add_to_cart": "carted"}


def best_sellers_segment(state: CustomerState, segment_of: Callable[[CustomerState], str]) -> str | None:
    """Whose best-sellers an order adds to: first orders' own list, else the buyer's segment (None while the
    population is not ranked yet)."""
    if state.purchases.orders == 0:
        return FIRST_ORDER
    segment = segment_of(state)
    return None if segment == NO_SEGMENT else segment


class ItemStage(BatchStage):
    def __init__(self, settings: ItemSettings, lateness_ms: int, segment_of: Callable[[CustomerState], str]) -> None:
        self.settings = settings
        self.lateness_ms = lateness_ms
        self.segment_of = segment_of
        self.counts = ItemCounts()
        self.max_viewed = settings.max_basket or MAX_VIEWS
        self._segment_before: dict[str, str | None] = {}

    def before_event(self, customer_id: str, state: CustomerState, event: Event, partition: int) -> None:
        if isinstance(event, Purchase) and event.kind == "order":  # the segment the customer was in before it
            self._segment_before[customer_id] = best_sellers_segment(state, self.segment_of)

    def after_event(self, customer_id: str, state: CustomerState, event: Event) -> None:
        if isinstance(event, Purchase) and event.kind == "order":
            self.order(state, event, self._segment_before.pop(customer_id))
        elif isinstance(event, Interaction):
            self.view(state, event)

    def order(self, state: CustomerState, order: Purchase, segment_before: str) -> None:
        """Count an order ``state`` has just applied; ``segment_before``: the customer's segment before it."""
        settings = self.settings
        bought = [item.sku for item in order.items]
        basket = capped_basket(order.order_id, bought, settings.max_basket)
        counts = order_counts(order.order_id, state.purchases.orders, settings.max_orders_per_customer)
        weight = settings.decay.weight(order.ts_ms) if counts else None
        credit = state.items.order(order.order_id, order.ts_ms, basket, weight, window_ms=settings.view_window_ms,
                                   lateness_ms=self.lateness_ms, max_viewed=self.max_viewed,
                                   recent_limit=settings.recent_items, bought=bought)
        if weight is not None:
            self.counts.add_basket(basket, weight, segment_before)
        if credit is not None:
            self.counts.add_cross(credit.viewed, credit.basket, credit.weight)

    def view(self, state: CustomerState, interaction: Interaction) -> None:
        """A product view or add-to-cart (other interactions are not about an item)."""
        kind = VIEW_KINDS.get(interaction.type)
        if kind is None or interaction.sku is None:
            return
        for credit in state.items.view(interaction.sku, interaction.ts_ms, kind,
                                       window_ms=self.settings.view_window_ms, lateness_ms=self.lateness_ms,
                                       max_viewed=self.max_viewed, recent_limit=self.settings.recent_items):
            self.counts.add_cross(credit.viewed, credit.basket, credit.weight)

    def write_into(self, write: BatchWrite, states: dict[str, CustomerState] | None = None) -> None:
        if self.counts:
            write.sorted_sets = self.counts.sorted_set_increments(self.settings.decay)
