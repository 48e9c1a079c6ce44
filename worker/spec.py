"""What a client may submit: a rerank job's queries, documents and options (validated once, here,
for the HTTP API and the CLI alike). Errors name the field, e.g. queries.0.documents.3.id."""

import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    StringConstraints,
    Tag,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from worker.cron import check_cron, check_timezone
from worker.lifecycle import Priority

# What PostgreSQL's text cannot hold (NUL) and UTF-8 cannot encode (a lone surrogate, which a JSON
# body can spell as \ud800): refused here, naming the field, before the database refuses it.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(text: str) -> str:
    """`text` if the database can store it; else a validation error saying which character."""
    if text.isascii() and "\x00" not in text:  # no surrogate in ASCII (a flag: no scan), NUL by memchr
        return text
    if found := _UNSTORABLE.search(text):
        what = "a NUL character (\\u0000)" if found.group() == "\x00" else "a lone UTF-16 surrogate"
        raise PydanticCustomError(
            "unstorable_character",
            "must not contain {what} (character {at})",
            {"what": what, "at": found.start()},
        )
    return text


def storable_json(value: Any) -> Any:
    """`value` (user metadata) if every key and string in it is storable, walked without recursion."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            storable(item)
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return value


# The largest integer a SQL INTEGER holds: counts a client gives (top_k) are compared with ranks there.
SQL_INT_MAX = 2**31 - 1
StoredStr = Annotated[StrictStr, AfterValidator(storable)]
ClientId = Annotated[StoredStr, Field(min_length=1, max_length=255)]
Metadata = Annotated[dict[str, Any], AfterValidator(storable_json)]
# A path or query parameter of the HTTP API (a job id, a query id, a cursor, a name): checked as
# body fields are, so a NUL in a URL is a 422 naming the parameter.
ParamStr = Annotated[str, StringConstraints(max_length=255), AfterValidator(storable)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _unique_ids(items: list[Any], what: str) -> list[Any]:
    seen: dict[str, int] = {}
    for index, item in enumerate(items):
        if item.id in seen:
            raise PydanticCustomError(
                "duplicate_id",
                "duplicate {what} id '{id}': items {first} and {index} share it",
                {"what": what, "id": item.id, "first": seen[item.id], "index": index},
            )
        seen[item.id] = index
    return items


class DocumentSpec(_Strict):
    id: ClientId
    text: StoredStr
    metadata: Metadata | None = None


def too_long(document: DocumentSpec, limit: int) -> str | None:
    """Why a document is refused for its length (over `limit` characters), or None."""
    if len(document.text) <= limit:
        return None
    return f"document has {len(document.text)} characters; the limit is {limit} (RERANK_MAX_DOCUMENT_CHARS)"


_NOT_BRACKET = re.compile(rb"[^\[\]{}]+")


def json_depth(raw: bytes) -> int:
    """How deeply a JSON text's arrays and objects nest, from its brackets outside strings: found
    before parsing, so a text nested 10,000 deep costs a scan, not a recursion."""
    # Without its escaped backslashes and quotes, every other piece between quotes of the text is
    # outside its strings: found at C speed (a regex over the strings took 3 times json.loads's time)
    unescaped = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    brackets = _NOT_BRACKET.sub(b"", b"".join(unescaped.split(b'"')[::2]))
    depth = deepest = 0
    for byte in brackets:
        depth += 1 if byte in b"[{" else -1
        deepest = max(deepest, depth)
    return deepest


def too_deep(raw: bytes, limit: int) -> str | None:
    """Why a JSON text is refused for its nesting (deeper than `limit`), or None."""
    # Fewer brackets than the limit cannot nest past it: most texts skip the scan.
    if raw.count(b"[") + raw.count(b"{") <= limit or (depth := json_depth(raw)) <= limit:
        return None
    return f"nests {depth} levels deep; the limit is {limit} (RERANK_MAX_JSON_DEPTH)"


def _not_blank(text: str) -> str:
    if not text.strip():
        raise PydanticCustomError("blank_text", "query text must not be blank")
    return text


QueryText = Annotated[StoredStr, Field(min_length=1), AfterValidator(_not_blank)]
PriorityField = Field(
    None,
    description="high | normal | low; default normal, low for jobs over RERANK_LOW_PRIORITY_PAIRS pairs.",
)


class QuerySpec(_Strict):
    id: ClientId
    text: QueryText
    documents: list[DocumentSpec] = Field(min_length=1)

    @field_validator("documents")
    @classmethod
    def _unique_documents(cls, documents: list[DocumentSpec]) -> list[DocumentSpec]:
        return _unique_ids(documents, "document")

    def oversized(self, limit: int) -> tuple[str, str] | None:
        """The first document over `limit` characters: (its field, why), else None."""
        for index, document in enumerate(self.documents):
            if why := too_long(document, limit):
                return f"documents.{index}.text", why
        return None


class ChunkingOptions(_Strict):
    """Long documents are split into overlapping token windows, each scored beside the query."""

    enabled: StrictBool = Field(
        True, description="false: a long document is truncated, as FlagEmbedding does."
    )
    max_tokens: StrictInt = Field(512, ge=16, le=8192, description="Document tokens per window.")
    overlap: StrictInt = Field(64, ge=0, description="Tokens shared by consecutive windows.")
    aggregate: Literal["max", "mean", "first"] = Field(
        "max", description="Windows' raw scores -> document's."
    )

    @model_validator(mode="after")
    def _overlap_below_window(self) -> "ChunkingOptions":
        if self.overlap >= self.max_tokens:
            raise PydanticCustomError(
                "overlap_too_large",
                "overlap ({overlap}) must be smaller than max_tokens ({max_tokens})",
                {"overlap": self.overlap, "max_tokens": self.max_tokens},
            )
        return self


def _http_url(url: str | None) -> str | None:
    if url is not None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise PydanticCustomError(
                "callback_url",
                "callback_url must be an http:// or https:// URL with a host, not '{url}'",
                {"url": url},
            )
    return url


class JobOptions(_Strict):
    threshold: StrictFloat = Field(
        0.5, ge=0.0, le=1.0, description="A result is relevant when score > threshold."
    )
    top_k: StrictInt | None = Field(
        None, ge=1, le=SQL_INT_MAX, description="Return at most this many results per query."
    )
    max_length: StrictInt = Field(
        1024,
        ge=16,
        le=8192,
        description="Tokens per (query, document) pair (default RERANK_MAX_LENGTH, 1024), cut to what the"
        " model reads (the job's effective_max_length).",
    )
    normalize: StrictBool = Field(True, description="score = sigmoid(raw_score); false: score = raw_score.")
    chunking: ChunkingOptions = Field(default_factory=ChunkingOptions)
    clean_html: StrictBool = Field(
        True, description="Strip tags, comments and control characters before scoring."
    )
    cache: StrictBool = Field(
        True,
        description="Reuse scores of pairs scored before with the same model, settings and texts, and"
        " keep this job's scores for later jobs; false: score every pair, keep nothing.",
    )
    callback_url: Annotated[StoredStr | None, AfterValidator(_http_url)] = Field(
        None, max_length=2048, description="POST the job here when it finishes (signed; retried)."
    )

    def with_defaults(self, max_length: int) -> "JobOptions":
        """These options with the service's default max_length (RERANK_MAX_LENGTH) where the
        client gave none."""
        return (
            self
            if "max_length" in self.model_fields_set
            else self.model_copy(update={"max_length": max_length})
        )


class JudgementSpec(_Strict):
    """One relevance judgement (a qrels line): how relevant a document is to a query, by their ids.
    The document need not be among the job's: a judged document never retrieved lowers recall."""

    query_id: ClientId
    document_id: ClientId
    relevance: StrictInt = Field(description="The grade: 0 not relevant, higher more relevant (TREC: 0-3).")


