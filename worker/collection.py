"""Collections: a knowledge base uploaded once as JSONL, updated in place, and reranked against by
reference. Their documents' text is stored once, however many queries and jobs read it; a job
reads the version it was planned against (see snapshot_pairs)."""

from collections.abc import Sequence
from typing import Any, NamedTuple

from sqlalchemy import delete, func, insert, literal, select, update
from sqlalchemy.orm import Session

from worker import batching
from worker.db import rows_affected
from worker.errors import Conflict, InvalidInput, NotFound
from worker.hashing import text_hash
from worker.models import CachedScore, Collection, CollectionDocument, Document, Job, Query
from worker.spec import CollectionJobSpec, CollectionQuerySpec
from worker.tenancy import TRUSTED, Caller


def get(session: Session, collection_id: str, caller: Caller = TRUSTED) -> Collection:
    """A collection `caller` may see; another tenant's is as missing as one that never existed
    (also when a job names it)."""
    collection = session.get(Collection, collection_id)
    if collection is None or not caller.sees(collection.tenant):
        raise NotFound(f"no collection with id {collection_id!r}", field="collection")
    return collection


def newest(session: Session, limit: int, caller: Caller) -> Sequence[Collection]:
    stmt = caller.visible(select(Collection), Collection.tenant)
    return session.scalars(stmt.order_by(Collection.created_at.desc()).limit(limit)).all()


def live() -> Any:
    """The documents of a collection's current version (replaced and deleted ones are kept while
    a job refers to them)."""
    return CollectionDocument.removed_in.is_(None)


class LiveDocument(NamedTuple):
    pk: int
    text_hash: str | None
    metadata: dict[str, Any] | None
    position: int


def live_documents(session: Session, collection_id: str, ids: list[str]) -> dict[str, LiveDocument]:
    """The current version of some of a collection's documents, by id (absent ids are left out)."""
    stmt = select(
        CollectionDocument.client_id,
        CollectionDocument.id,
        CollectionDocument.text_hash,
        CollectionDocument.meta,
        CollectionDocument.position,
    ).where(CollectionDocument.collection_id == collection_id, CollectionDocument.client_id.in_(ids), live())
    return {client_id: LiveDocument(*row) for client_id, *row in session.execute(stmt)}


def documents_page(
    session: Session, collection_id: str, after: str | None, limit: int, caller: Caller
) -> list[CollectionDocument]:
    """A collection's documents by id, after the id `after`: the (collection, id) unique index
    walks them, so a page costs the same at any depth."""
    get(session, collection_id, caller)
    stmt = select(CollectionDocument).where(CollectionDocument.collection_id == collection_id, live())
    if after is not None:
        stmt = stmt.where(CollectionDocument.client_id > after)
    return list(session.scalars(stmt.order_by(CollectionDocument.client_id).limit(limit)))


def remove(session: Session, collection_id: str, caller: Caller) -> None:
    """Delete a collection no job refers to (a job's results point at its documents), with the
    score cache's entries kept for its jobs."""
    get(session, collection_id, caller)
    jobs = session.scalar(select(func.count()).select_from(Job).where(Job.collection_id == collection_id))
    if jobs:
        raise Conflict(f"collection {collection_id} is used by {jobs} job(s)", field="collection")
    session.execute(delete(CollectionDocument).where(CollectionDocument.collection_id == collection_id))
    session.execute(delete(CachedScore).where(CachedScore.collection_id == collection_id))
    session.execute(delete(Collection).where(Collection.id == collection_id))
    session.commit()


def pair_count(session: Session, spec: CollectionJobSpec, caller: Caller) -> int:
    """How many pairs a collection job of `caller` has; unknown collection or document ids are
    errors that name the query."""
    collection = get(session, spec.collection, caller)
    total = 0
    for index, query in enumerate(spec.queries):
        if query.document_ids is None:
            total += collection.documents
            continue
        found = _existing(session, collection.id, query.document_ids)
        missing = [i for i in query.document_ids if i not in found]
        if missing:
            shown = ", ".join(repr(i) for i in missing[:5])
            raise InvalidInput(
                f"{len(missing)} document id(s) not in collection {collection.id}: {shown}",
                field=f"queries.{index}.document_ids",
            )
        total += len(query.document_ids)
    return total


def _existing(session: Session, collection_id: str, ids: list[str], block: int = 1000) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(ids), block):
        stmt = select(CollectionDocument.client_id).where(
            CollectionDocument.collection_id == collection_id,
            CollectionDocument.client_id.in_(ids[start : start + block]),
            live(),
        )
        found.update(session.scalars(stmt))
    return found


def add_queries(session: Session, job_id: str, queries: Sequence[CollectionQuerySpec], first: int) -> None:
    """A collection job's queries (positions from `first`); their pairs are expanded in the
    database when it is planned."""
    rows = [
        {
            "job_id": job_id,
            "client_id": q.id,
            "text": q.text,
            "position": first + i,
            "document_ids": q.document_ids,
            "text_hash": text_hash(q.text),
        }
        for i, q in enumerate(queries)
    ]
    session.execute(insert(Query), rows)


def snapshot_pairs(session: Session, job: Job) -> None:
    """Expand a collection job's pairs from the collection's current version, recorded on the job:
    one row per (query, collection document) in the scratch table `batching.SNAPSHOT`, from which
    `batching.plan_batches` writes the job's documents rows (pointing at the text stored once), in
    the database so a million pairs never pass through Python. The collection's row is locked
    first, so an update in progress finishes before (or starts after) the whole snapshot; the
    total is counted again, as documents may have come or gone since the job was submitted."""
    locked = select(Collection.version).where(Collection.id == job.collection_id).with_for_update()
    version = session.execute(locked).scalar_one()
    batching.create_snapshot(session)
    for query in session.scalars(select(Query).where(Query.job_id == job.id)):
        chosen = select(
            literal(query.id),
            CollectionDocument.client_id,
            CollectionDocument.id,
            CollectionDocument.position,
        ).where(CollectionDocument.collection_id == job.collection_id, live())
        if query.document_ids is not None:
            chosen = chosen.where(CollectionDocument.client_id.in_(query.document_ids))
        columns = ["query_id", "client_id", "source_id", "position"]
        session.execute(insert(batching.SNAPSHOT).from_select(columns, chosen))
    pairs = select(func.count()).select_from(batching.SNAPSHOT).scalar_subquery()
    stmt = update(Job).where(Job.id == job.id).values(collection_version=version, total_pairs=pairs)
    session.execute(stmt.execution_options(synchronize_session=False))
    session.refresh(job)


def sweep_replaced(session: Session, collection_id: str) -> int:
    """Delete replaced and deleted documents no job refers to any more; how many."""
    referenced = select(Document.id).where(Document.source_id == CollectionDocument.id).exists()
    stmt = delete(CollectionDocument).where(
        CollectionDocument.collection_id == collection_id,
        CollectionDocument.removed_in.is_not(None),
        ~referenced,
    )
    return rows_affected(session.execute(stmt.execution_options(synchronize_session=False)))
