"""Did reranking help? A finished job's two orders of each query's documents, measured against its
judgements with ir-measures: the submitted order (the first-stage retriever's, as the documents
were sent) and the reranked one. Measures are ir-measures' own, never computed here."""

from typing import Any

import ir_measures
from pydantic import BaseModel, Field
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from worker import judgements, store
from worker.errors import Conflict, NotFound
from worker.lifecycle import FINISHED
from worker.models import Document, Query, Result
from worker.tenancy import TRUSTED, Caller

Run = dict[str, dict[str, float]]  # query id -> document id -> score: ir-measures' run shape


class Scores(BaseModel):
    ndcg_at_10: float = Field(description="ir-measures nDCG@10 (graded relevance as the gain).")
    mrr_at_10: float = Field(description="ir-measures RR@10: 1/rank of the first relevant document.")
    recall_at_k: float = Field(
        description="ir-measures R@k: relevant documents in the top k, of all judged so."
    )


class QueryEvaluation(BaseModel):
    query_id: str
    judged: int = Field(description="Judgements of this query.")
    submitted: Scores = Field(description="The order the documents were submitted in (first stage).")
    reranked: Scores = Field(description="The job's ranking.")


class Evaluation(BaseModel):
    job_id: str
    k: int = Field(description="The cut-off of recall_at_k.")
    min_relevance: int = Field(description="The least relevance that counts as relevant (MRR, recall).")
    queries_evaluated: int = Field(description="Queries with judgements (the means are over these).")
    submitted: Scores = Field(description="Means over the evaluated queries, submitted order.")
    reranked: Scores = Field(description="Means over the evaluated queries, reranked order.")
    queries: list[QueryEvaluation]


def measures(k: int, min_relevance: int) -> tuple[Any, Any, Any]:
    """nDCG@10, RR@10 and R@k, relevant meaning at least `min_relevance`, as ir-measures names them."""
    return ir_measures.nDCG @ 10, ir_measures.RR(rel=min_relevance) @ 10, ir_measures.R(rel=min_relevance) @ k


def runs(session: Session, job_id: str, query_ids: list[str], depth: int) -> tuple[Run, Run]:
    """The submitted and the reranked order of the top `depth` documents of each of `query_ids` as
    ir-measures runs: scores that sort them as submitted (earlier first) and as ranked (rank 1
    first). Cut in SQL, so a job of a million pairs hands Python only what the measures read. A
    document left unscored (a failed batch, a cancel) is in the first and not in the second."""
    submitted: Run = {query_id: {} for query_id in query_ids}
    reranked: Run = {query_id: {} for query_id in query_ids}
    judged = (Query.job_id == job_id) & Query.client_id.in_(query_ids)
    order = func.row_number().over(partition_by=Document.query_id, order_by=Document.position)
    placed = select(Document.id, Document.query_id, order.label("place")).where(Document.job_id == job_id)
    firsts = placed.subquery()
    stmt = (
        select(Query.client_id, Document.client_id, firsts.c.place)
        .join(Document, Document.id == firsts.c.id)
        .join(Query, Query.id == firsts.c.query_id)
        .where(judged, firsts.c.place <= depth)
    )
    for query_id, document_id, place in session.execute(stmt):
        submitted[query_id][document_id] = -float(place)
    stmt = (
        select(Query.client_id, Document.client_id, Result.rank)
        .join(Query, Query.id == Result.query_id)
        .join(Document, Document.id == Result.document_id)
        .where(Result.job_id == job_id, judged, Result.rank <= depth)
    )
    for query_id, document_id, rank in session.execute(stmt):
        reranked[query_id][document_id] = -float(rank)
    return submitted, {query_id: ranked for query_id, ranked in reranked.items() if ranked}


def _scores(values: dict[Any, float], chosen: tuple[Any, Any, Any]) -> Scores:
    ndcg, rr, recall = chosen
    return Scores(ndcg_at_10=values[ndcg], mrr_at_10=values[rr], recall_at_k=values[recall])


def evaluate(
    session: Session, job_id: str, k: int = 100, min_relevance: int = 1, caller: Caller = TRUSTED
) -> Evaluation:
    """A finished job's nDCG@10, MRR@10 and Recall@k, submitted and reranked, per query and mean."""
    job = store.get_job(session, job_id, caller)
    if job.status not in FINISHED:
        raise Conflict(f"job {job_id} is {job.status}; it is evaluated once it finishes", field="status")
    qrels = judgements.qrels(session, job_id)
    if not qrels:
        raise NotFound(f"job {job_id} has no judgements: send qrels with it or to /qrels", field="qrels")
    chosen = measures(k, min_relevance)
    judged = [query.client_id for query in store.job_queries(session, job_id) if query.client_id in qrels]
    submitted, reranked = runs(session, job_id, judged, max(k, 10))
    per_query: dict[str, dict[str, dict[Any, float]]] = {}
    for order, run in (("submitted", submitted), ("reranked", reranked)):
        for metric in ir_measures.iter_calc(list(chosen), qrels, run):
            per_query.setdefault(metric.query_id, {}).setdefault(order, {})[metric.measure] = metric.value
    queries = [
        QueryEvaluation(
            query_id=query_id,
            judged=len(qrels[query_id]),
            submitted=_scores(orders["submitted"], chosen),
            reranked=_scores(orders.get("reranked", dict.fromkeys(chosen, 0.0)), chosen),
        )
        for query_id in submitted  # in submission order
        if (orders := per_query.get(query_id))
    ]
    return Evaluation(
        job_id=job_id,
        k=k,
        min_relevance=min_relevance,
        queries_evaluated=len(queries),
        submitted=_scores(ir_measures.calc_aggregate(list(chosen), qrels, submitted), chosen),
        reranked=_scores(ir_measures.calc_aggregate(list(chosen), qrels, reranked), chosen),
        queries=queries,
    )
