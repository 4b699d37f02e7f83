"""History backfill: CSV or JSONL transaction lines to purchase events with their original event time.

A transaction file has one line per order line (customer, time, order, sku,
quantity, and a unit price or a line amount), as shop exports and public
datasets do. Lines of one order become one ``purchases`` event; negative
quantities (returns, e.g. the "C..." invoices of the UCI Online Retail data)
become a ``refund`` event of the same order. Event ids are derived from
(customer, order, kind), so sending the same file twice produces the same
events, which the pipeline drops as duplicates: replaying is idempotent.

Nothing is lost quietly. The money of a line is its line total (the amount
column, or quantity × unit price exactly), rounded once to the currency's
minor unit, half to even, and every item of an event carries it as
``amount``, so the pipeline's net spend is the sum of the file's lines to the
cent. A line that cannot be read is counted under a reason with the first
line number and what was wrong; the command refuses to send anything when
more lines were skipped than ``--max-skipped`` allows (a partial backfill
that is fixed and sent again would keep its partial orders: their ids were
seen).
"""
from __future__ import annotations

import csv
import hashlib
import io
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path

import orjson

from schemas.events import ID_PATTERN, MAX_QTY, InvalidEvent, validate_payload
from schemas.money import decimal_amount, decimal_text, line_minor_units, to_minor_units
from schemas.timestamps import MIN_TS_MS, contract_ts, seconds_for_millis

__all__ = ["ColumnMapping", "ReplayReport", "MissingColumns", "numbered_rows", "read_rows", "rows_to_events",
           "NO_SKU", "EPOCH_FORMATS"]

#: The sku of lines in a file without a product column (e.g. the CDNOW sample: customer, date, qty, amount).
NO_SKU = "no-sku"
#: ``--time-format`` values for integer time columns: epoch seconds or milliseconds.
EPOCH_FORMATS = ("epoch_s", "epoch_ms")
_ID_RE = re.compile(ID_PATTERN)
_NOT_ID_CHARS = re.compile(r"[^A-Za-z0-9_.:@/-]")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_ONE_MS = timedelta(milliseconds=1)


@dataclass(frozen=True)
class ColumnMapping:
    """Which column holds what, and how to read the time and the money.

    ``order`` None: one order per customer and time (files of purchase occasions). ``sku`` None: every line
    is the product :data:`NO_SKU`. ``amount`` (the line total) wins over ``price`` (the unit price).
    """

    customer: str = "customer_id"
    time: str = "ts"
    order: str | None = "order_id"
    sku: str | None = "sku"
    qty: str = "qty"
    price: str | None = "unit_price"
    amount: str | None = None
    category: str | None = None
    time_format: str | None = None  # strptime format, epoch_s, epoch_ms; None = ISO 8601 or epoch milliseconds
    timezone: str = "UTC"           # for times without an offset
    currency: str = "EUR"

    def columns(self) -> dict[str, str]:
        """The columns a file must have, by the option that names them."""
        named = {"--customer": self.customer, "--time": self.time, "--order": self.order, "--sku": self.sku,
                 "--qty": self.qty, "--category": self.category}
        named["--amount" if self.amount else "--price"] = self.amount or self.price
        return {option: column for option, column in named.items() if column}


class MissingColumns(ValueError):
    """The file lacks a mapped column: nothing can be read, so nothing is sent."""


