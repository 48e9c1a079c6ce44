"""What one bulk write of a job's rows costs on PostgreSQL: 20,000 documents through
`store.insert_rows` (COPY) and the results' upsert path (one statement, arrays in binary), against
the baseline they replaced, the same statement with its arrays in text (psycopg dumps a text
array value by value in Python). Client CPU and wall time, medians over --rounds, and the ratios.

    python -m benchmarks.bulk_writes --rows 20000

Creates (and drops) the database `rerankq_bulk_bench`."""

import json
import time
from collections.abc import Callable
from statistics import median

import psycopg

from benchmarks.common import POSTGRES, benchmark_parser, make_pairs, positive
from benchmarks.services import scratch_database

COLUMNS = {"job_id": "varchar(32)", "query_id": "integer", "client_id": "varchar", "text": "text"}
COLUMNS |= {"text_hash": "varchar(64)", "meta": "json", "position": "integer"}
TABLE = f"CREATE TABLE documents ({', '.join(f'{c} {t}' for c, t in COLUMNS.items())})"


def unnest(binary: bool) -> str:
    marker = "b" if binary else "s"
    arrays = ", ".join(f"CAST(%({c}){marker} AS {t}[])" for c, t in COLUMNS.items())
    return f"INSERT INTO documents SELECT * FROM unnest({arrays})"


def main() -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--rows", type=positive, default=20_000)
    parser.add_argument("--rounds", type=positive, default=5)
    args = parser.parse_args()
    rows = [
        {"job_id": "j" * 32, "query_id": i // 100, "client_id": f"d{i}", "text": text}
        | {"text_hash": "h" * 64, "meta": json.dumps({"i": i}), "position": i % 100}
        for i, (_, text) in enumerate(make_pairs(args.rows, seed=5))
    ]
    columns = {c: [row[c] for row in rows] for c in COLUMNS}

    with (
        scratch_database(POSTGRES, "rerankq_bulk_bench") as url,
        psycopg.connect(url.replace("+psycopg", "")) as conn,
    ):
        conn.execute(TABLE)

        def copy() -> None:
            with conn.cursor().copy(f"COPY documents ({', '.join(COLUMNS)}) FROM STDIN") as writer:
                for row in rows:
                    writer.write_row(tuple(row.values()))

        ways: dict[str, Callable[[], object]] = {
            "text arrays (baseline)": lambda: conn.execute(unnest(binary=False), columns),
            "binary arrays (the upsert's)": lambda: conn.cursor().execute(
                unnest(binary=True), columns, binary=True
            ),
            "COPY (plain rows)": copy,
        }
        timings: dict[str, list[tuple[float, float]]] = {name: [] for name in ways}
        for _ in range(args.rounds):
            for name, write in ways.items():
                cpu, wall = time.process_time(), time.perf_counter()
                write()
                conn.commit()
                timings[name].append((time.process_time() - cpu, time.perf_counter() - wall))
                conn.execute("TRUNCATE documents")
                conn.commit()
    base_cpu, base_wall = (median(t[i] for t in timings["text arrays (baseline)"]) for i in (0, 1))
    print(f"| {args.rows:,} documents | client CPU | x baseline | wall | x baseline |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, measured in timings.items():
        cpu, wall = median(t[0] for t in measured), median(t[1] for t in measured)
        print(f"| {name} | {cpu:.3f} s | {base_cpu / cpu:.1f}x | {wall:.3f} s | {base_wall / wall:.1f}x |")


if __name__ == "__main__":
    main()
