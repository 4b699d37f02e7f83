"""Training examples released in event-time order, behind a frontier.

Why: examples reach the trainer in the order batches closed them, which is not the order of the history. An
order closes its example at once; a silent customer's examples are closed up to ``label_steps`` at a time,
weeks after their window ended; partitions interleave as their consumers happen to run. An online learner is
order-dependent, so the same history fed in two runs trained two different models (and the purchases, seen
weeks before the silences they interrupt, biased every early model towards buying). Released here in order of
their window's end (then id) once no example ending before the frontier can still come, every run learns the
same sequence, the one the history dictates.

>>> order = ExampleOrder()
>>> for end_ms, example_id in [(30, "b"), (10, "a"), (30, "a"), (50, "c")]:
...     order.add(end_ms, example_id, example_id.upper())
>>> [example for example in order.release(30)]
['A', 'A', 'B']
>>> len(order), order.frontier_ms
(1, 30)
>>> order.add(20, "late", "L")   # behind the released frontier: released at once, and counted
>>> list(order.release(30)), order.late
(['L'], 1)
"""
from __future__ import annotations

import heapq
from typing import Generic, Iterator, TypeVar

__all__ = ["ExampleOrder"]

E = TypeVar("E")


class ExampleOrder(Generic[E]):
    """A heap of (window end, example id, example); :meth:`release` yields those ending at or before the frontier."""

    def __init__(self) -> None:
        self._heap: list[tuple[int, str, E]] = []
        self.frontier_ms = -(2**62)
        self.late = 0  # examples that came behind the frontier (learned at once, out of order)

    def __len__(self) -> int:
        return len(self._heap)

    def add(self, end_ms: int, example_id: str, example: E) -> None:
        if end_ms <= self.frontier_ms:
            self.late += 1
        heapq.heappush(self._heap, (end_ms, example_id, example))

    def release(self, frontier_ms: int) -> Iterator[E]:
        """The held examples ending at or before ``frontier_ms`` (which never moves back), in order."""
        self.frontier_ms = max(self.frontier_ms, frontier_ms)
        while self._heap and self._heap[0][0] <= self.frontier_ms:
            yield heapq.heappop(self._heap)[2]
