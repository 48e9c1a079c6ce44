"""How a tokenizer lays out a (query, document) pair: the special tokens around the two texts and
the token type of every part. It is read once from the tokenizer's own encoding of a probe pair,
the one tokenizer call that transformers 4.x and 5.x share: 5.x dropped
`build_inputs_with_special_tokens` and `create_token_type_ids_from_sequences`."""

from collections.abc import Sequence
from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase

PROBE = ("query", "document")


@dataclass(frozen=True)
class PairLayout:
    """`prefix query middle document suffix`, e.g. `[CLS] q [SEP] d [SEP]` (BERT: types 0 on the
    first three parts, 1 on the last two) or `<s> q </s></s> d </s>` (XLM-R: no types)."""

    prefix: tuple[int, ...]
    middle: tuple[int, ...]
    suffix: tuple[int, ...]
    prefix_types: tuple[int, ...]
    query_type: int
    middle_types: tuple[int, ...]
    document_type: int
    suffix_types: tuple[int, ...]

    @classmethod
    def of(cls, tokenizer: PreTrainedTokenizerBase) -> "PairLayout":
        """The layout `tokenizer` gives a pair (it must keep both texts' tokens, in order)."""
        query, document = (tokenizer(text, add_special_tokens=False)["input_ids"] for text in PROBE)
        probe = tokenizer(*PROBE, return_special_tokens_mask=True, return_token_type_ids=True)
        ids, types = list(probe["input_ids"]), list(probe["token_type_ids"])
        content = [i for i, special in enumerate(probe["special_tokens_mask"]) if not special]
        q0, d0 = content[0], content[len(query)]
        q1, d1 = q0 + len(query), d0 + len(document)
        if ids[q0:q1] != query or ids[d0:d1] != document or len(content) != len(query) + len(document):
            raise ValueError(f"cannot read the pair layout of {type(tokenizer).__name__}: {ids}")
        return cls(
            prefix=tuple(ids[:q0]),
            middle=tuple(ids[q1:d0]),
            suffix=tuple(ids[d1:]),
            prefix_types=tuple(types[:q0]),
            query_type=types[q0],
            middle_types=tuple(types[q1:d0]),
            document_type=types[d0],
            suffix_types=tuple(types[d1:]),
        )

    @property
    def special_tokens(self) -> int:
        return len(self.prefix) + len(self.middle) + len(self.suffix)

    def ids(self, query: Sequence[int], document: Sequence[int]) -> tuple[int, ...]:
        """The model's input ids of a pair, special tokens included."""
        return (*self.prefix, *query, *self.middle, *document, *self.suffix)

    def types(self, query: Sequence[int], document: Sequence[int]) -> tuple[int, ...]:
        """The token type ids of the same pair."""
        return (
            *self.prefix_types,
            *(self.query_type,) * len(query),
            *self.middle_types,
            *(self.document_type,) * len(document),
            *self.suffix_types,
        )
