"""Job files: JSONL with one query and its documents per line (the format of `rerankq submit`),
and result files written as JSONL or CSV."""

import csv
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from worker.errors import InvalidInput
from worker.spec import JobOptions, JobSpec, QuerySpec

RESULT_COLUMNS = ("query_id", "document_id", "rank", "raw_score", "score", "relevant")


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
                first = error.errors()[0]
                field = ".".join(str(part) for part in first["loc"])
                raise InvalidInput(f"{path}:{number}: {field}: {first['msg']}", field=field) from error
    try:
        return JobSpec(queries=queries, options=options)
    except ValidationError as error:
        first = error.errors()[0]
        raise InvalidInput(f"{path}: {first['msg']}", field="queries") from error


def write_results(rows: Iterable[dict[str, Any]], path: Path) -> int:
    """Write result rows to `path` (.csv or JSONL); returns how many were written."""
    count = 0
    with path.open("w", encoding="utf-8", newline="") as out:
        if path.suffix == ".csv":
            writer = csv.DictWriter(out, fieldnames=RESULT_COLUMNS, extrasaction="ignore")
            writer.writeheader()
            for row in rows:
                writer.writerow(row)
                count += 1
        else:
            for row in rows:
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
                count += 1
    return count
