"""Releasing fetched records across partitions in event-time order (no Kafka imports: testable alone).

Why: a consumer fetches partitions in chunks of records, not of time. A backlog of a year drains
one partition (or topic: interactions are ten times denser than purchases) months ahead of another,
so the global learners downstream (segment samples, churn examples, item pairs across topics) see
history in a shuffled order that live traffic never has, and a replay no longer equals the live run.
Like Kafka Streams' partition group, the aligner holds each partition's fetched records and releases
only those at or below the *frontier*: the least stream time (max record timestamp fetched) over the
partitions that still have records waiting on the broker. A partition read to its end (its position
at the high watermark) does not hold the others back, but only for records fetched before it was last
seen at its end: its high watermark is as of its own last fetch. aiokafka does not fetch a partition while
records of it wait unread, so another partition's newer fetch can bring records far past what the first
partition's producer has written since; released against the stale end, they passed records still to come
(live traffic produced faster than the worker's fetch cycle, the alert test's replay = live check: a
customer alert's evidence differed in 1 CI run of several). Kafka Streams waits the same way for an
empty partition's lag to be known from a fetch (KIP-695).
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

    A partition seen at its end holds back only the records fetched since it was last seen there, in that
    same response or a later one (times of the fetch responses, wall clock): they may be newer than what its
    producer wrote since. The same response counts because a broker reads a response's partitions one after
    another while producers append: "busy" read after a write, "quiet" read before the write that came first.
    Here "quiet" was at its end at 100 (its last record at 12); "busy" was fetched again at 200.

    >>> aligner = EventTimeAligner()
    >>> aligner.add("quiet", [Record(12, 0)], fetched_ms=100)
    >>> aligner.add("busy", [Record(11, 0)], fetched_ms=90)
    >>> aligner.add("busy", [Record(14, 1)], fetched_ms=200)
    >>> seen_at_end = {"quiet": 100}
    >>> [(p, r.timestamp) for p, r in aligner.release(lambda p: p == "quiet", seen_at_end=seen_at_end.get)]
    [('busy', 11), ('quiet', 12)]
    >>> seen_at_end["quiet"] = 210  # fetched again after "busy": still at its end
    >>> [(p, r.timestamp) for p, r in aligner.release(lambda p: p == "quiet", seen_at_end=seen_at_end.get)]
    [('busy', 14)]
    >>> aligner.add("busy", [Record(15, 2)], fetched_ms=300)
    >>> seen_at_end["quiet"] = 300  # in the same response: it waits for the next one
    >>> aligner.release(lambda p: p == "quiet", seen_at_end=seen_at_end.get)
    []

    A record's ordering time is at most its successor's: a record stamped years ahead (a clock error,
    dead-lettered later as a future timestamp) would otherwise hold its partition, and every record
    behind it, until all other partitions are read to their end. Within a partition the ordering
    times are thus non-decreasing (a late record pulls its predecessors' down with it).
    """

    def __init__(self) -> None:
        self._buffers: dict[P, deque[list]] = {}  # [ordering time, record, fetched], in offset order
        self._stream_time: dict[P, int] = {}

    def add(self, partition: P, records: Iterable[R], fetched_ms: float = 0) -> None:
        """Buffer records fetched from ``partition``, in offset order (``fetched_ms``: when their fetch
        response came, or later)."""
        buffer = self._buffers.setdefault(partition, deque())
        for record in records:
            key = record.timestamp
            for entry in reversed(buffer):
                if entry[0] <= key:
                    break
                entry[0] = key
            buffer.append([key, record, fetched_ms])
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

    def release(self, caught_up: Callable[[P], bool], limit: int | None = None, force: bool = False,
                seen_at_end: Callable[[P], float | None] | None = None) -> list[tuple[P, R]]:
        """Records at or below the frontier (all buffered ones with ``force``), merged by timestamp,
        at most ``limit``; each partition's prefix only, so its offsets stay contiguous. With
        ``seen_at_end`` (when a ``caught_up`` partition was last seen at its end, as ``fetched_ms``), a record
        fetched then or after and newer than the partition's stream time waits for it to be seen again."""
        frontier = float("inf") if force else self.frontier(caught_up)
        streams = [_keyed(index, partition, buffer)
                   for index, (partition, buffer) in enumerate(self._buffers.items()) if buffer]
        ends = [] if force or seen_at_end is None else self._stale_ends(caught_up, seen_at_end)
        released: list[tuple[P, R]] = []
        held: set[P] = set()
        for timestamp, _, partition, record, fetched_ms in heapq.merge(*streams):
            if limit is not None and len(released) >= limit:
                break
            if partition in held:
                continue
            if timestamp > frontier or ends and any(seen <= fetched_ms and timestamp > newest and other != partition
                                                    for seen, newest, other in ends):
                frontier = min(frontier, timestamp)  # nor may a newer record of another partition pass it
                held.add(partition)  # later records of this partition stay behind this one
                if len(held) == len(streams):
                    break
                continue
            released.append((partition, record))
        for partition, _ in released:
            self._buffers[partition].popleft()
        return released

    def _stale_ends(self, caught_up: Callable[[P], bool], seen_at_end: Callable[[P], float | None]
                    ) -> list[tuple[float, float, P]]:
        """(seen at end, stream time, partition) of the caught-up partitions last seen at their end no later than
        some buffered record was fetched: only those can hold a record back (live, usually every caught-up one:
        one fetch response sees every partition of a broker, so what it brought waits for the next response).
        A buffer's last record is its newest fetched (responses come in order)."""
        newest_fetch = max((buffer[-1][2] for buffer in self._buffers.values() if buffer), default=0)
        ends = [(seen_at_end(p) or 0, self._stream_time.get(p, float("-inf")), p)
                for p in self._buffers if caught_up(p)]
        return [end for end in ends if end[0] <= newest_fetch]


def _keyed(index: int, partition: P, buffer: deque[list]) -> Iterator[tuple[int, int, P, R, float]]:
    """(time, index) keys for :func:`heapq.merge`: the index breaks ties, records are never compared."""
    for key, record, fetched_ms in buffer:
        yield key, index, partition, record, fetched_ms
