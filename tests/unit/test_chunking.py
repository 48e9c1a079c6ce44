"""Windows over tokens: every token covered, overlaps exact, one-window texts left whole;
aggregation picks the winning window."""

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.chunking import aggregate, token_windows


@given(st.integers(0, 5000), st.integers(1, 600), st.data())
def test_windows_cover_every_token_with_exact_overlaps(tokens: int, size: int, data: st.DataObject) -> None:
    overlap = data.draw(st.integers(0, size - 1))
    windows = token_windows(tokens, size, overlap)
    assert windows[0][0] == 0 and windows[-1][1] == tokens
    assert all(0 < end - start <= size for start, end in windows) or tokens == 0
    for (_, end), (start, _) in itertools.pairwise(windows):
        assert end - start == overlap  # consecutive windows share exactly `overlap` tokens
    covered = set().union(*(range(start, end) for start, end in windows))
    assert covered == set(range(tokens))


def test_a_text_of_exactly_one_window_is_not_split() -> None:
    assert token_windows(512, 512, 64) == [(0, 512)]
    assert token_windows(513, 512, 64) == [(0, 512), (448, 513)]


def test_bad_window_sizes_are_refused() -> None:
    with pytest.raises(ValueError):
        token_windows(10, 8, 8)


def test_aggregate() -> None:
    assert aggregate([0.1, 2.0, -1.0], "max") == (2.0, 1)
    assert aggregate([0.1, 2.0, -1.0], "mean") == (pytest.approx(1.1 / 3), 1)
    assert aggregate([0.1, 2.0, -1.0], "first") == (0.1, 0)
