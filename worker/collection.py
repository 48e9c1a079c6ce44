"""Collections: a knowledge base uploaded once as JSONL and reranked against by reference. Their
documents' text is stored once, however many queries and jobs read it."""

from collections.abc import Sequence

from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from worker.errors import Conflict, InvalidInput, NotFound
from worker.models import Collection, CollectionDocument, Job, Query
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


def documents_page(
    session: Session, collection_id: str, after: str | None, limit: int, caller: Caller
) -> list[CollectionDocument]:
    """A collection's documents by id, after the id `after`: the (collection, id) unique index
    walks them, so a page costs the same at any depth."""
    get(session, collection_id, caller)
    stmt = select(CollectionDocument).where(CollectionDocument.collection_id == collection_id)
    if after is not None:
        stmt = stmt.where(CollectionDocument.client_id > after)
    return list(session.scalars(stmt.order_by(CollectionDocument.client_id).limit(limit)))


def remove(session: Session, collection_id: str, caller: Caller) -> None:
    """Delete a collection no job refers to (a job's results point at its documents)."""
    get(session, collection_id, caller)
    jobs = session.scalar(select(func.count()).select_from(Job).where(Job.collection_id == collection_id))
    if jobs:
        raise Conflict(f"collection {collection_id} is used by {jobs} job(s)", field="collection")
    session.execute(delete(CollectionDocument).where(CollectionDocument.collection_id == collection_id))
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
        }
        for i, q in enumerate(queries)
    ]
    session.execute(insert(Query), rows)
