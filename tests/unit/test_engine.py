"""The engine against FlagEmbedding's FlagReranker and sentence-transformers' CrossEncoder on the
same model and pairs, for each model family (XLM-R: no token types; BERT: token type ids, 512
positions; random weights and a trained MiniLM): raw logits within 1e-4 in fp32, in input order,
with truncation exactly where the reference truncates and no pair longer than the model reads."""

import sys
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import (
    AutoModelForSequenceClassification,
    XLMRobertaConfig,
    XLMRobertaForSequenceClassification,
)

from worker.config import Settings, parse_device
from worker.engine import ModelInput, Reranker, load_reranker, loader
from worker.engine.batching import token_budget_batches
from worker.engine.device import resolve_device, resolve_dtype
from worker.engine.reranker import length_limit
from worker.errors import ModelLoadError
from worker.lifecycle import Priority
from worker.overlap import ModelGate, Turn
from worker.scoring import score_pairs
from worker.spec import JobOptions

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


# The issue's table: transformers with the tokenizer's own token type ids gives the first column;
# the same model fed token type ids of 0 gave the second (what rerankq scored before).
ISSUE_PAIRS = [
    ("How many people live in Berlin?", "Berlin has a population of 3,520,031 registered inhabitants."),
    ("how long to boil water", "The Eiffel Tower is located in Paris, France."),
]


@dataclass(frozen=True)
class Family:
    """One model loaded three ways: rerankq's engine and the two reference libraries."""

    engine: Reranker
    flag: Any  # FlagEmbedding.FlagReranker
    cross: Any  # sentence_transformers.CrossEncoder


@pytest.fixture(scope="module", params=["xlm-roberta-random", "bert-random", "minilm-trained"])
def family(request: pytest.FixtureRequest) -> Family:
    # FlagEmbedding 1.4.2 needs transformers 4.x: under 5.x (make test-tf5) the parity tests skip.
    flag_embedding = pytest.importorskip("FlagEmbedding")
    from sentence_transformers import CrossEncoder

    fixtures = {
        "xlm-roberta-random": ("tiny_model", "reranker"),
        "bert-random": ("tiny_bert_model", "bert_reranker"),
        "minilm-trained": ("trained_model", "trained_reranker"),
    }
    path_fixture, engine_fixture = fixtures[request.param]
    path = str(request.getfixturevalue(path_fixture))
    return Family(
        request.getfixturevalue(engine_fixture),
        flag_embedding.FlagReranker(path, use_fp16=False, devices="cpu"),
        CrossEncoder(path, device="cpu", activation_fn=torch.nn.Identity()),
    )


@pytest.mark.parametrize("max_length", [64, 200, 1024])
def test_fp32_parity_with_flagembedding_and_crossencoder(family: Family, max_length: int) -> None:
    fits = family.engine.effective_max_length(max_length)  # both references crash past the model's limit
    ours = family.engine.score(PAIRS, max_length=max_length)
    reference = family.flag.compute_score(PAIRS, max_length=fits)
    assert len(ours) == len(PAIRS)
    assert max(abs(a - b) for a, b in zip(ours, reference, strict=True)) < 1e-4
    assert len(set(round(s, 4) for s in ours)) > 3  # the scores differ: the comparison means something
    # CrossEncoder cuts the longer side of a pair instead of the query to 3/4 first: the same
    # truncation wherever the query is the short side.
    short_queries = [i for i, (query, _) in enumerate(PAIRS) if query != LONG_EN]
    family.cross.max_seq_length = fits
    cross = family.cross.predict([PAIRS[i] for i in short_queries], show_progress_bar=False)
    assert max(abs(ours[i] - float(c)) for i, c in zip(short_queries, cross, strict=True)) < 1e-4


