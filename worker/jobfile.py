"""Job files: JSONL with one query and its documents per line (the format of `rerankq submit`),
and result rows as JSONL, CSV or Parquet: the one formatting path of the export endpoints,
`rerankq results` and `rerankq run`."""

import csv
import io
import itertools
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from worker.errors import InvalidInput
from worker.spec import JobOptions, JobSpec, QuerySpec
from worker.views import LineError, ResultOut

RESULT_COLUMNS = ("query_id", "document_id", "rank", "raw_score", "score", "relevant")


def line_error(number: int, error: ValidationError | str) -> LineError:
    """One rejected JSONL line: its number, the field at fault and why."""
    if isinstance(error, str):
        return LineError(line=number, field=None, error=error)
    first = error.errors()[0]
    field = ".".join(str(part) for part in first["loc"]) or None
    return LineError(line=number, field=field, error=first["msg"])


def read_job_file(path: Path, options: JobOptions) -> JobSpec:
    """Parse and validate a JSONL job file; an error names the line and the field."""
    queries = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                queries.append(QuerySpec.model_validate_json(line))
            except ValidationError as error:
                found = line_error(number, error)
                raise InvalidInput(f"{path}:{number}: {found.explain()}", field=found.field) from error
    try:
        return JobSpec(queries=queries, options=options)
    except ValidationError as error:
        first = error.errors()[0]
        raise InvalidInput(f"{path}: {first['msg']}", field="queries") from error


# Rows per Parquet row group (and per chunk of text written): memory stays bounded by this.
CHUNK_ROWS = 10_000


def _csv_text(records: Iterable[Iterable[Any]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer).writerows(records)
    return buffer.getvalue()


CSV_HEADER = _csv_text([RESULT_COLUMNS])


def format_rows(rows: Iterable[dict[str, Any]], csv_format: bool) -> str:
    """Result rows as CSV lines (RESULT_COLUMNS, no header) or JSONL lines (every field of a row)."""
    if csv_format:
        return _csv_text([row[column] for column in RESULT_COLUMNS] for row in rows)
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def records(pages: Iterable[list[ResultOut]]) -> Iterator[list[dict[str, Any]]]:
    """Pages of results as the JSON objects an export writes: the fields of /results without
    the per-window scores."""
    for page in pages:
        yield [result.model_dump(exclude={"chunk_scores"}) for result in page]


def text_chunks(pages: Iterable[list[dict[str, Any]]], csv_format: bool) -> Iterator[str]:
    """Pages of result rows as a stream of text, one chunk per page (CSV: the header first)."""
    if csv_format:
        yield CSV_HEADER
    for page in pages:
        yield format_rows(page, csv_format)


def _chunks(rows: Iterable[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    iterator = iter(rows)
    while chunk := list(itertools.islice(iterator, CHUNK_ROWS)):
        yield chunk


def write_results(rows: Iterable[dict[str, Any]], path: Path) -> int:
    """Write result rows to `path` (.csv, .parquet, else JSONL) a chunk at a time, so a job of any
    size fits in memory; returns how many were written."""
    if path.suffix == ".parquet":
        return _write_parquet(rows, path)
    csv_format = path.suffix == ".csv"
    count = 0
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write(CSV_HEADER if csv_format else "")
        for chunk in _chunks(rows):
            out.write(format_rows(chunk, csv_format))
            count += len(chunk)
    return count


def _write_parquet(rows: Iterable[dict[str, Any]], path: Path) -> int:
    """RESULT_COLUMNS, one row group per chunk of rows."""
    import pyarrow as pa  # heavy, and only this writer needs it
    import pyarrow.parquet as pq

    types = (pa.string(), pa.string(), pa.int32(), pa.float64(), pa.float64(), pa.bool_())
    schema = pa.schema(list(zip(RESULT_COLUMNS, types, strict=True)))
    count = 0
    with pq.ParquetWriter(path, schema) as writer:
        for chunk in _chunks(rows):
            writer.write_table(pa.Table.from_pylist(chunk, schema=schema))
            count += len(chunk)
    return count
