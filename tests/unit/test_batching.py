"""Token-budget batching: every pair lands in exactly one batch, within budget."""

from hypothesis import given
from hypothesis import strategies as st

from worker.engine.batching import token_budget_batches

lengths = st.lists(st.integers(min_value=1, max_value=2048), max_size=300)


@given(lengths, st.integers(min_value=1, max_value=20000))
def test_every_pair_once_and_padded_size_within_budget(sizes: list[int], budget: int) -> None:
    batches = token_budget_batches(sizes, budget)
    assert sorted(i for batch in batches for i in batch) == list(range(len(sizes)))
    for batch in batches:
        longest = max(sizes[i] for i in batch)
        assert len(batch) == 1 or len(batch) * longest <= budget


@given(lengths)
def test_batches_are_length_sorted_longest_first(sizes: list[int]) -> None:
    flat = [sizes[i] for batch in token_budget_batches(sizes, 4096) for i in batch]
    assert flat == sorted(flat, reverse=True)


def test_short_pairs_share_a_batch_long_ones_do_not() -> None:
    assert token_budget_batches([10, 10, 10, 10], 40) == [[0, 1, 2, 3]]
    assert token_budget_batches([500, 10, 10], 512) == [[0], [1, 2]]
