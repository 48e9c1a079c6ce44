"""Whose batch goes on the queue next (worker.turns.take_turns): the job with the fewest batches
on the queue, the oldest on a tie, never more than a job has pending."""

from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from worker.turns import take_turns


def test_a_newcomer_gets_the_free_places_until_it_has_as_many_as_the_others() -> None:
    jobs = ["old", "new"]
    given_now = take_turns(jobs, Counter({"old": 6}), Counter({"old": 50, "new": 50}), 8)
    assert given_now == Counter({"new": 7, "old": 1})


def test_a_job_with_nothing_pending_gets_nothing() -> None:
    assert take_turns(["a", "b"], Counter(), Counter({"b": 2}), 5) == Counter({"b": 2})


@given(
    open_now=st.lists(st.integers(0, 5), min_size=1, max_size=6),
    pending=st.lists(st.integers(0, 9), min_size=6, max_size=6),
    wanted=st.integers(0, 20),
)
def test_turns_are_within_what_is_pending_and_wanted(
    open_now: list[int], pending: list[int], wanted: int
) -> None:
    jobs = [f"j{i}" for i in range(len(open_now))]
    queued = Counter(dict(zip(jobs, open_now, strict=True)))
    waiting = Counter(dict(zip(jobs, pending, strict=False)))
    released = take_turns(jobs, queued, waiting, wanted)
    assert sum(released.values()) == min(wanted, sum(waiting[job] for job in jobs))
    assert all(released[job] <= waiting[job] for job in jobs)
    final = {job: queued[job] + released[job] for job in jobs}
    starved = [job for job in jobs if waiting[job] > released[job]]
    for served in (job for job in jobs if released[job]):
        # a job was given a batch only while every job still waiting held at least as many
        assert all(final[job] >= final[served] - 1 for job in starved), (served, final)
