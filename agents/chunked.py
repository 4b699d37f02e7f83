"""Derived records a partition batch sends to a single-partition trainer, in messages of up to
:data:`PER_MESSAGE` records.

A backlog's batch closes thousands of silent customers' hazard examples and segment samples; one Kafka message
each cost more in the producer and in the trainer's Faust consumer than learning them (bench/backfill.py,
docs/architecture.md §12). Each record keeps its own id, by which the trainer drops one it has learned, so a
batch re-processed after a crash may be cut into other messages.
"""
from __future__ import annotations

from typing import Sequence

import orjson

__all__ = ["PER_MESSAGE", "chunked_messages", "records_of", "records_in"]

PER_MESSAGE = 500


def chunked_messages(records: Sequence[dict], field: str, batch_key: str) -> list[tuple[bytes, bytes]]:
    """``{field: [records...]}`` messages keyed by the batch and chunk.

    >>> [(key, orjson.loads(value)) for key, value in chunked_messages([{"id": 1}, {"id": 2}], "examples", "b:7")]
    [(b'b:7:0', {'examples': [{'id': 1}, {'id': 2}]})]
    >>> len(chunked_messages([{}] * (PER_MESSAGE + 1), "examples", "b:7")), chunked_messages([], "examples", "b")
    (2, [])
    """
    return [(f"{batch_key}:{chunk}".encode(), orjson.dumps({field: list(records[start:start + PER_MESSAGE])}))
            for chunk, start in enumerate(range(0, len(records), PER_MESSAGE))]


def records_of(value: bytes | None, field: str) -> list | None:
    """The records of one message: a batch's (``{field: [...]}``) or a single record (the format before
    batching); None when it is not JSON.

    >>> records_of(b'{"examples": [{"id": 1}]}', "examples"), records_of(b'{"id": 1}', "examples")
    ([{'id': 1}], [{'id': 1}])
    >>> records_of(b"not json", "examples") is None
    True
    """
    try:
        payload = orjson.loads(value)
    except (TypeError, orjson.JSONDecodeError):
        return None
    return records_in(payload, field)


def records_in(payload: object, field: str) -> list:
    """:func:`records_of` for a message already decoded.

    >>> records_in({"examples": [1, 2]}, "examples"), records_in({"id": 1}, "examples")
    ([1, 2], [{'id': 1}])
    """
    records = payload.get(field) if isinstance(payload, dict) else None
    return records if isinstance(records, list) else [payload]
