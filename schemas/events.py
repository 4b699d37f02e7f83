"""The event contract: strict validation and normalisation of webshop events.

One function, :func:`parse_event`, turns the raw bytes of a Kafka message into
a typed, normalised event or raises :class:`InvalidEvent` with a machine
reason (a dead-letter category) and a human detail. It is pure (the wall
clock is a parameter) so that tests and replays are deterministic.

Normalisation: timestamps to epoch ms UTC, money to integer minor units of
the currency, ids checked against a conservative alphabet (they end up
inside Redis keys with a ``{customer_id}`` hash tag, so ``{`` and ``}`` are
out).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Union

import orjson

from schemas.money import CURRENCY_EXPONENTS, decimal_amount, line_minor_units, to_minor_units
from schemas.timestamps import parse_event_ts

__all__ = [
    "SCHEMA_VERSIONS", "REASONS", "PURCHASE_KINDS", "INTERACTION_TYPES", "CUSTOMER_EVENT_TYPES",
    "SURVEY_SCALES", "InvalidEvent", "Item", "Purchase", "Interaction", "CustomerEvent", "Event",
    "parse_event", "validate_payload",
]

SCHEMA_VERSIONS = frozenset({1})
PURCHASE_KINDS = ("order", "refund")
INTERACTION_TYPES = (
    "page_view", "product_view", "add_to_cart", "remove_from_cart", "search", "email_open",
    "email_click", "email_unsubscribe", "support_ticket", "ticket_resolved", "survey", "login",
)
#: Interaction types that are about one product and so must name its ``sku``.
SKU_REQUIRED_TYPES = frozenset({"product_view", "add_to_cart", "remove_from_cart"})
CUSTOMER_EVENT_TYPES = ("signup", "profile", "erase")
#: Survey scales and their inclusive score ranges.
SURVEY_SCALES = {"csat": (1, 5), "nps": (0, 10)}

#: Dead-letter reasons, in the order checks run.
REASONS = (
    "oversize", "not_utf8", "bad_json", "not_object", "unsupported_schema_version", "missing_field",
    "wrong_type", "unknown_field", "unknown_type", "invalid_value", "future_timestamp", "key_mismatch",
)

ID_PATTERN = r"^[A-Za-z0-9_.:@/-]{1,128}$"
_ID_RE = re.compile(ID_PATTERN)
MAX_ITEMS = 500
MAX_QTY = 1_000_000  # wholesale lines of tens of thousands of units are real (UCI Online Retail: 74,215)
MAX_TEXT_CHARS = 2_000
MAX_LABEL_CHARS = 64
MAX_ATTRIBUTES = 50


class InvalidEvent(ValueError):
    """An event that breaks the contract; ``reason`` is one of :data:`REASONS`."""

    def __init__(self, reason: str, detail: str) -> None:
        assert reason in REASONS, reason
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Item:
    """One order line; ``line_minor`` is its money (the line total in minor units, rounded once)."""

    sku: str
    qty: int
    line_minor: int
    category: str | None = None


@dataclass(frozen=True, slots=True)
class Purchase:
    event_id: str
    customer_id: str
    ts_ms: int
    order_id: str
    kind: str
    currency: str
    items: tuple[Item, ...]
    channel: str | None = None
    schema_version: int = 1
    topic = "purchases"

    @property
    def amount_minor(self) -> int:
        """Basket value in minor units (positive for orders and refunds alike)."""
        return sum(item.line_minor for item in self.items)


@dataclass(frozen=True, slots=True)
class Interaction:
    event_id: str
    customer_id: str
    ts_ms: int
    type: str
    sku: str | None = None
    session_id: str | None = None
    survey: str | None = None
    score: int | None = None
    text: str | None = None
    schema_version: int = 1
    topic = "interactions"


@dataclass(frozen=True, slots=True)
class CustomerEvent:
    event_id: str
    customer_id: str
    ts_ms: int
    type: str
    attributes: dict[str, str | int | float | bool | None] | None = None
    schema_version: int = 1
    topic = "customers"


Event = Union[Purchase, Interaction, CustomerEvent]


# --- field readers ---------------------------------------------------------------------------

def _require(payload: dict, name: str) -> Any:
    value = payload.get(name)
    if value is None:
        raise InvalidEvent("missing_field", f"'{name}' is required")
    return value


def _identifier(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise InvalidEvent("wrong_type", f"'{name}' must be a string, got {type(value).__name__}")
    if not _ID_RE.match(value):
        raise InvalidEvent("invalid_value", f"'{name}' must match {ID_PATTERN}, got {value[:40]!r}")
    return value


def _optional_identifier(payload: dict, name: str) -> str | None:
    value = payload.get(name)
    return None if value is None else _identifier(value, name)


def _choice(payload: dict, name: str, allowed: tuple[str, ...] | dict) -> str:
    """A required string from a closed set; anything else is an unknown type to the pipeline."""
    value = _require(payload, name)
    if not isinstance(value, str):
        raise InvalidEvent("wrong_type", f"'{name}' must be a string, got {type(value).__name__}")
    if value not in allowed:
        raise InvalidEvent("unknown_type", f"'{name}' must be one of {tuple(allowed)}, got {value[:40]!r}")
    return value


def _label(value: Any, name: str, max_chars: int = MAX_LABEL_CHARS) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidEvent("wrong_type", f"'{name}' must be a string, got {type(value).__name__}")
    if not 0 < len(value) <= max_chars:
        raise InvalidEvent("invalid_value", f"'{name}' must have 1..{max_chars} characters")
    return value


def _integer(value: Any, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidEvent("wrong_type", f"'{name}' must be an integer, got {type(value).__name__}")
    if not low <= value <= high:
        raise InvalidEvent("invalid_value", f"'{name}' must be in [{low}, {high}], got {value}")
    return value


def _timestamp(value: Any) -> int:
    try:
        return parse_event_ts(value)
    except TypeError as exc:
        raise InvalidEvent("wrong_type", f"'ts': {exc}") from None
    except ValueError as exc:
        raise InvalidEvent("invalid_value", f"'ts': {exc}") from None


def _check_fields(payload: dict, allowed: frozenset[str], topic: str) -> None:
    unknown = payload.keys() - allowed
    if unknown:
        raise InvalidEvent("unknown_field", f"{topic} events have no field(s) {sorted(unknown)[:5]}")


def _common(payload: dict) -> tuple[str, str, int]:
    return (
        _identifier(_require(payload, "event_id"), "event_id"),
        _identifier(_require(payload, "customer_id"), "customer_id"),
        _timestamp(_require(payload, "ts")),
    )


# --- per-topic parsers ---------------------------------------------------------------------------

_PURCHASE_FIELDS = frozenset(
    {"event_id", "customer_id", "order_id", "ts", "items", "currency", "kind", "channel", "schema_version"})
_ITEM_FIELDS = frozenset({"sku", "qty", "unit_price", "amount", "category"})


def _item(raw: Any, index: int, currency: str) -> Item:
    """An order line. Its money is ``amount`` (the line total) when given, else ``qty × unit_price``; either is
    rounded once to the currency's minor unit, half to even (schemas/money.py): sub-cent unit prices are real."""
    where = f"items[{index}]"
    if not isinstance(raw, dict):
        raise InvalidEvent("wrong_type", f"'{where}' must be an object")
    unknown = raw.keys() - _ITEM_FIELDS
    if unknown:
        raise InvalidEvent("unknown_field", f"'{where}' has no field(s) {sorted(unknown)[:5]}")
    sku = _identifier(_require(raw, "sku"), f"{where}.sku")
    qty = _integer(_require(raw, "qty"), f"{where}.qty", 1, MAX_QTY)
    if raw.get("amount") is None and raw.get("unit_price") is None:
        raise InvalidEvent("missing_field", f"'{where}' needs 'unit_price' or 'amount' (the line total)")
    priced = _money(raw.get("unit_price"), f"{where}.unit_price", lambda price: line_minor_units(qty, price, currency))
    total = _money(raw.get("amount"), f"{where}.amount", lambda amount: to_minor_units(amount, currency))
    return Item(sku, qty, priced if total is None else total, _label(raw.get("category"), f"{where}.category"))


