"""Webshop simulator with planted ground truth.

Each customer belongs to a planted segment that fixes their purchase rate,
basket value and lifetime. Customers arrive over the first part of the
period, shop as a Poisson process until an exponentially distributed dropout
time (so churn really happens, at a known moment), and every order is preceded
by a browsing session. Baskets come from planted product affinity groups.
Support tickets and poor survey answers become more likely in the weeks
before a customer drops out, as they do in real shops.

Everything is drawn from one ``numpy`` generator seeded by ``seed``: the same
arguments give byte-identical output. Events come out sorted by event time.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timezone
from typing import Iterator

import numpy as np

__all__ = ["SegmentProfile", "SEGMENTS", "DISTINCT_SEGMENTS", "SPARSE_SEGMENTS", "ArrivalCohort", "SPARSE_COHORTS",
           "SegmentDrift", "SHOCK_KINDS", "ChurnShock", "SimulationConfig", "sparse_config", "PROFILES", "Simulation",
           "simulate"]

DAY_MS = 86_400_000


@dataclass(frozen=True)
class SegmentProfile:
    """Planted behaviour of one customer segment."""

    name: str
    share: float
    orders_per_month: float
    basket_items: float
    price_level: float
    mean_lifetime_days: float
    browse_sessions_per_order: float
    email_engagement: float


SEGMENTS = (
    SegmentProfile("loyal_high_value", 0.15, 3.0, 4.0, 1.8, 900, 1.0, 0.6),
    SegmentProfile("regular", 0.35, 1.0, 2.5, 1.0, 400, 1.5, 0.35),
    SegmentProfile("bargain_hunter", 0.30, 0.8, 3.0, 0.5, 200, 3.0, 0.2),
    SegmentProfile("one_timer", 0.20, 0.4, 1.5, 0.9, 45, 2.0, 0.05),
)

#: Segments that differ in every behaviour a segmentation sees (basket value, rhythm, e-mail engagement,
#: browsing) and churn rarely within a year: the planted truth that online clustering must recover
#: (bench/segments.py). The default :data:`SEGMENTS` overlap on purpose (churn is the hard part there).
DISTINCT_SEGMENTS = (
    SegmentProfile("vip", 0.15, 4.0, 5.0, 2.5, 3000, 1.0, 0.85),
    SegmentProfile("regular", 0.35, 1.2, 2.5, 1.0, 3000, 1.5, 0.45),
    SegmentProfile("bargain_hunter", 0.30, 1.5, 4.0, 0.3, 3000, 4.0, 0.15),
    SegmentProfile("occasional", 0.20, 0.3, 1.2, 1.2, 3000, 2.0, 0.02),
)


#: A real shop's history (public order histories: a CD retailer, a UK online retailer): most buyers order once or
#: twice and stay silent for months, a few come back for years, and browsing is thin. Order rates are spread
#: wide within a segment (a low gamma shape: heavy-tailed gaps across customers).
SPARSE_SEGMENTS = (
    SegmentProfile("one_off", 0.55, 0.02, 1.3, 1.0, 60, 0.3, 0.01),
    SegmentProfile("occasional", 0.30, 0.08, 1.8, 1.1, 400, 0.5, 0.03),
    SegmentProfile("repeat", 0.12, 0.3, 2.5, 1.2, 700, 0.8, 0.06),
    SegmentProfile("loyal", 0.03, 0.6, 3.0, 1.6, 1500, 1.0, 0.12),
)


@dataclass(frozen=True)
class ArrivalCohort:
    """A burst of first visits (a launch, a campaign, Christmas): a ``share`` of the customers arrives from
    ``at`` (a fraction of the period) on, spread over the following days (exponential, mean ``spread_days``)."""

    at: float
    share: float
    spread_days: float


#: Cohorts of a shop's two years: the launch, a spring campaign, two Christmases, a summer sale.
SPARSE_COHORTS = (
    ArrivalCohort(0.0, 0.35, 21.0), ArrivalCohort(0.17, 0.12, 10.0), ArrivalCohort(0.45, 0.25, 20.0),
    ArrivalCohort(0.62, 0.08, 10.0), ArrivalCohort(0.95, 0.20, 12.0),
)


@dataclass(frozen=True)
class SegmentDrift:
    """A planted behaviour change: from ``day`` on, a ``share`` of segment ``source`` shops like ``target``
    (which customers is a fixed function of their index, so the rest of the simulation is unchanged)."""

    source: str
    target: str
    day: int
    share: float = 1.0

    def applies(self, segment: str, index: int) -> bool:
        """
        >>> drift = SegmentDrift("a", "b", day=10, share=0.5)
        >>> sum(drift.applies("a", i) for i in range(1000)), drift.applies("b", 0)
        (500, False)
        """
        return segment == self.source and (index * 0.6180339887498949) % 1.0 < self.share


#: What a planted churn shock looks like (:class:`ChurnShock`).
SHOCK_KINDS = ("complaints", "silent", "price")


@dataclass(frozen=True)
class ChurnShock:
    """A planted churn shock: on ``day`` (within ``spread_days``), a ``share`` of segment ``segment``'s
    customers who are still around stop ordering. How it shows depends on ``kind``:

    * ``complaints``: a failed delivery; they complain (an unhappy ticket, a low CSAT a day later, some
      unsubscribe from e-mails) and never order again; browsing fades out over a month;
    * ``silent``: they just stop (no complaint); browsing fades out over a month;
    * ``price``: a price rise they will not pay: orders stop, but they keep browsing, filling carts, reading
      e-mails as before (the leading sign is a conversion drop, not silence).

    Which customers is a fixed function of their index; their own random draws come from a generator of their
    own, so the other customers' histories are unchanged."""

    segment: str
    day: int
    share: float = 0.6
    spread_days: float = 2.0
    kind: str = "complaints"

    def __post_init__(self) -> None:
        if self.kind not in SHOCK_KINDS:
            raise ValueError(f"shock kind must be one of {SHOCK_KINDS}, not {self.kind!r}")

    def applies(self, segment: str, index: int) -> bool:
        """
        >>> shock = ChurnShock("vip", day=200, share=0.5)
        >>> sum(shock.applies("vip", i) for i in range(1000)), shock.applies("regular", 0)
        (501, False)
        """
        return segment == self.segment and (index * 0.7548776662466927) % 1.0 < self.share


