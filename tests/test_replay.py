"""`crmstream replay`: column mapping, line money, refunds from negative quantities, loud skipping, old history,
and idempotence on a real pipeline."""
from __future__ import annotations

import csv
import json
import os
import random
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest
import redis

from online_models.rfm import SEGMENT_NAMES
from schemas.timestamps import MIN_TS_MS
from streams.keyspace import summed
from streams.config import Settings
from streams.replay import NO_SKU, ColumnMapping, MissingColumns, ReplayReport, numbered_rows, rows_to_events
from tests import events_factory
from tests.conftest import OUTPUT_DIR
from tests.stack import WorkerProcess, event_messages, prepare_topics, produce, read_state, suite_settings, wait_until

ONLINE_RETAIL_STYLE = [
    # InvoiceNo, StockCode, Quantity, InvoiceDate, UnitPrice, CustomerID
    ("536365", "85123A", "6", "12/1/2010 8:26", "2.55", "17850"),
    ("536365", "71053", "6", "12/1/2010 8:26", "3.39", "17850"),
    ("536365", "PADS", "12", "12/1/2010 8:26", "0.001", "17850"),     # sub-cent: 12 x 0.001 = 0.012 -> 0.01
    ("536366", "22633", "6", "12/1/2010 8:28", "1.85", "17850"),
    ("C536379", "71053", "-2", "12/3/2010 9:41", "3.39", "17850"),
    ("536367", "84879", "32", "12/1/2010 8:34", "1.69", "13047"),
    ("536368", "22960", "6", "12/1/2010 8:34", "4.25", ""),          # no customer: skipped, reported
    ("536369", "21756", "3", "not a date", "5.95", "13047"),         # unreadable: skipped, reported
]
RETAIL_NET_MINOR = 6 * 255 + 6 * 339 + 1 + 6 * 185 - 2 * 339


def write_retail_csv(path: Path) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["InvoiceNo", "StockCode", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID"])
        writer.writerows(ONLINE_RETAIL_STYLE)
    return path


RETAIL_MAPPING = ["--customer", "CustomerID", "--time", "InvoiceDate", "--order", "InvoiceNo", "--sku", "StockCode",
                  "--qty", "Quantity", "--price", "UnitPrice", "--time-format", "%m/%d/%Y %H:%M", "--currency", "GBP"]


def write_cd_retailer_csv(path: Path, customers: int = 120, seed: int = 7) -> Path:
    """Order lines of the public CD retailer's shape (CDNOW, 1997-98): customer, day as YYYYMMDD, quantity and the
    line's dollar amount; no order id and no product. Amounts are whole cents, so unit prices (amount / qty) are
    often sub-cent (29.33 / 2 = 14.665). Buyers arrive in the first 12 weeks and mostly stay silent; some buy
    twice on one day (two lines of one order)."""
    rng = random.Random(seed)
    rows = []
    for number in range(1, customers + 1):
        day = datetime(1997, 1, 1, tzinfo=timezone.utc).toordinal() + rng.randrange(84)
        for _ in range(1 + (rng.random() < 0.4) + (rng.random() < 0.2) * rng.randrange(1, 6)):
            qty = rng.choice((1, 1, 2, 2, 3, 5))
            cents = qty * rng.randrange(899, 1599) + rng.choice((0, 1, 33))  # not a multiple of qty: sub-cent units
            rows.append((f"{number:05d}", datetime.fromordinal(day).strftime("%Y%m%d"), qty, f"{cents / 100:.2f}"))
            day += rng.choice((0, 3, 30, 200))
    rows.append(("00001", "19970101", 2, "29.33"))  # the example line
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["customer", "date", "cds", "dollars"])
        writer.writerows(rows)
    return path


CD_MAPPING = ["--customer", "customer", "--time", "date", "--time-format", "%Y%m%d", "--qty", "cds",
              "--amount", "dollars", "--order", "", "--sku", "", "--currency", "USD"]