def test_the_issues_table_scores_what_transformers_scores(
    trained_model: Path, trained_reranker: Reranker
) -> None:
    tokenizer = trained_reranker.tokenizer
    model = AutoModelForSequenceClassification.from_pretrained(trained_model).eval()
    encoded = tokenizer(
        [q for q, _ in ISSUE_PAIRS], [d for _, d in ISSUE_PAIRS], padding=True, return_tensors="pt"
    )
    with torch.inference_mode():
        own_types = model(**encoded).logits.view(-1).tolist()
        zero_types = model(**{**encoded, "token_type_ids": torch.zeros_like(encoded["input_ids"])}).logits
    assert own_types == pytest.approx([0.6433, -2.1093], abs=1e-4)
    assert zero_types.view(-1).tolist() == pytest.approx([1.7620, -2.0933], abs=1e-4)
    assert trained_reranker.score(ISSUE_PAIRS) == pytest.approx(own_types, abs=1e-4)


def test_bert_pairs_carry_the_tokenizers_token_types(bert_reranker: Reranker, reranker: Reranker) -> None:
    query, document = PAIRS[0]
    q, d = (bert_reranker.tokenize([text])[text] for text in (query, document))
    pair = bert_reranker.pair_input(q, d, 512)
    assert pair.types == (0,) * (len(q) + 2) + (1,) * (len(d) + 1)  # [CLS] query [SEP] | document [SEP]
    assert pair.types == tuple(bert_reranker.tokenizer(query, document)["token_type_ids"])
    cut = bert_reranker.pair_input(q, d, len(q) + 5)  # the document truncated to two tokens
    assert cut.types == (0,) * (len(q) + 2) + (1,) * 3
    x = reranker.tokenize([query])[query]
    assert reranker.pair_input(x, x, 512).types is None  # XLM-R takes no token types


def test_inputs_differing_only_in_token_types_are_scored_apart(bert_reranker: Reranker) -> None:
    query, document = PAIRS[0]
    q, d = (bert_reranker.tokenize([text])[text] for text in (query, document))
    pair = bert_reranker.pair_input(q, d, 512)
    zeros = ModelInput(pair.ids, (0,) * len(pair.ids))
    short = bert_reranker.pair_input(q, d[:3], 512)  # padded in the same batch as the others
    together = bert_reranker.score_encoded([pair, zeros, short, pair])
    alone = [bert_reranker.score_encoded([row])[0] for row in (pair, zeros, short, pair)]
    assert together == pytest.approx(alone, abs=1e-5)
    assert abs(together[0] - together[1]) > 1e-3


def test_the_length_limit_is_the_models_own(
    reranker: Reranker, bert_reranker: Reranker, trained_reranker: Reranker
) -> None:
    assert reranker.length_limit == 8192  # 8194 positions, less the 2 XLM-R reserves (pad id 1, + 1)
    assert bert_reranker.length_limit == 512  # 512 positions, no offset
    assert trained_reranker.length_limit == 256  # its tokenizer's model_max_length, below 512 positions
    config = XLMRobertaConfig(
        vocab_size=len(reranker.tokenizer),
        max_position_embeddings=514,  # bge-reranker-base
        pad_token_id=1,
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=1,
        intermediate_size=8,
        num_labels=1,
    )
    assert length_limit(XLMRobertaForSequenceClassification(config), reranker.tokenizer) == 512
    assert bert_reranker.effective_max_length(1024) == 512 and bert_reranker.effective_max_length(300) == 300


def test_a_pair_longer_than_the_model_is_cut_not_a_crash(bert_reranker: Reranker) -> None:
    pairs = [("rotate the API key", LONG_EN), (LONG_EN, LONG_EN)]
    assert bert_reranker.score(pairs, max_length=1024) == pytest.approx(
        bert_reranker.score(pairs, 512), abs=1e-5
    )
    assert bert_reranker.query_max_length(1024) == 384


