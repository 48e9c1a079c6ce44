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
