"""Item stage: while a batch is folded into customer states, collect its co-occurrence increments.

Orders add their (capped) basket to the pair counts, item counts, basket count
and their segment's best-sellers; product views and add-to-carts join the
customer's orders for "viewed then bought". The increments go into the batch's
atomic commit with its offsets, so a re-delivered batch adds nothing; a
replayed order is dropped before it gets here (its order id was seen).
"""
from __future__ import annotations

from online_models.cooccurrence import ItemCounts, ItemSettings, capped_basket, order_counts
from online_models.customer_state import CustomerState
from online_models.item_memory import MAX_VIEWS
from schemas.events import Interaction, Purchase
from streams.redis_store import BatchWrite

__all__ = ["ItemStage", "VIEW_KINDS"]

#: Interaction types that say the customer looked at a product, and how the item memory names them.
VIEW_KINDS = {"product_view": "viewed", "add_to_cart": "carted"}


class ItemStage:
    def __init__(self, settings: ItemSettings, lateness_ms: int) -> None:
        self.settings = settings
        self.lateness_ms = lateness_ms
        self.counts = ItemCounts()
        self.max_viewed = settings.max_basket or MAX_VIEWS

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

    def write_into(self, write: BatchWrite) -> None:
        if self.counts:
            write.sorted_sets = self.counts.sorted_set_increments(self.settings.decay)
