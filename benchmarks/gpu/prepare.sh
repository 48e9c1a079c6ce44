#!/usr/bin/env bash
# Gather what benchmarks/gpu/run.sh needs on a lent GPU machine that its image lacks, into .gpu/
# (ignored by git; pass it to the device tool as `carry: [".gpu"]`):
#   .gpu/wheels  cp312 manylinux / pure-Python wheels of this project's runtime needs, at the
#                versions installed in this venv (the image has torch 2.11, transformers 5.x,
#                sentence-transformers, numpy, httpx, typer, tqdm, pyarrow ...). Not FlagEmbedding:
#                1.4.2 cannot be imported under transformers 5.x (transformers.modeling_attn_mask_utils
#                is gone), so the GPU run reports its baseline as unavailable.
#   .gpu/bin     redis-server, copied from this machine, with the shared libraries it needs in .gpu/lib
# Usage: benchmarks/gpu/prepare.sh [PYTHON]   (PYTHON: the venv whose versions to fetch; default .venv)
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${1:-.venv/bin/python}
DEST=.gpu
# Not in the GPU image (KINDS.md's package list): the service's stack.
PACKAGES=(
  celery kombu billiard vine amqp click-didyoumean click-plugins click-repl prompt_toolkit wcwidth
  redis fastapi starlette uvicorn sqlalchemy greenlet alembic mako python-multipart psycopg psycopg-binary
  pydantic pydantic-core pydantic-settings python-dotenv annotated-types typing-inspection typing-extensions
  swagger-ui-bundle croniter ir-measures pytrec-eval-terrier opentelemetry-api tzlocal
)
rm -rf "$DEST" && mkdir -p "$DEST/wheels" "$DEST/bin" "$DEST/lib"
pins=$("$PYTHON" -c 'import sys
from importlib.metadata import version
print(" ".join(f"{n}=={version(n)}" for n in sys.argv[1:]))' "${PACKAGES[@]}")
# shellcheck disable=SC2086
"$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$DEST/wheels" $pins
cp "$(command -v redis-server)" "$DEST/bin/"
# Every shared library redis-server links, except the C runtime the GPU image has its own of.
ldd "$DEST/bin/redis-server" | awk '/=> \//{print $3}' \
  | grep -vE '/(libc|libm|libstdc\+\+|libgcc_s|ld-linux[^/]*)\.so' | xargs -I{} cp -L {} "$DEST/lib/"
du -sh "$DEST"/*
echo "ready: carry .gpu (device tool: carry [\".gpu\"]) and run benchmarks/gpu/run.sh"