@dataclass(frozen=True)
class SimulationConfig:
    customers: int = 1000
    days: int = 365
    seed: int = 1
    start: date = date(2024, 1, 1)
    affinity_groups: int = 12
    skus_per_group: int = 25
    arrival_share: float = 0.6  # customers arrive during the first 60% of the period
    refund_rate: float = 0.05
    currency: str = "EUR"
    segments: tuple[SegmentProfile, ...] = SEGMENTS
    rate_shape: float = 4.0  # gamma shape of a customer's order rate around the segment's (higher: tighter)
    drift: SegmentDrift | None = None
    shock: ChurnShock | None = None
    arrival_cohorts: tuple[ArrivalCohort, ...] = ()  # empty: arrivals uniform over ``arrival_share`` of the period
    order_session_share: float = 1.0  # share of orders that come with a browsing session (views, cart) before
    # Every customer is asked for an NPS now and then and a few unsubscribe from e-mails (draws of a generator
    # of the customer's own: the rest of the history is the same with or without): what a leading-indicator
    # alert watches. Off by default, so every other bench's history stays as it was measured.
    customer_voice: bool = False

    @property
    def start_ms(self) -> int:
        """Midnight UTC of ``start``, where the simulated history begins."""
        start = self.start
        return int(datetime(start.year, start.month, start.day, tzinfo=timezone.utc).timestamp() * 1000)


@dataclass
class CustomerTruth:
    customer_id: str
    segment: str
    signup_ms: int
    dropout_ms: int | None
    orders_per_month: float
    preferred_groups: list[int]
    orders: int = 0
    drifted_to: str | None = None  # the segment it shops like after the planted drift
    shocked_ms: int | None = None  # when the planted churn shock made it leave