def _money(value: Any, name: str, to_minor: Callable[[Any], int]) -> int | None:
    if value is None:
        return None
    try:
        amount = decimal_amount(value)
    except TypeError as exc:
        raise InvalidEvent("wrong_type", f"'{name}': {exc}") from None
    except ValueError as exc:
        raise InvalidEvent("invalid_value", f"'{name}': {exc}") from None
    if amount < 0:
        raise InvalidEvent("invalid_value", f"'{name}' must be >= 0 (refunds use kind='refund')")
    try:
        return to_minor(amount)
    except ValueError as exc:  # out of range once rounded
        raise InvalidEvent("invalid_value", f"'{name}': {exc}") from None


def _purchase(payload: dict) -> Purchase:
    _check_fields(payload, _PURCHASE_FIELDS, "purchases")
    event_id, customer_id, ts_ms = _common(payload)
    order_id = _identifier(_require(payload, "order_id"), "order_id")
    kind = _choice(payload, "kind", PURCHASE_KINDS)
    currency = _require(payload, "currency")
    if not isinstance(currency, str):
        raise InvalidEvent("wrong_type", "'currency' must be a string")
    if currency not in CURRENCY_EXPONENTS:
        raise InvalidEvent("invalid_value", f"'currency' {currency[:8]!r} is not a supported ISO 4217 code")
    raw_items = _require(payload, "items")
    if not isinstance(raw_items, list):
        raise InvalidEvent("wrong_type", "'items' must be an array")
    if not 0 < len(raw_items) <= MAX_ITEMS:
        raise InvalidEvent("invalid_value", f"'items' must hold 1..{MAX_ITEMS} items, got {len(raw_items)}")
    items = tuple(_item(raw, i, currency) for i, raw in enumerate(raw_items))
    return Purchase(event_id, customer_id, ts_ms, order_id, kind, currency, items,
                    _label(payload.get("channel"), "channel"))