def run_cli(settings: Settings, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "streams.cli", *argv], env={**os.environ, **settings.to_env()},
                          capture_output=True, text=True, timeout=120)


def test_order_lines_become_orders_and_refunds_with_their_original_time(tmp_path):
    mapping = ColumnMapping(customer="CustomerID", time="InvoiceDate", order="InvoiceNo", sku="StockCode",
                            qty="Quantity", price="UnitPrice", time_format="%m/%d/%Y %H:%M", currency="GBP")
    report = ReplayReport()
    events = rows_to_events(numbered_rows(write_retail_csv(tmp_path / "retail.csv")), mapping, report)
    summary = [(e["customer_id"], e["order_id"], e["kind"], e["ts"],
                [(i["sku"], i["qty"], i["unit_price"], i["amount"]) for i in e["items"]]) for _, e in events]
    assert summary == [
        ("17850", "536365", "order", 1291191960000,
         [("85123A", 6, "2.55", "15.30"), ("71053", 6, "3.39", "20.34"), ("PADS", 12, "0.001", "0.01")]),
        ("17850", "536366", "order", 1291192080000, [("22633", 6, "1.85", "11.10")]),
        ("13047", "536367", "order", 1291192440000, [("84879", 32, "1.69", "54.08")]),
        ("17850", "536379", "refund", 1291369260000, [("71053", 2, "3.39", "6.78")]),
    ]
    assert (report.lines, report.events, report.skipped_counts()) == (8, 4, {"no_customer": 1, "unreadable_time": 1})
    assert (report.skipped["no_customer"].first_line, report.skipped["unreadable_time"].first_line) == (8, 9)
    assert report.ordered_minor - report.refunded_minor == RETAIL_NET_MINOR + 32 * 169
    assert rows_to_events(numbered_rows(tmp_path / "retail.csv"), mapping) == events  # same file, same event ids


def test_line_money_is_rounded_once_per_line_half_to_even():
    rows = [{"c": "a", "t": "2024-01-01T00:00:00Z", "o": "1", "s": "x", "q": q, "p": p}
            for q, p in (("1", "14.665"), ("1", "14.665"), ("1", "0.125"), ("3", "0.335"))]
    mapping = ColumnMapping(customer="c", time="t", order="o", sku="s", qty="q", price="p")
    report = ReplayReport()
    [(_, event)] = rows_to_events(enumerate(rows, start=2), mapping, report)
    # Per line, half to even: 14.66 + 14.66 (the two equal lines are one item, each rounded on its own),
    # 0.12, 1.005 -> 1.00. Rounding the merged item (29.33) or each unit would differ.
    assert [(i["qty"], i["amount"]) for i in event["items"]] == [(2, "29.32"), (1, "0.12"), (3, "1.00")]
    assert report.ordered_minor == 2932 + 12 + 100


@pytest.mark.parametrize("value, time_format, reason_or_ms", [
    ("19970101", "%Y%m%d", 852_076_800_000),
    ("1970-01-02T00:00:00Z", None, MIN_TS_MS),
    ("852076800000", None, 852_076_800_000),
    ("852076800", "epoch_s", 852_076_800_000),
    ("852076800000", "epoch_ms", 852_076_800_000),
    ("1709290800", None, "epoch_seconds"),           # seconds in a column read as milliseconds
    ("0", None, "before_1970_01_02"),
    ("1969-12-31T00:00:00Z", None, "before_1970_01_02"),
    ("yesterday", None, "unreadable_time"),
])
def test_times_from_1970_01_02_on_are_history_and_seconds_for_milliseconds_are_caught(value, time_format,
                                                                                       reason_or_ms):
    row = {"customer_id": "c1", "ts": value, "order_id": "o1", "sku": "x", "qty": "1", "unit_price": "1"}
    report = ReplayReport()
    events = rows_to_events([(2, row)], ColumnMapping(time_format=time_format), report)
    if isinstance(reason_or_ms, int):
        assert [e["ts"] for _, e in events] == [reason_or_ms] and not report.skipped
    else:
        assert events == [] and report.skipped_counts() == {reason_or_ms: 1}