@dataclass
class Simulation:
    """Generated events (sorted by time) and the ground truth behind them."""

    config: SimulationConfig
    events: list[tuple[str, dict]] = field(default_factory=list)
    customers: list[CustomerTruth] = field(default_factory=list)
    affinity_groups: dict[int, list[str]] = field(default_factory=dict)

    def truth(self) -> dict:
        config = asdict(self.config)
        config["start"] = self.config.start.isoformat()
        return {
            "config": config,
            "segments": [asdict(s) for s in self.config.segments],
            "affinity_groups": {str(g): skus for g, skus in self.affinity_groups.items()},
            "customers": [asdict(c) for c in self.customers],
        }


class _Generator:
    def __init__(self, config: SimulationConfig) -> None:
        self.config = config
        self.rng = np.random.default_rng(config.seed)
        self.start_ms = config.start_ms
        self.end_ms = self.start_ms + config.days * DAY_MS
        self.groups = {
            g: [f"sku-{g:02d}-{i:03d}" for i in range(config.skus_per_group)] for g in range(config.affinity_groups)}
        self.price_minor = {sku: int(self.rng.lognormal(np.log(2500), 0.6)) for skus in self.groups.values()
                            for sku in skus}
        self.event_seq = 0

    def _event_id(self, kind: str) -> str:
        self.event_seq += 1
        return f"{kind}-{self.config.seed}-{self.event_seq}"

    def _ts(self, ms: float) -> int:
        return int(min(ms, self.end_ms - 1))

    def customer(self, index: int) -> tuple[CustomerTruth, list[tuple[str, dict]]]:
        rng, config = self.rng, self.config
        segments = config.segments
        shares = np.array([s.share for s in segments])
        segment = segments[rng.choice(len(segments), p=shares / shares.sum())]
        customer_id = f"cust-{index:06d}"
        signup_ms = self._cohort_arrival() if config.arrival_cohorts else \
            self.start_ms + rng.uniform(0, config.arrival_share) * config.days * DAY_MS
        lifetime_ms = rng.exponential(segment.mean_lifetime_days) * DAY_MS
        dropout_ms = signup_ms + lifetime_ms
        rate_per_ms = rng.gamma(config.rate_shape, segment.orders_per_month / config.rate_shape) / (30 * DAY_MS)
        preferred = [int(g) for g in rng.choice(config.affinity_groups, size=2, replace=False)]
        truth = CustomerTruth(customer_id, segment.name, int(signup_ms),
                              int(dropout_ms) if dropout_ms < self.end_ms else None,
                              round(rate_per_ms * 30 * DAY_MS, 4), preferred)
        events: list[tuple[str, dict]] = [("customers", {
            "event_id": self._event_id("signup"), "customer_id": customer_id, "ts": int(signup_ms),
            "type": "signup", "schema_version": 1,
            "attributes": {"country": str(rng.choice(["DE", "FR", "NL", "AT", "IT"]))},
        })]
        active_until = min(dropout_ms, self.end_ms)
        browse_end = min(dropout_ms + 30 * DAY_MS, self.end_ms)
        # Planted drift: the customer's life splits at the drift time, the second part shops like the target.
        drift_ms, drifted, drifted_rate = self.end_ms, segment, rate_per_ms
        if config.drift is not None and config.drift.applies(segment.name, index):
            drift_ms = min(max(self.start_ms + config.drift.day * DAY_MS, signup_ms), self.end_ms)
            drifted = next(s for s in segments if s.name == config.drift.target)
            drifted_rate = rate_per_ms * drifted.orders_per_month / segment.orders_per_month
            truth.drifted_to = drifted.name
        # First order soon after signup, then a Poisson process until dropout.
        t = signup_ms + rng.exponential(2 * DAY_MS)
        while t < active_until:
            profile, rate = (segment, rate_per_ms) if t < drift_ms else (drifted, drifted_rate)
            events += self._order_session(customer_id, profile, preferred, t)
            truth.orders += 1
            t += rng.exponential(1 / rate)
        # Browsing without buying, e-mails, support and surveys while the customer is around.
        for profile, rate, since, until in ((segment, rate_per_ms, signup_ms, min(browse_end, drift_ms)),
                                            (drifted, drifted_rate, drift_ms, browse_end)):
            if since >= until:
                continue
            browse_rate = rate * profile.browse_sessions_per_order
            t = since + rng.exponential(1 / browse_rate)
            while t < until:
                events += self._browse_session(customer_id, preferred, t)
                t += rng.exponential(1 / browse_rate)
            events += self._emails(customer_id, profile, since, until)
        events += self._support(customer_id, signup_ms, dropout_ms, active_until)
        if config.customer_voice:
            events += self._voice(customer_id, index, signup_ms, dropout_ms, active_until)
        if config.shock is not None and config.shock.applies(segment.name, index):
            events = self._shocked(truth, events, config.shock, index)
        return truth, events

    def _cohort_arrival(self) -> float:
        """A first visit in one of the cohorts, drawn by their shares."""
        rng, cohorts = self.rng, self.config.arrival_cohorts
        shares = np.array([c.share for c in cohorts])
        cohort = cohorts[rng.choice(len(cohorts), p=shares / shares.sum())]
        at_ms = self.start_ms + cohort.at * self.config.days * DAY_MS + rng.exponential(cohort.spread_days) * DAY_MS
        return min(at_ms, self.end_ms - DAY_MS)

    def _shocked(self, truth: CustomerTruth, events: list[tuple[str, dict]], shock: ChurnShock,
                 index: int) -> list[tuple[str, dict]]:
        """The customer's history cut at the shock as its kind says, plus the complaint (draws of its own
        generator)."""
        rng = np.random.default_rng([self.config.seed, index, 0x5C0C])
        shock_ms = self.start_ms + (shock.day + rng.uniform(0, shock.spread_days)) * DAY_MS
        if not truth.signup_ms < shock_ms < min(truth.dropout_ms or self.end_ms, self.end_ms):
            return events
        truth.dropout_ms = truth.shocked_ms = int(shock_ms)
        truth.orders = sum(1 for topic, e in events if topic == "purchases" and e["kind"] == "order"
                           and e["ts"] < shock_ms)
        complaint = []
        if shock.kind == "complaints":
            complaint_ms = shock_ms + rng.uniform(0.1, 1.0) * DAY_MS
            complaint = self._ticket(truth.customer_id, complaint_ms, unhappy=True, rng=rng) + [
                self._interaction(truth.customer_id, complaint_ms + DAY_MS, "survey", survey="csat",
                                  score=int(rng.integers(1, 3)))]
            if rng.random() < 0.3:
                complaint.append(self._interaction(truth.customer_id, complaint_ms + 2 * DAY_MS, "email_unsubscribe"))

        def kept(topic: str, event: dict) -> bool:
            if event["ts"] < shock_ms or topic == "customers":
                return True
            if topic == "purchases":
                return False
            if shock.kind == "price":
                return True  # still browsing, filling carts, answering surveys: only the orders stop
            if event["type"] in ("support_ticket", "ticket_resolved", "survey", "email_unsubscribe", "add_to_cart",
                                 "remove_from_cart"):
                return False  # (no cart without the order it led to, as after a natural dropout)
            return event["ts"] < shock_ms + 30 * DAY_MS  # browsing fades out, as after any dropout

        return [(t, e) for t, e in events if kept(t, e)] + [(t, e) for t, e in complaint if e["ts"] < self.end_ms]

    def _voice(self, customer_id: str, index: int, signup_ms: float, dropout_ms: float,
               active_until: float) -> list[tuple[str, dict]]:
        """NPS surveys of every customer about every 90 days (detractors more likely in the month before a
        dropout) and, rarely, an e-mail unsubscribe; from a generator of the customer's own."""
        rng = np.random.default_rng([self.config.seed, index, 0x4E5])
        events = []
        t = signup_ms + rng.exponential(90 * DAY_MS)
        while t < active_until:
            if rng.random() < 0.5:
                near_dropout = dropout_ms - t < 30 * DAY_MS
                nps = int(np.clip(rng.normal(4.0 if near_dropout else 8.3, 1.8), 0, 10))
                events.append(self._interaction(customer_id, t, "survey", survey="nps", score=nps))
            t += rng.exponential(90 * DAY_MS)
        if rng.random() < 0.05:
            events.append(self._interaction(customer_id, signup_ms + rng.uniform(0, 1) * (active_until - signup_ms),
                                            "email_unsubscribe"))
        return [e for e in events if signup_ms <= e[1]["ts"] < self.end_ms]

    def _basket(self, segment: SegmentProfile, preferred: list[int]) -> list[str]:
        rng = self.rng
        size = 1 + rng.poisson(segment.basket_items - 1)
        group = preferred[0] if rng.random() < 0.7 else preferred[1]
        skus = []
        for _ in range(size):
            source = group if rng.random() < 0.85 else int(rng.integers(self.config.affinity_groups))
            skus.append(str(rng.choice(self.groups[source][:15] if rng.random() < 0.7 else self.groups[source])))
        return sorted(set(skus))

    def _order_session(self, customer_id: str, segment: SegmentProfile, preferred: list[int],
                       t: float) -> list[tuple[str, dict]]:
        rng = self.rng
        session_id = self._event_id("s")
        basket = self._basket(segment, preferred)
        events = []
        if self.config.order_session_share >= 1.0 or rng.random() < self.config.order_session_share:
            events.append(self._interaction(customer_id, t - 20 * 60_000, "page_view", session_id=session_id))
            minute = 60_000
            for i, sku in enumerate(basket):
                events.append(self._interaction(customer_id, t - (15 - i) * minute, "product_view", sku, session_id))
                events.append(self._interaction(customer_id, t - (14 - i) * minute, "add_to_cart", sku, session_id))
        items = [{"sku": sku, "qty": int(1 + rng.poisson(0.3)),
                  "unit_price": f"{self.price_minor[sku] * segment.price_level / 100:.2f}"} for sku in basket]
        order_id = self._event_id("o")
        events.append(("purchases", {
            "event_id": self._event_id("order"), "customer_id": customer_id, "order_id": order_id,
            "ts": self._ts(t), "items": items, "currency": self.config.currency, "kind": "order",
            "channel": str(rng.choice(["web", "app"])), "schema_version": 1}))
        if rng.random() < self.config.refund_rate:
            refunded = items[int(rng.integers(len(items)))]
            events.append(("purchases", {
                "event_id": self._event_id("refund"), "customer_id": customer_id, "order_id": order_id,
                "ts": self._ts(t + rng.uniform(3, 14) * DAY_MS), "items": [{**refunded, "qty": 1}],
                "currency": self.config.currency, "kind": "refund", "schema_version": 1}))
        return [e for e in events if e[1]["ts"] < self.end_ms]

    def _browse_session(self, customer_id: str, preferred: list[int], t: float) -> list[tuple[str, dict]]:
        rng = self.rng
        session_id = self._event_id("s")
        events = [self._interaction(customer_id, t, "page_view", session_id=session_id)]
        if rng.random() < 0.3:
            events.append(self._interaction(customer_id, t + 30_000, "search", session_id=session_id,
                                            text=str(rng.choice(["shoes", "gift", "sale", "lamp", "book"]))))
        for i in range(int(rng.integers(1, 4))):
            sku = str(rng.choice(self.groups[preferred[int(rng.integers(2))]]))
            events.append(self._interaction(customer_id, t + (i + 1) * 60_000, "product_view", sku, session_id))
        return events

    def _emails(self, customer_id: str, segment: SegmentProfile, since_ms: float,
                until_ms: float) -> list[tuple[str, dict]]:
        rng, events = self.rng, []
        t = since_ms + rng.uniform(0, 7) * DAY_MS
        while t < until_ms:
            if rng.random() < segment.email_engagement:
                events.append(self._interaction(customer_id, t, "email_open"))
                if rng.random() < 0.3:
                    events.append(self._interaction(customer_id, t + 60_000, "email_click"))
            t += 7 * DAY_MS
        return events

    def _support(self, customer_id: str, signup_ms: float, dropout_ms: float,
                 active_until: float) -> list[tuple[str, dict]]:
        """Tickets and surveys; the weeks before a dropout see more tickets and lower scores."""
        rng, events = self.rng, []
        t = signup_ms + rng.exponential(120 * DAY_MS)
        while t < active_until:
            near_dropout = dropout_ms - t < 30 * DAY_MS
            if rng.random() < (0.6 if near_dropout else 0.15):
                events += self._ticket(customer_id, t, unhappy=near_dropout)
            if rng.random() < 0.3:
                csat = int(np.clip(rng.normal(2.0 if near_dropout else 4.3, 0.8), 1, 5))
                events.append(self._interaction(customer_id, t + DAY_MS, "survey", survey="csat", score=csat))
            t += rng.exponential(60 * DAY_MS if not near_dropout else 10 * DAY_MS)
        if dropout_ms < self.end_ms and rng.random() < 0.5:  # the complaint before leaving
            events += self._ticket(customer_id, dropout_ms - rng.uniform(2, 20) * DAY_MS, unhappy=True)
            nps = int(np.clip(rng.normal(3, 2), 0, 10))
            events.append(self._interaction(customer_id, dropout_ms - DAY_MS, "survey", survey="nps", score=nps))
        return [e for e in events if signup_ms <= e[1]["ts"] < self.end_ms]

    def _ticket(self, customer_id: str, t: float, unhappy: bool,
                rng: np.random.Generator | None = None) -> list[tuple[str, dict]]:
        rng = self.rng if rng is None else rng
        events = [self._interaction(customer_id, t, "support_ticket",
                                    text="late delivery" if unhappy else "question about sizes")]
        if rng.random() < (0.5 if unhappy else 0.9):
            events.append(self._interaction(customer_id, t + rng.uniform(0.1, 5) * DAY_MS, "ticket_resolved"))
        return events

    def _interaction(self, customer_id: str, t: float, kind: str, sku: str | None = None,
                     session_id: str | None = None, **extra) -> tuple[str, dict]:
        event = {"event_id": self._event_id(kind[:3]), "customer_id": customer_id, "ts": self._ts(t), "type": kind,
                 "schema_version": 1, **extra}
        if sku is not None:
            event["sku"] = sku
        if session_id is not None:
            event["session_id"] = session_id
        return "interactions", event