class _Job(_Strict):
    """What every job has besides its queries."""

    options: JobOptions = Field(default_factory=JobOptions)
    priority: Priority | None = Field(
        None,
        description="high | normal | low; default normal, low for jobs over RERANK_LOW_PRIORITY_PAIRS pairs.",
    )
    qrels: list[JudgementSpec] = Field(
        default_factory=list,
        description="Relevance judgements of the job's queries; GET /v1/jobs/{id}/evaluation measures them.",
    )

    @field_validator("queries", check_fields=False)
    @classmethod
    def _unique_queries(cls, queries: list[Any]) -> list[Any]:
        return _unique_ids(queries, "query")


class JobSpec(_Job):
    """A job that carries its documents: one list per query."""

    queries: list[QuerySpec] = Field(min_length=1)


class DeletionSpec(_Strict):
    """A line of a collection update that deletes a document."""

    id: ClientId
    deleted: Literal[True]


class CollectionQuerySpec(_Strict):
    id: ClientId
    text: QueryText
    document_ids: list[ClientId] | None = Field(
        None, min_length=1, description="Score these documents of the collection only (default: all of them)."
    )

    @field_validator("document_ids")
    @classmethod
    def _unique_document_ids(cls, ids: list[str] | None) -> list[str] | None:
        if ids is not None and len(set(ids)) != len(ids):
            duplicate = next(i for n, i in enumerate(ids) if i in ids[:n])
            raise PydanticCustomError("duplicate_id", "duplicate document id '{id}'", {"id": duplicate})
        return ids


class CollectionJobSpec(_Job):
    """A job over an uploaded collection: documents are referenced by id, their text stored once."""

    collection: ClientId
    queries: list[CollectionQuerySpec] = Field(min_length=1)


def _job_kind(body: Any) -> str:
    return "collection" if isinstance(body, dict) and "collection" in body else "documents"


# POST /v1/jobs takes either kind; an error's location starts with the kind's tag.
JOB_KINDS = ("documents", "collection")
AnyJobSpec = Annotated[
    Annotated[JobSpec, Tag("documents")] | Annotated[CollectionJobSpec, Tag("collection")],
    Discriminator(_job_kind),
]


CronExpression = Annotated[
    StrictStr,
    AfterValidator(check_cron),
    Field(description='Five fields: minute hour day-of-month month day-of-week, e.g. "0 2 * * *".'),
]
TimeZone = Annotated[
    StrictStr, AfterValidator(check_timezone), Field(description="IANA name, e.g. Europe/Paris.")
]


class ScheduleSpec(_Strict):
    """A standing job: the template job `job_id` rerun (its queries, documents or collection, and
    options) at each time `cron` names, read in `timezone`."""

    job_id: ClientId
    cron: CronExpression
    timezone: TimeZone = "UTC"
    name: Annotated[StrictStr, Field(max_length=255)] | None = None
