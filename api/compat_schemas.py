"""Request and response shapes of the rerank routes that speak other services' APIs: Cohere v2
(/v2/rerank), Cohere v1 and Jina (/v1/rerank), Hugging Face text-embeddings-inference (/rerank).
Fields those clients send that rerankq has no use for are accepted and ignored."""

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

from worker.spec import SQL_INT_MAX, QueryText, StoredStr


class _ClientRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")


class TextDocument(_ClientRequest):
    text: StoredStr


# Their number (RERANK_SYNC_MAX_DOCUMENTS) and length (RERANK_MAX_DOCUMENT_CHARS) are checked
# against the app's settings when the job is made (worker.sync.submit).
Documents = Annotated[list[StoredStr], Field(min_length=1)]
TopN = Annotated[
    StrictInt | None, Field(None, ge=1, le=SQL_INT_MAX, description="Return the best top_n documents only.")
]


class CohereV2Request(_ClientRequest):
    model: str | None = Field(None, description="Accepted and ignored: the workers' model scores.")
    query: QueryText
    documents: Documents
    top_n: TopN = None
    max_tokens_per_doc: StrictInt | None = Field(
        None,
        ge=1,
        le=SQL_INT_MAX,
        description="Tokens per scored (query, document) window (capped at RERANK_MAX_LENGTH).",
    )


class CohereV1Request(_ClientRequest):
    model: str | None = Field(None, description="Accepted and ignored: the workers' model scores.")
    query: QueryText
    documents: list[StoredStr | TextDocument] = Field(
        min_length=1, description="Strings, or objects with a text field."
    )
    top_n: TopN = None
    return_documents: StrictBool = Field(False, description="Each result carries document: {text}.")

    def texts(self) -> list[str]:
        return [d if isinstance(d, str) else d.text for d in self.documents]


class TeiRequest(_ClientRequest):
    query: QueryText
    texts: Documents
    raw_scores: StrictBool = Field(False, description="score is the raw logit instead of its sigmoid.")
    return_text: StrictBool = Field(False, description="Each result carries its text.")
    truncate: StrictBool | None = Field(
        None, description="true: truncate long texts; otherwise they are read whole, in windows."
    )
    truncation_direction: Literal["Right", "right"] = Field("Right", description="Only Right is supported.")


class BilledUnits(BaseModel):
    search_units: int = Field(description="One per 100 documents, as Cohere counts.")


class ApiVersion(BaseModel):
    version: str


class Meta(BaseModel):
    api_version: ApiVersion
    billed_units: BilledUnits


class CohereResult(BaseModel):
    index: int = Field(description="The document's position in the request.")
    relevance_score: float = Field(description="sigmoid(raw logit), 0..1.")
    document: TextDocument | None = Field(None, description="With return_documents (v1).")


class CohereResponse(BaseModel):
    id: str = Field(description="The job's id: GET /v1/jobs/{id} shows it.")
    results: list[CohereResult] = Field(description="Best first.")
    meta: Meta


class TeiResult(BaseModel):
    index: int
    score: float
    text: str | None = None
