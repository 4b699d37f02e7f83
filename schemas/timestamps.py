"""Event timestamps: RFC 3339 with an offset, or epoch milliseconds, to epoch ms UTC."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

__all__ = ["MIN_PLAUSIBLE_TS_MS", "parse_event_ts", "record_timestamp_ms"]

#: 2000-01-01T00:00:00Z. Anything earlier is almost always epoch *seconds* sent by mistake.
MIN_PLAUSIBLE_TS_MS = 946_684_800_000
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_ONE_MS = timedelta(milliseconds=1)


def parse_event_ts(value: object) -> int:
    """Normalise an event timestamp to epoch milliseconds UTC.

    A timestamp without an offset is rejected: guessing the shop's time zone
    would shift every recency by hours.

    >>> parse_event_ts("2024-03-01T12:00:00+01:00"), parse_event_ts(1709290800000)
    (1709290800000, 1709290800000)
    >>> parse_event_ts("2024-03-01T12:00:00")
    Traceback (most recent call last):
    ...
    ValueError: timestamp '2024-03-01T12:00:00' has no UTC offset
    """
    if isinstance(value, bool):
        raise TypeError("ts must be an RFC 3339 string or epoch milliseconds, got bool")
    if isinstance(value, int):
        ts_ms = value
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
    if ts_ms < MIN_PLAUSIBLE_TS_MS:
        hint = " (epoch seconds instead of milliseconds?)" if ts_ms > 0 else ""
        raise ValueError(f"timestamp {value!r} is before 2000-01-01{hint}")
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
