"""The rerank routes clients already call: Cohere v2 (/v2/rerank), Cohere v1 and Jina (/v1/rerank),
text-embeddings-inference (/rerank). Each request becomes a small high-priority job on the same
workers; the route waits for it and answers in the client's shape."""

import math
from typing import Annotated, Any

from fastapi import APIRouter, Depends

from api import deps
from api.compat_schemas import (
    ApiVersion,
    BilledUnits,
    CohereResponse,
    CohereResult,
    CohereV1Request,
    CohereV2Request,
    Meta,
    TeiRequest,
    TeiResult,
    TextDocument,
)
from api.limits import CheckedRoute
from worker import sync

router = APIRouter(tags=["rerank"], route_class=CheckedRoute)
SYNC_ROUTES = ("/v2/rerank", "/v1/rerank", "/rerank")
COHERE_ROUTES = ("/v2/rerank", "/v1/rerank")
errors: dict[int | str, dict[str, Any]] = {
    code: {
        "description": "{message, field} (TEI route: {error, field, details}); 409 (the job was"
        " cancelled), 500 (it failed) and 504 (it outlasted RERANK_SYNC_TIMEOUT) add job_id"
    }
    for code in (400, 401, 408, 409, 413, 415, 422, 429, 500, 503, 504)
}


class SyncRerank:
    """What every rerank route needs: the database, the queue, the settings, and the caller (the
    Cohere SDK sends its key as `Authorization: Bearer`), whose tenant owns the job."""

    def __init__(
        self,
        session: deps.DbSession,
        settings: deps.SettingsDep,
        enqueue: deps.EnqueueDep,
        caller: deps.CallerDep,
    ) -> None:
        self.session, self.settings, self.enqueue, self.caller = session, settings, enqueue, caller

    async def __call__(self, request: sync.SyncRequest) -> sync.Ranking:
        return await sync.rerank(self.session, request, self.settings, self.enqueue, self.caller)

    def window(self, max_tokens_per_doc: int | None) -> int | None:
        """Cohere's max_tokens_per_doc as a window's tokens, within 16 and RERANK_MAX_LENGTH."""
        if max_tokens_per_doc is None:
            return None
        return max(16, min(max_tokens_per_doc, self.settings.max_length))


Rerank = Annotated[SyncRerank, Depends()]


def _meta(documents: int, version: str) -> Meta:
    return Meta(
        api_version=ApiVersion(version=version),
        billed_units=BilledUnits(search_units=math.ceil(documents / 100)),
    )


@router.post("/v2/rerank", response_model=CohereResponse, response_model_exclude_none=True, responses=errors)
async def cohere_v2(body: CohereV2Request, rerank: Rerank) -> CohereResponse:
    """Cohere v2 rerank: `{query, documents: [str], top_n?, max_tokens_per_doc?}` → results
    best first with relevance_score = sigmoid(raw). Long documents are read in windows (a
    document scores as its best window)."""
    ranking = await rerank(
        sync.SyncRequest(body.query, body.documents, body.top_n, rerank.window(body.max_tokens_per_doc))
    )
    results = [CohereResult(index=r.index, relevance_score=r.score) for r in ranking.results]
    return CohereResponse(id=ranking.job_id, results=results, meta=_meta(len(body.documents), "2"))


@router.post("/v1/rerank", response_model=CohereResponse, response_model_exclude_none=True, responses=errors)
async def cohere_v1(body: CohereV1Request, rerank: Rerank) -> CohereResponse:
    """Cohere v1 and Jina rerank: documents as strings or `{text}`; `return_documents` adds
    `document: {text}` to each result."""
    texts = body.texts()
    ranking = await rerank(sync.SyncRequest(body.query, texts, body.top_n))
    results = [
        CohereResult(
            index=r.index,
            relevance_score=r.score,
            document=TextDocument(text=texts[r.index]) if body.return_documents else None,
        )
        for r in ranking.results
    ]
    return CohereResponse(id=ranking.job_id, results=results, meta=_meta(len(texts), "1"))


@router.post("/rerank", response_model=list[TeiResult], response_model_exclude_none=True, responses=errors)
async def tei(body: TeiRequest, rerank: Rerank) -> list[TeiResult]:
    """text-embeddings-inference rerank: `{query, texts, raw_scores?, return_text?, truncate?}` →
    `[{index, score, text?}]` best first. `truncate: true` cuts long texts to RERANK_MAX_LENGTH
    tokens; otherwise they are read whole, in windows, instead of being refused."""
    ranking = await rerank(
        sync.SyncRequest(body.query, body.texts, chunking=not body.truncate, field="texts")
    )
    return [
        TeiResult(
            index=r.index,
            score=r.raw_score if body.raw_scores else r.score,
            text=body.texts[r.index] if body.return_text else None,
        )
        for r in ranking.results
    ]
