"""The scoring engine: (query, document) pairs in, raw logits out, in input order.

Tokenization follows FlagEmbedding's FlagReranker (query cut to 3/4 of max_length, no special
tokens, the pair truncated on the document side), so fp32 scores match it; batching does not:
pairs are length-sorted and grouped by a padded-token budget, each distinct text is tokenized
once and each distinct pair scored once."""

import logging
from collections.abc import Sequence

import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from worker.engine.batching import token_budget_batches

log = logging.getLogger(__name__)

Pair = tuple[str, str]


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
        self.name = name
        self.batch_tokens = batch_tokens
        self._special = tokenizer.num_special_tokens_to_add(pair=True)
        self._pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self._type_ids = "token_type_ids" in tokenizer.model_input_names

    def score(self, pairs: Sequence[Pair], max_length: int = 1024) -> list[float]:
        """Raw logits of `pairs` in input order; identical pairs are scored once."""
        if not pairs:
            return []
        distinct = list(dict.fromkeys(pairs))
        logits = self.score_encoded(self.encode(distinct, max_length))
        by_pair = dict(zip(distinct, logits, strict=True))
        return [by_pair[pair] for pair in pairs]

    def encode(self, pairs: Sequence[Pair], max_length: int) -> list[list[int]]:
        """Token ids of each pair with special tokens, as FlagReranker builds them."""
        queries = self._token_ids({q for q, _ in pairs}, max_length * 3 // 4)
        documents = self._token_ids({d for _, d in pairs}, max_length)
        encoded = []
        for query, document in pairs:
            q_ids = queries[query]
            d_ids = documents[document][: max(0, max_length - self._special - len(q_ids))]
            encoded.append(self.tokenizer.build_inputs_with_special_tokens(q_ids, d_ids))
        return encoded

    def _token_ids(self, texts: set[str], max_length: int) -> dict[str, list[int]]:
        ordered = list(texts)
        ids = self.tokenizer(ordered, add_special_tokens=False, truncation=True, max_length=max_length)
        return dict(zip(ordered, ids["input_ids"], strict=True))

    @torch.inference_mode()
    def score_encoded(self, encoded: Sequence[list[int]]) -> list[float]:
        """Raw logits of already-encoded pairs, batched by the padded-token budget."""
        out = torch.empty(len(encoded), dtype=torch.float32, device=self.device)
        for batch in token_budget_batches([len(ids) for ids in encoded], self.batch_tokens):
            index = torch.tensor(batch, device=self.device)
            out[index] = self._forward([encoded[i] for i in batch])
        return out.cpu().tolist()

    def _forward(self, rows: list[list[int]]) -> torch.Tensor:
        """Logits of one padded batch; on out-of-memory the batch is split in two and retried."""
        try:
            return self.model(**self._tensors(rows)).logits.view(-1).float()
        except torch.OutOfMemoryError:
            if len(rows) == 1:
                raise
            log.warning("out of memory on %d pairs x %d tokens: splitting", len(rows), len(rows[0]))
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            half = len(rows) // 2
            return torch.cat([self._forward(rows[:half]), self._forward(rows[half:])])

    def _tensors(self, rows: list[list[int]]) -> dict[str, torch.Tensor]:
        width = max(len(row) for row in rows)
        ids = np.full((len(rows), width), self._pad_id, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = row
            mask[i, : len(row)] = 1
        tensors = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}
        if self._type_ids:
            tensors["token_type_ids"] = torch.zeros_like(tensors["input_ids"])
        pin = self.device.type == "cuda"
        return {
            k: (v.pin_memory() if pin else v).to(self.device, non_blocking=pin) for k, v in tensors.items()
        }
