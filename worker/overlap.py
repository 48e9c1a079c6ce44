"""Overlap inside one worker process: it holds up to RERANK_WORKER_BATCHES batches at once (Celery
threads), so one is claimed, read and tokenized, or has its results written, while another is on
the model. Two pieces of pure logic keep that safe: the model gate lets one forward pass run at a
time, to the most urgent batch in line (a high-priority batch that arrives while a low one waits
goes first, and one that arrives while a low one is being scored goes in at its next forward
pass), and the batches in hand, so a second delivery of a batch this process already holds is
left alone instead of being scored twice."""

import itertools
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext

from worker.lifecycle import Priority

# Lower runs first; the same order as the broker's priority steps.
URGENCY = {Priority.high: 0, Priority.normal: 1, Priority.low: 2}

Turn = Callable[[], AbstractContextManager[None]]  # entered around each forward pass
InLine = Callable[[], AbstractContextManager[Turn]]  # stands a batch in line for the model


def alone() -> AbstractContextManager[Turn]:
    """The line of a process with no gate: no one to wait for."""
    return nullcontext(nullcontext)


class ModelGate:
    """One forward pass at a time, to the first batch in line: ordered by priority, then by when
    the batch got in line, so a batch keeps the model for all its forward passes unless a more
    urgent one gets in line meanwhile."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._line: list[tuple[int, int]] = []  # sorted (urgency, ticket) of batches in line
        self._tickets = itertools.count()
        self._busy = False

    @contextmanager
    def in_line(self, priority: Priority) -> Iterator[Turn]:
        """Stand in line for the model while the body runs; the body enters the yielded turn
        around each forward pass."""
        place = (URGENCY[priority], next(self._tickets))
        with self._changed:
            self._line.append(place)
            self._line.sort()
        try:
            yield lambda: self._turn(place)
        finally:
            with self._changed:
                self._line.remove(place)
                self._changed.notify_all()

    @contextmanager
    def _turn(self, place: tuple[int, int]) -> Iterator[None]:
        with self._changed:
            self._changed.wait_for(lambda: not self._busy and self._line[0] == place)
            self._busy = True
        try:
            yield
        finally:
            with self._changed:
                self._busy = False
                self._changed.notify_all()

    def line(self, priority: Priority) -> InLine:
        """How a batch of `priority` stands in line."""
        return lambda: self.in_line(priority)

    def waiting(self) -> int:
        """Batches in line, the one on the model included."""
        with self._changed:
            return len(self._line)


class InHand:
    """The batches this process holds: a second delivery of one of them (the reconciler re-sends
    a queued batch whose message a worker took but had not claimed yet) is not scored twice."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: set[int] = set()

    @contextmanager
    def take(self, batch_id: int) -> Iterator[bool]:
        """True inside the body if this call took the batch; False if it was already in hand."""
        with self._lock:
            taken = batch_id not in self._held
            self._held.add(batch_id)
        try:
            yield taken
        finally:
            if taken:
                with self._lock:
                    self._held.discard(batch_id)
