"""Everything the pipeline keeps about one customer, and how it is stored.

The state composes three order-insensitive parts: activity (first/last seen,
events per topic, signup, profile), purchase history and engagement. It is
stored as one canonical JSON document in the ``state`` field of the customer's
Redis hash: one field to read and write per customer keeps a batch to two
round trips and ~half the memory of spelling every value out as its own field
(measured in bench/memory.py). Readers derive everything else from it
(:mod:`online_models.customer_profile`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import orjson

from online_models.activity import CustomerActivity
from online_models.engagement import EngagementProfile
from online_models.hazard import ExampleClock
from online_models.item_memory import ItemMemory
from online_models.kpis import KpiMemory
from online_models.purchase_history import DAY_MS, PurchaseHistory

__all__ = ["CustomerState", "RfmInputs"]


@dataclass(frozen=True)
class RfmInputs:
    """The values that place a customer in the population sketches (None: not a buyer yet)."""

    last_order_day: int | None
    orders: int | None
    net_minor: int | None


def _clone(record, **fields):
    """A copy of a plain dataclass with ``fields`` replaced (its mutable fields are the caller's to copy):
    a fifth of the cost of a round trip through its dict form."""
    twin = object.__new__(type(record))
    twin.__dict__.update(record.__dict__, **fields)
    return twin


@dataclass
class CustomerState:
    """One customer's state.

    >>> state = CustomerState.new(engagement_half_life_ms=30 * DAY_MS)
    >>> state.apply_order(ts_ms=DAY_MS, amount_minor=2500, units=2)
    >>> state.apply_interaction("product_view", ts_ms=DAY_MS - 60_000)
    >>> blob = state.to_json()
    >>> restored = CustomerState.from_json(blob)
    >>> restored.purchases.orders, restored.purchases.net_minor, restored.activity.last_seen_ms
    (1, 2500, 86400000)
    >>> restored.to_json() == blob
    True
    """

    activity: CustomerActivity
    purchases: PurchaseHistory
    engagement: EngagementProfile
    kpi_memory: KpiMemory = field(default_factory=KpiMemory)
    churn_clock: ExampleClock = field(default_factory=ExampleClock)  # the open hazard example
    churn_score: dict | None = None  # the latest churn score (online_models.churn_tracking)
    items: ItemMemory = field(default_factory=ItemMemory)  # recent items, the view→purchase join
    segment: dict | None = None  # behaviour segment: id, distance, version, since_ms, sampled_ms
    alerted: dict[str, int] = field(default_factory=dict)  # alert key -> event time it last fired (cool-down)

    @classmethod
    def new(cls, engagement_half_life_ms: float) -> "CustomerState":
        return cls(CustomerActivity(), PurchaseHistory(), EngagementProfile(engagement_half_life_ms))

    # -- events ----------------------------------------------------------------------------------

    def apply_order(self, ts_ms: int, amount_minor: int, units: int) -> None:
        self.activity.update("purchases", ts_ms)
        self.purchases.add_order(ts_ms, amount_minor, units)

    def apply_refund(self, ts_ms: int, amount_minor: int, units: int) -> None:
        self.activity.update("purchases", ts_ms)
        self.purchases.add_refund(ts_ms, amount_minor, units)

    def apply_interaction(self, interaction_type: str, ts_ms: int, survey: str | None = None,
                          score: int | None = None) -> None:
        self.activity.update("interactions", ts_ms)
        self.engagement.add(interaction_type, ts_ms, survey, score)

    def apply_customer_event(self, event_type: str, ts_ms: int, attributes: Mapping | None) -> None:
        self.activity.update("customers", ts_ms)
        if event_type == "signup":
            self.activity.signed_up(ts_ms)
        self.activity.profile_changed(attributes, ts_ms)

    # -- population placement -------------------------------------------------------------------

    def rfm_inputs(self) -> RfmInputs:
        history = self.purchases
        if history.orders == 0:
            return RfmInputs(None, None, None)
        return RfmInputs(history.last_order_ms // DAY_MS, history.orders, history.net_minor)

    def scoring_copy(self) -> "CustomerState":
        """A copy of what a churn score and its description read (activity, orders, engagement), to score
        ticks as of now after later events of the batch have changed the state. Items, KPI memory, the open
        example and alert cool-downs are left out: on a busy customer they are most of a whole copy.

        >>> state = CustomerState.new(engagement_half_life_ms=30 * DAY_MS)
        >>> state.apply_order(DAY_MS, 2500, 1); state.apply_interaction("product_view", 2 * DAY_MS)
        >>> copy = state.scoring_copy(); state.apply_order(3 * DAY_MS, 900, 1)
        >>> copy.purchases.orders, copy.activity.last_seen_ms // DAY_MS, copy.engagement.counts.keys()
        (1, 2, dict_keys(['product_view']))
        """
        activity, history, engagement = self.activity, self.purchases, self.engagement
        return CustomerState(
            _clone(activity, events=dict(activity.events)),
            _clone(history, recent_order_ms=list(history.recent_order_ms),
                   recent_order_minor=list(history.recent_order_minor), recent_days=list(history.recent_days)),
            _clone(engagement, counts={name: _clone(count) for name, count in engagement.counts.items()}))

    # -- storage ----------------------------------------------------------------------------------

    def to_dict(self) -> dict:
        return {"activity": self.activity.to_dict(), "purchases": self.purchases.to_dict(),
                "engagement": self.engagement.to_dict(), "kpi_memory": self.kpi_memory.to_dict(),
                "churn_clock": self.churn_clock.to_dict(), "churn_score": self.churn_score,
                "items": self.items.to_dict(), "segment": self.segment, "alerted": self.alerted}

    @classmethod
    def from_dict(cls, data: dict) -> "CustomerState":
        return cls(CustomerActivity.from_dict(data["activity"]), PurchaseHistory.from_dict(data["purchases"]),
                   EngagementProfile.from_dict(data["engagement"]), KpiMemory.from_dict(data["kpi_memory"]),
                   ExampleClock.from_dict(data.get("churn_clock")), data.get("churn_score"),
                   ItemMemory.from_dict(data.get("items")), data.get("segment"), data.get("alerted") or {})

    def to_json(self) -> str:
        """Canonical JSON of the whole state (sorted keys: a customer's topics interleave differently
        from run to run, which changes dict insertion order but not the state)."""
        return orjson.dumps(self.to_dict(), option=orjson.OPT_SORT_KEYS).decode()

    @classmethod
    def from_json(cls, blob: str | bytes | None, engagement_half_life_ms: float = 30 * DAY_MS) -> "CustomerState":
        """The stored state, or a new one when there is none."""
        if blob is None:
            return cls.new(engagement_half_life_ms)
        return cls.from_dict(orjson.loads(blob))
