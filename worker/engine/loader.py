"""Loading a reranker from a hub id or a local directory, once per process."""

import logging
import time

from transformers import AutoModelForSequenceClassification, AutoTokenizer

from worker.engine.device import describe, resolve_device, resolve_dtype
from worker.engine.reranker import Reranker

log = logging.getLogger(__name__)


def load_reranker(
    model: str, device: str = "auto", dtype: str = "auto", batch_tokens: int = 16384
) -> Reranker:
    """Load `model` (hub id or directory) for scoring on `device` in `dtype` (see Settings)."""
    started = time.perf_counter()
    target = resolve_device(device)
    precision = resolve_dtype(dtype, target)
    tokenizer = AutoTokenizer.from_pretrained(model)
    network = AutoModelForSequenceClassification.from_pretrained(
        model, dtype=precision, attn_implementation="sdpa"
    )
    if network.config.num_labels != 1:
        raise ValueError(f"{model} has {network.config.num_labels} labels; a reranker has one logit")
    network.to(target).eval()
    log.info(
        "loaded %s on %s in %.1fs (%.0fM parameters)",
        model,
        describe(target, precision),
        time.perf_counter() - started,
        sum(p.numel() for p in network.parameters()) / 1e6,
    )
    return Reranker(network, tokenizer, target, precision, model, batch_tokens)
