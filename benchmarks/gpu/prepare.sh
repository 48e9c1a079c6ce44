#!/usr/bin/env bash
# Gather what benchmarks/gpu/run.sh needs on a lent GPU machine that its image lacks, into .gpu/
# (ignored by git; pass it to the device tool as `carry: [".gpu"]`):
#   .gpu/wheels  cp312 manylinux / pure-Python wheels of this project's runtime needs, at the
#                versions installed in this venv (the image has torch 2.11, transformers 5.x,
#                sentence-transformers, numpy, httpx, typer, tqdm, pyarrow ...).
#   .gpu/tf4     FlagReranker's baseline: FlagEmbedding 1.4.2 cannot be imported under transformers
#                5.x (transformers.modeling_attn_mask_utils is gone), so it travels with the
#                transformers 4.x it runs on, installed apart and put in front of the image's 5.x
#                for that step alone (run.sh's `flag` step).
#   .gpu/bin     redis-server, copied from this machine, with the shared libraries it needs in .gpu/lib
# Usage: benchmarks/gpu/prepare.sh [PYTHON]   (PYTHON: the venv whose versions to fetch; default .venv;
#   GPU_PYTHON: the GPU image's Python version, default 3.12; 3.11 for a rehearsal on this machine)
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${1:-.venv/bin/python}
GPU_PYTHON=${GPU_PYTHON:-3.12}
DEST=.gpu
# Not in the GPU image (KINDS.md's package list): the service's stack.
PACKAGES=(
  celery kombu billiard vine amqp click-didyoumean click-plugins click-repl prompt_toolkit wcwidth
  redis fastapi starlette uvicorn sqlalchemy greenlet alembic mako python-multipart psycopg psycopg-binary
  pydantic pydantic-core pydantic-settings python-dotenv annotated-types typing-inspection typing-extensions
  swagger-ui-bundle croniter ir-measures pytrec-eval-terrier opentelemetry-api tzlocal
)
# FlagEmbedding and what it imports that the image lacks or has only in a 5.x-era version.
TF4_PACKAGES=(
  FlagEmbedding transformers tokenizers huggingface-hub peft sentence-transformers datasets dill multiprocess fsspec
)
rm -rf "$DEST" && mkdir -p "$DEST/wheels" "$DEST/tf4" "$DEST/bin" "$DEST/lib"
fetch() {  # fetch DIR NAME...: the GPU image's wheels of NAMEs, at this venv's versions, into DIR
  local dir=$1; shift
  local pins
  pins=$("$PYTHON" -c 'import sys
from importlib.metadata import version
print(" ".join(f"{n}=={version(n)}" for n in sys.argv[1:]))' "$@")
  # shellcheck disable=SC2086
  "$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version "$GPU_PYTHON" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$dir" $pins
}
fetch "$DEST/wheels" "${PACKAGES[@]}"
fetch "$DEST/tf4" "${TF4_PACKAGES[@]}"
cp "$(command -v redis-server)" "$DEST/bin/"
# Every shared library redis-server links, except the C runtime the GPU image has its own of.
ldd "$DEST/bin/redis-server" | awk '/=> \//{print $3}' \
  | grep -vE '/(libc|libm|libstdc\+\+|libgcc_s|ld-linux[^/]*)\.so' | xargs -I{} cp -L {} "$DEST/lib/"
du -sh "$DEST"/*
echo "ready: carry .gpu (device tool: carry [\".gpu\"]) and run benchmarks/gpu/run.sh"
