"""The event contract, without broker or Redis: exact normalisation and exact rejection reasons."""
from __future__ import annotations

import jsonschema
import orjson
import pytest
from hypothesis import given, strategies as st

from schemas.events import InvalidEvent, Purchase, parse_event, validate_payload
from schemas.jsonschema import event_schemas
from schemas.money import to_minor_units
from tests.events_factory import BASE_TS_MS, customer, interaction, purchase, without

NOW_MS = BASE_TS_MS + 86_400_000


def parse(topic: str, payload, key: bytes | None = b"c1", **kwargs):
    raw = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    return parse_event(topic, raw, key, now_ms=NOW_MS, **kwargs)


def test_purchase_is_normalised():
    event = parse("purchases", purchase(ts="2024-03-01T12:00:00+01:00", items=[
        {"sku": "a", "qty": 2, "unit_price": "19.99"}, {"sku": "b", "qty": 1, "unit_price": 5}]))
    assert isinstance(event, Purchase)
    assert event.ts_ms == BASE_TS_MS
    assert [(i.sku, i.qty, i.line_minor) for i in event.items] == [("a", 2, 3998), ("b", 1, 500)]
    assert event.amount_minor == 4498


@pytest.mark.parametrize("line, line_minor", [
    ({"qty": 2, "unit_price": "14.665"}, 2933),        # amount / qty of an export: exact again as a line
    ({"qty": 1, "unit_price": "14.665"}, 1466),        # half to even, once per line
    ({"qty": 1, "unit_price": "0.001"}, 0),            # a sub-cent line is kept, worth 0 cents
    ({"qty": 1000, "unit_price": 0.001}, 100),
    ({"qty": 3, "unit_price": "9.99", "amount": "25.00"}, 2500),  # the line total wins (discounts)
    ({"qty": 2, "amount": "29.33"}, 2933),             # a line total alone is enough
    ({"qty": 1, "amount": "0.125"}, 12),
])
def test_line_money_is_the_line_total_rounded_once(line, line_minor):
    event = parse("purchases", purchase(currency="EUR", items=[{"sku": "a", **line}]))
    assert event.items[0].line_minor == line_minor and event.amount_minor == line_minor


@pytest.mark.parametrize("ts, expected_ms", [
    ("2024-03-01T11:00:00Z", BASE_TS_MS),
    ("2024-03-01T11:00:00.123Z", BASE_TS_MS + 123),
    ("2024-03-01T06:00:00-05:00", BASE_TS_MS),
    (BASE_TS_MS, BASE_TS_MS),
    ("1997-01-01T00:00:00Z", 852_076_800_000),   # the CDNOW sample's first day: old history is real data
    (852_076_800_000, 852_076_800_000),
    ("1970-01-02T00:00:00Z", 86_400_000),
    (10_000_000_000, 10_000_000_000),             # 1970-04-26 in ms: past the window of seconds-like values
])
def test_timestamps_become_epoch_ms_utc(ts, expected_ms):
    assert parse("interactions", interaction(ts=ts)).ts_ms == expected_ms


@pytest.mark.parametrize("amount, currency, minor", [
    ("0.10", "EUR", 10), (0.1, "USD", 10), ("1500", "JPY", 1500), ("1.234", "KWD", 1234), (19.99, "GBP", 1999),
])
def test_money_is_exact_in_minor_units(amount, currency, minor):
    assert to_minor_units(amount, currency) == minor


