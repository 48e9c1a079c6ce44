"""A worker's measured speed: the document characters its latest batches put through the model a
second, counting the time their forward passes held the model, not their waits for a turn.
Heartbeats publish it; the planner cuts a new job's batches to RERANK_TASK_SECONDS of the slowest live
worker's speed (worker.batching), so a task takes about that long on a GPU and on a CPU alike."""

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from worker.overlap import InLine, Turn

WINDOW = 16  # batches the speed is taken over: recent enough to follow a change of documents


class Speed:
    """Characters and model seconds of the latest batches, recorded by the threads of one worker."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._batches: deque[tuple[int, float]] = deque(maxlen=WINDOW)

    def record(self, characters: int, seconds: float) -> None:
        if seconds <= 0:  # no forward pass: it says nothing of the model's speed
            return
        with self._lock:
            self._batches.append((characters, seconds))

    def characters_per_second(self) -> float | None:
        """None until a batch has been timed."""
        with self._lock:
            characters = sum(batch[0] for batch in self._batches)
            seconds = sum(batch[1] for batch in self._batches)
        return characters / seconds if seconds > 0 else None


class PassTimer:
    """Stands a batch in line like `in_line` and adds up how long it held the model's turns, the
    waits for them left out."""

    def __init__(self, in_line: InLine, clock: Callable[[], float] = time.perf_counter) -> None:
        self._in_line, self._clock = in_line, clock
        self.seconds = 0.0

    @contextmanager
    def line(self) -> Iterator[Turn]:
        with self._in_line() as turn:
            yield lambda: self._timed(turn)

    @contextmanager
    def _timed(self, turn: Turn) -> Iterator[None]:
        with turn():
            started = self._clock()
            try:
                yield
            finally:
                self.seconds += self._clock() - started
