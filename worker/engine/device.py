"""Device and precision choice: CUDA with fp16 when usable, else CPU with fp32 (no GPU is no error)."""

import logging

import torch

from worker.errors import ModelLoadError

log = logging.getLogger(__name__)

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def resolve_device(device: str) -> torch.device:
    """`auto` picks cuda:0 when CUDA is present and usable, else the CPU."""
    if device == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError(
            f"device {device!r} asked for, but CUDA is not available on this machine"
            " (RERANK_DEVICE=cpu or auto runs on the CPU)"
        )
    return resolved


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """`auto` is fp16 on CUDA and fp32 on CPU: exact parity with the reference. bf16 runs about 3x
    faster on a CPU with avx512_bf16, but on the trained MiniLM reranker it kept nDCG@10 (-0.0023)
    and not the order within every query (min per-query Spearman 0.9895 < 0.99; benchmarks/fidelity.py),
    so it is not the default on any CPU: ask for it."""
    if dtype == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    return DTYPES[dtype]


def describe(device: torch.device, dtype: torch.dtype) -> str:
    """A log line that says what was chosen: device name, precision and memory."""
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return f"{device} ({props.name}, {props.total_memory / 2**30:.1f} GiB), {dtype}"
    return f"cpu ({torch.get_num_threads()} threads), {dtype}"