_INTERACTION_FIELDS = frozenset(
    {"event_id", "customer_id", "ts", "type", "sku", "session_id", "survey", "score", "text", "schema_version"})


def _interaction(payload: dict) -> Interaction:
    _check_fields(payload, _INTERACTION_FIELDS, "interactions")
    event_id, customer_id, ts_ms = _common(payload)
    kind = _choice(payload, "type", INTERACTION_TYPES)
    sku = _optional_identifier(payload, "sku")
    if sku is None and kind in SKU_REQUIRED_TYPES:
        raise InvalidEvent("missing_field", f"'sku' is required for {kind}")
    session_id = _optional_identifier(payload, "session_id")
    survey = score = None
    if kind == "survey":
        survey = _choice(payload, "survey", SURVEY_SCALES)
        score = _integer(_require(payload, "score"), "score", *SURVEY_SCALES[survey])
    elif payload.get("score") is not None or payload.get("survey") is not None:
        raise InvalidEvent("invalid_value", "'score' and 'survey' belong to survey events only")
    text = _label(payload.get("text"), "text", MAX_TEXT_CHARS)
    return Interaction(event_id, customer_id, ts_ms, kind, sku, session_id, survey, score, text)


_CUSTOMER_FIELDS = frozenset({"event_id", "customer_id", "ts", "type", "attributes", "schema_version"})


