"""The one way a job is created, whatever brought it (a JSON body, a streamed JSONL upload, queries
over a collection): its row first, then its queries, then its pair total and priority, resolved
once when the last query is in."""

from collections.abc import Sequence

from sqlalchemy.orm import Session

from worker import collection, store
from worker.config import Settings
from worker.lifecycle import Priority
from worker.spec import CollectionQuerySpec, JobOptions, QuerySpec


def resolve_priority(asked: Priority | None, pairs: int, low_priority_pairs: int) -> Priority:
    """A job's priority: as asked; else low for an overnight-sized job, so interactive ones overtake it."""
    if asked is not None:
        return asked
    return Priority.low if pairs > low_priority_pairs else Priority.normal


class NewJob:
    """A queued job being stored in the caller's transaction; nothing is committed before `finish`,
    so a job rejected half-way leaves no trace."""

    def __init__(
        self,
        session: Session,
        settings: Settings,
        options: JobOptions,
        asked: Priority | None,
        collection_id: str | None = None,
        synchronous: bool = False,
    ) -> None:
        self.session = session
        self.asked = asked
        self.low_priority_pairs = settings.low_priority_pairs
        self.queries = 0
        self.pairs = 0
        options = options.with_defaults(settings.max_length)
        self.job = store.new_job(session, settings.served_model, options, collection_id, synchronous)
        session.flush()

    def add_queries(self, queries: Sequence[QuerySpec]) -> None:
        """Queries with their documents (all of a JSON body, or a block of an upload's lines)."""
        self.pairs += store.add_queries(self.session, self.job.id, queries, first=self.queries)
        self.queries += len(queries)

    def add_collection_queries(self, queries: Sequence[CollectionQuerySpec], pairs: int) -> None:
        """Queries over the job's collection, `pairs` of them in all (collection.pair_count); the
        pairs themselves are expanded in the database when the job is planned."""
        collection.add_queries(self.session, self.job.id, queries, first=self.queries)
        self.pairs += pairs
        self.queries += len(queries)

    def finish(self) -> str:
        """Resolve the pair total and the priority and commit; the job's id."""
        self.job.total_pairs = self.pairs
        self.job.priority = resolve_priority(self.asked, self.pairs, self.low_priority_pairs)
        self.session.commit()
        return self.job.id
