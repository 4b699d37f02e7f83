"""What the customer search index holds for one customer: stored facts only, never read-time ones.

Support tools list customers by churn band, behaviour segment and value. Those three are stored in the
customer's state (the band at the last report tick, the segment at the last assignment, the net spend), so
the pipeline can keep an index of them in the same atomic commit as the state. Read-time values (recency,
RFM scores, named RFM segment) move while a customer is silent and cannot be indexed without rewriting
every silent customer; they are filtered at read time instead.
"""
from __future__ import annotations

from typing import NamedTuple

from online_models.customer_state import CustomerState

__all__ = ["IndexEntry", "index_entry", "BANDS"]

BANDS = ("low", "medium", "high")


class IndexEntry(NamedTuple):
    value_minor: int  # net spend: what the customer is worth so far, the default sort order
    band: str  # churn band at the last report tick, "" before the first score
    segment: str  # behaviour segment id, "" before the first assignment
    churn_p: float | None


def index_entry(state: CustomerState) -> IndexEntry:
    """The index entry of ``state``.

    >>> from online_models.purchase_history import DAY_MS
    >>> state = CustomerState.new(engagement_half_life_ms=30 * DAY_MS)
    >>> state.apply_order(ts_ms=DAY_MS, amount_minor=2500, units=1)
    >>> index_entry(state)
    IndexEntry(value_minor=2500, band='', segment='', churn_p=None)
    >>> state.segment = {"sampled_ms": DAY_MS}
    >>> index_entry(state).segment
    ''
    >>> state.churn_score, state.segment = {"churn_p": 0.7, "band": "high"}, {"id": 3}
    >>> index_entry(state)
    IndexEntry(value_minor=2500, band='high', segment='3', churn_p=0.7)
    """
    score, segment_id = state.churn_score, (state.segment or {}).get("id")  # sampled before assigned: no id
    return IndexEntry(state.purchases.net_minor, score["band"] if score else "",
                      "" if segment_id is None else str(segment_id), score["churn_p"] if score else None)