def test_a_file_without_a_mapped_column_is_refused_before_reading_further(tmp_path):
    with pytest.raises(MissingColumns, match="no column 'Price' \\(--price\\)"):
        rows_to_events(numbered_rows(write_retail_csv(tmp_path / "retail.csv")), ColumnMapping(
            customer="CustomerID", time="InvoiceDate", order="InvoiceNo", sku="StockCode", qty="Quantity",
            price="Price"))


def test_skipped_lines_are_listed_and_stop_the_replay_before_anything_is_sent(tmp_path):
    settings = Settings.from_env({}, kafka_bootstrap="127.0.0.1:1")  # nothing may be sent: no broker at all
    path = write_retail_csv(tmp_path / "retail.csv")
    refused = run_cli(settings, "replay", str(path), *RETAIL_MAPPING)
    assert refused.returncode == 1
    assert "no_customer: 1 line, first at line 8: column 'CustomerID' is empty" in refused.stdout
    assert "unreadable_time: 1 line, first at line 9: time 'not a date' does not match" in refused.stdout
    assert "2 lines could not be read (--max-skipped 0); nothing was sent" in refused.stderr
    allowed = run_cli(settings, "replay", str(path), *RETAIL_MAPPING, "--max-skipped", "2", "--dry-run")
    assert allowed.returncode == 0 and "dry run: nothing sent" in allowed.stdout, allowed.stderr
    missing = run_cli(settings, "replay", str(path), *RETAIL_MAPPING[:-4], "--price", "Price")
    assert missing.returncode == 2 and "no column 'Price' (--price)" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1


@dataclass
class ReplayStack:
    settings: Settings
    client: redis.Redis
    worker: WorkerProcess

    def wait(self, condition, what: str) -> None:
        wait_until(condition, 90, what, interval_s=0.2, process=self.worker.process)

    def state(self, customer_id: str):
        return read_state(self.client, self.settings, customer_id)


@pytest.fixture(scope="module")
def replay_stack(broker, redis_server):
    settings = suite_settings(broker.bootstrap, redis_server.url)
    prepare_topics(settings)
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    worker = WorkerProcess(settings, OUTPUT_DIR / "logs" / f"worker-{settings.app_id}.log").start()
    try:
        yield ReplayStack(settings, client, worker)
    finally:
        worker.stop()
        client.close()


def test_replaying_the_same_file_twice_changes_nothing(replay_stack, tmp_path):
    settings, client = replay_stack.settings, replay_stack.client
    path = write_retail_csv(tmp_path / "retail.csv")
    customers = ("17850", "13047")
    keys = settings.key_space()
    run = run_cli(settings, "replay", str(path), *RETAIL_MAPPING, "--max-skipped", "2")
    assert run.returncode == 0, run.stderr
    assert "8 lines -> 4 purchase events (3 orders, 1 refunds)" in run.stdout
    def applied() -> bool:
        buyer, other = replay_stack.state("17850"), replay_stack.state("13047")
        return buyer is not None and other is not None and (buyer.purchases.orders, buyer.purchases.refunds) == (2, 1)
    replay_stack.wait(applied, "first replay not applied")
    first = {c: client.hgetall(keys.customer(c)) for c in customers}
    purchases = read_state(client, settings, "17850").purchases
    assert (purchases.orders, purchases.refunds, purchases.net_minor) == (2, 1, RETAIL_NET_MINOR)

    again = run_cli(settings, "replay", str(path), *RETAIL_MAPPING, "--max-skipped", "2")
    assert again.returncode == 0, again.stderr
    replay_stack.wait(lambda: summed(client, keys, "stats:ingest").get("duplicates") == 4, "second replay not seen")
    assert {c: client.hgetall(keys.customer(c)) for c in customers} == first
    assert summed(client, keys, "stats:ingest")["duplicates"] == 4

    profile = json.loads(run_cli(settings, "customer", "17850", "--json").stdout)
    assert (profile["orders"], profile["net_spend_minor"], profile["refunds"]) == (2, RETAIL_NET_MINOR, 1)
    assert profile["rfm_segment"] in SEGMENT_NAMES and profile["last_order_ms"] == 1291192080000
    kpis = run_cli(settings, "kpis", "--by", "day", "--json")
    first_day = json.loads(kpis.stdout)[0]
    assert (first_day["bucket"], first_day["orders"], first_day["buyers"], first_day["new_buyers"]) == \
        ("2010-12-01", 3, 2, 2)
    assert first_day["revenue_minor"] == 6 * 255 + 6 * 339 + 1 + 6 * 185 + 32 * 169


