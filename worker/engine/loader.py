"""Loading a reranker from a hub id or a local directory, once per process. Every way that can
fail (no such directory, no hub, no such device) is one ModelLoadError line saying what to set."""

import logging
import os
import socket
import time
from pathlib import Path
from urllib.parse import urlparse

from huggingface_hub import constants, try_to_load_from_cache
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from worker.config import Settings
from worker.engine.device import describe, resolve_device, resolve_dtype
from worker.engine.reranker import Reranker
from worker.errors import ModelLoadError

log = logging.getLogger(__name__)
DEMO_HINT = (
    "set RERANK_MODEL to a model directory (`rerankq build-test-model .models/tiny` builds a demo one)"
)


def load_configured(settings: Settings) -> Reranker:
    """The model of `settings` on their device and dtype, named as jobs and heartbeats name it
    (Settings.served_model): the score cache keys it by that name."""
    return load_reranker(
        settings.model,
        settings.device,
        settings.dtype,
        settings.batch_tokens,
        settings.served_model,
        settings.trace,
    )


def load_reranker(
    model: str,
    device: str = "auto",
    dtype: str = "auto",
    batch_tokens: int = 16384,
    name: str | None = None,
    trace: bool = True,
) -> Reranker:
    """Load `model` (hub id or directory) for scoring on `device` in `dtype` (see Settings), named
    `name` (`model` when None), traced on the CPU when `trace` (Reranker.trace); ModelLoadError, in
    one line that says what to set, if it cannot be."""
    started = time.perf_counter()
    target = resolve_device(device)
    precision = resolve_dtype(dtype, target)
    source, cache_only = _locate(model)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=cache_only)
        network = AutoModelForSequenceClassification.from_pretrained(
            source, dtype=precision, attn_implementation="sdpa", local_files_only=cache_only
        )
    except (OSError, ValueError) as error:
        hint = "" if Path(source).is_dir() else f"; {DEMO_HINT}"
        raise ModelLoadError(f"cannot load the model {model!r}: {_first_line(error)}{hint}") from error
    if network.config.num_labels != 1:
        raise ModelLoadError(
            f"{model} has {network.config.num_labels} labels; a reranker has one logit: set RERANK_MODEL"
            " to a cross-encoder reranker"
        )
    network.to(target).eval()
    reranker = Reranker(network, tokenizer, target, precision, name or model, batch_tokens)
    traced = trace and target.type == "cpu" and reranker.trace()
    log.info(
        "loaded %s on %s, %s, in %.1fs (%.0fM parameters)",
        model,
        describe(target, precision),
        "traced" if traced else "eager",
        time.perf_counter() - started,
        sum(p.numel() for p in network.parameters()) / 1e6,
    )
    return reranker


def _locate(model: str) -> tuple[str, bool]:
    """Where to load `model` from, and whether only the local cache may be read: a directory as it
    is; a hub id from the hub, or from the cache when the hub is unreachable (probed once, in
    seconds: the hub client itself retries for about a minute before it gives up)."""
    path = Path(model).expanduser()
    if path.is_dir():
        return str(path), False
    if model.startswith(("/", ".", "~")) or model.count("/") > 1 or path.exists():
        raise ModelLoadError(f"RERANK_MODEL={model!r}: no such directory, and not a hub id")
    if constants.HF_HUB_OFFLINE or _hub_reachable():
        return model, False
    if isinstance(try_to_load_from_cache(model, "config.json"), str):
        return model, True
    raise ModelLoadError(
        f"cannot download {model!r}: the Hugging Face hub ({constants.ENDPOINT}) is unreachable"
        f" and the model is not cached; {DEMO_HINT}"
    )


def _hub_reachable(timeout: float = 3.0) -> bool:
    if any(os.environ.get(name) for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True  # the proxy decides; let the hub client try
    endpoint = urlparse(constants.ENDPOINT)
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        socket.create_connection((endpoint.hostname, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]
