"""The engine benchmark's quick run on the tiny model: it finishes, prints every row of its table and
parity numbers within bounds (no timing is asserted: this machine's speed is not under test)."""

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
