"""The pure checks behind "every bad input a 4xx": unstorable text, JSON depth, signed cursors."""

import base64
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from api.limits import check_json_body
from worker.cursors import BIGINT_MAX, Cursors
from worker.errors import InvalidInput
from worker.spec import DocumentSpec, QuerySpec, json_depth, storable


@given(st.text())
def test_storable_text_is_exactly_what_utf8_and_postgresql_take(text: str) -> None:
    """Refused iff it holds a NUL or a lone surrogate: everything else encodes and is stored."""
    unstorable = "\x00" in text or any(0xD800 <= ord(c) <= 0xDFFF for c in text)
    try:
        storable(text)
        refused = False
    except ValueError:
        refused = True
    assert refused == unstorable
    if not refused:
        text.encode("utf-8")


@pytest.mark.parametrize(
    ("document", "field"),
    [
        ({"id": "a\x00", "text": "t"}, "id"),
        ({"id": "a", "text": "t\x00"}, "text"),
        ({"id": "a", "text": "t\ud800"}, "text"),
        ({"id": "a", "text": "t", "metadata": {"k": ["x", {"deep": "v\x00"}]}}, "metadata"),
        ({"id": "a", "text": "t", "metadata": {"k\x00": 1}}, "metadata"),
    ],
)
def test_unstorable_document_fields_are_named(document: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        DocumentSpec.model_validate(document)
    error = caught.value.errors()[0]
    assert error["loc"][0] == field and error["type"] == "unstorable_character"


def test_a_jsonl_line_with_an_escaped_nul_names_the_field() -> None:
    line = json.dumps({"id": "q", "text": "a\u0000b", "documents": [{"id": "d", "text": "x"}]})
    with pytest.raises(ValidationError) as caught:
        QuerySpec.model_validate_json(line)
    assert caught.value.errors()[0]["loc"] == ("text",)


@pytest.mark.parametrize(
    ("body", "depth"),
    [
        (b"{}", 1),
        (b'{"a": [1, {"b": []}]}', 4),
        (b'{"a": "[[[[{{{{"}', 1),  # brackets inside strings do not count
        (b'{"a": "\\"[[[[", "b": [[]]}', 3),  # nor after an escaped quote
        (b"[" * 10_000 + b"]" * 10_000, 10_000),
    ],
)
def test_json_depth(body: bytes, depth: int) -> None:
    assert json_depth(body) == depth


def _depth(value: object) -> int:
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    return 0


_TRICKY = st.text(alphabet='ab"\\[]{}/\u00e9\u4e2d', max_size=8)  # quotes, backslashes, brackets
_JSON = st.recursive(
    st.none() | st.integers() | _TRICKY,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TRICKY, inner, max_size=3),
    max_leaves=20,
)


@given(_JSON, st.booleans())
def test_json_depth_is_the_parsed_values_depth(value: object, ascii_only: bool) -> None:
    assert json_depth(json.dumps(value, ensure_ascii=ascii_only).encode()) == _depth(value)


def test_json_bodies_too_deep_or_not_utf8_are_refused_naming_the_body() -> None:
    check_json_body(b'{"a": [[[]]]}', max_depth=4)
    for body in (b'{"a": [[[[]]]]}', b'{"a": "\xff"}'):
        with pytest.raises(InvalidInput) as caught:
            check_json_body(body, max_depth=4)
        assert caught.value.field == "body"


def test_cursors_round_trip_and_are_bound_to_their_job_and_key() -> None:
    cursors = Cursors.from_secret("one")
    cursor = cursors.encode("job-a", (12, 3))
    assert cursors.decode("job-a", cursor) == (12, 3)
    for job, reader in (("job-b", cursors), ("job-a", Cursors.from_secret("two"))):
        with pytest.raises(InvalidInput, match="not one of job"):
            reader.decode(job, cursor)


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "not-a-cursor",
        base64.urlsafe_b64encode(b"99999999999999999999999.1").decode(),  # unsigned, over 64 bits
        "a.b.c",
        "\u00e9.x",
    ],
)
def test_malformed_cursors_are_invalid_input(cursor: str) -> None:
    with pytest.raises(InvalidInput):
        Cursors.from_secret("k").decode("job", cursor)


def test_a_signed_cursor_over_64_bits_is_refused_before_the_database() -> None:
    cursors = Cursors.from_secret("k")
    with pytest.raises(InvalidInput, match="out of range"):
        cursors.decode("job", cursors.encode("job", (BIGINT_MAX + 1, 1)))
