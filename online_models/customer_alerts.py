"""Which score changes deserve a person's attention, and not twice within a cool-down (event time).

Rules (configurable through :class:`CustomerAlertRules`):

* ``valuable_at_risk``: a valuable customer (value rank at or above ``value_rank``, 0.9 = the top CLV
  decile, or in a watched RFM segment such as Champions) crosses into the high-risk band;
* ``churn_jump``: churn probability rises by at least ``jump`` in one reported change;
* ``unhappy_after_ticket``: a valuable customer answers a survey with a CSAT at or below ``low_csat``
  within ``ticket_window_days`` after opening a support ticket.

Why a cool-down keyed by (rule, customer) in event time: daily re-scores of a silent customer report
a slow climb step by step, and a replay must raise exactly the alerts the live run raised, so the
gate remembers event times, never the wall clock.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from online_models.purchase_history import DAY_MS

__all__ = ["CustomerAlertRules", "is_valuable", "customer_alerts", "unhappy_after_ticket", "CooldownGate"]


@dataclass(frozen=True)
class CustomerAlertRules:
    watched_segments: frozenset[str] = frozenset({"Champions", "Loyal"})
    value_rank: float = 0.9        # CLV midrank in the population: 0.9 = top decile
    min_value_minor: float = 0.0   # ... or at least this value (0: no absolute rule; replay-exact, unlike a rank)
    jump: float = 0.3
    low_csat: int = 2              # on a 1-5 scale
    ticket_window_days: float = 14.0
    cooldown_days: float = 7.0


def is_valuable(value_rank: float | None, rfm_segment: str | None,
                rules: CustomerAlertRules = CustomerAlertRules(), value_minor: float | None = None) -> bool:
    """In the top CLV share, above the absolute value floor, or in a watched RFM segment.

    >>> is_valuable(0.95, "Hibernating"), is_valuable(0.5, "Champions"), is_valuable(None, None)
    (True, True, False)
    >>> is_valuable(None, None, CustomerAlertRules(min_value_minor=50_000), value_minor=60_000)
    True
    """
    above_floor = rules.min_value_minor > 0 and value_minor is not None and value_minor >= rules.min_value_minor
    return ((value_rank is not None and value_rank >= rules.value_rank) or above_floor
            or rfm_segment in rules.watched_segments)


def customer_alerts(change: dict, clv_minor: float | None, value_rank: float | None, rfm_segment: str | None,
                    rules: CustomerAlertRules = CustomerAlertRules()) -> list[dict]:
    """Alerts one ``score-changes`` message raises (before the cool-down), with their evidence.

    >>> change = {"customer_id": "c1", "as_of_ms": 0, "churn_p": 0.71, "band": "high",
    ...           "previous_churn_p": 0.35, "previous_band": "medium", "top_features": ["silence_days"]}
    >>> [(a["rule"], a["severity"]) for a in customer_alerts(change, 48_000, 0.5, "Loyal")]
    [('valuable_at_risk', 'critical'), ('churn_jump', 'critical')]
    >>> customer_alerts({**change, "previous_churn_p": 0.6}, 1_000, 0.2, "Hibernating")
    []
    """
    alerts = []
    evidence = {"churn_p": change["churn_p"], "previous_churn_p": change.get("previous_churn_p"),
                "band": change["band"], "previous_band": change.get("previous_band"), "value_minor": clv_minor,
                "value_rank": value_rank, "rfm_segment": rfm_segment, "top_features": change.get("top_features", [])}
    valuable = is_valuable(value_rank, rfm_segment, rules, clv_minor)
    if valuable and change["band"] == "high" and change.get("previous_band") != "high":
        alerts.append({"rule": "valuable_at_risk", "severity": "critical"})
    previous = change.get("previous_churn_p")
    if previous is not None and change["churn_p"] - previous >= rules.jump:
        alerts.append({"rule": "churn_jump", "severity": "critical" if valuable else "warning"})
    return [{**alert, "customer_id": change["customer_id"], "ts_ms": change["as_of_ms"], "evidence": evidence}
            for alert in alerts]


def unhappy_after_ticket(customer_id: str, ticket_ms: int | None, survey_ms: int, csat: int, valuable: bool,
                         rules: CustomerAlertRules = CustomerAlertRules()) -> dict | None:
    """The alert a low CSAT raises when it follows the customer's support ticket closely enough.

    >>> unhappy_after_ticket("c1", ticket_ms=0, survey_ms=3 * DAY_MS, csat=1, valuable=True)["rule"]
    'unhappy_after_ticket'
    >>> unhappy_after_ticket("c1", ticket_ms=0, survey_ms=30 * DAY_MS, csat=1, valuable=True) is None
    True
    """
    if not valuable or ticket_ms is None or csat > rules.low_csat:
        return None
    if not 0 <= survey_ms - ticket_ms <= rules.ticket_window_days * DAY_MS:
        return None
    return {"rule": "unhappy_after_ticket", "severity": "critical", "customer_id": customer_id, "ts_ms": survey_ms,
            "evidence": {"csat": csat, "ticket_ms": ticket_ms, "survey_ms": survey_ms}}


@dataclass
class CooldownGate:
    """Lets an alert through unless one with the same key passed within ``cooldown_ms`` of event time.

    >>> gate = CooldownGate(cooldown_ms=7 * DAY_MS)
    >>> [gate.admit("churn_jump:c1", day * DAY_MS) for day in (0, 3, 8, 9)]
    [True, False, True, False]
    """

    cooldown_ms: int
    last_ms: dict[str, int] = field(default_factory=dict)

    def admit(self, key: str, ts_ms: int) -> bool:
        last = self.last_ms.get(key)
        if last is not None and abs(ts_ms - last) < self.cooldown_ms:
            return False
        self.last_ms[key] = ts_ms
        return True
