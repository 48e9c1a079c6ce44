"""Job validation: bad input is rejected with the field at fault named."""

import pytest
from pydantic import ValidationError

from worker.spec import JobSpec


def job(**overrides: object) -> dict[str, object]:
    body: dict[str, object] = {
        "queries": [{"id": "q1", "text": "what is a panda?", "documents": [{"id": "d1", "text": "a bear"}]}]
    }
    body.update(overrides)
    return body


def fields(body: dict[str, object]) -> set[str]:
    with pytest.raises(ValidationError) as caught:
        JobSpec.model_validate(body)
    return {".".join(str(p) for p in error["loc"]) for error in caught.value.errors()}


def test_defaults() -> None:
    spec = JobSpec.model_validate(job())
    assert spec.options.model_dump() == {
        "threshold": 0.5,
        "top_k": None,
        "max_length": 1024,
        "normalize": True,
        "chunking": {"enabled": True, "max_tokens": 512, "overlap": 64, "aggregate": "max"},
        "clean_html": True,
        "cache": True,
        "callback_url": None,
    }


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (job(queries=[]), "queries"),
        (
            job(queries=[{"id": "q1", "text": "  ", "documents": [{"id": "d", "text": "x"}]}]),
            "queries.0.text",
        ),
        (job(queries=[{"id": "q1", "text": "", "documents": [{"id": "d", "text": "x"}]}]), "queries.0.text"),
        (job(queries=[{"id": "q1", "text": "x", "documents": []}]), "queries.0.documents"),
        (job(queries=[{"id": 7, "text": "x", "documents": [{"id": "d", "text": "x"}]}]), "queries.0.id"),
        (
            job(queries=[{"id": "q", "text": "x", "documents": [{"id": "d", "text": 3}]}]),
            "queries.0.documents.0.text",
        ),
        (
            job(
                queries=[
                    {
                        "id": "q",
                        "text": "x",
                        "documents": [{"id": "d", "text": "a"}, {"id": "d", "text": "b"}],
                    }
                ]
            ),
            "queries.0.documents",
        ),
        (job(queries=[{"id": "q", "text": "x", "documents": [{"id": "d", "text": "a"}]}] * 2), "queries"),
        (job(options={"threshold": 1.5}), "options.threshold"),
        (job(options={"threshold": -0.1}), "options.threshold"),
        (job(options={"top_k": 0}), "options.top_k"),
        (job(options={"temperature": 1}), "options.temperature"),
        (job(options={"callback_url": "ftp://example.com/done"}), "options.callback_url"),
        (job(options={"callback_url": "http:///no-host"}), "options.callback_url"),
        (job(extra=1), "extra"),
    ],
)
def test_bad_input_names_the_field(body: dict[str, object], field: str) -> None:
    assert field in fields(body)


def test_document_length_is_checked_against_the_limit_passed_in() -> None:
    query = JobSpec.model_validate(job()).queries[0]  # one document of 6 characters
    assert query.oversized(6) is None
    field, why = query.oversized(5) or ("", "")
    assert field == "documents.0.text"
    assert "6 characters; the limit is 5 (RERANK_MAX_DOCUMENT_CHARS)" in why


def test_max_length_takes_the_service_default_only_when_not_given() -> None:
    unset = JobSpec.model_validate(job()).options
    given = JobSpec.model_validate(job(options={"max_length": 1024})).options
    assert unset.with_defaults(512).max_length == 512
    assert given.with_defaults(512).max_length == 1024
