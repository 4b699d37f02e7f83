"""Releasing fetched records across partitions in event-time order (no Kafka imports: testable alone).

Why: a consumer fetches partitions in chunks of records, not of time. A backlog of a year drains
one partition (or topic: interactions are ten times denser than purchases) months ahead of another,
so the global learners downstream (segment samples, churn examples, item pairs across topics) see
history in a shuffled order that live traffic never has, and a replay no longer equals the live run.
Like Kafka Streams' partition group, the aligner holds each partition's fetched records and releases
only those at or below the *frontier*: the least stream time (max record timestamp fetched) over the
partitions that still have records waiting on the broker. A partition read to its end (its position
at the high watermark) does not hold the others back.
"""
from __future__ import annotations

import heapq
from collections import deque
from typing import Callable, Generic, Hashable, Iterable, Iterator, Protocol, TypeVar

__all__ = ["TimestampedRecord", "EventTimeAligner"]


class TimestampedRecord(Protocol):
    timestamp: int


P = TypeVar("P", bound=Hashable)
R = TypeVar("R", bound=TimestampedRecord)


class EventTimeAligner(Generic[P, R]):
    """Per-partition buffers of fetched records, released in timestamp order up to the frontier.

    Each partition's own order is kept (a late record stays behind its predecessors); across
    partitions records interleave by timestamp.

    >>> from collections import namedtuple
    >>> Record = namedtuple("Record", "timestamp offset")
    >>> aligner = EventTimeAligner()
    >>> aligner.add("purchases-0", [Record(10, 0), Record(20, 1), Record(90, 2)])
    >>> aligner.add("interactions-0", [Record(15, 0), Record(30, 1)])
    >>> [(p, r.timestamp) for p, r in aligner.release(caught_up=lambda p: False)]
    [('purchases-0', 10), ('interactions-0', 15), ('purchases-0', 20), ('interactions-0', 30)]

    The purchase at 90 waits: interactions may still hold records up to 90. Once they are read up to
    the end, nothing holds it back.

    >>> [(p, r.timestamp) for p, r in aligner.release(caught_up=lambda p: p == "interactions-0")]
    [('purchases-0', 90)]

    A record's ordering time is at most its successor's: a record stamped years ahead (a clock error,
    dead-lettered later as a future timestamp) would otherwise hold its partition, and every record
    behind it, until all other partitions are read to their end. Within a partition the ordering
    times are thus non-decreasing (a late record pulls its predecessors' down with it).
    """

    def __init__(self) -> None:
        self._buffers: dict[P, deque[list]] = {}  # [ordering time, record], in offset order
        self._stream_time: dict[P, int] = {}

    def add(self, partition: P, records: Iterable[R]) -> None:
        """Buffer records fetched from ``partition``, in offset order."""
        buffer = self._buffers.setdefault(partition, deque())
        for record in records:
            key = record.timestamp
            for entry in reversed(buffer):
                if entry[0] <= key:
                    break
                entry[0] = key
            buffer.append([key, record])
            if key > self._stream_time.get(partition, key - 1):
                self._stream_time[partition] = key

    def track(self, partition: P) -> None:
        """Count ``partition`` in the frontier from now on, even before its first record arrives."""
        self._buffers.setdefault(partition, deque())

    def drop(self, partitions: Iterable[P]) -> None:
        """Forget partitions (revoked, or sought elsewhere): their buffered records will be fetched again."""
        for partition in partitions:
            self._buffers.pop(partition, None)
            self._stream_time.pop(partition, None)

    def buffered(self, partition: P) -> int:
        return len(self._buffers.get(partition, ()))

    def frontier(self, caught_up: Callable[[P], bool]) -> float:
        """The timestamp up to which every tracked partition has been read (``inf``: nothing holds back).

        A partition not ``caught_up`` (more records wait on the broker) holds the frontier at its stream
        time, ``-inf`` if it has not delivered a record yet; one read to its end holds nothing back.
        """
        return min((self._stream_time.get(p, float("-inf")) for p in self._buffers if not caught_up(p)),
                   default=float("inf"))

    def release(self, caught_up: Callable[[P], bool], limit: int | None = None,
                force: bool = False) -> list[tuple[P, R]]:
        """Records at or below the frontier (all buffered ones with ``force``), merged by timestamp,
        at most ``limit``; each partition's prefix only, so its offsets stay contiguous."""
        frontier = float("inf") if force else self.frontier(caught_up)
        streams = [_keyed(index, partition, buffer)
                   for index, (partition, buffer) in enumerate(self._buffers.items()) if buffer]
        released: list[tuple[P, R]] = []
        held: set[P] = set()
        for timestamp, _, partition, record in heapq.merge(*streams):
            if limit is not None and len(released) >= limit:
                break
            if partition in held:
                continue
            if timestamp > frontier:
                held.add(partition)  # later records of this partition stay behind this one
                if len(held) == len(streams):
                    break
                continue
            released.append((partition, record))
        for partition, _ in released:
            self._buffers[partition].popleft()
        return released


def _keyed(index: int, partition: P, buffer: deque[list]) -> Iterator[tuple[int, int, P, R]]:
    """(time, index) keys for :func:`heapq.merge`: the index breaks ties, records are never compared."""
    for key, record in buffer:
        yield key, index, partition, record
