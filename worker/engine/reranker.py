"""The scoring engine: (query, document) pairs in, raw logits out, in input order.

Tokenization follows FlagEmbedding's FlagReranker (query cut to 3/4 of max_length, no special
tokens, the pair truncated on the document side, the tokenizer's own token type ids), so fp32
scores match it; batching does not: pairs are length-sorted and grouped by a padded-token budget,
each distinct text is tokenized once and each distinct model input scored once. No pair is longer
than the model reads (`Reranker.length_limit`), whatever max_length is asked for."""

import hashlib
import logging
import threading
import warnings
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from worker.engine.batching import token_budget_batches
from worker.engine.pairs import PairLayout

log = logging.getLogger(__name__)

Pair = tuple[str, str]
# What a trace is checked on: document cuts (in tokens) of the example it is traced on, and of each
# batch its logits must match the eager model's on (other widths, a single pair).
TRACE_EXAMPLE = (5, 17)
TRACE_CHECKS = ((40,), (2, 9, 30))
TRACE_QUERY = "which batch shapes does the trace score?"
TRACE_DOCUMENT = "A traced graph must score every batch shape exactly as the eager model does. " * 8


@dataclass(frozen=True, slots=True)
class ModelInput:
    """One pair as the model reads it: token ids with special tokens, and the token type ids
    (0 on `[CLS] query [SEP]`, 1 on `document [SEP]` for BERT) of models that take them."""

    ids: tuple[int, ...]
    types: tuple[int, ...] | None


