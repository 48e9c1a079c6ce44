"""Reads and writes the rest of the code calls: jobs and their lifecycle, queries, ranked results.
A job's batches, and what scoring one writes, are in worker.batch_store.

Every write that a re-delivered task may repeat is idempotent (guarded by the status it moves from)."""

import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any
from uuid import uuid4

from sqlalchemy import JSON, delete, func, insert, literal, select, text, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from worker.db import on_postgres
from worker.errors import NotFound
from worker.hashing import text_hash
from worker.lifecycle import (
    FINISHED,
    JOB_TRANSITIONS,
    JobStatus,
    Priority,
    may_become,
)
from worker.models import (
    Batch,
    BatchDocument,
    CollectionDocument,
    Document,
    Job,
    Judgement,
    Query,
    Result,
    utcnow,
)
from worker.spec import JobOptions, QuerySpec
from worker.tenancy import TRUSTED, Caller
from worker.views import RankedRow


def new_job(
    session: Session,
    model: str,
    options: JobOptions,
    collection_id: str | None,
    synchronous: bool = False,
    tenant: str | None = None,
) -> Job:
    """A queued job row of `tenant`; its queries, pair total and priority are added by
    worker.jobs.NewJob."""
    job = Job(
        tenant=tenant,
        synchronous=synchronous,
        id=uuid4().hex,
        status=JobStatus.queued,
        model=model,
        options=options.model_dump(),
        total_pairs=0,
        priority=Priority.normal,
        collection_id=collection_id,
    )
    session.add(job)
    return job


def add_queries(session: Session, job_id: str, queries: Sequence[QuerySpec], first: int = 0) -> int:
    """Store queries (positions from `first`) with their documents; the number of pairs added.
    Core inserts: nothing stays in the session, so a streamed upload holds no rows in memory."""
    if not queries:
        return 0
    query_rows = [
        {
            "job_id": job_id,
            "client_id": q.id,
            "text": q.text,
            "position": first + i,
            "text_hash": text_hash(q.text),
        }
        for i, q in enumerate(queries)
    ]
    pks = session.scalars(insert(Query).returning(Query.id, sort_by_parameter_order=True), query_rows).all()
    rows = [
        {
            "job_id": job_id,
            "query_id": query_pk,
            "client_id": d.id,
            "text": d.text,
            "text_hash": text_hash(d.text),
            "meta": d.metadata,
            "position": i,
        }
        for query_pk, q in zip(pks, queries, strict=True)
        for i, d in enumerate(q.documents)
    ]
    insert_rows(session, Document, rows)
    return len(rows)


def job_queries(session: Session, job_id: str) -> Sequence[Query]:
    """A job's queries in submission order."""
    return session.scalars(select(Query).where(Query.job_id == job_id).order_by(Query.position)).all()


def get_job(session: Session, job_id: str, caller: Caller = TRUSTED) -> Job:
    """A job `caller` may see; another tenant's is as missing as one that never existed."""
    job = session.get(Job, job_id)
    if job is None or not caller.sees(job.tenant):
        raise NotFound(f"no job with id {job_id!r}", field="id")
    return job


def delete_job(session: Session, job_id: str) -> None:
    """Delete a job with its results, pairs, batches, queries and judgements (children first: no
    cascade is left to the database, so SQLite and PostgreSQL do the same work)."""
    batches = select(Batch.id).where(Batch.job_id == job_id)
    session.execute(delete(BatchDocument).where(BatchDocument.batch_id.in_(batches)))
    for key in (Result.job_id, Document.job_id, Batch.job_id, Query.job_id, Judgement.job_id, Job.id):
        session.execute(delete(key.class_).where(key == job_id))


def expired_jobs(session: Session, finished_before: datetime) -> list[str]:
    stmt = select(Job.id).where(Job.status.in_(FINISHED), Job.finished_at < finished_before)
    return list(session.scalars(stmt))


def lock_job_status(session: Session, job_id: str) -> str:
    """A job's status, with its row locked until commit, so a cancel cannot slip in between this
    check and the write that depends on it. A no-op UPDATE rather than SELECT … FOR UPDATE: SQLite
    has no row locks, and an UPDATE takes its write lock there too."""
    stmt = update(Job).where(Job.id == job_id).values(status=Job.status).returning(Job.status)
    return session.execute(stmt.execution_options(synchronize_session=False)).scalar_one()


def try_lock_job(session: Session, job_id: str) -> bool:
    """Lock a job's row until commit unless another transaction holds it (PostgreSQL; SQLite has one
    writer anyway); whether this one got it."""
    stmt = select(Job.id).where(Job.id == job_id).with_for_update(skip_locked=True)
    return session.execute(stmt).first() is not None