def test_windows_fit_the_model_beside_the_query(
    bert_reranker: Reranker, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[ModelInput] = []
    score_encoded = bert_reranker.score_encoded

    def spy(inputs: list[ModelInput], each_forward: Turn = nullcontext) -> list[float]:
        seen.extend(inputs)
        return score_encoded(inputs, each_forward)

    monkeypatch.setattr(bert_reranker, "score_encoded", spy)
    options = JobOptions()  # max_length 1024, windows of 512 tokens: more than this model reads
    [scored] = score_pairs(bert_reranker, [("rotate the API key without downtime", LONG_EN)], options, 128)
    assert options.max_length == 1024 and len(scored.windows) == len(seen) > 4
    assert max(len(row.ids) for row in seen) == 512
    assert all(
        row.types is not None and row.types.count(1) == len(row.ids) - row.types.count(0) for row in seen
    )


def test_each_forward_pass_takes_its_turn_at_the_gate(reranker: Reranker) -> None:
    pairs = [("query", "word " * n) for n in (3, 40, 200, 600)] * 8
    ungated = reranker.score(pairs)
    passes: list[int] = []
    gate = ModelGate()

    def counting(turn: Turn) -> Turn:
        @contextmanager
        def counted() -> Iterator[None]:
            with turn():
                passes.append(gate.waiting())
                yield

        return counted

    queries = reranker.tokenize({q for q, _ in pairs})
    documents = reranker.tokenize({d for _, d in pairs})
    inputs = [reranker.pair_input(queries[q], documents[d], 1024) for q, d in pairs]
    distinct = list(dict.fromkeys(inputs))
    expected = len(token_budget_batches([len(row.ids) for row in distinct], reranker.batch_tokens))
    with gate.in_line(Priority.low) as turn:
        gated = reranker.score_encoded(inputs, counting(turn))
    assert gated == pytest.approx(ungated, abs=1e-6)
    assert len(passes) == expected and set(passes) == {1}


def test_order_and_duplicates(reranker: Reranker) -> None:
    forward = reranker.score(PAIRS, max_length=256)
    backward = reranker.score(PAIRS[::-1], max_length=256)
    assert forward == pytest.approx(backward[::-1], abs=1e-5)
    assert forward[0] == forward[-1]
    assert reranker.score([]) == []


def test_pairs_are_truncated_on_the_document_side(reranker: Reranker) -> None:
    queries = reranker.tokenize([PAIRS[0][0], LONG_EN], reranker.query_max_length(128))
    documents = reranker.tokenize([PAIRS[0][1], LONG_EN, PAIRS[5][1]])
    short = reranker.pair_input(queries[PAIRS[0][0]], documents[PAIRS[0][1]], 128)
    long_doc = reranker.pair_input(queries[PAIRS[0][0]], documents[LONG_EN], 128)
    long_query = reranker.pair_input(queries[LONG_EN], documents[PAIRS[5][1]], 128)
    assert len(short.ids) < 128
    assert len(long_doc.ids) == 128
    assert len(queries[LONG_EN]) == 96  # cut to 3/4 of max_length
    assert list(long_query.ids[1:97]) == documents[LONG_EN][:96]


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
    engine = load_reranker(str(tiny_model), device="cpu", trace=False)  # GPU passes, which split, are eager
    expected = engine.score(PAIRS, max_length=256)
    forward = engine.model.forward

    def small_batches_only(*args, **kwargs):  # type: ignore[no-untyped-def]
        # a retry made while the last error is still being handled would keep its memory held
        assert sys.exc_info() == (None, None, None)
        if kwargs["input_ids"].shape[0] > 2:
            raise torch.OutOfMemoryError("simulated: batch too large for the device")
        return forward(*args, **kwargs)

    monkeypatch.setattr(engine.model, "forward", small_batches_only)
    assert engine.oom_splits == 0
    assert engine.score(PAIRS, max_length=256) == pytest.approx(expected, abs=1e-5)
    assert engine.oom_splits > 0  # what the worker's rerankq_worker_oom_splits_total reports


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
@pytest.mark.parametrize("model", ["tiny_model", "tiny_bert_model", "trained_model"])
def test_cpu_forward_passes_are_traced_and_score_as_eager(
    model: str, dtype: str, request: pytest.FixtureRequest
) -> None:
    path = str(request.getfixturevalue(model))
    # a small token budget: many batches, each of another shape than the one traced
    traced = load_reranker(path, device="cpu", dtype=dtype, batch_tokens=256)
    eager = load_reranker(path, device="cpu", dtype=dtype, batch_tokens=256, trace=False)
    assert traced.traced and not eager.traced
    assert len(token_budget_batches([len(row.ids) for row in _encoded(traced)], 256)) >= 5
    assert traced.score(PAIRS, max_length=256) == eager.score(PAIRS, max_length=256)


def test_a_trace_that_fails_or_disagrees_leaves_the_model_eager(
    tiny_model: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    eager = load_reranker(str(tiny_model), device="cpu", trace=False)

    def failing(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("simulated: this model cannot be traced")

    monkeypatch.setattr(torch.jit, "trace", failing)
    engine = load_reranker(str(tiny_model), device="cpu")
    assert not engine.traced and "cannot trace" in caplog.text
    assert engine.score(PAIRS) == eager.score(PAIRS)

    def off_by_one(*args: Any, **kwargs: Any) -> Any:
        return lambda **inputs: {"logits": eager.model(**inputs).logits + 1}

    monkeypatch.setattr(torch.jit, "trace", off_by_one)
    assert not load_reranker(str(tiny_model), device="cpu").traced
    assert "is off by 1 logits" in caplog.text


def test_rerank_trace_false_keeps_a_worker_eager(tiny_model: Path) -> None:
    settings = Settings(model=str(tiny_model), device="cpu", trace=False)
    assert not loader.load_configured(settings).traced
    assert loader.load_configured(settings.model_copy(update={"trace": True})).traced


def _encoded(engine: Reranker) -> list[ModelInput]:
    queries = engine.tokenize({q for q, _ in PAIRS}, engine.query_max_length(256))
    documents = engine.tokenize({d for _, d in PAIRS}, 256)
    return [engine.pair_input(queries[q], documents[d], 256) for q, d in PAIRS]


def test_auto_device_without_gpu_is_cpu_fp32() -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    device = resolve_device("auto")
    assert device.type == "cpu"
    assert resolve_dtype("auto", device) == torch.float32
    with pytest.raises(ModelLoadError, match="CUDA is not available"):
        resolve_device("cuda:0")


def test_loads_bf16_on_cpu(tiny_model: Path) -> None:
    engine = load_reranker(str(tiny_model), device="cpu", dtype="bf16")
    assert engine.model.dtype == torch.bfloat16
    scores = engine.score(PAIRS[:3], max_length=128)
    assert all(isinstance(s, float) for s in scores)


def test_a_missing_model_directory_is_one_line() -> None:
    with pytest.raises(ModelLoadError, match="no such directory, and not a hub id") as caught:
        load_reranker("/path/that/does/not/exist", device="cpu")
    assert "\n" not in caught.value.message


def test_a_hub_id_with_no_hub_and_no_cache_says_how_to_use_a_directory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(loader.constants, "ENDPOINT", "http://127.0.0.1:1")  # nothing listens there
    monkeypatch.setattr(loader.constants, "HF_HUB_OFFLINE", False)
    with pytest.raises(ModelLoadError, match="unreachable and the model is not cached; set RERANK_MODEL"):
        load_reranker("BAAI/not-downloaded-here", device="cpu")


def test_gpu_is_read_as_cuda_and_unknown_devices_are_refused() -> None:
    assert parse_device("gpu") == "cuda" and parse_device("GPU:1") == "cuda:1"
    assert Settings(device="gpu").device == "cuda"
    with pytest.raises(ValueError, match="not one of auto, cpu, cuda"):
        parse_device("tpu")
