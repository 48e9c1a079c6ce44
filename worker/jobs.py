"""The one way a job is created, whatever brought it (a JSON body, a streamed JSONL upload, queries
over a collection): its row first, then its queries, then its pair total and priority, resolved
once when the last query is in; then the tenant's quota and the request's Idempotency-Key."""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, insert, literal, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from worker import collection, idempotency, quotas, store
from worker.config import Settings
from worker.errors import Conflict
from worker.idempotency import Fingerprint, RequestKey
from worker.lifecycle import Priority
from worker.models import Document, Query
from worker.spec import CollectionQuerySpec, JobOptions, QuerySpec
from worker.tenancy import TRUSTED, Caller


def resolve_priority(asked: Priority | None, pairs: int, low_priority_pairs: int) -> Priority:
    """A job's priority: as asked; else low for an overnight-sized job, so interactive ones overtake it."""
    if asked is not None:
        return asked
    return Priority.low if pairs > low_priority_pairs else Priority.normal


@dataclass(frozen=True)
class Stored:
    """A job as `NewJob.finish` left it: its id, and whether it is an earlier request's job handed
    back for a repeated Idempotency-Key (nothing new was stored)."""

    job_id: str
    replayed: bool = False


class NewJob:
    """A queued job of `caller`'s tenant being stored in the caller's transaction; nothing is
    committed before `finish`, so a job rejected half-way leaves no trace."""

    def __init__(
        self,
        session: Session,
        settings: Settings,
        options: JobOptions,
        asked: Priority | None,
        collection_id: str | None = None,
        synchronous: bool = False,
        caller: Caller = TRUSTED,
        request_key: RequestKey | None = None,
        rerun_of: str | None = None,
        model: str | None = None,
    ) -> None:
        self.session = session
        self.settings = settings
        self.asked = asked
        self.queries = 0
        self.pairs = 0
        options = options.with_defaults(settings.max_length)
        self.job = store.new_job(
            session, model or settings.served_model, options, collection_id, synchronous, caller.tenant
        )
        self.job.rerun_of = rerun_of
        self.request_key = request_key
        self.fingerprint = Fingerprint(options.model_dump_json(), str(asked), str(collection_id))
        session.flush()

    def add_queries(self, queries: Sequence[QuerySpec]) -> None:
        """Queries with their documents (all of a JSON body, or a block of an upload's lines)."""
        self._fingerprint(queries)
        self.pairs += store.add_queries(self.session, self.job.id, queries, first=self.queries)
        self.queries += len(queries)

    def add_collection_queries(self, queries: Sequence[CollectionQuerySpec], pairs: int) -> None:
        """Queries over the job's collection, `pairs` of them in all (collection.pair_count); the
        pairs themselves are expanded in the database when the job is planned."""
        self._fingerprint(queries)
        collection.add_queries(self.session, self.job.id, queries, first=self.queries)
        self.pairs += pairs
        self.queries += len(queries)

    def copy_queries(self, source_id: str) -> None:
        """The queries of job `source_id` with their documents, copied in the database (a rerun of
        a job that carried its documents: a million pairs never pass through Python)."""
        columns = [Query.job_id, Query.client_id, Query.text, Query.position]
        chosen = select(literal(self.job.id), Query.client_id, Query.text, Query.position)
        self.session.execute(insert(Query).from_select(columns, chosen.where(Query.job_id == source_id)))
        old, new = aliased(Query), aliased(Query)
        pairs = (
            select(
                literal(self.job.id),
                new.id,
                Document.client_id,
                Document.text,
                Document.meta,
                Document.position,
            )
            .join(old, old.id == Document.query_id)
            .join(new, (new.job_id == self.job.id) & (new.client_id == old.client_id))
            .where(Document.job_id == source_id)
        )
        columns = [
            Document.job_id,
            Document.query_id,
            Document.client_id,
            Document.text,
            Document.meta,
            Document.position,
        ]
        self.session.execute(insert(Document).from_select(columns, pairs))
        self.pairs += self._count(Document.job_id)
        self.queries += self._count(Query.job_id)

    def _count(self, job_column: Any) -> int:
        return self.session.scalar(select(func.count()).where(job_column == self.job.id)) or 0

    def _fingerprint(self, queries: Sequence[QuerySpec | CollectionQuerySpec]) -> None:
        if self.request_key is not None:
            for query in queries:
                self.fingerprint.add(query.model_dump_json())

    def finish(self) -> Stored:
        """Hand back the earlier job of a repeated Idempotency-Key (storing nothing); else check
        the tenant's quota, resolve the pair total and the priority, and commit."""
        if self.request_key is not None:
            hours = self.settings.idempotency_hours
            if earlier := idempotency.replayed(
                self.session, self.request_key, self.fingerprint.hexdigest(), hours
            ):
                self.session.rollback()
                return Stored(earlier, replayed=True)
            idempotency.remember(self.session, self.request_key, self.fingerprint.hexdigest(), self.job.id)
        quotas.check_queued_pairs(
            self.session, self.job.tenant, self.pairs, self.settings.tenant_max_queued_pairs
        )
        self.job.total_pairs = self.pairs
        self.job.priority = resolve_priority(self.asked, self.pairs, self.settings.low_priority_pairs)
        commit(self.session)
        return Stored(self.job.id)


def commit(session: Session) -> None:
    """Commit; a concurrent request that took the same Idempotency-Key first is a 409 (retried,
    it gets that request's object)."""
    try:
        session.commit()
    except IntegrityError as error:
        session.rollback()
        raise Conflict(
            f"another request with this {idempotency.HEADER} is being processed; retry it shortly",
            field=idempotency.HEADER,
        ) from error
