"""The house's boundaries: the API process never imports torch; api depends on worker, not back."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]


def test_api_never_imports_torch() -> None:
    heavy = "('torch', 'transformers')"
    probe = f"import sys, api.app, worker.cli; print([m for m in {heavy} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


def test_worker_does_not_import_api() -> None:
    offenders = [
        str(path.relative_to(ROOT))
        for path in (ROOT / "worker").rglob("*.py")
        if any(line.startswith(("import api", "from api")) for line in path.read_text().splitlines())
    ]
    assert offenders == []


def _imports(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line.startswith(("import ", "from "))]


def test_lifecycle_and_validation_do_not_import_the_tables() -> None:
    """Status enums, transition tables and input validation are plain values: no table behind them."""
    offenders = [
        f"{name}: {line}"
        for name in ("lifecycle.py", "spec.py")
        for line in _imports(ROOT / "worker" / name)
        if "worker.models" in line or "worker.db" in line or "sqlalchemy" in line
    ]
    assert offenders == []
