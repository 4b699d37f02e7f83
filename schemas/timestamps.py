"""Event timestamps: RFC 3339 with an offset, or epoch milliseconds, to epoch ms UTC.

Old history is real data: a 1997 order (the CDNOW sample that the customer-base
literature benchmarks on) is as valid as today's, so any time from 1970-01-02
on is accepted. One mistake is common enough to guard against: epoch *seconds*
sent where milliseconds belong. Read as milliseconds, the seconds of any date
from 2000 to 2286 fall between 1970-01-11 and 1970-04-27, where no webshop ever
recorded an order, so an integer in that window is refused and the message says
what it would mean in seconds. RFC 3339 strings are unambiguous and never meet
the guard.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

__all__ = ["MIN_TS_MS", "SECONDS_LIKE_MS", "contract_ts", "parse_event_ts", "record_timestamp_ms",
           "seconds_for_millis"]

#: 1970-01-02T00:00:00Z: earlier is a zero or missing time, not history.
MIN_TS_MS = 86_400_000
#: Integers in this range [low, high) are epoch seconds of 2000-01-01 .. 2286-11-20 sent as milliseconds.
SECONDS_LIKE_MS = (946_684_800, 10_000_000_000)
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_ONE_MS = timedelta(milliseconds=1)


def seconds_for_millis(ts_ms: int) -> bool:
    """Whether an integer "milliseconds" value is really epoch seconds of a date from 2000 on.

    >>> seconds_for_millis(1_709_290_800), seconds_for_millis(1_709_290_800_000), seconds_for_millis(867_715_200_000)
    (True, False, False)
    """
    return SECONDS_LIKE_MS[0] <= ts_ms < SECONDS_LIKE_MS[1]


def contract_ts(ts_ms: int) -> int | str:
    """How to send an event time: epoch milliseconds, or RFC 3339 where the integer would read as seconds.

    >>> contract_ts(852_076_800_000), contract_ts(2_592_000_000)
    (852076800000, '1970-01-31T00:00:00.000Z')
    """
    if not seconds_for_millis(ts_ms):
        return ts_ms
    return (_EPOCH + timedelta(milliseconds=ts_ms)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def parse_event_ts(value: object) -> int:
    """Normalise an event timestamp to epoch milliseconds UTC.

    A timestamp without an offset is rejected: guessing the shop's time zone
    would shift every recency by hours.

    >>> parse_event_ts("2024-03-01T12:00:00+01:00"), parse_event_ts(1709290800000)
    (1709290800000, 1709290800000)
    >>> parse_event_ts("1997-01-01T00:00:00Z"), parse_event_ts(852076800000)
    (852076800000, 852076800000)
    >>> parse_event_ts("2024-03-01T12:00:00")
    Traceback (most recent call last):
    ...
    ValueError: timestamp '2024-03-01T12:00:00' has no UTC offset
    >>> parse_event_ts(1709290800)
    Traceback (most recent call last):
    ...
    ValueError: timestamp 1709290800 is epoch seconds (2024-03-01T11:00:00Z), not milliseconds
    """
    if isinstance(value, bool):
        raise TypeError("ts must be an RFC 3339 string or epoch milliseconds, got bool")
    if isinstance(value, int):
        ts_ms = value
        if seconds_for_millis(ts_ms):
            as_seconds = (_EPOCH + timedelta(seconds=ts_ms)).strftime("%Y-%m-%dT%H:%M:%SZ")
            raise ValueError(f"timestamp {value!r} is epoch seconds ({as_seconds}), not milliseconds")
    elif isinstance(value, str):
        if len(value) > 40 or ("T" not in value and "t" not in value and " " not in value):
            raise ValueError(f"timestamp {value[:40]!r} is not an RFC 3339 date-time")
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"timestamp {value!r} is not an RFC 3339 date-time") from None
        if parsed.tzinfo is None:
            raise ValueError(f"timestamp {value!r} has no UTC offset")
        ts_ms = (parsed - _EPOCH) // _ONE_MS  # exact integer arithmetic, no float rounding
    else:
        raise TypeError(f"ts must be an RFC 3339 string or epoch milliseconds, got {type(value).__name__}")
    if ts_ms < MIN_TS_MS:
        raise ValueError(f"timestamp {value!r} is before 1970-01-02 (a zero or missing time?)")
    return ts_ms


def record_timestamp_ms(event: object) -> int | None:
    """The Kafka record timestamp to send ``event`` with: its event time, or ``None`` (the broker's
    clock) when it has none that parses. Why: the workers release partitions in record-timestamp order.

    >>> record_timestamp_ms({"ts": "2024-03-01T12:00:00+01:00"}), record_timestamp_ms({"ts": "yesterday"})
    (1709290800000, None)
    """
    try:
        return parse_event_ts(event["ts"])  # type: ignore[index]
    except (KeyError, TypeError, ValueError):
        return None