def list_jobs(session: Session, status: JobStatus | None, limit: int, caller: Caller) -> Sequence[Job]:
    """The jobs `caller` may see, newest first."""
    stmt = caller.visible(select(Job), Job.tenant).order_by(Job.created_at.desc()).limit(limit)
    if status is not None:
        stmt = stmt.where(Job.status == status)
    return session.scalars(stmt).all()


def transition(session: Session, job_id: str, new: JobStatus, **fields: Any) -> bool:
    """Move a job to `new` if its current status allows it (atomically); False if it did not."""
    allowed = may_become(JOB_TRANSITIONS, new)
    if new == JobStatus.running:
        fields.setdefault("started_at", utcnow())
    elif new in FINISHED:
        fields.setdefault("finished_at", utcnow())
    stmt = update(Job).where(Job.id == job_id, Job.status.in_(allowed)).values(status=new, **fields)
    moved = session.execute(stmt.returning(Job.id).execution_options(synchronize_session=False)).first()
    session.expire_all()
    return moved is not None


def unfinished_pairs(session: Session, tenant: str | None) -> int:
    """Pairs of `tenant`'s queued and running jobs not scored yet: what its quota counts."""
    left = func.coalesce(func.sum(Job.total_pairs - Job.done_pairs - Job.failed_pairs), 0)
    stmt = select(left).where(Job.status.in_((JobStatus.queued, JobStatus.running)))
    stmt = stmt.where(Job.tenant.is_(None) if tenant is None else Job.tenant == tenant)
    return int(session.execute(stmt).scalar_one())


def document_text_column() -> Any:
    """A pair's document text: its own, or its collection document's (outer-join CollectionDocument)."""
    return func.coalesce(Document.text, CollectionDocument.text)


def dialect_insert(session: Session, table: Any) -> Any:
    """INSERT with ON CONFLICT support, in the session's SQL dialect (PostgreSQL or SQLite)."""
    dialect = postgresql if on_postgres(session) else sqlite
    return dialect.insert(table)


def insert_rows(
    session: Session, entity: Any, rows: Sequence[dict[str, Any]], update_on: Any | None = None
) -> None:
    """INSERT `rows` (dicts of `entity`'s attributes, all with the same keys); with `update_on`, a
    row whose unique column it is already holds updates the other columns instead. On PostgreSQL
    through psycopg itself, where SQLAlchemy cannot go: plain rows by COPY, an upsert as one
    statement over a column of values per parameter, unnested into rows, sent in binary (psycopg
    dumps text arrays value by value in Python: benchmarks.bulk_writes measures 8.6x less client
    CPU by COPY and 6.8x in binary for 20,000 documents). Elsewhere executemany."""
    if not rows:
        return
    if not on_postgres(session):
        stmt = dialect_insert(session, entity)
        if update_on is not None:
            written = {key: stmt.excluded[key] for key in rows[0] if key != update_on.key}
            stmt = stmt.on_conflict_do_update(index_elements=[update_on], set_=written)
        session.execute(stmt, rows)
        return
    columns = {key: entity.__mapper__.columns[key] for key in rows[0]}
    values = {key: [row[key] for row in rows] for key in columns}
    for key, column in columns.items():
        if isinstance(column.type, JSON):  # as JSON text: psycopg would send a list as an array
            values[key] = [None if value is None else json.dumps(value) for value in values[key]]
    table, names = entity.__table__.name, [c.name for c in columns.values()]
    driver = session.connection().connection.driver_connection  # in this session's transaction
    assert driver is not None
    with driver.cursor() as cursor:
        if update_on is None:
            with cursor.copy(f"COPY {table} ({', '.join(names)}) FROM STDIN") as copy:
                for row in zip(*values.values(), strict=True):
                    copy.write_row(row)
            return
        dialect = session.get_bind().dialect
        arrays = ", ".join(f"CAST(%({key})b AS {c.type.compile(dialect)}[])" for key, c in columns.items())
        unique = entity.__mapper__.columns[update_on.key].name
        updates = ", ".join(f"{name} = excluded.{name}" for name in names if name != unique)
        cursor.execute(
            f"INSERT INTO {table} ({', '.join(names)}) SELECT * FROM unnest({arrays})"
            f" ON CONFLICT ({unique}) DO UPDATE SET {updates}",
            values,
        )


def record_effective_max_length(session: Session, job_id: str, max_length: int) -> bool:
    """Note the tokens per pair the model reads for this job, once (the first scored batch does);
    True when this call recorded it."""
    stmt = (
        update(Job)
        .where(Job.id == job_id, Job.effective_max_length.is_(None))
        .values(effective_max_length=max_length)
        .returning(Job.id)
    )
    return session.execute(stmt).scalar_one_or_none() is not None


def mark_truncated(session: Session, query_pks: set[int]) -> None:
    """Flag queries that were cut to fit the model (their results say so)."""
    if query_pks:
        session.execute(update(Query).where(Query.id.in_(query_pks)).values(truncated=True))