def sparse_config(customers: int = 1000, days: int = 730, seed: int = 1, start: date = date(2024, 1, 1),
                  ) -> SimulationConfig:
    """The sparse, cohort-shaped profile: a real shop's backfill (bench/backfill.py), not the dense simulator.

    >>> sim = simulate(sparse_config(customers=400, seed=3))
    >>> orders = [c.orders for c in sim.customers if c.orders]
    >>> sum(n <= 2 for n in orders) / len(orders) > 0.6, max(orders) > 10
    (True, True)
    """
    return SimulationConfig(customers=customers, days=days, seed=seed, start=start, segments=SPARSE_SEGMENTS,
                            rate_shape=0.8, arrival_cohorts=SPARSE_COHORTS, order_session_share=0.2)


#: ``crmstream simulate --profile``: the dense default (every customer active, even arrivals) or a real shop's.
PROFILES = {"dense": SimulationConfig, "sparse": sparse_config}


def simulate(config: SimulationConfig) -> Simulation:
    """Generate the whole history for ``config`` (deterministic per seed).

    >>> sim = simulate(SimulationConfig(customers=3, days=60, seed=7))
    >>> sorted({topic for topic, _ in sim.events})
    ['customers', 'interactions', 'purchases']
    >>> all(a[1]["ts"] <= b[1]["ts"] for a, b in zip(sim.events, sim.events[1:]))
    True
    >>> simulate(SimulationConfig(customers=3, days=60, seed=7)).events == sim.events
    True
    """
    generator = _Generator(config)
    simulation = Simulation(config, affinity_groups=generator.groups)
    for index in range(config.customers):
        truth, events = generator.customer(index)
        simulation.customers.append(truth)
        simulation.events.extend(events)
    simulation.events.sort(key=lambda item: (item[1]["ts"], item[1]["event_id"]))
    return simulation


def iter_jsonl_records(simulation: Simulation) -> Iterator[dict]:
    for topic, event in simulation.events:
        yield {"topic": topic, "event": event}
