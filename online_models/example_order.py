"""Training examples released in event-time order, behind a frontier.

Why: examples reach the trainer in the order batches closed them, which is not the order of the history: a
silent customer's examples may be closed ``label_steps`` at a time, after their window ended; partitions
interleave as their consumers happen to run; batches are cut where fetches happen to end. An online learner is
order-dependent, so the same history fed in two runs trained two different models (bench/reproducibility.py:
the same 115,438 examples, final models apart by up to 0.36 in ``churn_p``). Released here in order of the event
time each label was decided (the order that ended a window, or the window's end for a silence; then id) once no
example decided before the frontier can still come, every run learns the same sequence, the one the history
dictates. (Ordered by window end instead, every label waits for the window to end: measured in docs/churn.md,
it ranked and calibrated worse on the sparse profile.)

>>> order = ExampleOrder()
>>> for decided_ms, example_id in [(30, "b"), (10, "a"), (30, "a"), (50, "c")]:
...     order.add(decided_ms, example_id, example_id.upper())
>>> [example for example in order.release(30)]
['A', 'A', 'B']
>>> len(order), order.frontier_ms
(1, 30)
>>> order.add(20, "late", "L")   # behind the released frontier: released at once, and counted
>>> list(order.release(30)), order.late
(['L'], 1)

Where the frontier comes from: each input partition's *progress* (the event time before which it will close
no more examples), the slowest partition's, less the label delay (:class:`PartitionFrontier`).
"""
from __future__ import annotations

import heapq
import time
from typing import Callable, Generic, Iterator, TypeVar

__all__ = ["ExampleOrder", "PartitionFrontier"]

E = TypeVar("E")


class ExampleOrder(Generic[E]):
    """A heap of (decided at, example id, example); :meth:`release` yields those decided by the frontier."""

    def __init__(self) -> None:
        self._heap: list[tuple[int, str, E]] = []
        self.frontier_ms = -(2**62)
        self.late = 0  # examples that came behind the frontier (learned at once, out of order)

    def __len__(self) -> int:
        return len(self._heap)

    def add(self, decided_ms: int, example_id: str, example: E) -> None:
        if decided_ms <= self.frontier_ms:
            self.late += 1
        heapq.heappush(self._heap, (decided_ms, example_id, example))

    def next_decided_ms(self) -> int | None:
        """When the next example to release was decided (None when none is held)."""
        return self._heap[0][0] if self._heap else None

    def release(self, frontier_ms: int) -> Iterator[E]:
        """The held examples decided at or before ``frontier_ms`` (which never moves back), in order."""
        self.frontier_ms = max(self.frontier_ms, frontier_ms)
        while self._heap and self._heap[0][0] <= self.frontier_ms:
            yield heapq.heappop(self._heap)[2]


class PartitionFrontier:
    """The slowest input partition's progress: the trainer's frontier in event time.

    Each partition's worker reports, after each batch, the event time before which it will send no further
    example (:meth:`advance`; only forward). The frontier is the least of them: known once every partition has
    reported. A partition that stops reporting (no purchases reach it, or its input has ended) would hold the
    frontier for good: once it has not advanced for ``idle_after_s`` of wall-clock time while another
    partition has, it is left out (as Flink's idle sources are) until it advances again. Only then do wall
    clocks enter: examples it sends later behind the frontier are learned at once, out of order, and counted.

    >>> now = [0.0]
    >>> frontier = PartitionFrontier(2, idle_after_s=60, clock=lambda: now[0])
    >>> frontier.advance(0, 1_000); frontier.frontier_ms() is None     # partition 1 not heard from yet
    True
    >>> frontier.advance(1, 400); frontier.frontier_ms()
    400
    >>> now[0] = 100.0; frontier.advance(0, 5_000); frontier.frontier_ms(), sorted(frontier.idle())
    (5000, [1])
    >>> frontier.advance(1, 450); frontier.frontier_ms()                # back, and behind: holds it again
    450
    """

    def __init__(self, partitions: int, idle_after_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.partitions, self.idle_after_s, self.clock = partitions, idle_after_s, clock
        self.progress: dict[int, int] = {}
        self._advanced_at: dict[int, float] = {}
        self._started_at = clock()

    def advance(self, partition: int, progress_ms: int) -> None:
        if progress_ms > self.progress.get(partition, -(2**62)):
            self.progress[partition] = progress_ms
            self._advanced_at[partition] = self.clock()

    def idle(self) -> set[int]:
        """Partitions left out: silent for ``idle_after_s`` while another advanced since."""
        latest = max(self._advanced_at.values(), default=None)
        if latest is None:
            return set()
        now = self.clock()
        return {partition for partition in range(self.partitions)
                if now - self._advanced_at.get(partition, self._started_at) >= self.idle_after_s
                and self._advanced_at.get(partition, self._started_at) < latest}

    def frontier_ms(self) -> int | None:
        """The least progress of the partitions not idle; None while one of them has never reported."""
        active = set(range(self.partitions)) - self.idle()
        if not active or any(partition not in self.progress for partition in active):
            return None
        return min(self.progress[partition] for partition in active)

    def __getstate__(self) -> dict:
        """Checkpointed without the wall clocks (a restarted trainer waits ``idle_after_s`` afresh)."""
        return {"partitions": self.partitions, "idle_after_s": self.idle_after_s, "progress": self.progress}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["partitions"], state["idle_after_s"])
        self.progress = dict(state["progress"])
