"""A worker's speed: forward passes timed without the waits for their turns, over its latest batches."""

from collections.abc import Iterator
from contextlib import contextmanager

from worker.overlap import Turn
from worker.speed import WINDOW, PassTimer, Speed


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_batch_is_timed_on_the_model_only() -> None:
    clock = Clock()

    @contextmanager
    def turn() -> Iterator[None]:
        clock.now += 5.0  # waiting for the model while another batch's pass runs
        yield
        clock.now += 0.5  # after the pass: the next batch's turn, not this one's

    @contextmanager
    def in_line() -> Iterator[Turn]:
        clock.now += 7.0  # standing in line
        yield turn

    timer = PassTimer(in_line, clock)
    with timer.line() as take_turn:
        for seconds in (1.0, 2.0):
            with take_turn():
                clock.now += seconds  # the forward pass
    assert timer.seconds == 3.0


def test_speed_is_characters_a_second_over_the_latest_batches() -> None:
    speed = Speed()
    assert speed.characters_per_second() is None  # no batch yet: the planner cuts by pairs
    speed.record(1000, 0.0)  # no forward pass: it says nothing of the model's speed
    assert speed.characters_per_second() is None
    speed.record(3000, 1.0)
    speed.record(1000, 1.0)
    assert speed.characters_per_second() == 2000.0
    for _ in range(WINDOW):  # the documents change: the older batches drop out
        speed.record(100, 1.0)
    assert speed.characters_per_second() == 100.0