def test_a_cd_retailer_history_of_1997_keeps_every_line_and_its_money_to_the_cent(replay_stack, tmp_path):
    settings = replay_stack.settings
    path = write_cd_retailer_csv(tmp_path / "cdnow.csv")
    lines = pd.read_csv(path, dtype={"customer": str, "date": str, "dollars": str})
    lines["cents"] = [int(Decimal(d) * 100) for d in lines.dollars]
    expected = lines.groupby("customer").agg(net=("cents", "sum"), orders=("date", "nunique"), first=("date", "min"))
    assert (lines.dollars.map(Decimal) * 100 % lines.cds != 0).any()  # sub-cent unit prices are in the file

    run = run_cli(settings, "replay", str(path), *CD_MAPPING)
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"{len(lines):,} lines -> {expected.orders.sum():,} purchase events" in run.stdout
    assert "skipped" not in run.stdout
    replay_stack.wait(lambda: all((state := replay_stack.state(c)) is not None and state.purchases.orders == n
                                  for c, n in expected.orders.items()), "the CD retailer's history not applied")
    served = {customer: replay_stack.state(customer).purchases for customer in expected.index}
    assert {c: p.net_minor for c, p in served.items()} == expected.net.to_dict()
    assert {c: p.orders for c, p in served.items()} == expected.orders.to_dict()
    assert sum(p.net_minor for p in served.values()) == lines.cents.sum()
    assert {c: p.first_order_ms for c, p in served.items()} == {
        c: int(datetime.strptime(day, "%Y%m%d").replace(tzinfo=timezone.utc).timestamp() * 1000)
        for c, day in expected["first"].items()}
    assert json.loads(run_cli(settings, "recommend", "00001", "--json").stdout)["recent_items"][0]["sku"] == NO_SKU


def test_the_card_of_a_prior_scored_buyer_and_of_a_visitor_who_never_bought(replay_stack):
    """No churn model exists in this stack (too few examples): a buyer is scored by the cold-start prior."""
    settings = replay_stack.settings
    order = events_factory.purchase("buyer-1", ts=1291192080000)
    visit = events_factory.interaction("visitor-1", ts=1291192080000, type="product_view", sku="85123A")
    produce(settings.kafka_bootstrap, event_messages(settings, [("purchases", order), ("interactions", visit)]))
    replay_stack.wait(lambda: replay_stack.state("buyer-1") is not None and replay_stack.state("visitor-1") is not None,
                      "order and visit not applied")

    buyer = run_cli(settings, "customer", "buyer-1")
    assert buyer.returncode == 0, buyer.stderr
    churn_line = next(line for line in buyer.stdout.splitlines() if line.startswith("churn risk"))
    assert "because silence_vs_prior_reorder_rate" in churn_line, buyer.stdout
    churn = json.loads(run_cli(settings, "customer", "buyer-1", "--json").stdout)["churn"]
    assert churn["is_prior"] and isinstance(churn["top_features"][0]["contribution"], float)

    visitor = run_cli(settings, "customer", "visitor-1")
    assert visitor.returncode == 0, visitor.stderr
    lines = {line[:20].strip(): line[20:].strip() for line in visitor.stdout.splitlines()}
    assert lines["churn risk"] == "not scored" and lines["orders"].startswith("0 ")
    assert lines["recent items"] == "85123A (viewed)" and lines["customer"].startswith("visitor-1")