def refresh_statistics(session: Session) -> None:
    """After a large job, let PostgreSQL's planner see the new result rows now rather than at the
    next autovacuum: with stale statistics it reads a whole job's results for every page."""
    if on_postgres(session):
        session.execute(text("ANALYZE results"))


def results_page(
    session: Session,
    job_id: str,
    query_id: str | None,
    top_k: int | None,
    after: tuple[int, int] | None,
    limit: int,
) -> list[RankedRow]:
    """Ranked results ordered by query (submission order: query pks ascend with it) then rank,
    after the cursor (query pk, rank), with the winning window's text cut from the document.
    The page is picked from the (job, query, rank) index alone and only then joined, so a page
    costs the same at any depth, whatever the planner's statistics say."""
    picked = select(Result).where(Result.job_id == job_id, Result.rank.is_not(None))
    if query_id is not None:
        own = select(Query.id).where(Query.job_id == job_id, Query.client_id == query_id).scalar_subquery()
        picked = picked.where(Result.query_id == own)
    if top_k is not None:
        picked = picked.where(Result.rank <= top_k)
    if after is not None:
        picked = picked.where(tuple_(Result.query_id, Result.rank) > tuple_(*map(literal, after)))
    page = picked.order_by(Result.query_id, Result.rank).limit(limit).subquery()
    start, end = page.c.best_start, page.c.best_end
    best_text = func.substr(document_text_column(), start + 1, end - start)
    stmt = (
        select(
            Query.client_id,
            page.c.query_id,
            Query.truncated,
            Document.client_id,
            page.c.rank,
            page.c.raw_score,
            page.c.chunks,
            page.c.best_chunk,
            page.c.best_start,
            page.c.best_end,
            best_text,
            page.c.windows,
            page.c.cached,
            Document.meta,
            CollectionDocument.meta,
        )
        .select_from(page)
        .join(Query, Query.id == page.c.query_id)
        .join(Document, Document.id == page.c.document_id)
        .outerjoin(CollectionDocument, CollectionDocument.id == Document.source_id)
        .order_by(page.c.query_id, page.c.rank)
    )
    # a pair of its own carries its metadata; a collection pair, its collection document's
    return [RankedRow(*row[:-2], row[-2] or row[-1]) for row in session.execute(stmt)]  # type: ignore[call-arg]


def has_query(session: Session, job_id: str, query_id: str) -> bool:
    stmt = select(Query.id).where(Query.job_id == job_id, Query.client_id == query_id)
    return session.execute(stmt).first() is not None


def query_texts(
    session: Session, job_id: str, limit: int, query_id: str | None = None
) -> list[tuple[str, str]]:
    """(client id, text) of a job's first `limit` queries (or of `query_id`), in submission order."""
    stmt = select(Query.client_id, Query.text).where(Query.job_id == job_id)
    if query_id is not None:
        stmt = stmt.where(Query.client_id == query_id)
    stmt = stmt.order_by(Query.id).limit(limit)
    return [(client_id, query_text) for client_id, query_text in session.execute(stmt)]


def document_texts(
    session: Session, job_id: str, query_id: str, document_ids: Sequence[str]
) -> dict[str, str]:
    """The submitted (or collection) text of some of a query's documents, by document client id."""
    stmt = (
        select(Document.client_id, document_text_column())
        .join(Query, Query.id == Document.query_id)
        .outerjoin(CollectionDocument, CollectionDocument.id == Document.source_id)
        .where(Query.job_id == job_id, Query.client_id == query_id, Document.client_id.in_(document_ids))
    )
    return {client_id: document_text for client_id, document_text in session.execute(stmt)}


def record_webhook_attempt(session: Session, job_id: str, error: str | None) -> int:
    """Count one delivery attempt of a job's webhook and its outcome (error None: delivered);
    the attempts so far."""
    delivered = {"webhook_delivered_at": utcnow()} if error is None else {}
    stmt = (
        update(Job)
        .where(Job.id == job_id)
        .values(webhook_attempts=Job.webhook_attempts + 1, webhook_error=error, **delivered)
        .returning(Job.webhook_attempts)
        .execution_options(synchronize_session=False)
    )
    attempts = session.execute(stmt).scalar_one()
    session.expire_all()
    return int(attempts)


def untried_webhooks(session: Session, finished_before: datetime) -> list[str]:
    """Jobs that finished (within the last day, before `finished_before`) with a callback_url whose
    webhook was never tried: their finish hook was lost."""
    stmt = select(Job.id).where(
        Job.status.in_(FINISHED),
        Job.finished_at < finished_before,
        Job.finished_at >= finished_before - timedelta(days=1),
        Job.webhook_attempts == 0,
        Job.webhook_delivered_at.is_(None),
        Job.options["callback_url"].as_string().is_not(None),
    )
    return list(session.scalars(stmt))
