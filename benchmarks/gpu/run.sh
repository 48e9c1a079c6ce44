#!/usr/bin/env bash
# The GPU run in one command (at most 8 minutes): on a lent GPU machine, after benchmarks/gpu/prepare.sh
# here and with .gpu carried, `benchmarks/gpu/run.sh`; rehearsed on a CPU with `--device cpu`
# (smaller model and sizes). Steps, each also written to $OUT (when set) as its own file:
#   1. engine.md    rerankq fp16 and bf16 vs FlagReranker(use_fp16=True) and CrossEncoder: pairs/s,
#                   tokens/s, % of the matmul peak measured in the same run (benchmarks.engine)
#   2. flag.md      the same in fp16 over the carried transformers 4.x (.gpu/tf4), where FlagEmbedding
#                   1.4.2 imports: every method, FlagReranker(use_fp16=True) included
#   3. checks.txt   `auto` picks CUDA + fp16; the out-of-memory split under an oversized token budget
#   4. pipeline.md  API -> Redis (the carried binary) -> one worker on the device -> SQLite, kept % of
#                   the engine alone (benchmarks.pipeline)
# Usage: benchmarks/gpu/run.sh [--device cuda|cpu] [--steps "engine flag checks pipeline"]
#   (PYTHON overrides the interpreter; default python3; --steps reruns a subset after a failure)
set -uo pipefail
cd "$(dirname "$0")/../.."
DEVICE=cuda
STEPS="engine flag checks pipeline"
while [[ $# -gt 0 ]]; do
  case $1 in
    --device) DEVICE=$2; shift 2 ;;
    --steps) STEPS=$2; shift 2 ;;
    *) echo "usage: $0 [--device cuda|cpu] [--steps \"engine flag checks pipeline\"]" >&2; exit 2 ;;
  esac
done
PYTHON=${PYTHON:-python3}
OUT=${OUT:-$(mktemp -d /tmp/rerankq-gpu-run.XXXX)}
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
if ! "$PYTHON" -c 'import celery, fastapi, sqlalchemy, pydantic_settings, alembic, croniter, ir_measures, swagger_ui_bundle' 2>/dev/null; then
  [[ -d .gpu/wheels ]] || { echo "missing packages and no .gpu/wheels: run benchmarks/gpu/prepare.sh" >&2; exit 2; }
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/rerankq-site .gpu/wheels/*.whl || exit 2
  export PYTHONPATH=/tmp/rerankq-site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
TF4=""  # the flag step's packages, in front of the others: only where FlagEmbedding does not import
if [[ " $STEPS " == *" flag "* ]] && ! "$PYTHON" -c 'import FlagEmbedding' 2>/dev/null; then
  [[ -d .gpu/tf4 ]] || { echo "FlagEmbedding does not import and no .gpu/tf4: run benchmarks/gpu/prepare.sh" >&2; exit 2; }
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/rerankq-tf4 .gpu/tf4/*.whl || exit 2
  TF4=/tmp/rerankq-tf4:
fi
"$PYTHON" -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__,
  "cuda", torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)' | tee "$OUT/versions.txt"

if [[ $DEVICE == cpu ]]; then   # the rehearsal: every step, at sizes a 2-core CPU finishes in minutes
  SHAPE=tiny; DTYPES="fp32 bf16"; FLAG_DTYPE=fp32; PAIRS=16; REPEATS=1; OOM_PAIRS=64; PIPELINE_PAIRS=1000
  SLOW=3  # time limits x3: this machine's 2 shared cores, not the GPU's 8-minute call
else
  SHAPE=v2-m3; DTYPES="fp16 bf16"; FLAG_DTYPE=fp16; PAIRS=1024; REPEATS=2; OOM_PAIRS=512; PIPELINE_PAIRS=8000
  SLOW=${SLOW:-1}  # 150 + 150 + 70 + 200 s: on the H200, engine, checks and pipeline took about 60, 40
                   # and 130 (flag is new: one dtype, a third method); SLOW=2 doubles
fi

REDIS=redis-server
[[ -x .gpu/bin/redis-server ]] && REDIS=.gpu/bin/redis-server
PORT=$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
LD_LIBRARY_PATH=$PWD/.gpu/lib "$REDIS" --port "$PORT" --save '' --appendonly no >"$OUT/redis.log" 2>&1 &
REDIS_PID=$!
trap 'kill $REDIS_PID 2>/dev/null' EXIT

failed=0
step() {  # step NAME FILE SECONDS COMMAND...: run within a time limit, show and keep its output
  local name=$1 file=$2 limit=$(($3 * SLOW)); shift 3
  [[ " $STEPS " == *" $name "* ]] || return 0
  echo "== $name (at most ${limit}s): $*"
  timeout -s INT -k 10 "$limit" "$@" 2>"$OUT/$file.log" | tee "$OUT/$file"
  local status=${PIPESTATUS[0]}
  if [[ $status != 0 ]]; then
    failed=1
    echo "!! $name failed with status $status (124: over its time limit); the end of $OUT/$file.log:"
    tail -20 "$OUT/$file.log"
    [[ $name == pipeline ]] && tail -n 25 /tmp/rerankq-bench-*/*.log  # the API's and workers' own logs
  fi
}
# shellcheck disable=SC2086
step engine engine.md 150 "$PYTHON" -m benchmarks.engine --device "$DEVICE" --shapes $SHAPE \
  --dtypes $DTYPES --pairs $PAIRS --repeats $REPEATS
step flag flag.md 150 env PYTHONPATH="$TF4$PYTHONPATH" "$PYTHON" -m benchmarks.engine --device "$DEVICE" \
  --shapes $SHAPE --dtypes $FLAG_DTYPE --pairs $PAIRS --repeats $REPEATS --require FlagReranker
step checks checks.txt 70 "$PYTHON" -m benchmarks.gpu.checks --device "$DEVICE" --shape $SHAPE \
  --pairs $OOM_PAIRS
step pipeline pipeline.md 200 "$PYTHON" -m benchmarks.pipeline --device "$DEVICE" --shape $SHAPE \
  --pairs $PIPELINE_PAIRS --rounds 2 --sqlite /tmp/rerankq-gpu-bench.db --redis "redis://127.0.0.1:$PORT/0"
echo "outputs in $OUT"
[[ $failed == 0 ]] && echo "gpu run: every step passed" || echo "gpu run: a step FAILED"
exit $failed
