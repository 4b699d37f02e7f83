"""Leading-indicator signals of the partition batch (agents/signal_stage.py), pure: the batch fold over a
simulated history, recounted with pandas, the same whatever the batch cut.
"""
from __future__ import annotations

import numpy as np
import orjson
import pandas as pd
import pytest

from agents.customer_state import fold_batch
from agents.ingest import SourceMessage, triage
from agents.signal_stage import signal_of
from online_models.purchase_history import DAY_MS
from schemas.events import parse_event
from streams.config import Settings
from streams.redis_store import CustomerSnapshot
from streams.simulator import ChurnShock, SimulationConfig, simulate
from tests.events_factory import interaction, purchase

SETTINGS = Settings.from_env({})


def _event(topic: str, payload: dict):
    return parse_event(topic, orjson.dumps(payload), payload["customer_id"].encode(), now_ms=payload["ts"] + 1)


@pytest.mark.parametrize("topic, payload, expected", [
    ("purchases", purchase(), "orders"),
    ("purchases", purchase(kind="refund"), None),
    ("interactions", interaction(type="product_view", sku="sku-1"), "browsing"),
    ("interactions", interaction(type="page_view"), "browsing"),
    ("interactions", interaction(type="add_to_cart", sku="sku-1"), "carts"),
    ("interactions", interaction(type="remove_from_cart", sku="sku-1"), None),
    ("interactions", interaction(type="support_ticket"), "ticket"),
    ("interactions", interaction(type="email_unsubscribe"), "unsubscribe"),
    ("interactions", interaction(type="survey", survey="csat", score=2), "low_csat"),
    ("interactions", interaction(type="survey", survey="csat", score=3), None),
    ("interactions", interaction(type="survey", survey="nps", score=6), "detractor"),
    ("interactions", interaction(type="survey", survey="nps", score=7), None),
])
def test_which_events_are_leading_indicators(topic, payload, expected):
    assert signal_of(_event(topic, payload), low_csat=2) == expected


def _history(seed: int = 4):
    simulation = simulate(SimulationConfig(customers=120, days=150, seed=seed, customer_voice=True,
                                           shock=ChurnShock("loyal_high_value", 100)))
    messages = []
    for offset, (topic, payload) in enumerate(simulation.events):
        messages.append(SourceMessage(f"crm.{topic}", topic, 0, offset, payload["customer_id"].encode(),
                                      orjson.dumps(payload)))
    return simulation, messages


def _signals(messages: list[SourceMessage], cuts: list[int]) -> list[dict]:
    """Fold the messages in batches cut at ``cuts``, each batch starting from the states the last one wrote."""
    states: dict[str, str] = {}
    signals = []
    for start, end in zip([0] + cuts, cuts + [len(messages)]):
        batch = messages[start:end]
        triaged = triage(batch, SETTINGS, now_ms=2**50)
        snapshots = {m.key.decode(): CustomerSnapshot(states.get(m.key.decode()), set()) for m in batch}
        applied = fold_batch(triaged, snapshots, batch, SETTINGS)
        states.update(applied.write.states)
        signals += applied.signals
    return signals


def test_one_signal_per_customer_kind_and_day_as_pandas_counts_them():
    simulation, messages = _history()
    signals = _signals(messages, cuts=[len(messages) // 3, 2 * len(messages) // 3])
    rows = [(payload["customer_id"], kind, payload["ts"] // DAY_MS) for topic, payload in simulation.events
            if (kind := signal_of(_event(topic, payload), SETTINGS.alert_low_csat))]
    expected = pd.DataFrame(rows, columns=["customer", "signal", "day"]).drop_duplicates()
    got = pd.DataFrame([(s["customer_id"], s["signal"], s["as_of_ms"] // DAY_MS) for s in signals],
                       columns=["customer", "signal", "day"])
    assert not got.duplicated().any()
    assert sorted(got.itertuples(index=False)) == sorted(expected.itertuples(index=False))
    assert set(got.signal) == {"orders", "browsing", "carts", "ticket", "low_csat", "detractor", "unsubscribe"}
    # each record names its source, in offset order per source (what the detector's de-duplication relies on)
    for source in ("crm.purchases:0", "crm.interactions:0"):
        offsets = [s["offset"] for s in signals if s["source"] == source]
        assert offsets == sorted(offsets) and offsets
    assert {s["source"] for s in signals} == {"crm.purchases:0", "crm.interactions:0"}


def test_an_order_says_whether_its_customer_filled_a_cart_earlier_that_day_as_pandas_finds():
    simulation, messages = _history()
    signals = _signals(messages, cuts=[len(messages) // 2])
    events = pd.DataFrame([(p["customer_id"], p.get("type") or p.get("kind"), p["ts"]) for _, p in simulation.events],
                          columns=["customer", "type", "ts"])
    events["day"] = events.ts // DAY_MS
    first_cart = events[events.type == "add_to_cart"].groupby(["customer", "day"]).ts.min()
    orders = [s for s in signals if s["signal"] == "orders"]
    expected = [first_cart.get((s["customer_id"], s["as_of_ms"] // DAY_MS), s["as_of_ms"] + 1) <= s["as_of_ms"]
                for s in orders]
    assert [s["after_cart"] for s in orders] == expected and 0 < sum(expected) < len(expected)
    assert all("after_cart" not in s for s in signals if s["signal"] != "orders")


def test_the_signals_do_not_depend_on_how_batches_were_cut():
    _, messages = _history(seed=5)
    rng = np.random.default_rng(5)
    whole = _signals(messages, cuts=[])
    cut = _signals(messages, cuts=sorted(rng.choice(len(messages), size=40, replace=False).tolist()))
    def in_source_order(signals):
        return sorted(signals, key=lambda s: (s["source"], s["offset"]))

    assert in_source_order(whole) == in_source_order(cut) and whole
