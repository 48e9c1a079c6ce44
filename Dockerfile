# rerankq image: one image for the API, the Celery workers and the migration job
# (the command picks the role: `api`, `worker`, `migrate`, `run`, ...).
#
# CPU image (default):
#   docker build -t rerankq .
# GPU image (CUDA wheels of torch; run with the NVIDIA container toolkit):
#   docker build -t rerankq:cu128 --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 .
# docker-compose.yml builds both (worker-gpu under the "gpu" profile).
FROM python:3.11-slim

# Where torch comes from. The CPU index keeps the image small; pass a cu12x index for GPU workers.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG TORCH_VERSION=2.13.0

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HOME=/models

RUN groupadd --system --gid 10001 rerankq \
    && useradd --system --uid 10001 --gid rerankq --create-home --home-dir /home/rerankq rerankq \
    && mkdir -p /models /app \
    && chown rerankq:rerankq /models

WORKDIR /app

# 1. torch first, from the chosen index, so `pip install .` below finds it already satisfied
#    (a local version such as 2.13.0+cpu or 2.13.0+cu128 satisfies torch==2.13.0).
RUN pip install --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"

# 2. The remaining runtime dependencies, read from pyproject.toml, in their own layer so that
#    code changes do not reinstall them.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# 3. The project itself (console script `rerankq`). The source stays in /app so files that are
#    read relative to the working directory (e.g. alembic.ini) are at hand.
COPY . .
RUN pip install --no-deps . \
    && python -c "import torch; print('torch', torch.__version__)" \
    && command -v rerankq

USER rerankq

# /models is the HF cache (HF_HOME): mount a volume there so weights are downloaded once, e.g.
#   docker run --rm -v rerankq-models:/models -v "$PWD:/data" -w /data rerankq run examples/pandas_en.jsonl -o out.jsonl
# (/app is read-only for the rerankq user; write outputs to a mounted directory.)

EXPOSE 8000

ENTRYPOINT ["rerankq"]
CMD ["api", "--host", "0.0.0.0", "--port", "8000"]