def _attributes(raw: Any) -> dict | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise InvalidEvent("wrong_type", "'attributes' must be an object")
    if len(raw) > MAX_ATTRIBUTES:
        raise InvalidEvent("invalid_value", f"'attributes' may hold at most {MAX_ATTRIBUTES} entries")
    for name, value in raw.items():
        if not 0 < len(name) <= MAX_LABEL_CHARS:
            raise InvalidEvent("invalid_value", "attribute names must have 1..64 characters")
        if value is not None and not isinstance(value, (str, int, float, bool)):
            raise InvalidEvent("wrong_type", f"attribute {name[:40]!r} must be a scalar")
        if isinstance(value, str) and len(value) > MAX_TEXT_CHARS:
            raise InvalidEvent("invalid_value", f"attribute {name[:40]!r} is too long")
    return raw


def _customer(payload: dict) -> CustomerEvent:
    _check_fields(payload, _CUSTOMER_FIELDS, "customers")
    event_id, customer_id, ts_ms = _common(payload)
    kind = _choice(payload, "type", CUSTOMER_EVENT_TYPES)
    return CustomerEvent(event_id, customer_id, ts_ms, kind, _attributes(payload.get("attributes")))


_PARSERS: dict[str, Callable[[dict], Event]] = {
    "purchases": _purchase, "interactions": _interaction, "customers": _customer,
}


def validate_payload(topic: str, payload: Any) -> Event:
    """Validate an already-decoded JSON value against the contract of ``topic``."""
    if not isinstance(payload, dict):
        raise InvalidEvent("not_object", f"an event is a JSON object, got {type(payload).__name__}")
    version = payload.get("schema_version")
    if version is None:
        raise InvalidEvent("missing_field", "'schema_version' is required")
    if isinstance(version, bool) or version not in SCHEMA_VERSIONS:
        raise InvalidEvent("unsupported_schema_version",
                           f"schema_version {version!r} is not one of {sorted(SCHEMA_VERSIONS)}")
    return _PARSERS[topic](payload)


def parse_event(topic: str, raw: bytes | None, key: bytes | None, *, now_ms: int,
                max_bytes: int = 64 * 1024, future_tolerance_ms: int = 300_000) -> Event:
    """Decode, validate and normalise one Kafka message of an input topic.

    ``topic`` is the contract name (``purchases``, ``interactions``,
    ``customers``). ``key`` must equal ``customer_id``: the key decides the
    partition, and a customer split over partitions would have two owners.

    >>> raw = b'{"event_id":"e1","customer_id":"c1","ts":"2024-03-01T12:00:00Z","type":"login","schema_version":1}'
    >>> parse_event("interactions", raw, b"c1", now_ms=1_800_000_000_000)
    Interaction(event_id='e1', customer_id='c1', ts_ms=1709294400000, type='login', sku=None, session_id=None, survey=None, score=None, text=None, schema_version=1)
    >>> try:
    ...     parse_event("interactions", b'{"oops"', b"c1", now_ms=0)
    ... except InvalidEvent as exc:
    ...     print(exc.reason)
    bad_json
    """
    if raw is None:
        raise InvalidEvent("bad_json", "empty message (tombstone)")
    if len(raw) > max_bytes:
        raise InvalidEvent("oversize", f"{len(raw)} bytes > limit of {max_bytes}")
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidEvent("not_utf8", "message is not valid UTF-8") from None
        raise InvalidEvent("bad_json", str(exc)) from None
    event = validate_payload(topic, payload)
    if event.ts_ms > now_ms + future_tolerance_ms:
        raise InvalidEvent("future_timestamp",
                           f"ts is {(event.ts_ms - now_ms) / 1000:.0f}s ahead of the clock "
                           f"(tolerance {future_tolerance_ms / 1000:.0f}s)")
    if key is None or key != event.customer_id.encode():
        shown = None if key is None else key[:40].decode("utf-8", "replace")
        raise InvalidEvent("key_mismatch", f"message key {shown!r} != customer_id {event.customer_id!r}")
    return event
