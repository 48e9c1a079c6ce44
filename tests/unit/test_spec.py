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
        (job(extra=1), "extra"),
    ],
)
def test_bad_input_names_the_field(body: dict[str, object], field: str) -> None:
    assert field in fields(body)
