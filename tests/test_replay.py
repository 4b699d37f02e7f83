"""`crmstream replay`: column mapping, refunds from negative quantities, and idempotence on a real pipeline."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path


from online_models.rfm import SEGMENT_NAMES
from streams.replay import ColumnMapping, ReplayReport, read_rows, rows_to_events
from tests.stack import WorkerProcess, prepare_topics, read_state, wait_until

ONLINE_RETAIL_STYLE = [
    # InvoiceNo, StockCode, Quantity, InvoiceDate, UnitPrice, CustomerID
    ("536365", "85123A", "6", "12/1/2010 8:26", "2.55", "17850"),
    ("536365", "71053", "6", "12/1/2010 8:26", "3.39", "17850"),
    ("536366", "22633", "6", "12/1/2010 8:28", "1.85", "17850"),
    ("C536379", "71053", "-2", "12/3/2010 9:41", "3.39", "17850"),
    ("536367", "84879", "32", "12/1/2010 8:34", "1.69", "13047"),
    ("536368", "22960", "6", "12/1/2010 8:34", "4.25", ""),          # no customer: skipped, reported
    ("536369", "21756", "3", "not a date", "5.95", "13047"),         # unreadable: skipped, reported
]


def write_retail_csv(path: Path) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["InvoiceNo", "StockCode", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID"])
        writer.writerows(ONLINE_RETAIL_STYLE)
    return path


RETAIL_MAPPING = ["--customer", "CustomerID", "--time", "InvoiceDate", "--order", "InvoiceNo", "--sku", "StockCode",
                  "--qty", "Quantity", "--price", "UnitPrice", "--time-format", "%m/%d/%Y %H:%M", "--currency", "GBP"]


def test_order_lines_become_orders_and_refunds_with_their_original_time(tmp_path):
    mapping = ColumnMapping(customer="CustomerID", time="InvoiceDate", order="InvoiceNo", sku="StockCode",
                            qty="Quantity", price="UnitPrice", time_format="%m/%d/%Y %H:%M", currency="GBP")
    report = ReplayReport()
    events = rows_to_events(read_rows(write_retail_csv(tmp_path / "retail.csv")), mapping, report)
    summary = [(e["customer_id"], e["order_id"], e["kind"], e["ts"], [(i["sku"], i["qty"], i["unit_price"])
                                                                      for i in e["items"]]) for _, e in events]
    assert summary == [
        ("17850", "536365", "order", 1291191960000, [("85123A", 6, "2.55"), ("71053", 6, "3.39")]),
        ("17850", "536366", "order", 1291192080000, [("22633", 6, "1.85")]),
        ("13047", "536367", "order", 1291192440000, [("84879", 32, "1.69")]),
        ("17850", "536379", "refund", 1291369260000, [("71053", 2, "3.39")]),
    ]
    assert (report.lines, report.events, report.skipped) == (7, 4, {"no_customer": 1, "unreadable_line": 1})
    assert rows_to_events(read_rows(tmp_path / "retail.csv"), mapping) == events  # same file, same event ids


def test_replaying_the_same_file_twice_changes_nothing(settings, broker, redis_server, redis_client, tmp_path,
                                                       output_dir):
    prepare_topics(settings)
    path = write_retail_csv(tmp_path / "retail.csv")
    env = {**os.environ, **settings.to_env()}
    worker = WorkerProcess(settings, output_dir / "logs" / f"worker-{settings.app_id}.log").start()
    stats_key = settings.redis_prefix + "stats:ingest"
    customers = ("17850", "13047")
    try:
        run = subprocess.run([sys.executable, "-m", "streams.cli", "replay", str(path), *RETAIL_MAPPING], env=env,
                             capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr
        assert "7 lines -> 4 purchase events" in run.stdout
        wait_until(lambda: redis_client.hget(stats_key, "accepted:purchases") == "4", 60, "first replay not applied",
                   process=worker.process)
        first = {c: redis_client.hgetall(f"{settings.redis_prefix}c:{{{c}}}") for c in customers}
        purchases = read_state(redis_client, settings, "17850").purchases
        assert (purchases.orders, purchases.refunds) == (2, 1)
        assert purchases.net_minor == 6 * 255 + 6 * 339 + 6 * 185 - 2 * 339

        again = subprocess.run([sys.executable, "-m", "streams.cli", "replay", str(path), *RETAIL_MAPPING], env=env,
                               capture_output=True, text=True, timeout=120)
        assert again.returncode == 0, again.stderr
        wait_until(lambda: redis_client.hget(stats_key, "duplicates") == "4", 60, "second replay not seen",
                   process=worker.process)
    finally:
        worker.stop()
    assert {c: redis_client.hgetall(f"{settings.redis_prefix}c:{{{c}}}") for c in customers} == first
    assert redis_client.hget(stats_key, "accepted:purchases") == "4"

    card = subprocess.run([sys.executable, "-m", "streams.cli", "customer", "17850", "--json"], env=env,
                          capture_output=True, text=True, timeout=60)
    profile = json.loads(card.stdout)
    assert (profile["orders"], profile["net_spend_minor"], profile["refunds"]) == (2, purchases.net_minor, 1)
    assert profile["rfm_segment"] in SEGMENT_NAMES and profile["last_order_ms"] == 1291192080000
    kpis = subprocess.run([sys.executable, "-m", "streams.cli", "kpis", "--by", "day", "--json"], env=env,
                          capture_output=True, text=True, timeout=60)
    first_day = json.loads(kpis.stdout)[0]
    assert (first_day["bucket"], first_day["orders"], first_day["buyers"], first_day["new_buyers"]) == \
        ("2010-12-01", 3, 2, 2)
    assert first_day["revenue_minor"] == 6 * 255 + 6 * 339 + 6 * 185 + 32 * 169