def length_limit(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> int:
    """The longest input `model` reads: its position embeddings, less the ids RoBERTa-style models
    reserve (their positions start after the padding id), and no more than the tokenizer's
    `model_max_length` (huge when the tokenizer does not set one)."""
    positions: int = getattr(model.config, "max_position_embeddings", tokenizer.model_max_length)
    embeddings = getattr(getattr(model.base_model, "embeddings", None), "position_embeddings", None)
    padding = getattr(embeddings, "padding_idx", None)
    reserved = padding + 1 if padding is not None else 0
    return min(positions - reserved, tokenizer.model_max_length)


class Reranker:
    """A loaded cross-encoder on one device; build it with `worker.engine.load_reranker`."""

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        device: torch.device,
        dtype: torch.dtype,
        name: str,
        batch_tokens: int = 16384,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.device = device
        self.dtype = dtype
        self.name = name  # what jobs call the model (RERANK_MODEL_NAME, else where it was loaded from)
        self.batch_tokens = batch_tokens
        self._layout = PairLayout.of(tokenizer)
        self._pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self._type_ids = "token_type_ids" in tokenizer.model_input_names
        self.length_limit = length_limit(model, tokenizer)
        self.tokens_scored = 0  # model input tokens (padding excluded) since loading, for metrics
        self.oom_splits = 0  # batches split in two after running out of memory
        self._traced: torch.jit.ScriptModule | None = None
        # a fast tokenizer sets its truncation per call: two threads calling it at once collide
        self._tokenizing = threading.Lock()

    @cached_property
    def fingerprint(self) -> str:
        """SHA-256 of the weights as loaded (each tensor's name and bytes, in order): the score
        cache's proof that two workers with the same model name run the same model."""
        digest = hashlib.sha256()
        for name, tensor in self.model.state_dict().items():
            digest.update(name.encode())
            digest.update(tensor.detach().reshape(-1).cpu().contiguous().view(torch.uint8).numpy())
        return digest.hexdigest()

    @property
    def traced(self) -> bool:
        """Whether forward passes run through the traced graph (`trace`)."""
        return self._traced is not None

    @torch.inference_mode()
    def trace(self) -> bool:
        """Run forward passes through a torch.jit.trace of the model from now on, if the traced
        graph gives the eager model's logits (within 1e-4) on batches of other shapes than its
        example's. Its graph runs in C++ without taking the interpreter lock back after every op,
        so a worker's other batch, read and tokenized in Python meanwhile, slows it far less
        (benchmarks/forward_contention.py). The example is padded, so the attention mask stays in
        the graph. False, and eager as before, when tracing fails or disagrees."""
        query = self.tokenize([TRACE_QUERY])[TRACE_QUERY]
        document = self.tokenize([TRACE_DOCUMENT])[TRACE_DOCUMENT]

        def batch(cuts: Sequence[int]) -> dict[str, torch.Tensor]:
            return self._tensors([self.pair_input(query, document[:cut], 512) for cut in cuts])

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tracer's notes on values it fixed, and its deprecation
            try:
                traced = torch.jit.trace(self.model, example_kwarg_inputs=batch(TRACE_EXAMPLE), strict=False)
                gap = max(
                    (traced(**inputs)["logits"] - self.model(**inputs).logits).abs().max().item()
                    for inputs in map(batch, TRACE_CHECKS)
                )
            except Exception as error:  # tracing fails in many ways across versions: eager still works
                log.warning("cannot trace %s (%s): eager forward passes", self.name, error)
                return False
        if gap > 1e-4:
            log.warning("the trace of %s is off by %.2g logits: eager forward passes", self.name, gap)
            return False
        self._traced = traced
        return True

    def score(self, pairs: Sequence[Pair], max_length: int = 1024) -> list[float]:
        """Raw logits of `pairs` in input order."""
        if not pairs:
            return []
        queries = self.tokenize({q for q, _ in pairs}, self.query_max_length(max_length))
        documents = self.tokenize({d for _, d in pairs}, self.effective_max_length(max_length))
        return self.score_encoded([self.pair_input(queries[q], documents[d], max_length) for q, d in pairs])

    def effective_max_length(self, max_length: int) -> int:
        """Tokens per pair this model reads when `max_length` is asked for: no more than its limit
        (FlagReranker and CrossEncoder crash past it; this engine cuts)."""
        return min(max_length, self.length_limit)

    def query_max_length(self, max_length: int) -> int:
        """FlagReranker's cut: a query keeps at most 3/4 of the pair's tokens."""
        return self.effective_max_length(max_length) * 3 // 4

    def tokenize(self, texts: Iterable[str], max_length: int | None = None) -> dict[str, list[int]]:
        """Token ids (no special tokens) of each distinct text, cut to `max_length` when given."""
        ordered = list(dict.fromkeys(texts))
        if not ordered:
            return {}
        cut = {"truncation": True, "max_length": max_length} if max_length else {}
        with self._tokenizing:
            ids = self.tokenizer(ordered, add_special_tokens=False, verbose=False, **cut)["input_ids"]
        return dict(zip(ordered, ids, strict=True))

    def tokenize_spans(self, texts: Sequence[str]) -> list[tuple[list[int], list[tuple[int, int]]]]:
        """Token ids of whole texts with each token's character span (chunking needs both), in
        one batched call."""
        if not texts:
            return []
        with self._tokenizing:
            encoded = self.tokenizer(
                list(texts), add_special_tokens=False, return_offsets_mapping=True, verbose=False
            )
        return [
            (ids, [(start, end) for start, end in spans])
            for ids, spans in zip(encoded["input_ids"], encoded["offset_mapping"], strict=True)
        ]

    def document_budget(self, query_ids: Sequence[int], max_length: int) -> int:
        """How many document tokens fit beside this query in a pair of `max_length` tokens (cut to
        the model's limit)."""
        return max(0, self.effective_max_length(max_length) - self._layout.special_tokens - len(query_ids))

    def pair_input(self, query_ids: list[int], document_ids: list[int], max_length: int) -> ModelInput:
        """One model input as FlagReranker builds it: the pair truncated on the document side, with
        the token type ids the tokenizer gives that truncated pair."""
        kept = document_ids[: self.document_budget(query_ids, max_length)]
        ids = self._layout.ids(query_ids, kept)
        return ModelInput(ids, self._layout.types(query_ids, kept) if self._type_ids else None)

    @torch.inference_mode()
    def score_encoded(
        self,
        encoded: Sequence[ModelInput],
        each_forward: Callable[[], AbstractContextManager[None]] = nullcontext,
    ) -> list[float]:
        """Raw logits of model inputs in input order, batched by the padded-token budget;
        identical inputs are scored once. The logits stay on the device until one copy at the
        end, so the host never waits for a batch (on a GPU, the next batch is queued meanwhile).
        `each_forward` is entered around every forward pass (a worker's model gate)."""
        if not encoded:
            return []
        distinct = list(dict.fromkeys(encoded))
        self.tokens_scored += sum(len(row.ids) for row in distinct)
        batches = token_budget_batches([len(row.ids) for row in distinct], self.batch_tokens)
        logits = torch.cat(
            [self._gated_forward([distinct[i] for i in batch], each_forward) for batch in batches]
        )
        order = (distinct[i] for batch in batches for i in batch)
        by_input = dict(zip(order, logits.cpu().tolist(), strict=True))
        return [by_input[row] for row in encoded]

    def _gated_forward(
        self, rows: Sequence[ModelInput], gate: Callable[[], AbstractContextManager[None]]
    ) -> torch.Tensor:
        with gate():
            return self._forward(rows)

    def _forward(self, rows: Sequence[ModelInput]) -> torch.Tensor:
        """Logits of one padded batch; on out-of-memory the batch is split in two and retried. The
        retry runs after the `except` block: inside it, the exception's frames keep the failed
        pass's activations alive, and on an H200 capped at 2 GiB every half ran out too."""
        try:
            inputs = self._tensors(rows)
            if self._traced is not None:
                return self._traced(**inputs)["logits"].view(-1).float()
            return self.model(**inputs).logits.view(-1).float()
        except torch.OutOfMemoryError:
            if len(rows) == 1:
                raise
            log.warning("out of memory on %d pairs x %d tokens: splitting", len(rows), len(rows[0].ids))
            self.oom_splits += 1
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        half = len(rows) // 2
        return torch.cat([self._forward(rows[:half]), self._forward(rows[half:])])

    def _tensors(self, rows: Sequence[ModelInput]) -> dict[str, torch.Tensor]:
        width = max(len(row.ids) for row in rows)
        ids = np.full((len(rows), width), self._pad_id, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        types = np.zeros((len(rows), width), dtype=np.int64)
        for i, row in enumerate(rows):
            ids[i, : len(row.ids)] = row.ids
            mask[i, : len(row.ids)] = 1
            if row.types is not None:
                types[i, : len(row.types)] = row.types
        arrays = {"input_ids": ids, "attention_mask": mask}
        if self._type_ids:
            arrays["token_type_ids"] = types
        pin = self.device.type == "cuda"
        tensors = {k: torch.from_numpy(v) for k, v in arrays.items()}
        return {
            k: (v.pin_memory() if pin else v).to(self.device, non_blocking=pin) for k, v in tensors.items()
        }
