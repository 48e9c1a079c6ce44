"""The engine benchmark's quick run on the tiny model: it finishes, prints every row of its table and
parity numbers within bounds (no timing is asserted: this machine's speed is not under test). A
benchmark asked for no rounds stops with a usage error naming the option, not a traceback after
minutes of setup."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_quick_engine_benchmark(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "benchmarks.engine", "--quick", "--cache", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    rows = [line.split("|")[1:5] for line in run.stdout.splitlines() if line.startswith("| tiny ")]
    cells = {
        (shape.strip(), pairs.split("(")[0].strip(), dtype.strip(), method.strip())
        for shape, pairs, dtype, method in rows
    }
    assert cells == {
        ("tiny", variant, dtype, method)
        for variant in ("mixed", "long")
        for dtype in ("fp32", "bf16")
        for method in ("rerankq", "FlagReranker", "CrossEncoder")
    }
    parity = [
        float(x) for x in re.findall(r"fp32: max \|Δ raw\| rerankq vs FlagReranker = (\S+)", run.stdout)
    ]
    drift = [float(x) for x in re.findall(r"max \|Δ sigmoid\| rerankq bf16 vs fp32 = (\S+)", run.stdout)]
    assert len(parity) == len(drift) == 2
    assert max(parity) < 1e-4
    assert max(drift) <= 0.01


def test_a_count_below_one_is_a_usage_error_naming_the_option() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "benchmarks.bulk_writes", "--rounds", "0"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2
    assert "argument --rounds: must be 1 or more, got 0" in run.stderr
    assert "Traceback" not in run.stderr
