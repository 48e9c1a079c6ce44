"""The model gate and the batches in hand, with threads standing in for a worker's Celery tasks."""

import threading
import time
from collections.abc import Callable

from worker.lifecycle import Priority
from worker.metrics import Pace
from worker.overlap import InHand, ModelGate, alone


def wait_until(condition: Callable[[], bool], seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(0.001)


class Batch(threading.Thread):
    """A batch that stands in line at `priority` and runs `passes` forward passes, each recorded
    in `log` as (name, pass); it gets in line only once `go` is set."""

    def __init__(self, gate: ModelGate, name: str, priority: Priority, passes: int, log: list[str]) -> None:
        super().__init__(daemon=True)
        self.gate, self.label, self.priority, self.passes, self.log = gate, name, priority, passes, log
        self.go = threading.Event()
        self.in_pass = threading.Event()  # set while a pass runs, held until `release` is set
        self.release = threading.Event()
        self.hold = False

    def run(self) -> None:
        self.go.wait()
        with self.gate.in_line(self.priority) as turn:
            for i in range(self.passes):
                with turn():
                    self.log.append(f"{self.label}{i}")
                    if self.hold:
                        self.in_pass.set()
                        self.release.wait()
                        self.hold = False


def test_one_batch_keeps_the_model_for_all_its_passes_before_the_next_in_line() -> None:
    gate, log = ModelGate(), list[str]()
    first = Batch(gate, "a", Priority.low, 3, log)
    second = Batch(gate, "b", Priority.low, 3, log)
    first.hold = True
    first.start()
    second.start()
    first.go.set()
    first.in_pass.wait(5)
    second.go.set()
    wait_until(lambda: gate.waiting() == 2)
    first.release.set()
    first.join(5)
    second.join(5)
    assert log == ["a0", "a1", "a2", "b0", "b1", "b2"]


def test_a_high_priority_batch_goes_in_at_the_next_forward_pass_of_a_low_one() -> None:
    gate, log = ModelGate(), list[str]()
    low = Batch(gate, "low", Priority.low, 3, log)
    waiting_low = Batch(gate, "next", Priority.low, 1, log)
    high = Batch(gate, "high", Priority.high, 2, log)
    low.hold = True
    for batch in (low, waiting_low, high):
        batch.start()
    low.go.set()
    low.in_pass.wait(5)
    waiting_low.go.set()  # prepared before the high batch arrived: it still waits behind it
    wait_until(lambda: gate.waiting() == 2)
    high.go.set()
    wait_until(lambda: gate.waiting() == 3)
    low.release.set()
    for batch in (low, waiting_low, high):
        batch.join(5)
    assert log == ["low0", "high0", "high1", "low1", "low2", "next0"]


def test_the_gate_runs_one_pass_at_a_time() -> None:
    gate, running, most = ModelGate(), [0], [0]
    lock = threading.Lock()

    def batch(priority: Priority) -> None:
        with gate.in_line(priority) as turn:
            for _ in range(20):
                with turn():
                    with lock:
                        running[0] += 1
                        most[0] = max(most[0], running[0])
                    time.sleep(0.0005)
                    with lock:
                        running[0] -= 1

    threads = [threading.Thread(target=batch, args=(p,)) for p in [*Priority] * 3]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert most[0] == 1
    assert gate.waiting() == 0


def test_a_batch_that_fails_leaves_the_line() -> None:
    gate = ModelGate()
    try:
        with gate.in_line(Priority.normal) as turn, turn():
            raise RuntimeError("the model failed")
    except RuntimeError:
        pass
    assert gate.waiting() == 0
    with gate.in_line(Priority.low) as turn, turn():  # the model is free again
        assert gate.waiting() == 1


def test_without_a_gate_nothing_waits() -> None:
    with alone() as turn, turn():
        pass


def test_a_batch_in_hand_is_not_taken_twice_until_it_is_let_go() -> None:
    in_hand = InHand()
    with in_hand.take(7) as first:
        with in_hand.take(7) as second, in_hand.take(8) as other:
            assert (first, second, other) == (True, False, True)
        with in_hand.take(7) as again:  # the second delivery let nothing go
            assert not again
    with in_hand.take(7) as later:
        assert later


def test_a_workers_pace_counts_overlapping_batches_once() -> None:
    pace = Pace()
    assert pace.period(2.0, 1000) == (2.0, -1)  # the first batch: its own time
    time.sleep(0.05)
    seconds, tokens = pace.period(2.0, 1600)  # finished 0.05 s after the one it overlapped
    assert 0.05 <= seconds < 2.0 and tokens == 600
    time.sleep(0.05)
    assert pace.period(0.01, 1700) == (0.01, -1)  # after an idle spell: its own time again
    assert pace.period(5.0, 1700) == (5.0, -1)  # its forward ran before the last one ended: its own
