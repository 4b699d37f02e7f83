"""Next best retention action: rank a catalogue of actions by expected utility for one customer.

Why expected utility and not a fixed playbook: a personal call is worth its cost for a valuable customer
who is likely to leave, and a waste for a cheap or loyal one. For an action that keeps a would-be churner
with probability ``uplift``, the chance it saves this customer is ``churn_p · uplift``; what it saves is
the customer's predicted CLV, minus what the action gives away (a discount keeps ``value_share`` of it):

    EU = churn_p · uplift · CLV · value_share − cost

Doing nothing has EU 0, so an action is recommended only when its EU is positive.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

__all__ = ["RetentionAction", "DEFAULT_CATALOGUE", "rank_actions", "catalogue_from_json"]


@dataclass(frozen=True)
class RetentionAction:
    """One action of the catalogue; money in minor units."""

    name: str
    cost_minor: int         # what the action costs the shop (a call's time, a voucher's printing, shipping)
    uplift: float           # share of would-be churners it keeps, in [0, 1]
    value_share: float = 1.0  # share of the kept customer's value the shop still earns (a 20% discount: 0.8)

    def __post_init__(self) -> None:
        if not self.name or self.cost_minor < 0 or not 0 <= self.uplift <= 1 or not 0 <= self.value_share <= 1:
            raise ValueError(f"invalid retention action {self!r}: name, cost >= 0, uplift and value_share in [0, 1]")

    def expected_utility(self, churn_p: float, clv_minor: float) -> float:
        """EU in minor units.

        >>> RetentionAction("call", cost_minor=1500, uplift=0.3).expected_utility(0.6, 20_000)
        2100.0
        """
        return churn_p * self.uplift * clv_minor * self.value_share - self.cost_minor


#: A starting catalogue (illustrative uplifts; a shop sets its own from its A/B tests: CRM_ALERT_ACTIONS).
DEFAULT_CATALOGUE: tuple[RetentionAction, ...] = (
    RetentionAction("personal call", cost_minor=1500, uplift=0.30),
    RetentionAction("10 EUR voucher", cost_minor=1000, uplift=0.20),
    RetentionAction("free shipping", cost_minor=500, uplift=0.10),
    RetentionAction("win-back e-mail", cost_minor=5, uplift=0.03),
)


def rank_actions(churn_p: float, clv_minor: float, catalogue: Iterable[RetentionAction] = DEFAULT_CATALOGUE,
                 ) -> list[dict]:
    """Every action with its EU, best first (ties: cheaper first); ``recommended`` when EU > 0.

    >>> [(a["action"], a["expected_utility_minor"], a["recommended"])
    ...  for a in rank_actions(0.6, 20_000)]  # doctest: +NORMALIZE_WHITESPACE
    [('personal call', 2100, True), ('10 EUR voucher', 1400, True), ('free shipping', 700, True),
     ('win-back e-mail', 355, True)]
    >>> [a["action"] for a in rank_actions(0.3, 3_000) if a["recommended"]]  # a cheap customer: the e-mail only
    ['win-back e-mail']
    """
    if not 0 <= churn_p <= 1:
        raise ValueError(f"churn_p must be in [0, 1], got {churn_p}")
    clv_minor = max(clv_minor, 0.0)
    scored = [(action.expected_utility(churn_p, clv_minor), action) for action in catalogue]
    scored.sort(key=lambda pair: (-pair[0], pair[1].cost_minor, pair[1].name))
    return [{"action": action.name, "expected_utility_minor": round(eu), "p_success": round(churn_p * action.uplift, 4),
             "cost_minor": action.cost_minor, "recommended": eu > 0} for eu, action in scored]


def catalogue_from_json(entries: Iterable[Mapping]) -> tuple[RetentionAction, ...]:
    """A catalogue from configuration (``[{"name": ..., "cost_minor": ..., "uplift": ..., "value_share": ...}]``),
    every entry validated; names must be unique.

    >>> catalogue_from_json([{"name": "call", "cost_minor": 900, "uplift": 0.2}])[0]
    RetentionAction(name='call', cost_minor=900, uplift=0.2, value_share=1.0)
    """
    actions = []
    for entry in entries:
        unknown = set(entry) - {"name", "cost_minor", "uplift", "value_share"}
        if unknown:
            raise ValueError(f"unknown retention action fields {sorted(unknown)}")
        actions.append(RetentionAction(str(entry["name"]), int(entry["cost_minor"]), float(entry["uplift"]),
                                       float(entry.get("value_share", 1.0))))
    if len({a.name for a in actions}) != len(actions):
        raise ValueError("retention action names must be unique")
    return tuple(actions)
