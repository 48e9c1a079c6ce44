"""The pair layout read from a tokenizer builds exactly the input ids and token type ids the
tokenizer itself gives a (query, document) pair, on transformers 4.x and 5.x alike."""

from pathlib import Path

import pytest
from transformers import AutoTokenizer

from worker.engine.pairs import PairLayout

PAIRS = [
    ("how do I drop rows with NaN in pandas?", "Use df.dropna(subset=['a']) to drop them."),
    ("年假怎么计算？", "员工入职满一年后享有五天带薪年假。"),
    ("x", "a b c d e f g h"),
]


def check_layout(path: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    layout = PairLayout.of(tokenizer)
    for query, document in PAIRS:
        q, d = (tokenizer(text, add_special_tokens=False)["input_ids"] for text in (query, document))
        whole = tokenizer(query, document, return_token_type_ids=True)
        assert layout.ids(q, d) == tuple(whole["input_ids"])
        assert layout.types(q, d) == tuple(whole["token_type_ids"])
    assert layout.special_tokens == tokenizer.num_special_tokens_to_add(pair=True)


def test_xlm_roberta_layout_has_no_second_type(tiny_model: Path) -> None:
    check_layout(tiny_model)
    layout = PairLayout.of(AutoTokenizer.from_pretrained(str(tiny_model)))
    assert layout.middle == (2, 2) and layout.document_type == 0


@pytest.mark.parametrize("model", ["tiny_bert_model", "trained_model"])
def test_bert_layout_has_two_token_types(model: str, request: pytest.FixtureRequest) -> None:
    path = request.getfixturevalue(model)
    check_layout(path)
    layout = PairLayout.of(AutoTokenizer.from_pretrained(str(path)))
    assert (layout.query_type, layout.document_type) == (0, 1)
