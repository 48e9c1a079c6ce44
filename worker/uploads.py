"""Streamed uploads, a block of lines at a time so memory stays bounded whatever the size:
a collection's documents (bad lines reported and skipped), an update of a collection (the same),
and a job file (a bad line rejects the job, nothing of it is kept)."""

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import uuid4

from pydantic import ValidationError
from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from worker import collection, idempotency, store
from worker.config import Settings
from worker.errors import InvalidInput
from worker.hashing import text_hash
from worker.idempotency import Fingerprint, RequestKey
from worker.jobfile import Line, line_error
from worker.jobs import NewJob, Stored, commit
from worker.judgements import QrelsUpload
from worker.models import Collection, CollectionDocument, utcnow
from worker.spec import DeletionSpec, DocumentSpec, QuerySpec, too_deep, too_long
from worker.tenancy import TRUSTED, Caller
from worker.views import CollectionOut, CollectionUpdateOut, LineError

KEPT_ERRORS = 100  # per-line errors kept on the collection (all are counted)


class CollectionUpload:
    """A collection being uploaded, a block of lines at a time: good lines are stored, bad ones
    are reported by line number and skipped; memory stays bounded by the block."""

    def __init__(
        self,
        session: Session,
        name: str | None,
        settings: Settings,
        caller: Caller = TRUSTED,
        request_key: RequestKey | None = None,
    ) -> None:
        self.session = session
        self.settings = settings
        self.max_document_chars = settings.max_document_chars
        self.max_json_depth = settings.max_json_depth
        self.collection = Collection(
            id=uuid4().hex, name=name, documents=0, error_count=0, errors=[], tenant=caller.tenant
        )
        self.errors: list[LineError] = []
        self.request_key = request_key
        self.fingerprint = Fingerprint(str(name))
        session.add(self.collection)
        session.flush()

    def add(self, lines: Sequence[Line]) -> None:
        rows: dict[str, dict[str, Any]] = {}
        for number, raw in lines:
            if self.request_key is not None:
                self.fingerprint.add(raw)
            if not raw.strip():
                continue
            if why := too_deep(raw, self.max_json_depth):
                self._reject(line_error(number, f"the line {why}"))
                continue
            try:
                document = DocumentSpec.model_validate_json(raw)
            except ValidationError as error:
                self._reject(line_error(number, error))
                continue
            if why := too_long(document, self.max_document_chars):
                self._reject(LineError(line=number, field="text", error=why))
                continue
            if document.id in rows:
                self._reject(
                    line_error(number, f"duplicate id '{document.id}' (line {rows[document.id]['position']})")
                )
                continue
            rows[document.id] = {
                "collection_id": self.collection.id,
                "client_id": document.id,
                "text": document.text,
                "text_hash": text_hash(document.text),
                "meta": document.metadata,
                "position": number,
            }
        if rows:
            stored = set(self._insert_new(list(rows.values())))
            for client_id, row in rows.items():
                if client_id not in stored:
                    self._reject(line_error(row["position"], f"duplicate id '{client_id}' (an earlier line)"))
            self.collection.documents += len(stored)

    def _insert_new(self, rows: list[dict[str, Any]]) -> Sequence[str]:
        stmt = store.dialect_insert(self.session, CollectionDocument).values(rows).on_conflict_do_nothing()
        return self.session.scalars(stmt.returning(CollectionDocument.client_id)).all()

    def _reject(self, error: LineError) -> None:
        self.collection.error_count += 1
        if len(self.errors) < KEPT_ERRORS:
            self.errors.append(error)

    def finish(self) -> tuple[CollectionOut, bool]:
        """The collection stored, or (True) the one an earlier request with the same
        Idempotency-Key stored: nothing new is kept."""
        if self.request_key is not None:
            fingerprint, hours = self.fingerprint.hexdigest(), self.settings.idempotency_hours
            if earlier := idempotency.replayed(self.session, self.request_key, fingerprint, hours):
                self.session.rollback()
                return CollectionOut.from_row(collection.get(self.session, earlier)), True
            idempotency.remember(self.session, self.request_key, fingerprint, self.collection.id)
        if not self.collection.documents:  # nothing kept: no empty collection is left behind
            raise nothing_accepted("document", self.collection.error_count, self.errors)
        self.collection.errors = [error.model_dump() for error in self.errors]
        commit(self.session)
        return CollectionOut.from_row(self.collection), False


