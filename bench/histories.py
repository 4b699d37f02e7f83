"""Order histories the churn benchmarks replay: the simulator's dense and sparse profiles, and the public CDNOW
order history (a CD retailer, 1997-98) that the ``lifetimes`` package ships.

A history is its events in event-time order (the pipeline's payloads), where it starts, and, for a simulated one,
each customer's hidden truth (P(no order within the horizon) known its rate and dropout), which shows how much of
a calibration gap is sampling noise.
"""
from __future__ import annotations

import importlib.util
import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from online_models.purchase_history import DAY_MS
from streams.simulator import SimulationConfig, simulate, sparse_config

#: name -> (the file in lifetimes/datasets, whether its first line is a header)
CDNOW_FILES = {"cdnow": ("CDNOW_sample.txt", False), "cdnow-master": ("CDNOW_master.txt", True)}
CDNOW_START_MS = int(datetime(1997, 1, 1, tzinfo=timezone.utc).timestamp() * 1000)
CDNOW_DAYS = 546  # 1997-01-01 .. 1998-06-30
#: The usual calibration period on CDNOW: 39 weeks (Fader, Hardie & Lee), i.e. a cutoff on 1997-10-01.
CDNOW_CUTOFF_DAY = 273


@dataclass
class History:
    name: str
    events: list[tuple[str, dict]]
    start_ms: int
    days: int
    truth: Callable[[str, int, int], float] | None = None  # (customer, as_of_ms, horizon_ms) -> P(no order)

    def orders(self) -> dict[str, list[int]]:
        """Each customer's order times."""
        found = defaultdict(list)
        for topic, event in self.events:
            if topic == "purchases" and event["kind"] == "order":
                found[event["customer_id"]].append(event["ts"])
        return found


def simulated(profile: str, customers: int, days: int, seed: int) -> History:
    """A simulated history; ``voice``: the dense profile with every customer surveyed (NPS) now and then and
    rare unsubscribes (:attr:`~streams.simulator.SimulationConfig.customer_voice`), not only those leaving."""
    make = sparse_config if profile == "sparse" else SimulationConfig
    config = make(customers=customers, days=days, seed=seed, **({"customer_voice": True} if profile == "voice" else {}))
    simulation = simulate(config)
    lifetimes = {segment.name: segment.mean_lifetime_days * DAY_MS for segment in config.segments}
    hidden = {c.customer_id: (c.orders_per_month / (30 * DAY_MS), 1 / lifetimes[c.segment], c.dropout_ms)
              for c in simulation.customers}

    def truth(customer_id: str, as_of_ms: int, horizon_ms: int) -> float:
        """Poisson orders at the customer's own rate racing an exponential dropout (memoryless); 1 once dropped."""
        rate, dropout_rate, dropout_ms = hidden[customer_id]
        if dropout_ms is not None and dropout_ms <= as_of_ms:
            return 1.0
        total = rate + dropout_rate
        return 1.0 - rate / total * (1.0 - math.exp(-total * horizon_ms))

    return History(profile, simulation.events, config.start_ms, days, truth)


def cdnow_path(name: str = "cdnow") -> Path:
    """The file inside the installed ``lifetimes`` package, found without importing it (its import is slow)."""
    spec = importlib.util.find_spec("lifetimes")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("the CDNOW history comes with the lifetimes package: .venv/bin/pip install lifetimes")
    return Path(spec.submodule_search_locations[0]) / "datasets" / CDNOW_FILES[name][0]


def cdnow(name: str = "cdnow") -> History:
    """CDNOW as order events: one line per order (customer, day, CDs, dollars), at noon UTC of its day (orders of
    one customer on one day a minute apart, in file order). The sample has 2,357 buyers, the master 23,570; every
    buyer's first order falls in the first 12 weeks of 1997."""
    path, header = cdnow_path(name), CDNOW_FILES[name][1]
    events, same_day = [], defaultdict(int)
    for line_no, line in enumerate(path.read_text().splitlines()[1 if header else 0:], start=1):
        fields = line.split()
        customer, day, cds, dollars = fields[0], fields[-3], int(fields[-2]), fields[-1]
        moment = datetime.strptime(day, "%Y%m%d").replace(hour=12, tzinfo=timezone.utc)
        ts = int(moment.timestamp() * 1000) + 60_000 * same_day[customer, day]
        same_day[customer, day] += 1
        events.append(("purchases", {
            "event_id": f"{name}-{line_no}", "customer_id": f"cdnow-{customer}", "order_id": f"{name}-o{line_no}",
            "ts": ts, "kind": "order", "currency": "USD", "schema_version": 1,
            "items": [{"sku": f"cds-{min(cds, 10)}", "qty": 1, "unit_price": dollars}]}))  # the order's exact dollars
    events.sort(key=lambda topic_event: topic_event[1]["ts"])
    return History(name, events, CDNOW_START_MS, CDNOW_DAYS)


HISTORIES = ("dense", "voice", "sparse", "cdnow", "cdnow-master")


def load(name: str, customers: int, days: int, seed: int) -> History:
    return cdnow(name) if name.startswith("cdnow") else simulated(name, customers, days, seed)