class SkippedLine(ValueError):
    """A line that cannot become part of an order; ``reason`` is its category in the report."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


@dataclass
class SkippedLines:
    count: int
    first_line: int
    detail: str


@dataclass
class ReplayReport:
    """What a file became: lines read, events made, money, and every skipped line by reason."""

    lines: int = 0
    events: int = 0
    orders: int = 0
    refunds: int = 0
    ordered_minor: int = 0
    refunded_minor: int = 0
    skipped: dict[str, SkippedLines] = field(default_factory=dict)
    renamed_skus: dict[str, str] = field(default_factory=dict)

    def skip(self, reason: str, line: int, detail: str, count: int = 1) -> None:
        seen = self.skipped.get(reason)
        if seen is None:
            self.skipped[reason] = SkippedLines(count, line, detail)
        else:
            seen.count += count

    @property
    def skipped_lines(self) -> int:
        return sum(seen.count for seen in self.skipped.values())

    def skipped_counts(self) -> dict[str, int]:
        return {reason: seen.count for reason, seen in self.skipped.items()}

    def summary(self, currency: str) -> str:
        """What a user reads after a replay: counts, money, and one example of every reason a line was skipped.

        >>> report = ReplayReport(lines=3, events=1, orders=1, ordered_minor=2933)
        >>> report.skip("unreadable_time", 4, "'yesterday' is not a date")
        >>> print(report.summary("EUR"))
        3 lines -> 1 purchase events (1 orders, 0 refunds); ordered 29.33 EUR, refunded 0.00, net 29.33
        skipped 1 line:
          unreadable_time: 1 line, first at line 4: 'yesterday' is not a date
        """
        def money(minor: int) -> str:  # the contract's exact decimal, with thousands separators
            return f"{Decimal(decimal_text(minor, currency)):,}"

        lines = [f"{self.lines:,} lines -> {self.events:,} purchase events ({self.orders:,} orders, "
                 f"{self.refunds:,} refunds); ordered {money(self.ordered_minor)} {currency}, refunded "
                 f"{money(self.refunded_minor)}, net {money(self.ordered_minor - self.refunded_minor)}"]
        if self.renamed_skus:
            examples = ", ".join(f"{old!r} -> {new!r}" for old, new in list(self.renamed_skus.items())[:3])
            lines.append(f"{len(self.renamed_skus):,} skus outside the id alphabet renamed: {examples}")
        if self.skipped:
            lines.append(f"skipped {_plural(self.skipped_lines, 'line')}:")
            lines += [f"  {reason}: {_plural(seen.count, 'line')}, first at line {seen.first_line}: {seen.detail}"
                      for reason, seen in sorted(self.skipped.items(), key=lambda pair: -pair[1].count)]
        return "\n".join(lines)


def _plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}" + ("" if count == 1 else "s")


def numbered_rows(path: Path) -> Iterator[tuple[int, dict | None]]:
    """(line number, row) of a CSV (header line) or JSONL file; a JSONL line that is not an object is None."""
    if path.suffix.lower() in {".jsonl", ".ndjson", ".json"}:
        with open(path, "rb") as lines:
            for number, line in enumerate(lines, start=1):
                if line.strip():
                    try:
                        row = orjson.loads(line)
                    except orjson.JSONDecodeError:
                        row = None
                    yield number, row if isinstance(row, dict) else None
        return
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as handle:
        sample = handle.read(4096)
        handle.seek(0)
        try:
            dialect = csv.Sniffer().sniff(sample, delimiters=",;\t")
        except csv.Error:
            dialect = csv.excel
        reader = csv.DictReader(handle, dialect=dialect)
        for row in reader:
            yield reader.line_num, row


def read_rows(path: Path) -> Iterator[dict]:
    """Rows of a CSV or JSONL file, as dicts of strings/values (unreadable JSONL lines left out)."""
    return (row for _, row in numbered_rows(path) if row is not None)


def _cell(row: dict, column: str, what: str) -> str:
    value = row.get(column)
    if value is None or not str(value).strip():
        raise SkippedLine(f"no_{what}", f"column {column!r} is empty")
    return str(value).strip()


def _timestamp_ms(value: object, mapping: ColumnMapping) -> int:
    from zoneinfo import ZoneInfo

    text = str(value).strip()
    if mapping.time_format in EPOCH_FORMATS or (mapping.time_format is None and _is_integer(value, text)):
        number = _integer_time(value, text)
        ts_ms = number * 1000 if mapping.time_format == "epoch_s" else number
        if mapping.time_format is None and seconds_for_millis(ts_ms):
            raise SkippedLine("epoch_seconds", f"time {text!r} looks like epoch seconds, not milliseconds "
                                               "(say which with --time-format epoch_s or epoch_ms)")
    else:
        try:
            parsed = datetime.strptime(text, mapping.time_format) if mapping.time_format else \
                datetime.fromisoformat(text)
        except ValueError:
            raise SkippedLine("unreadable_time", f"time {text[:40]!r} does not match "
                                                 f"{mapping.time_format or 'ISO 8601 / epoch milliseconds'}") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=ZoneInfo(mapping.timezone))
        ts_ms = (parsed - _EPOCH) // _ONE_MS  # exact: no float rounding of the milliseconds
    if ts_ms < MIN_TS_MS:
        raise SkippedLine("before_1970_01_02", f"time {text[:40]!r} is before 1970-01-02 (a zero or missing time?)")
    return ts_ms


def _is_integer(value: object, text: str) -> bool:
    """An integer time: a JSON integer (or a float with nothing after the point) or a string of digits."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or isinstance(value, float) and value.is_integer() or text.isdigit()