def judgement_line(raw: bytes) -> bool:
    """Whether a job file's line is a judgement ({"query_id", "document_id", "relevance"}) rather
    than a query: parsed twice only when the key's name appears in it at all."""
    if b'"query_id"' not in raw:
        return False
    try:
        found = json.loads(raw)
    except ValueError:
        return False
    return isinstance(found, dict) and "query_id" in found and "documents" not in found


def nothing_accepted(what: str, rejected: int, errors: list[LineError]) -> InvalidInput:
    first = f"; line {errors[0].line}: {errors[0].explain()}" if errors else ""
    return InvalidInput(
        f"no {what} was accepted ({rejected} line(s) rejected{first})",
        field=errors[0].field if errors else "body",
    )


Change = DocumentSpec | DeletionSpec


def parse_change(number: int, raw: bytes) -> Change | LineError:
    """An update line: `{"id", "text", "metadata"?}` upserts, `{"id", "deleted": true}` deletes."""
    try:
        data = json.loads(raw)
    except ValueError as error:
        return line_error(number, f"invalid JSON: {error}")
    kind: type[Change] = DeletionSpec if isinstance(data, dict) and "deleted" in data else DocumentSpec
    try:
        return kind.model_validate(data)
    except ValidationError as error:
        return line_error(number, error)


class CollectionUpdate:
    """Changes to a stored collection, a block of lines at a time, in one transaction that also
    moves its version on (and holds its row, so a job being planned sees all of it or none). A
    changed document is a new row and its old row is marked removed, never rewritten: a job
    planned before keeps reading the texts of its version. Bad lines are reported and skipped."""

    def __init__(
        self, session: Session, collection_id: str, settings: Settings, caller: Caller = TRUSTED
    ) -> None:
        self.session = session
        self.max_document_chars = settings.max_document_chars
        self.max_json_depth = settings.max_json_depth
        self.previous_update: datetime | None = collection.get(session, collection_id, caller).updated_at
        self.id = collection_id
        bump = update(Collection).where(Collection.id == collection_id)
        bump = bump.values(version=Collection.version + 1, updated_at=utcnow()).returning(Collection.version)
        self.version: int = session.execute(bump.execution_options(synchronize_session=False)).scalar_one()
        last = select(func.coalesce(func.max(CollectionDocument.position), 0))
        self.last_position: int = session.execute(
            last.where(CollectionDocument.collection_id == collection_id)
        ).scalar_one()
        self.counts = {"added": 0, "replaced": 0, "deleted": 0, "unchanged": 0}
        self.lines: dict[str, int] = {}  # document id -> the line that changed it
        self.errors: list[LineError] = []
        self.error_count = 0

    def add(self, lines: Sequence[Line]) -> None:
        changes: dict[str, tuple[int, Change]] = {}
        for number, raw in lines:
            if not raw.strip():
                continue
            if why := too_deep(raw, self.max_json_depth):
                self._reject(line_error(number, f"the line {why}"))
                continue
            change = parse_change(number, raw)
            if isinstance(change, DocumentSpec) and (why := too_long(change, self.max_document_chars)):
                change = LineError(line=number, field="text", error=why)
            if not isinstance(change, LineError) and change.id in self.lines:
                change = line_error(number, f"duplicate id '{change.id}' (line {self.lines[change.id]})")
            if isinstance(change, LineError):
                self._reject(change)
                continue
            self.lines[change.id] = number
            changes[change.id] = (number, change)
        if changes:
            self._apply(changes)

    def _apply(self, changes: dict[str, tuple[int, Change]]) -> None:
        stored = collection.live_documents(self.session, self.id, list(changes))
        removed, rows = [], []
        for client_id, (number, change) in changes.items():
            old = stored.get(client_id)
            if isinstance(change, DeletionSpec):
                if old is None:
                    self._reject(
                        LineError(line=number, field="id", error=f"no document '{client_id}' to delete")
                    )
                    continue
                removed.append(old.pk)
                self.counts["deleted"] += 1
                continue
            row = self._new_row(number, change, old)
            if row is None:
                self.counts["unchanged"] += 1
                continue
            if old is not None:
                removed.append(old.pk)
            self.counts["replaced" if old is not None else "added"] += 1
            rows.append(row)
        if removed:
            stmt = update(CollectionDocument).where(CollectionDocument.id.in_(removed))
            self.session.execute(
                stmt.values(removed_in=self.version).execution_options(synchronize_session=False)
            )
        if rows:
            self.session.execute(insert(CollectionDocument), rows)

    def _new_row(
        self, number: int, document: DocumentSpec, old: collection.LiveDocument | None
    ) -> dict[str, Any] | None:
        """The row of a document's new version, in this update's version and the old one's
        position (its place among ties); None when text and metadata are as stored."""
        digest = text_hash(document.text)
        if old is not None and old.text_hash == digest and old.metadata == document.metadata:
            return None
        return {
            "collection_id": self.id,
            "client_id": document.id,
            "text": document.text,
            "text_hash": digest,
            "meta": document.metadata,
            "position": old.position if old is not None else self.last_position + number,
            "version": self.version,
        }

    def _reject(self, error: LineError) -> None:
        self.error_count += 1
        if len(self.errors) < KEPT_ERRORS:
            self.errors.append(error)

    def finish(self) -> CollectionUpdateOut:
        counts = self.counts
        if not sum(counts.values()):
            raise nothing_accepted("line", self.error_count, self.errors)
        row = update(Collection).where(Collection.id == self.id)
        if counts["added"] + counts["replaced"] + counts["deleted"]:
            row = row.values(documents=Collection.documents + counts["added"] - counts["deleted"])
            collection.sweep_replaced(self.session, self.id)
        else:  # nothing changed: the version stays where it was
            row = row.values(version=Collection.version - 1, updated_at=self.previous_update)
        self.session.execute(row.execution_options(synchronize_session=False))
        self.session.commit()
        stored = collection.get(self.session, self.id)
        self.session.refresh(stored)
        return CollectionUpdateOut(
            id=self.id,
            version=stored.version,
            documents=stored.documents,
            error_count=self.error_count,
            errors=sorted(self.errors, key=lambda error: error.line),
            **counts,
        )


