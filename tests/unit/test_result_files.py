"""Result files: the one writer behind `rerankq results`, `rerankq run` and the export endpoints."""

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from worker.export import PAGE_ROWS, RESULT_COLUMNS, flat, text_pages, write_results


def rows(count: int) -> Iterator[dict[str, Any]]:
    """Rows as the export yields them, ids with the characters CSV must quote."""
    for i in range(count):
        yield {
            "query_id": f"q{i // 100}",
            "document_id": f'doc, "{i}"\n粗',
            "rank": i % 100 + 1,
            "raw_score": -i / 7,
            "score": 1 / (i + 1),
            "relevant": i % 3 == 0,
            "chunks": 1 + i % 2,
            "best_chunk": {"index": 0, "start": i, "end": i + 3, "text": "abc"},
            "query_truncated": i % 5 == 0,
            "cached": i % 2 == 0,
            "metadata": None if i % 4 else {"url": f"https://example.org/{i}", "n": i},
        }


def test_parquet_is_written_in_row_groups_and_reads_back(tmp_path: Path) -> None:
    count = PAGE_ROWS * 2 + 17
    path = tmp_path / "out.parquet"
    assert write_results(rows(count), path) == count
    parquet = pq.ParquetFile(path)
    assert parquet.metadata.num_row_groups == 3  # bounded: one page of rows in memory at a time
    assert parquet.schema_arrow.names == list(RESULT_COLUMNS)
    read = parquet.read().to_pylist()
    assert read == [dict(zip(RESULT_COLUMNS, flat(row), strict=True)) for row in rows(count)]
    assert read[4]["best_chunk_start"] == 4 and json.loads(read[4]["metadata"])["n"] == 4


def test_empty_parquet_still_has_the_columns(tmp_path: Path) -> None:
    path = tmp_path / "none.parquet"
    assert write_results(iter([]), path) == 0
    table = pq.read_table(path)
    assert table.num_rows == 0 and table.column_names == list(RESULT_COLUMNS)


def test_csv_and_jsonl_files_equal_the_streamed_text(tmp_path: Path) -> None:
    for suffix in (".csv", ".jsonl"):
        path = tmp_path / f"out{suffix}"
        assert write_results(rows(250), path) == 250
        pages = [list(rows(250))[:100], list(rows(250))[100:]]
        streamed = "".join(text_pages(pages, csv_format=suffix == ".csv"))
        assert path.read_bytes().decode() == streamed
    with (tmp_path / "out.csv").open(encoding="utf-8", newline="") as f:
        read = list(csv.DictReader(f))
    assert [r["document_id"] for r in read] == [r["document_id"] for r in rows(250)]
    assert list(read[0]) == list(RESULT_COLUMNS)  # the same columns as Parquet
    assert read[4]["metadata"] == '{"url": "https://example.org/4", "n": 4}' and read[1]["metadata"] == ""
    lines = (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == list(rows(250))
