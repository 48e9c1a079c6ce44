"""Keyword marks on a passage: spans that match the query, and nothing of the text lost."""

from itertools import pairwise

from hypothesis import given
from hypothesis import strategies as st

from api.pages.cards import cards
from api.pages.highlight import Segment, highlight, keywords, matches
from worker.views import BestChunk, ResultOut


def _marked(query: str, passage: str) -> list[str]:
    return [segment.text for segment in highlight(query, passage) if segment.marked]


def test_words_match_whole_and_in_any_case() -> None:
    assert _marked("Annual leave policy", "ANNUAL leave; leaves and policy.") == ["ANNUAL", "leave", "policy"]


def test_stopwords_and_single_letters_are_not_marked() -> None:
    assert keywords("How do I drop a row with NaN?") == ["drop", "nan", "row"]
    assert _marked("what is the leave", "What is the leave?") == ["leave"]


def test_chinese_marks_runs_of_two_or_more_query_characters() -> None:
    passage = "员工每年可享受带薪年假5天，年假天数按工龄计算。"
    assert _marked("年假怎么计算？", passage) == ["年假", "年假", "计算"]
    assert _marked("年", passage) == []  # one character is not a run


def test_mixed_scripts_and_overlapping_matches_merge() -> None:
    assert matches("API 密钥轮换", "轮换API密钥, rapid") == [(0, 7)]
    assert _marked("密钥轮换", "密钥轮换") == ["密钥轮换"]


def test_html_is_left_as_text_for_the_template_to_escape() -> None:
    passage = "<script>alert('leave')</script>"
    assert highlight("leave", passage) == [
        Segment("<script>alert('"),
        Segment("leave", marked=True),
        Segment("')</script>"),
    ]


@given(st.text(max_size=40), st.text(max_size=200))
def test_segments_rebuild_the_passage(query: str, passage: str) -> None:
    pieces = highlight(query, passage)
    assert "".join(piece.text for piece in pieces) == passage
    assert all(piece.text for piece in pieces)
    spans = matches(query, passage)
    assert all(end < start for (_, end), (start, _) in pairwise(spans))  # sorted, merged


def _result(document_id: str, start: int, end: int, text: str, chunks: int) -> ResultOut:
    best = BestChunk(index=0, start=start, end=end, text=text)
    return ResultOut(
        query_id="q",
        document_id=document_id,
        rank=1,
        raw_score=0.0,
        score=0.5,
        relevant=False,
        chunks=chunks,
        best_chunk=best,
        query_truncated=False,
        metadata=None,
    )


def test_whole_text_is_kept_only_where_the_window_is_not_all_of_it() -> None:
    whole = "intro. the key part. outro."
    results = [_result("read-whole", 0, len(whole), whole, 1), _result("windowed", 7, 20, whole[7:20], 3)]
    read_whole, windowed = cards("key", results, {"read-whole": whole, "windowed": whole})
    assert read_whole.whole is None
    assert windowed.whole is not None
    assert [s.text for s in windowed.whole.window] == ["the ", "key", " part."]
    assert (
        "".join(s.text for s in windowed.whole.before + windowed.whole.window + windowed.whole.after) == whole
    )
    assert windowed.probability == 0.5