class JobUpload:
    """A job streamed as JSONL (one query with its documents per line, the `rerankq submit`
    format; judgement lines may be mixed in). Stored as it arrives in one transaction: a bad line
    rejects the whole job."""

    def __init__(self, job: NewJob, settings: Settings) -> None:
        self.job = job
        self.max_document_chars = settings.max_document_chars
        self.max_json_depth = settings.max_json_depth
        self.query_lines: dict[str, int] = {}  # query id -> the line it came on
        self.qrels = QrelsUpload(job.session, job.job.id, "jsonl", query_ids=self.query_lines)

    def add(self, lines: Sequence[Line]) -> None:
        queries = []
        for number, raw in lines:
            if not raw.strip():
                continue
            if why := too_deep(raw, self.max_json_depth):
                raise InvalidInput(f"line {number}: the line {why}", field="body")
            if judgement_line(raw):
                self.qrels.pending.append((number, raw))  # checked once every query is in
                continue
            try:
                query = QuerySpec.model_validate_json(raw)
            except ValidationError as error:
                found = line_error(number, error)
                raise InvalidInput(f"line {number}: {found.explain()}", field=found.field) from error
            if oversized := query.oversized(self.max_document_chars):
                field, why = oversized
                raise InvalidInput(f"line {number}: {field}: {why}", field=field)
            if query.id in self.query_lines:
                raise InvalidInput(
                    f"line {number}: duplicate query id '{query.id}' (line {self.query_lines[query.id]})",
                    field="id",
                )
            self.query_lines[query.id] = number
            queries.append(query)
        self.job.add_queries(queries)

    def finish(self) -> Stored:
        if not self.query_lines:
            raise InvalidInput("the job file has no queries", field="queries")
        self.qrels.add(self.qrels.pending)
        return self.job.finish()
