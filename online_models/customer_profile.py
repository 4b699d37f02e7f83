"""What a support agent sees about a customer, computed when it is read.

Recency-dependent values (recency, R score, named segment, P(alive), CLV)
change while a customer is silent. Rather than rewriting every silent
customer as event time passes, the pipeline stores timestamps and the
population sketches, and this module derives the time-dependent values at
read time, as of the current event-time clock. A read is therefore right
whatever the customer last did, and replaying history gives the same answers.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from online_models.clv import ClvPrior, estimate_clv
from online_models.customer_state import CustomerState
from online_models.engagement import COUNTED_INTERACTIONS
from online_models.kpis import NO_SEGMENT
from online_models.purchase_history import DAY_MS
from online_models.quantiles import FrozenRanks, QuantileSketch
from online_models.rfm import RfmScores, score_from_rank

__all__ = ["ProfileSettings", "build_profile", "rfm_scores", "segment_label"]


@dataclass(frozen=True)
class ProfileSettings:
    rfm_weights: tuple[float, float, float] = (1 / 3, 1 / 3, 1 / 3)
    clv: ClvPrior = ClvPrior()


def rfm_scores(state: CustomerState, sketches: Mapping[str, FrozenRanks | QuantileSketch]) -> RfmScores | None:
    """R, F, M quintiles of a buyer within the live population; None for non-buyers."""
    inputs = state.rfm_inputs()
    if inputs.orders is None:
        return None
    ranks = [sketches[name].midrank(getattr(inputs, name)) for name in ("last_order_day", "orders", "net_minor")]
    if any(rank is None for rank in ranks):
        return None
    return RfmScores(*(score_from_rank(rank) for rank in ranks))


def segment_label(state: CustomerState, population: Mapping[str, FrozenRanks | QuantileSketch]) -> str:
    """The customer's named RFM segment against ``population``, or ``"none"``."""
    scores = rfm_scores(state, population) if population else None
    return NO_SEGMENT if scores is None else scores.segment


def _churn_card(score: dict | None) -> dict | None:
    """The stored churn score as support sees it: risk, band, which model (or the cold-start prior), why."""
    if score is None:
        return None
    return {"churn_p": score["churn_p"], "band": score["band"], "model_version": score["version"],
            "is_prior": score["version"] == "prior", "as_of_ms": score["as_of_ms"],
            "top_features": score["top_features"]}


def _behaviour_segment(segment: dict | None, names: Mapping[int, str]) -> dict | None:
    """The stored behaviour segment with its readable name (None for a segment the served snapshot lost)."""
    if segment is None or "id" not in segment:  # sampled, not assigned yet
        return None
    return {"id": segment["id"], "name": names.get(segment["id"]), "version": segment.get("version"),
            "since_ms": segment.get("since_ms")}


def build_profile(customer_id: str, state: CustomerState, sketches: Mapping[str, FrozenRanks | QuantileSketch],
                  as_of_ms: int, settings: ProfileSettings = ProfileSettings(),
                  segment_names: Mapping[int, str] = {}) -> dict:
    """The customer card as plain data (JSON-ready), as of event time ``as_of_ms``; ``segment_names`` name the
    behaviour segments of the served snapshot."""
    activity, history, engagement = state.activity, state.purchases, state.engagement
    first_seen = min(t for t in (activity.signup_ms, activity.first_seen_ms) if t is not None) \
        if activity.first_seen_ms is not None else None
    profile: dict = {
        "customer_id": customer_id,
        "as_of_ms": as_of_ms,
        "first_seen_ms": first_seen,
        "last_seen_ms": activity.last_seen_ms,
        "tenure_days": None if first_seen is None else (as_of_ms - first_seen) / DAY_MS,
        "signup_ms": activity.signup_ms,
        "attributes": activity.profile or {},
        "events": dict(activity.events),
        "orders": history.orders,
        "refunds": history.refunds,
        "distinct_purchase_days": history.distinct_days,
        "gross_spend_minor": history.gross_minor,
        "refunded_minor": history.refunded_minor,
        "net_spend_minor": history.net_minor,
        "units": history.units - history.units_refunded,
        "average_order_minor": history.average_order_minor,
        "first_order_ms": history.first_order_ms,
        "last_order_ms": history.last_order_ms,
        "mean_days_between_orders": history.mean_gap_days,
        "std_days_between_orders": history.gap_std_days,
        "recency_days": None, "rfm": None, "rfm_segment": None, "value_score": None,
        "historic_clv_minor": history.net_minor,
        "predicted_clv_minor": None, "probability_alive": None, "expected_next_order_ms": None,
        "engagement": {name: round(engagement.decayed(name, as_of_ms), 6) for name in COUNTED_INTERACTIONS},
        "open_tickets": engagement.open_tickets,
        "last_csat": engagement.last_csat,
        "last_nps": engagement.last_nps,
        "churn": _churn_card(state.churn_score),
        "behaviour_segment": _behaviour_segment(state.segment, segment_names),
        "recent_items": [{"sku": sku, "kind": kind, "ts_ms": ts_ms}
                         for sku, ts_ms, kind in reversed(state.items.recent)],  # newest first
    }
    if history.orders == 0:
        return profile
    profile["recency_days"] = max(as_of_ms - history.last_order_ms, 0) / DAY_MS
    scores = rfm_scores(state, sketches)
    if scores is not None:
        profile["rfm"] = {"r": scores.recency, "f": scores.frequency, "m": scores.monetary}
        profile["rfm_segment"] = scores.segment
        profile["value_score"] = round(scores.value(settings.rfm_weights), 6)
    clv = estimate_clv(history.orders, (as_of_ms - history.first_order_ms) / DAY_MS,
                       (history.last_order_ms - history.first_order_ms) / DAY_MS,
                       history.average_order_minor, settings.clv)
    profile["predicted_clv_minor"] = round(clv.predicted_clv_minor)
    profile["probability_alive"] = round(clv.probability_alive, 6)
    profile["expected_orders_in_window"] = round(clv.expected_orders, 6)
    next_order = history.expected_next_order_ms()
    profile["expected_next_order_ms"] = next_order if next_order is not None else \
        int(history.last_order_ms + clv.expected_next_order_days * DAY_MS)
    return profile