def _integer_time(value: object, text: str) -> int:
    try:
        return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else int(text)
    except (ValueError, OverflowError):
        raise SkippedLine("unreadable_time", f"time {text[:40]!r} is not an integer epoch time") from None


def _quantity(row: dict, mapping: ColumnMapping) -> int:
    text = _cell(row, mapping.qty, "quantity")
    try:
        qty = Decimal(text)
    except InvalidOperation:
        raise SkippedLine("unreadable_quantity", f"quantity {text[:40]!r} is not a number") from None
    if not qty.is_finite() or qty != qty.to_integral_value():
        raise SkippedLine("fractional_quantity", f"quantity {text[:40]!r} is not a whole number of units")
    if qty == 0:
        raise SkippedLine("zero_quantity", "quantity 0: the line buys nothing")
    if abs(qty) > MAX_QTY:
        raise SkippedLine("quantity_too_large", f"quantity {text[:40]} is beyond {MAX_QTY:,}")
    return int(qty)


def _line_minor(row: dict, qty: int, mapping: ColumnMapping) -> tuple[int, str | None]:
    """The line's money in minor units (rounded once, half to even), and its unit price as written."""
    column = mapping.amount or mapping.price
    text = _cell(row, column, "money")
    try:
        value = decimal_amount(text)
        if value < 0 and qty > 0:
            raise SkippedLine("negative_money", f"{column} {text[:40]} is negative on a line that is not a return")
        minor = to_minor_units(abs(value), mapping.currency) if mapping.amount else \
            line_minor_units(abs(qty), abs(value), mapping.currency)
    except SkippedLine:
        raise
    except ValueError as exc:
        raise SkippedLine("unreadable_money", f"{column} {text[:40]!r}: {exc}") from None
    return minor, None if mapping.amount else text.lstrip("-")


def _identifier(row: dict, column: str, what: str) -> str:
    value = _cell(row, column, what)
    if value.endswith(".0") and value[:-2].isdigit():  # pandas-exported integer ids ("17850.0")
        value = value[:-2]
    if not _ID_RE.match(value):
        raise SkippedLine(f"invalid_{what}", f"{what} {value[:40]!r} is not 1-128 characters of A-Z a-z 0-9 _.:@/-")
    return value


def _sku(row: dict, mapping: ColumnMapping, report: ReplayReport) -> str:
    """The line's product; an sku with characters outside the id alphabet ("BANK CHARGES") is renamed, not lost."""
    if mapping.sku is None:
        return NO_SKU
    raw = _cell(row, mapping.sku, "sku")
    if _ID_RE.match(raw):
        return raw
    renamed = _NOT_ID_CHARS.sub("_", raw)[:128]
    report.renamed_skus.setdefault(raw, renamed)
    return renamed


def _event_id(customer_id: str, order_id: str, kind: str) -> str:
    digest = hashlib.blake2b(f"{customer_id}|{order_id}|{kind}".encode(), digest_size=10).hexdigest()
    return f"replay-{kind}-{digest}"


@dataclass
class _Order:
    event: dict
    first_line: int
    lines: int = 0
    item_at: dict[tuple[str, str | None], int] = field(default_factory=dict)
    line_minor: list[int] = field(default_factory=list)


