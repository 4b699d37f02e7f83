"""Customer alert stage of the partition batch: enrich score changes, apply the customer rules.

The partition that owns a customer has everything a customer rule needs (CLV, RFM segment, behaviour
segment, last ticket), so customer alerts are decided here, in event-time order per customer, and the
cool-down per (rule, customer) lives in the customer's state: a replay or a re-processed batch raises
the same alerts with the same ids. Score changes leave enriched with what the aggregate alerts count
by (partition, behaviour segment, RFM segment, value).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

from agents.batch_stage import BatchStage
from agents.churn_scoring import ChurnStage
from online_models.clv import ClvPrior, value_if_retained
from online_models.customer_alerts import (
    CooldownGate, CustomerAlertRules, customer_alerts, is_valuable, unhappy_after_ticket,
)
from online_models.customer_state import CustomerState
from online_models.kpis import NO_SEGMENT
from online_models.purchase_history import DAY_MS
from online_models.quantiles import FrozenRanks
from online_models.retention_actions import RetentionAction, rank_actions
from online_models.segment_features import segment_features
from online_models.segment_snapshot import SegmentModel
from schemas.events import Event, Interaction

__all__ = ["VALUE_SKETCH", "value_inputs", "value_of", "customer_value", "AlertStage"]

#: Population sketch of :func:`customer_value`, the ranking behind "top CLV decile".
VALUE_SKETCH = "value_minor"


def value_inputs(state: CustomerState) -> tuple[int, int, int, int] | None:
    """What :func:`customer_value` depends on (orders, first and last order time, net spend): cheap to
    compare, so the value sketch moves only for customers whose value changed."""
    history = state.purchases
    if history.orders == 0:
        return None
    return history.orders, history.first_order_ms, history.last_order_ms, history.net_minor


def value_of(inputs: tuple[int, int, int, int] | None, prior: ClvPrior) -> float | None:
    if inputs is None:
        return None
    orders, first_ms, last_ms, net_minor = inputs
    return value_if_retained(orders, (last_ms - first_ms) / DAY_MS, max(net_minor / orders, 0.0), prior)


def customer_value(state: CustomerState, prior: ClvPrior) -> float | None:
    """What keeping the customer is worth (predicted CLV if still alive; None before the first order)."""
    return value_of(value_inputs(state), prior)


@dataclass
class AlertStage(BatchStage):
    """Customer alerts of one batch (ids ``rule:customer:event time``), with ranked retention actions."""

    churn: ChurnStage  # whose ticks and score changes the alerts read
    rules: CustomerAlertRules
    catalogue: Sequence[RetentionAction]
    prior: ClvPrior
    population: Mapping[str, FrozenRanks]
    segment_of: Callable[[CustomerState], str]
    segment_model: SegmentModel | None = None
    segment_window_days: float = 180.0
    alerts: list[dict] = field(default_factory=list)
    _deferred: list[tuple] = field(default_factory=list)
    _values: dict = field(default_factory=dict)  # value_inputs -> value, within the batch

    def _describe(self, state: CustomerState) -> tuple[float | None, float | None, str | None]:
        inputs = value_inputs(state)  # a customer's browsing, carts and surveys leave them as they were
        value = self._values.get(inputs)
        if value is None and inputs is not None:
            value = self._values[inputs] = value_of(inputs, self.prior)
        ranks = self.population.get(VALUE_SKETCH)
        rank = None if value is None or ranks is None else ranks.midrank(value)
        segment = self.segment_of(state)
        return value, rank, None if segment == NO_SEGMENT else segment

    def describe(self, customer_id: str, state: CustomerState, at_ms: int) -> dict:
        """What a score change carries besides the score, as of its tick: the behaviour segment nearest to the
        customer then (the served snapshot, no hysteresis: a function of the state, so replays attribute
        changes as live runs did), the RFM segment, the value and its rank in the population."""
        value, rank, rfm_segment = self._describe(state)
        return {"segment_id": self._nearest_segment(state, at_ms), "rfm_segment": rfm_segment,
                "value_minor": None if value is None else round(value),
                "value_rank": None if rank is None else round(rank, 6)}

    def _nearest_segment(self, state: CustomerState, at_ms: int) -> int | None:
        if self.segment_model is None:
            return None
        raw = segment_features(state, at_ms, self.segment_window_days)
        return None if raw is None else self.segment_model.assign(raw)[0]

    def after_event(self, customer_id: str, state: CustomerState, event: Event) -> None:
        if isinstance(event, Interaction) and event.survey == "csat" and event.score is not None:
            self.survey(customer_id, state, event.ts_ms, event.score)

    def finish(self, states: Mapping[str, CustomerState]) -> None:
        """Once the churn stage has scored the batch: the deferred survey alerts, then each score change
        described as of its tick and put to the customer rules."""
        self.resolve(self.churn.tick_scores)
        for change, as_of in zip(self.churn.score_changes, self.churn.change_states):
            change |= self.describe(change["customer_id"], as_of, change["as_of_ms"])
            self.score_change(change, states[change["customer_id"]])

    def score_change(self, change: dict, state: CustomerState) -> None:
        """Raise the customer rules a (described) score change triggers."""
        for alert in customer_alerts(change, change.get("value_minor"), change.get("value_rank"),
                                     change.get("rfm_segment"), self.rules):
            self._raise(alert, state, change["churn_p"], change.get("value_minor"), change.get("segment_id"))

    def survey(self, customer_id: str, state: CustomerState, ts_ms: int, csat: int) -> None:
        """A CSAT answer: alert when it is low, soon after a ticket, from a valuable customer."""
        value, rank, rfm_segment = self._describe(state)
        alert = unhappy_after_ticket(customer_id, state.engagement.last_ticket_ms, ts_ms, csat,
                                     is_valuable(rank, rfm_segment, self.rules, value), self.rules)
        if alert is not None:
            alert["evidence"] |= {"value_minor": None if value is None else round(value), "value_rank": rank,
                                  "rfm_segment": rfm_segment}
            # Ranked with the risk of the customer's last report tick (replayable, unlike a fresh score),
            # which may still be waiting to be scored with the batch's other ticks: see resolve().
            tick = ((state.churn_score or {}).get("reported") or {}).get("tick") or {}
            self._deferred.append((alert, state, value, self._nearest_segment(state, ts_ms),
                                   self.churn.last_tick(customer_id, state), tick))

    def resolve(self, tick_scores: Mapping[tuple[str, int], float]) -> None:
        """Raise the survey alerts of the batch once its ticks are scored (``tick_scores``: (customer, tick) ->
        churn_p of the ticks scored in this batch; an older tick is the one reported before the batch)."""
        for alert, state, value, segment_id, tick_ms, reported_tick in self._deferred:
            churn_p = tick_scores.get((alert["customer_id"], tick_ms))
            if churn_p is None:  # the tick was reported before the batch, or skipped as quiet (carried score)
                churn_p = reported_tick.get("churn_p")
            self._raise(alert, state, churn_p, value, segment_id)
        self._deferred.clear()

    def _raise(self, alert: dict, state: CustomerState, churn_p: float | None, value: float | None,
               segment_id: int | None) -> None:
        key = f"{alert['rule']}:{alert['customer_id']}"
        gate = CooldownGate(int(self.rules.cooldown_days * DAY_MS), state.alerted)
        if not gate.admit(key, alert["ts_ms"]):
            return
        actions = [] if churn_p is None or value is None else rank_actions(churn_p, value, self.catalogue)
        self.alerts.append({"id": f"{key}:{alert['ts_ms']}", "kind": "customer", "key": key, **alert,
                            "segment_id": segment_id, "next_best_actions": actions})
