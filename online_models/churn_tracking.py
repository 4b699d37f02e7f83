"""A customer's churn life cycle: open and close hazard examples, and score.

The pipeline (agents/churn_scoring.py) and the cutoff benchmark both drive a
customer through these functions, so what is benchmarked is what runs.

* :func:`on_order` before an order is applied closes the examples the order
  decides; :func:`after_order` opens the order's own checkpoint.
* :func:`on_clock` closes examples whose step ended without an order, as the
  purchases watermark passes them (the event-time wheel calls it).
* :func:`next_tick_ms`: the customer's report ticks, a fixed event-time grid
  at which score changes are decided (the state as of the tick), so that a
  replay reports what the live run reported.
* :func:`score` composes the served model's hazards along the customer's
  silence path into ``churn_p``; before a model exists it serves the CLV prior,
  marked ``"version": "prior"``. While a customer sends no event at all, the
  score never goes down under the same model version (:func:`ratchet`): risk
  rises with silence even where a learned hazard wiggles between checkpoints.
* :func:`plan_silence` looks ahead along the customer's future report ticks and
  finds the first at which the report would change if they stay silent, so the
  wheel wakes them then (or for their labels, :func:`label_wake_ms`) instead of
  at every tick.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Sequence

from online_models.churn_features import BaseRows, anchored_paths, example_row, landmark_lag, silence_paths
from online_models.churn_model import HazardScorer, churn_probabilities, prior_churn_probability, top_contributions
from online_models.clv import ClvPrior
from online_models.customer_state import CustomerState
from online_models.hazard import Example, HazardConfig, band_of
from online_models.purchase_history import DAY_MS

__all__ = ["ChurnSettings", "on_order", "after_order", "on_clock", "score", "score_many", "raw_scores", "explain",
           "path_scores",
           "ratchet", "changes_report", "plan_silence", "SilencePlan", "tick_phase_ms", "next_tick_ms", "ticks_between",
           "label_wake_ms", "look_ahead_until", "PRIOR_VERSION"]

PRIOR_VERSION = "prior"


@dataclass(frozen=True)
class ChurnSettings:
    hazard: HazardConfig = HazardConfig()
    rescore_days: float = 1.0  # a silent customer is re-scored at least this often (event time)
    prior: ClvPrior = ClvPrior()
    near_reorder_rescore_days: float = 0.5  # ... and this often while an order is most expected (silence 0.5-1.5x gap)
    slowest_rescore_days: float = 4.0  # deep in a silence the interval doubles (≤ 1/14 of the silence) up to this
    change_threshold: float = 0.1  # a report changes when churn_p moves more than this (or the band changes)
    label_steps: int = 1  # a silent customer's examples are closed this many steps at a time
    look_ahead_gaps: float = 3.0  # a busy customer's look-ahead spans this many of their mean gaps between events


def on_order(state: CustomerState, ts_ms: int, settings: ChurnSettings) -> tuple[list[Example], bool]:
    """Examples closed by an order at ``ts_ms`` (call before applying it) and whether it opens one."""
    if state.purchases.orders == 0:
        return [], True
    return state.churn_clock.on_order(ts_ms, _example_at(state, settings), settings.hazard)


def after_order(state: CustomerState, ts_ms: int, opens: bool, settings: ChurnSettings) -> None:
    if opens:
        state.churn_clock.open(ts_ms, _example_at(state, settings), settings.hazard)


def on_clock(state: CustomerState, watermark_ms: int, settings: ChurnSettings) -> list[Example]:
    """Examples whose step ended by ``watermark_ms`` without an order."""
    due = state.churn_clock.due_ms(settings.hazard)
    if state.purchases.orders == 0 or due is None or due > watermark_ms:
        return []  # nothing ends yet (most events of a batch): no reader of the state built
    return state.churn_clock.advance(watermark_ms, _example_at(state, settings), settings.hazard)


def before_event(state: CustomerState, ts_ms: int, settings: ChurnSettings) -> None:
    """An event at ``ts_ms`` is about to be applied: silence checkpoints before it that are not open yet get their
    features as of now (:meth:`~online_models.hazard.ExampleClock.remember_before`)."""
    clock = state.churn_clock
    built = clock.last_built_ms()
    if built is not None and state.purchases.orders > 0 and built + settings.hazard.step_ms < ts_ms:
        clock.remember_before(ts_ms, _example_at(state, settings), settings.hazard)  # most events: nothing to build


def _example_at(state: CustomerState, settings: ChurnSettings):
    """Features of the example at a checkpoint: the order columns now, the engagement as remembered by the
    checkpoint :func:`landmark_lag` steps earlier in this silent spell (what a score ``lag`` steps
    along its path knows); the checkpoint remembers its own engagement."""
    hazard = settings.hazard
    rows: BaseRows | None = None  # read once, at the first checkpoint (the state does not change meanwhile)

    def example_at(checkpoint_ms: int, anchors: list) -> tuple[list[float], list[float]]:
        nonlocal rows
        rows = rows or BaseRows(state)
        lag = landmark_lag(checkpoint_ms, min(len(anchors), hazard.steps - 1))
        anchor = anchors[-lag] if lag else None
        return example_row(state, checkpoint_ms, anchor, lag, hazard.step_ms, rows)
    return example_at


def score(state: CustomerState, at_ms: int, scorer: HazardScorer | None, settings: ChurnSettings) -> dict | None:
    """Score a buyer as of ``at_ms``; stores and returns the score (None for non-buyers).

    >>> state = CustomerState.new(engagement_half_life_ms=30 * DAY_MS)
    >>> state.apply_order(0, 5000, 1)
    >>> early = score(state, 10 * DAY_MS, None, ChurnSettings())["churn_p"]
    >>> later = score(state, 80 * DAY_MS, None, ChurnSettings())
    >>> early < later["churn_p"], later["version"], later["band"]
    (True, 'prior', 'high')
    >>> [(f["feature"], f["contribution"] > 0) for f in later["top_features"]]
    [('silence_vs_prior_reorder_rate', True)]
    """
    scores = score_many([(state, [at_ms])], scorer, settings)[0]
    return scores[-1] if scores else None


def score_many(customers: Sequence[tuple[CustomerState, Sequence[int]]], scorer: HazardScorer | None,
               settings: ChurnSettings) -> list[list[dict]]:
    """Score each customer at each of its as-of times (ascending), with one model evaluation over all
    their silence paths; returns the scores in that order (none for non-buyers) and leaves the last one
    in ``state.churn_score``."""
    probabilities, version = raw_scores(customers, scorer, settings)
    explanations = explain([(state, times if ps else [], ps) for (state, times), ps in zip(customers, probabilities)],
                           scorer, settings)
    results: list[list[dict]] = []
    for (state, times), churn_ps, tops in zip(customers, probabilities, explanations):
        results.append([])
        for at_ms, churn_p, top in zip(times, churn_ps, tops):
            previous = state.churn_score
            if (previous is not None and previous["version"] == version and previous["as_of_ms"] <= at_ms
                    and (state.activity.last_seen_ms or 0) <= previous["as_of_ms"]):
                churn_p = max(churn_p, previous["churn_p"])  # silent since the last score: risk does not fall
            state.churn_score = {"churn_p": round(churn_p, 6), "band": band_of(churn_p), "version": version,
                                 "as_of_ms": at_ms, "top_features": top}
            results[-1].append(state.churn_score)
    return results


def raw_scores(customers: Sequence[tuple[CustomerState, Sequence[int]]], scorer: HazardScorer | None,
               settings: ChurnSettings) -> tuple[list[list[float]], int | str]:
    """Unrounded ``churn_p`` of each customer at each of its as-of times (none for non-buyers), with one model
    evaluation over all their silence paths, without explanations and without touching the states; and the
    version scored with."""
    buyers = [(state, times) for state, times in customers if state.purchases.orders > 0 and len(times)]
    if scorer is None:
        values = [_prior(state, at_ms, settings) for state, times in buyers for at_ms in times]
        version = PRIOR_VERSION
    else:
        hazard = settings.hazard
        values = (churn_probabilities(scorer, silence_paths(buyers, hazard.step_ms, hazard.steps), hazard).tolist()
                  if buyers else [])
        version = scorer.version
    it = iter(values)
    return [[next(it) for _ in times] if state.purchases.orders > 0 else [] for state, times in customers], version


def path_scores(customers: Sequence[tuple[CustomerState, int, Sequence[float], int]], scorer: HazardScorer,
                settings: ChurnSettings) -> list[float]:
    """Unrounded ``churn_p`` at ``at_ms`` of each buyer on the silence path it was on at an earlier tick
    (``anchor``, ``anchor_ms``: :func:`~online_models.churn_features.anchored_paths`), under ``scorer``: the
    risk silence alone would have brought, for relative risk.

    >>> from online_models.churn_features import FEATURES, engagement_anchor
    >>> from online_models.churn_model import LinearHazardScorer
    >>> import numpy as np
    >>> settings, width = ChurnSettings(), len(FEATURES)
    >>> weights = np.eye(width)[FEATURES.index("open_tickets")] * -2.0
    >>> tickets = LinearHazardScorer(1, np.zeros(width), np.ones(width), weights, -2.0)
    >>> state = CustomerState.new(engagement_half_life_ms=30 * DAY_MS)
    >>> state.apply_order(0, 5000, 1)
    >>> anchor = engagement_anchor(state, 7 * DAY_MS)
    >>> state.apply_interaction("support_ticket", 9 * DAY_MS)      # an open ticket: fewer orders (weight -2)
    >>> now = raw_scores([(state, [14 * DAY_MS])], tickets, settings)[0][0][0]
    >>> path = path_scores([(state, 14 * DAY_MS, anchor, 7 * DAY_MS)], tickets, settings)[0]
    >>> round(now - path, 3) > 0.1
    True
    """
    if not customers:
        return []
    hazard = settings.hazard
    return churn_probabilities(scorer, anchored_paths(customers, hazard.step_ms, hazard.steps), hazard).tolist()


def explain(customers: Sequence[tuple[CustomerState, Sequence[int], Sequence[float]]], scorer: HazardScorer | None,
            settings: ChurnSettings) -> list[list[list[dict]]]:
    """The top signed contributions behind each customer's score at each of its as-of times (``churn_ps``: the
    raw scores there, which the prior's one reason is computed from). Only scores that are shown or reported
    need one, so the pipeline asks for those alone."""
    if scorer is None:
        return [[_prior_explanation(state, at_ms, churn_p, settings) for at_ms, churn_p in zip(times, churn_ps)]
                for state, times, churn_ps in customers]
    asked = [(state, times) for state, times, _ in customers if len(times)]
    tops = iter(top_contributions(scorer.contributions(silence_paths(asked, settings.hazard.step_ms, 1)[:, 0, :]))
                if asked else [])
    return [[next(tops) for _ in times] for _, times, _ in customers]


def ratchet(carrier: dict | None, churn_p: float, version: int | str, last_seen_ms: int) -> tuple[float, str]:
    """A report tick's ``churn_p`` and band: the raw score, raised to the last tick's (``carrier``) when the
    customer has been silent since it under the same model version (risk does not fall while silent).

    >>> carrier = {"churn_p": 0.5, "version": 3, "as_of_ms": 100}
    >>> ratchet(carrier, 0.4, 3, 90), ratchet(carrier, 0.4, 3, 120), ratchet(carrier, 0.4, 4, 90)
    ((0.5, 'medium'), (0.4, 'medium'), (0.4, 'medium'))
    """
    rounded, band = round(churn_p, 6), band_of(churn_p)
    if carrier and carrier["version"] == version and last_seen_ms <= carrier["as_of_ms"]:
        rounded = max(rounded, carrier["churn_p"])
        band = band_of(rounded)
    return rounded, band


def changes_report(reported: dict | None, churn_p: float, band: str, threshold: float) -> bool:
    """Whether a tick's score is reported: the first one, a new band, or a move beyond ``threshold``.

    >>> last = {"churn_p": 0.30, "band": "low"}
    >>> changes_report(last, 0.35, "medium", 0.1), changes_report(last, 0.32, "low", 0.1)
    (True, False)
    >>> changes_report(None, 0.1, "low", 0.1)
    True
    """
    if not reported or reported.get("churn_p") is None:
        return True
    return reported["band"] != band or abs(churn_p - reported["churn_p"]) > threshold


@dataclass(frozen=True)
class SilencePlan:
    """What a look-ahead found for a silent customer under one model version: the ticks up to ``carrier``'s
    (its ``as_of_ms``: the tick the grid goes on from) change no report, and its score is carried into the
    next; ``reports_at_ms`` is the first tick whose report changes (None: none up to the window's end)."""

    version: int | str
    carrier: dict | None
    reports_at_ms: int | None

    def to_dict(self) -> dict:
        return {"version": self.version, "carrier": self.carrier}


def plan_silence(reported: dict | None, last_seen_ms: int, ticks: Sequence[int], churn_ps: Sequence[float],
                 version: int | str, threshold: float) -> SilencePlan | None:
    """Run the report rule over a silent customer's future ``ticks`` (with their raw ``churn_ps``) and find the
    first that would be reported. None without ticks.

    The rule is the one the ticks are scored with (:func:`ratchet`, :func:`changes_report`), so skipping the
    quiet ticks and carrying ``carrier`` into the first one not skipped reports exactly what scoring every
    tick would (under the same version, while the customer stays silent).

    >>> reported = {"churn_p": 0.2, "band": "low", "tick": {"churn_p": 0.2, "version": 1, "as_of_ms": 0}}
    >>> plan = plan_silence(reported, 0, [1, 2, 3, 4], [0.21, 0.25, 0.2, 0.34], 1, 0.1)
    >>> plan.reports_at_ms, plan.carrier                   # 0.34 is a new band; quiet up to tick 3
    (4, {'churn_p': 0.25, 'version': 1, 'as_of_ms': 3})
    >>> plan_silence(reported, 0, [1, 2], [0.21, 0.25], 1, 0.1)   # nothing up to tick 2
    SilencePlan(version=1, carrier={'churn_p': 0.25, 'version': 1, 'as_of_ms': 2}, reports_at_ms=None)
    """
    if not ticks:
        return None
    carrier = (reported or {}).get("tick")
    for tick, raw in zip(ticks, churn_ps):
        churn_p, band = ratchet(carrier, raw, version, last_seen_ms)
        if changes_report(reported, churn_p, band, threshold):
            return SilencePlan(version, carrier, tick)
        carrier = {"churn_p": churn_p, "version": version, "as_of_ms": tick}
    return SilencePlan(version, carrier, None)


def _prior(state: CustomerState, at_ms: int, settings: ChurnSettings) -> float:
    history = state.purchases
    return prior_churn_probability(history.orders, (at_ms - history.first_order_ms) / DAY_MS,
                                   (history.last_order_ms - history.first_order_ms) / DAY_MS,
                                   settings.hazard.horizon_days, settings.prior)


def _prior_explanation(state: CustomerState, at_ms: int, churn_p: float, settings: ChurnSettings) -> list[dict]:
    """The prior's one reason, signed like a model's: the log-odds its silence since the last order added
    (0 right after an order), so a card reads "silence +" and never shows a blank or missing weight."""
    at_last_order = _prior(state, min(at_ms, state.purchases.last_order_ms), settings)
    return [{"feature": "silence_vs_prior_reorder_rate",
             "contribution": round(_log_odds(churn_p) - _log_odds(at_last_order), 4)}]


def _log_odds(p: float) -> float:
    p = min(max(p, 1e-9), 1 - 1e-9)
    return math.log(p / (1 - p))


#: Ticks' phases are spread over this period: every re-scoring interval (half a day to a few days) divides it,
#: so the grid of each interval is the phase modulo it, and customers deep in silence do not all tick on one day.
_PHASE_PERIOD_MS = 64 * DAY_MS

#: A tick's interval is at most 1/this of the silence so far: about 14 ticks each time the silence doubles.
_TICKS_PER_DOUBLING = 14


def tick_phase_ms(customer_id: str) -> int:
    """Where the customer's report ticks fall: spread over the day and over the days of the slowest interval
    (a stable hash of the id), so that neither a midnight nor a fourth day re-scores every customer at once.

    >>> tick_phase_ms("cust-000001") == tick_phase_ms("cust-000001"), 0 <= tick_phase_ms("x") < 64 * DAY_MS
    (True, True)
    >>> sorted({tick_phase_ms(f"cust-{i:06d}") // DAY_MS % 4 for i in range(100)})  # the 4-day grid's days
    [0, 1, 2, 3]
    """
    digest = hashlib.blake2b(customer_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % _PHASE_PERIOD_MS


def next_tick_ms(state: CustomerState, settings: ChurnSettings, after_ms: int, phase_ms: int = 0) -> int | None:
    """The customer's first report tick strictly after ``after_ms``: ticks lie on a fixed event-time grid
    (``phase_ms`` + k · interval), daily, twice a day while the silence is around the customer's own reorder
    interval (where the risk moves fastest), and sparser deep in a silence: the interval doubles while it is at
    most 1/14 of the silence, up to ``slowest_rescore_days`` (4 days: a customer silent for two months is
    re-scored every 4 days, one silent for 10 days every day). A replay ticks where the live run ticked
    whatever the batches were. None once the customer has been silent too long to matter.

    Why sparser: the work of a silent customer is one scoring per tick, and a year of daily ticks made the work
    follow customers × days; with the interval growing with the silence a silent year is ~120 ticks, not
    365, while a risk that moves within days of an order is still seen within a day.

    >>> state = CustomerState.new(engagement_half_life_ms=30 * DAY_MS)
    >>> for day in (0, 20, 40):
    ...     state.apply_order(day * DAY_MS, 4000, 1)
    >>> settings = ChurnSettings()
    >>> [next_tick_ms(state, settings, after_ms=int(day * DAY_MS)) / DAY_MS for day in (41, 41.2, 52, 52.7, 75)]
    [42.0, 42.0, 52.5, 53.0, 76.0]
    >>> [next_tick_ms(state, settings, after_ms=int(day * DAY_MS)) / DAY_MS for day in (69, 101, 200)]
    [70.0, 104.0, 204.0]
    """
    return None if state.purchases.orders == 0 else _TickGrid(state, settings, phase_ms).after(after_ms)


def ticks_between(state: CustomerState, settings: ChurnSettings, after_ms: int, until_ms: int,
                  phase_ms: int = 0) -> list[int]:
    """The customer's report ticks in (``after_ms``, ``until_ms``]."""
    if state.purchases.orders == 0:
        return []
    grid = _TickGrid(state, settings, phase_ms)
    ticks, tick = [], grid.after(after_ms)
    while tick is not None and tick <= until_ms:
        ticks.append(tick)
        tick = grid.after(tick)
    return ticks


class _TickGrid:
    """:func:`next_tick_ms`'s rule with what it reads of the customer looked up once (a look-ahead walks
    dozens of ticks)."""

    __slots__ = ("last_order_ms", "near_from_ms", "near_until_ms", "daily", "near_ratio", "slowest", "phase_ms",
                 "longest_silence_ms")

    def __init__(self, state: CustomerState, settings: ChurnSettings, phase_ms: int) -> None:
        history = state.purchases
        self.last_order_ms, self.phase_ms = history.last_order_ms, phase_ms
        self.daily = max(int(settings.rescore_days * DAY_MS), 1)
        self.near_ratio = min(settings.near_reorder_rescore_days / settings.rescore_days, 1.0)
        self.slowest = self.daily  # the daily interval doubled while it fits in the slowest one
        while self.slowest * 2 <= settings.slowest_rescore_days * DAY_MS:
            self.slowest *= 2
        mean_gap = history.mean_gap_days
        # The silence window where ticks come more often.
        self.near_from_ms = self.near_until_ms = None
        if mean_gap is not None:
            self.near_from_ms, self.near_until_ms = 0.5 * mean_gap * DAY_MS, 1.5 * mean_gap * DAY_MS
        self.longest_silence_ms = settings.hazard.max_silence_days * DAY_MS

    def after(self, after_ms: int) -> int | None:
        silence = after_ms - self.last_order_ms
        interval = self.daily
        while interval < self.slowest and interval * 2 * _TICKS_PER_DOUBLING <= silence:
            interval *= 2
        if self.near_from_ms is not None and self.near_from_ms <= silence <= self.near_until_ms:
            interval = max(int(interval * self.near_ratio), 1)
        tick = self.phase_ms + ((after_ms - self.phase_ms) // interval + 1) * interval
        return None if tick - self.last_order_ms > self.longest_silence_ms else tick


def label_wake_ms(state: CustomerState, settings: ChurnSettings) -> int | None:
    """When the wheel must visit a silent customer for their labels: once ``label_steps`` open examples
    have ended (or the last one the silence allows), not at each one; their features were fixed when
    they opened, so closing several at once closes the same examples.

    >>> state = CustomerState.new(engagement_half_life_ms=30 * DAY_MS)
    >>> opens = on_order(state, 0, ChurnSettings())[1]; state.apply_order(0, 900, 1)
    >>> after_order(state, 0, opens, ChurnSettings())
    >>> label_wake_ms(state, ChurnSettings(label_steps=4)) / DAY_MS, label_wake_ms(state, ChurnSettings()) / DAY_MS
    (28.0, 7.0)
    """
    clock, hazard = state.churn_clock, settings.hazard
    if clock.pending is None:
        return None
    steps = max(settings.label_steps, 1)
    if clock.last_order_ms is not None:
        silence_end = clock.last_order_ms + int(hazard.max_silence_days * DAY_MS)  # the last checkpoint's bound
        steps = max(1, min(steps, (silence_end - clock.pending.checkpoint_ms) // hazard.step_ms + 1))
    return clock.pending.checkpoint_ms + steps * hazard.step_ms


def look_ahead_until(state: CustomerState, after_ms: int, window_end_ms: int, settings: ChurnSettings) -> int:
    """How far a look-ahead from tick ``after_ms`` goes: to ``window_end_ms`` (the next label wake-up), or,
    for a customer whose events come more often than that, ``look_ahead_gaps`` of their mean gap between
    events, at least their silence so far and at least a day.

    Why: a plan is wasted from the customer's next event on, and a busy customer's next event is days away,
    not weeks (on the dense simulator two thirds of the look-ahead rows were never used). Someone who stays
    silent is visited again at the shorter window's end, and their silence then at least doubles the next
    window, so a silent spell costs a few more visits, not one per window. Only cost depends on it: the
    report ticks and what they report do not.

    >>> state = CustomerState.new(engagement_half_life_ms=30 * DAY_MS)
    >>> for day in (0, 2, 4, 6):
    ...     state.activity.update("interactions", day * DAY_MS)
    >>> state.apply_order(8 * DAY_MS, 900, 1)   # an event every 2 days: looks 6 days ahead
    >>> [look_ahead_until(state, t * DAY_MS, 36 * DAY_MS, ChurnSettings()) / DAY_MS for t in (8, 9, 20, 30)]
    [14.0, 15.0, 32.0, 36.0]
    """
    events = sum(state.activity.events.values())
    first, last = state.activity.first_seen_ms, state.activity.last_seen_ms
    if events < 2 or first is None or last is None:
        return window_end_ms
    reach = max(settings.look_ahead_gaps * (last - first) / (events - 1), after_ms - last, DAY_MS)
    return min(window_end_ms, after_ms + int(reach))