def rows_to_events(rows: Iterable[tuple[int, dict | None]], mapping: ColumnMapping,
                   report: ReplayReport | None = None) -> list[tuple[str, dict]]:
    """Group numbered order lines into contract-valid purchase events, sorted by event time.

    >>> rows = [
    ...     {"customer_id": "c1", "ts": "2024-01-05T10:00:00Z", "order_id": "A1", "sku": "x", "qty": "2", "unit_price": "14.665"},
    ...     {"customer_id": "c1", "ts": "2024-01-05T10:00:00Z", "order_id": "A1", "sku": "y", "qty": "1", "unit_price": "3"},
    ...     {"customer_id": "c1", "ts": "2024-01-09T08:00:00Z", "order_id": "A1", "sku": "y", "qty": "-1", "unit_price": "3"},
    ... ]
    >>> [(e["kind"], [(i["sku"], i["qty"], i["amount"]) for i in e["items"]])
    ...  for _, e in rows_to_events(enumerate(rows, start=2), ColumnMapping())]
    [('order', [('x', 2, '29.33'), ('y', 1, '3.00')]), ('refund', [('y', 1, '3.00')])]
    """
    report = report if report is not None else ReplayReport()
    missing_checked = False
    orders: dict[tuple[str, str, str], _Order] = {}
    for line, row in rows:
        report.lines += 1
        if row is None:
            report.skip("unreadable_line", line, "not a JSON object")
            continue
        if not missing_checked:
            _check_columns(row, mapping)
            missing_checked = True
        try:
            customer_id = _identifier(row, mapping.customer, "customer")
            ts_ms = _timestamp_ms(_cell(row, mapping.time, "time"), mapping)
            qty = _quantity(row, mapping)
            line_minor, unit_price = _line_minor(row, qty, mapping)
            order_id = _identifier(row, mapping.order, "order") if mapping.order else f"at-{ts_ms}"
            sku = _sku(row, mapping, report)
        except SkippedLine as skipped:
            report.skip(skipped.reason, line, str(skipped))
            continue
        kind = "refund" if qty < 0 else "order"
        key = (customer_id, order_id.lstrip("C") if kind == "refund" and len(order_id) > 1 else order_id, kind)
        order = orders.get(key)
        if order is None:
            order = orders[key] = _Order({
                "event_id": _event_id(*key), "customer_id": customer_id, "order_id": key[1], "ts": ts_ms,
                "kind": kind, "currency": mapping.currency, "items": [], "schema_version": 1}, line)
        order.lines += 1
        order.event["ts"] = min(order.event["ts"], ts_ms)
        item_key = (sku, unit_price)
        if item_key in order.item_at:
            index = order.item_at[item_key]
            order.event["items"][index]["qty"] += abs(qty)
            order.line_minor[index] += line_minor
        else:
            order.item_at[item_key] = len(order.event["items"])
            item = {"sku": sku, "qty": abs(qty)}
            if unit_price is not None:
                item["unit_price"] = unit_price
            if mapping.category and row.get(mapping.category):
                item["category"] = str(row[mapping.category])[:64]
            order.event["items"].append(item)
            order.line_minor.append(line_minor)
    timed = []
    for order in orders.values():
        event = order.event
        for item, minor in zip(event["items"], order.line_minor):
            item["amount"] = decimal_text(minor, mapping.currency)
        ts_ms, event["ts"] = event["ts"], contract_ts(event["ts"])
        try:
            validate_payload("purchases", event)
        except InvalidEvent as exc:
            report.skip(f"invalid_order_{exc.reason}", order.first_line,
                        f"order {event['order_id']!r} of {event['customer_id']!r}: {exc.detail}", order.lines)
            continue
        timed.append((ts_ms, event["event_id"], event))
        total = sum(order.line_minor)
        if event["kind"] == "order":
            report.orders, report.ordered_minor = report.orders + 1, report.ordered_minor + total
        else:
            report.refunds, report.refunded_minor = report.refunds + 1, report.refunded_minor + total
    timed.sort(key=lambda entry: entry[:2])
    report.events = len(timed)
    return [("purchases", event) for _, _, event in timed]


def _check_columns(row: dict, mapping: ColumnMapping) -> None:
    missing = {option: column for option, column in mapping.columns().items() if column not in row}
    if missing:
        wanted = ", ".join(f"{column!r} ({option})" for option, column in missing.items())
        raise MissingColumns(f"the file has no column {wanted}; its columns: {', '.join(map(repr, row))[:300]}")


def progress_bar(sent: int, total: int, width: int = 40, stream: io.TextIOBase | None = None) -> None:
    """A one-line progress bar on stderr."""
    import sys

    stream = stream or sys.stderr
    done = int(width * sent / max(total, 1))
    stream.write(f"\r[{'#' * done}{'.' * (width - done)}] {sent:,}/{total:,} events")
    if sent >= total:
        stream.write("\n")
    stream.flush()