HOSTILE = [
    # (topic, payload or raw bytes, key, reason)
    ("purchases", b"\xff\xfe\x00garbage", b"c1", "not_utf8"),
    ("purchases", b'{"event_id": ', b"c1", "bad_json"),
    ("purchases", b"", b"c1", "bad_json"),
    ("interactions", b"[1, 2]", b"c1", "not_object"),
    ("interactions", b'"just a string"', b"c1", "not_object"),
    ("interactions", interaction(schema_version=2), b"c1", "unsupported_schema_version"),
    ("interactions", interaction(schema_version="1"), b"c1", "unsupported_schema_version"),
    ("interactions", without(interaction(), "schema_version"), b"c1", "missing_field"),
    ("purchases", without(purchase(), "customer_id"), b"c1", "missing_field"),
    ("purchases", without(purchase(), "items"), b"c1", "missing_field"),
    ("interactions", interaction(type="survey", survey="csat"), b"c1", "missing_field"),
    ("interactions", interaction(type="product_view"), b"c1", "missing_field"),
    ("purchases", purchase(items=[{"sku": "a", "qty": "2", "unit_price": "1.00"}]), b"c1", "wrong_type"),
    ("purchases", purchase(customer_id=123), b"c1", "wrong_type"),
    ("interactions", interaction(ts=True), b"c1", "wrong_type"),
    ("interactions", interaction(ts=[1]), b"c1", "wrong_type"),
    ("purchases", purchase(items=[{"sku": "a", "qty": 1, "unit_price": None}]), b"c1", "missing_field"),
    ("purchases", purchase(coupon="X"), b"c1", "unknown_field"),
    ("interactions", interaction(type="teleport"), b"c1", "unknown_type"),
    ("purchases", purchase(kind="exchange"), b"c1", "unknown_type"),
    ("interactions", interaction(type="survey", survey="ces", score=3), b"c1", "unknown_type"),
    ("interactions", interaction(ts="2024-03-01T11:00:00"), b"c1", "invalid_value"),
    ("interactions", interaction(ts=1_709_290_800), b"c1", "invalid_value"),   # epoch seconds
    ("interactions", interaction(ts=946_684_800), b"c1", "invalid_value"),     # 2000-01-01 in seconds
    ("interactions", interaction(ts=0), b"c1", "invalid_value"),
    ("interactions", interaction(ts="1970-01-01T12:00:00Z"), b"c1", "invalid_value"),
    ("interactions", interaction(ts="yesterday"), b"c1", "invalid_value"),
    ("purchases", purchase(items=[{"sku": "a", "qty": 0, "unit_price": "1.00"}]), b"c1", "invalid_value"),
    ("purchases", purchase(items=[{"sku": "a", "qty": 1, "unit_price": "-1.00"}]), b"c1", "invalid_value"),
    ("purchases", purchase(items=[{"sku": "a", "qty": 1, "unit_price": "1" * 40}]), b"c1", "invalid_value"),
    ("purchases", purchase(items=[{"sku": "a", "qty": 1, "unit_price": "-0.001"}]), b"c1", "invalid_value"),
    ("purchases", purchase(items=[{"sku": "a", "qty": 1, "amount": "-2"}]), b"c1", "invalid_value"),
    ("purchases", purchase(items=[{"sku": "a", "qty": 1, "amount": True}]), b"c1", "wrong_type"),
    ("purchases", purchase(items=[{"sku": "a", "qty": 1}]), b"c1", "missing_field"),
    ("purchases", purchase(items=[{"sku": "a", "qty": 1, "unit_price": "NaN"}]), b"c1", "invalid_value"),
    ("purchases", purchase(items=[]), b"c1", "invalid_value"),
    ("purchases", purchase(currency="XXX"), b"c1", "invalid_value"),
    ("purchases", purchase(customer_id="{c1}"), b"{c1}", "invalid_value"),
    ("interactions", interaction(type="survey", survey="nps", score=11), b"c1", "invalid_value"),
    ("interactions", interaction(type="login", score=3), b"c1", "invalid_value"),
    ("customers", customer(attributes={"tags": ["a"]}), b"c1", "wrong_type"),
    ("interactions", interaction(ts=NOW_MS + 3_600_000), b"c1", "future_timestamp"),
    ("interactions", interaction(), b"c2", "key_mismatch"),
    ("interactions", interaction(), None, "key_mismatch"),
]


@pytest.mark.parametrize("topic, payload, key, reason", HOSTILE)
def test_hostile_input_is_rejected_with_its_reason(topic, payload, key, reason):
    with pytest.raises(InvalidEvent) as caught:
        parse(topic, payload, key)
    assert caught.value.reason == reason


def test_oversize_is_checked_before_parsing():
    with pytest.raises(InvalidEvent) as caught:
        parse("interactions", interaction(text="x" * 1500), max_bytes=1024)
    assert caught.value.reason == "oversize"


VALID = [
    ("purchases", purchase()),
    ("purchases", purchase(kind="refund", channel="web", items=[{"sku": "a", "qty": 1, "unit_price": 3}])),
    ("interactions", interaction(type="product_view", sku="sku-9", session_id="s-1")),
    ("interactions", interaction(type="survey", survey="nps", score=0)),
    ("interactions", interaction(type="survey", survey="csat", score=5, text="great")),
    ("interactions", interaction(type="search", text="red shoes")),
    ("customers", customer(attributes={"country": "DE", "age": 31, "vip": True, "note": None})),
    ("customers", customer(type="erase")),
]


@pytest.mark.parametrize("topic, payload", VALID)
def test_published_json_schema_accepts_what_the_validator_accepts(topic, payload):
    validate_payload(topic, payload)
    jsonschema.Draft202012Validator(event_schemas()[topic]).validate(payload)


def _expressible_in_json_schema(case) -> bool:
    """Clock and Kafka key checks need context JSON Schema lacks, and it has no earliest date-time string
    (documented)."""
    topic, payload, key, reason = case
    return (isinstance(payload, dict) and reason not in ("future_timestamp", "key_mismatch")
            and "1970-01-01T" not in orjson.dumps(payload).decode())


@pytest.mark.parametrize("topic, payload, key, reason", [c for c in HOSTILE if _expressible_in_json_schema(c)])
def test_published_json_schema_rejects_what_the_validator_rejects(topic, payload, key, reason):
    validator = jsonschema.Draft202012Validator(event_schemas()[topic],
                                                format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    assert not validator.is_valid(payload)


def test_schema_files_are_up_to_date():
    from pathlib import Path

    for topic, schema in event_schemas().items():
        path = Path(__file__).resolve().parent.parent / "schemas" / "json" / f"{topic}.schema.json"
        assert orjson.loads(path.read_bytes()) == schema, f"run `crmstream schemas` to refresh {path.name}"


@given(st.integers(min_value=BASE_TS_MS, max_value=NOW_MS), st.integers(min_value=-12 * 60, max_value=14 * 60))
def test_rfc3339_and_epoch_ms_agree_for_any_offset(ts_ms, offset_minutes):
    from datetime import datetime, timedelta, timezone

    zone = timezone(timedelta(minutes=offset_minutes))
    text = datetime.fromtimestamp(ts_ms / 1000, tz=timezone.utc).astimezone(zone).isoformat(timespec="milliseconds")
    assert parse("interactions", interaction(ts=text)).ts_ms == parse("interactions", interaction(ts=ts_ms)).ts_ms


@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_escape_as_anything_but_invalid_event(raw):
    try:
        parse("purchases", raw)
    except InvalidEvent:
        pass

