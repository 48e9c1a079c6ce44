"""Result files: ranked results as JSONL, CSV or Parquet, a page of rows at a time; the one
formatting path of the export endpoints, `rerankq results` and `rerankq run`. A row is the JSON
object an export writes (what `rerankq results` reads back from the API)."""

import csv
import io
import itertools
import json
import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO

from worker.errors import InvalidInput
from worker.views import ResultOut

# One result as the JSON object an export writes.
Record = dict[str, Any]
# The columns of CSV and Parquet files, the same in both: a result flattened (best_chunk's span,
# metadata as JSON text). JSONL keeps every field nested, best_chunk's text included.
RESULT_COLUMNS = (
    "query_id",
    "document_id",
    "rank",
    "raw_score",
    "score",
    "relevant",
    "chunks",
    "best_chunk_start",
    "best_chunk_end",
    "query_truncated",
    "cached",
    "metadata",
)

# Rows per Parquet row group (and per page of text written): memory stays bounded by this.
PAGE_ROWS = 10_000


def _csv_text(records: Iterable[Iterable[Any]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer).writerows(records)
    return buffer.getvalue()


CSV_HEADER = _csv_text([RESULT_COLUMNS])


def flat(row: Record) -> tuple[Any, ...]:
    """A result as RESULT_COLUMNS (CSV and Parquet)."""
    best, metadata = row["best_chunk"], row.get("metadata")
    return (
        *(row[column] for column in RESULT_COLUMNS[:7]),
        best["start"],
        best["end"],
        row["query_truncated"],
        row["cached"],
        None if metadata is None else json.dumps(metadata, ensure_ascii=False),
    )


def format_rows(rows: Iterable[Record], csv_format: bool) -> str:
    """Result rows as CSV lines (RESULT_COLUMNS, no header) or JSONL lines (every field of a row)."""
    if csv_format:
        return _csv_text(flat(row) for row in rows)
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def records(pages: Iterable[list[ResultOut]]) -> Iterator[list[Record]]:
    """Pages of results as the JSON objects an export writes: the fields of /results without
    the per-window scores."""
    for page in pages:
        yield [result.model_dump(exclude={"chunk_scores"}) for result in page]


def text_pages(pages: Iterable[list[Record]], csv_format: bool) -> Iterator[str]:
    """Pages of result rows as a stream of text, one string per page (CSV: the header first)."""
    if csv_format:
        yield CSV_HEADER
    for page in pages:
        yield format_rows(page, csv_format)


def _pages(rows: Iterable[Record]) -> Iterator[list[Record]]:
    iterator = iter(rows)
    while page := list(itertools.islice(iterator, PAGE_ROWS)):
        yield page


STDOUT = Path("-")
FORMATS = {".jsonl": "jsonl", ".csv": "csv", ".parquet": "parquet"}


def output_format(path: Path) -> str:
    """jsonl, csv or parquet, by the extension in any case; `-` (stdout) is JSONL."""
    if path == STDOUT:
        return "jsonl"
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        found = path.suffix or "none"
        raise InvalidInput(f"extension {found!r} unknown: use .jsonl, .csv or .parquet, or - for stdout")
    return kind


def check_output(path: Path) -> None:
    """Refuse an output path that could not be written (format, directory), before any work."""
    output_format(path)
    if path == STDOUT:
        return
    if path.is_dir():
        raise InvalidInput("is a directory")
    if not path.parent.is_dir():
        raise InvalidInput(f"no such directory {str(path.parent)!r}")
    if not os.access(path.parent, os.W_OK):
        raise InvalidInput(f"directory {str(path.parent)!r} is not writable")


def write_results(rows: Iterable[Record], path: Path) -> int:
    """Write result rows to `path` (see output_format) a page at a time, so a job of any size fits
    in memory; returns how many were written."""
    kind = output_format(path)
    if kind == "parquet":
        return _write_parquet(rows, path)
    if path == STDOUT:
        return _write_text(rows, sys.stdout, csv_format=False)
    with path.open("w", encoding="utf-8", newline="") as out:
        return _write_text(rows, out, csv_format=kind == "csv")


def _write_text(rows: Iterable[Record], out: TextIO, csv_format: bool) -> int:
    count = 0
    out.write(CSV_HEADER if csv_format else "")
    for page in _pages(rows):
        out.write(format_rows(page, csv_format))
        count += len(page)
    return count


def _write_parquet(rows: Iterable[Record], path: Path) -> int:
    """RESULT_COLUMNS, one row group per page of rows."""
    import pyarrow as pa  # heavy, and only this writer needs it
    import pyarrow.parquet as pq

    text, number, score, flag = pa.string(), pa.int32(), pa.float64(), pa.bool_()
    types = (text, text, number, score, score, flag, number, number, number, flag, flag, text)
    schema = pa.schema(list(zip(RESULT_COLUMNS, types, strict=True)))
    count = 0
    with pq.ParquetWriter(path, schema) as writer:
        for page in _pages(rows):
            columns = list(zip(*(flat(row) for row in page), strict=True))
            writer.write_table(pa.Table.from_arrays(columns, schema=schema))
            count += len(page)
    return count
