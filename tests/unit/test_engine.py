"""The engine against FlagEmbedding's FlagReranker on the same model and pairs: raw logits within
1e-4 in fp32, in input order, with truncation exactly where the reference truncates."""

from pathlib import Path

import pytest
import torch

from worker.engine import Reranker, load_reranker
from worker.engine.batching import token_budget_batches
from worker.engine.device import resolve_device, resolve_dtype

LONG_EN = " ".join(f"word{i} of a long manual page about rotating keys" for i in range(400))
LONG_ZH = "员工入职满一年后享有五天带薪年假，工作满十年的员工享有十天年假。" * 60
PAIRS = [
    ("how do I drop rows with NaN in pandas?", "Use df.dropna(subset=['a']) to drop them."),
    ("how do I drop rows with NaN in pandas?", "The giant panda is a bear native to China."),
    ("年假怎么计算？", "员工入职满一年后享有五天带薪年假。"),
    ("年假怎么计算？", LONG_ZH),
    ("rotate the API key without downtime", LONG_EN),
    (LONG_EN, "a query longer than three quarters of max_length is cut, as FlagReranker cuts it"),
    ("empty document", ""),
    ("how do I drop rows with NaN in pandas?", "Use df.dropna(subset=['a']) to drop them."),
]


@pytest.fixture(scope="module")
def flag(tiny_model: Path):  # type: ignore[no-untyped-def]
    from FlagEmbedding import FlagReranker

    return FlagReranker(str(tiny_model), use_fp16=False, devices="cpu")


@pytest.mark.parametrize("max_length", [64, 512, 1024])
def test_fp32_parity_with_flagembedding(reranker: Reranker, flag, max_length: int) -> None:  # type: ignore[no-untyped-def]
    ours = reranker.score(PAIRS, max_length=max_length)
    reference = flag.compute_score(PAIRS, max_length=max_length)
    assert len(ours) == len(PAIRS)
    assert max(abs(a - b) for a, b in zip(ours, reference, strict=True)) < 1e-4
    assert len(set(round(s, 4) for s in ours)) > 3  # the scores differ: the comparison means something


def test_order_and_duplicates(reranker: Reranker) -> None:
    forward = reranker.score(PAIRS, max_length=256)
    backward = reranker.score(PAIRS[::-1], max_length=256)
    assert forward == pytest.approx(backward[::-1], abs=1e-5)
    assert forward[0] == forward[-1]
    assert reranker.score([]) == []


def test_pairs_are_truncated_on_the_document_side(reranker: Reranker) -> None:
    queries = reranker.tokenize([PAIRS[0][0], LONG_EN], reranker.query_max_length(128))
    documents = reranker.tokenize([PAIRS[0][1], LONG_EN, PAIRS[5][1]])
    short = reranker.pair_ids(queries[PAIRS[0][0]], documents[PAIRS[0][1]], 128)
    long_doc = reranker.pair_ids(queries[PAIRS[0][0]], documents[LONG_EN], 128)
    long_query = reranker.pair_ids(queries[LONG_EN], documents[PAIRS[5][1]], 128)
    assert len(short) < 128
    assert len(long_doc) == 128
    assert len(queries[LONG_EN]) == 96  # cut to 3/4 of max_length
    assert long_query[1:97] == documents[LONG_EN][:96]


def test_spans_map_tokens_to_the_text(reranker: Reranker) -> None:
    text = "年假怎么计算？ Use df.dropna(subset=['a'])"
    [(ids, spans)] = reranker.tokenize_spans([text])
    assert len(ids) == len(spans) > 5
    assert all(0 <= start <= end <= len(text) for start, end in spans)
    assert [s for s, _ in spans] == sorted(s for s, _ in spans)


def test_a_long_pair_does_not_pad_short_ones() -> None:
    # Within budget, but 1024-token padding would more than double the work of the short pairs.
    assert token_budget_batches([400, 1024, 390, 400], 16384) == [[1], [0, 3, 2]]
    assert token_budget_batches([100, 100, 100, 90], 16384, max_padding=0.02) == [[0, 1, 2], [3]]


def test_out_of_memory_splits_the_batch(tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = load_reranker(str(tiny_model), device="cpu")
    expected = engine.score(PAIRS, max_length=256)
    forward = engine.model.forward

    def small_batches_only(*args, **kwargs):  # type: ignore[no-untyped-def]
        if kwargs["input_ids"].shape[0] > 2:
            raise torch.OutOfMemoryError("simulated: batch too large for the device")
        return forward(*args, **kwargs)

    monkeypatch.setattr(engine.model, "forward", small_batches_only)
    assert engine.score(PAIRS, max_length=256) == pytest.approx(expected, abs=1e-5)


def test_auto_device_without_gpu_is_cpu_fp32() -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    device = resolve_device("auto")
    assert device.type == "cpu"
    assert resolve_dtype("auto", device) == torch.float32
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        resolve_device("cuda:0")


def test_loads_bf16_on_cpu(tiny_model: Path) -> None:
    engine = load_reranker(str(tiny_model), device="cpu", dtype="bf16")
    assert engine.model.dtype == torch.bfloat16
    scores = engine.score(PAIRS[:3], max_length=128)
    assert all(isinstance(s, float) for s in scores)
