"""History backfill: CSV or JSONL transaction lines to purchase events with their original event time.

A transaction file has one line per order line (customer, time, order, sku,
quantity, unit price), as shop exports and public datasets do. Lines of one
order become one ``purchases`` event; negative quantities (returns, e.g. the
"C..." invoices of the UCI Online Retail data) become a ``refund`` event of the
same order. Event ids are derived from (customer, order, kind), so sending the
same file twice produces the same events, which the pipeline drops as
duplicates: replaying is idempotent.
"""
from __future__ import annotations

import csv
import hashlib
import io
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Iterable, Iterator

import orjson

from schemas.events import InvalidEvent, validate_payload

__all__ = ["ColumnMapping", "ReplayReport", "read_rows", "rows_to_events"]


@dataclass(frozen=True)
class ColumnMapping:
    """Which column holds what, and how to read the time."""

    customer: str = "customer_id"
    time: str = "ts"
    order: str = "order_id"
    sku: str = "sku"
    qty: str = "qty"
    price: str = "unit_price"
    category: str | None = None
    time_format: str | None = None  # strptime format; None = RFC 3339 / ISO 8601 or epoch milliseconds
    timezone: str = "UTC"           # for times without an offset
    currency: str = "EUR"


@dataclass
class ReplayReport:
    lines: int = 0
    skipped: dict[str, int] | None = None
    events: int = 0

    def skip(self, reason: str) -> None:
        self.skipped = self.skipped or {}
        self.skipped[reason] = self.skipped.get(reason, 0) + 1


def read_rows(path: Path) -> Iterator[dict]:
    """Rows of a CSV (header line) or JSONL file, as dicts of strings/values."""
    if path.suffix.lower() in {".jsonl", ".ndjson", ".json"}:
        with open(path, "rb") as lines:
            for line in lines:
                if line.strip():
                    yield orjson.loads(line)
        return
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as handle:
        sample = handle.read(4096)
        handle.seek(0)
        try:
            dialect = csv.Sniffer().sniff(sample, delimiters=",;\t")
        except csv.Error:
            dialect = csv.excel
        yield from csv.DictReader(handle, dialect=dialect)


def _timestamp_ms(value: object, mapping: ColumnMapping) -> int:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(value)
    text = str(value).strip()
    if text.isdigit():
        return int(text)
    from zoneinfo import ZoneInfo

    parsed = datetime.strptime(text, mapping.time_format) if mapping.time_format else datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=ZoneInfo(mapping.timezone))
    return int(parsed.astimezone(timezone.utc).timestamp() * 1000)


def _event_id(customer_id: str, order_id: str, kind: str) -> str:
    digest = hashlib.blake2b(f"{customer_id}|{order_id}|{kind}".encode(), digest_size=10).hexdigest()
    return f"replay-{kind}-{digest}"


def rows_to_events(rows: Iterable[dict], mapping: ColumnMapping,
                   report: ReplayReport | None = None) -> list[tuple[str, dict]]:
    """Group order lines into contract-valid purchase events, sorted by event time.

    >>> rows = [
    ...     {"customer_id": "c1", "ts": "2024-01-05T10:00:00Z", "order_id": "A1", "sku": "x", "qty": "2", "unit_price": "1.50"},
    ...     {"customer_id": "c1", "ts": "2024-01-05T10:00:00Z", "order_id": "A1", "sku": "y", "qty": "1", "unit_price": "3"},
    ...     {"customer_id": "c1", "ts": "2024-01-09T08:00:00Z", "order_id": "A1", "sku": "y", "qty": "-1", "unit_price": "3"},
    ... ]
    >>> [(topic, e["kind"], [(i["sku"], i["qty"]) for i in e["items"]]) for topic, e in rows_to_events(rows, ColumnMapping())]
    [('purchases', 'order', [('x', 2), ('y', 1)]), ('purchases', 'refund', [('y', 1)])]
    """
    report = report if report is not None else ReplayReport()
    orders: dict[tuple[str, str, str], dict] = {}
    lines_of: dict[tuple[str, str, str], dict[tuple[str, str], int]] = defaultdict(dict)
    for row in rows:
        report.lines += 1
        customer_id = str(row.get(mapping.customer) or "").strip()
        if not customer_id:
            report.skip("no_customer")
            continue
        if customer_id.endswith(".0"):  # pandas-exported integer ids ("17850.0")
            customer_id = customer_id[:-2]
        try:
            ts_ms = _timestamp_ms(row[mapping.time], mapping)
            qty = Decimal(str(row[mapping.qty]).strip())
            price = Decimal(str(row[mapping.price]).strip())
        except (KeyError, ValueError, InvalidOperation):
            report.skip("unreadable_line")
            continue
        if qty == 0 or qty != qty.to_integral_value() or price < 0:
            report.skip("invalid_quantity_or_price")
            continue
        order_id, sku = str(row[mapping.order]).strip(), str(row[mapping.sku]).strip()
        kind = "refund" if qty < 0 else "order"
        key = (customer_id, order_id.lstrip("C") if kind == "refund" else order_id, kind)
        event = orders.get(key)
        if event is None:
            event = orders[key] = {
                "event_id": _event_id(*key), "customer_id": customer_id, "order_id": key[1], "ts": ts_ms,
                "kind": kind, "currency": mapping.currency, "items": [], "schema_version": 1}
        event["ts"] = min(event["ts"], ts_ms)
        item_key = (sku, str(price))
        lines = lines_of[key]
        if item_key in lines:
            event["items"][lines[item_key]]["qty"] += abs(int(qty))
        else:
            lines[item_key] = len(event["items"])
            item = {"sku": sku, "qty": abs(int(qty)), "unit_price": str(price)}
            if mapping.category and row.get(mapping.category):
                item["category"] = str(row[mapping.category])[:64]
            event["items"].append(item)
    events = []
    for event in orders.values():
        try:
            validate_payload("purchases", event)
        except InvalidEvent as exc:
            report.skip(f"invalid_{exc.reason}")
            continue
        events.append(("purchases", event))
    events.sort(key=lambda pair: (pair[1]["ts"], pair[1]["event_id"]))
    report.events = len(events)
    return events


def progress_bar(sent: int, total: int, width: int = 40, stream: io.TextIOBase | None = None) -> None:
    """A one-line progress bar on stderr."""
    import sys

    stream = stream or sys.stderr
    done = int(width * sent / max(total, 1))
    stream.write(f"\r[{'#' * done}{'.' * (width - done)}] {sent:,}/{total:,} events")
    if sent >= total:
        stream.write("\n")
    stream.flush()
