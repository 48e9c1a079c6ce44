"""Job files: JSONL with one query and its documents per line (the format of `rerankq submit` and
`rerankq run`), read and validated with errors that name the line and the field."""

from pathlib import Path

from pydantic import ValidationError

from worker.errors import InvalidInput
from worker.spec import JobOptions, JobSpec, QuerySpec
from worker.views import LineError

Line = tuple[int, bytes]  # (line number, raw line) of a streamed upload


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
    try:
        lines = path.open(encoding="utf-8")
    except OSError as error:
        raise InvalidInput(f"{path}: {error.strerror}", field="file") from error
    with lines:
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
