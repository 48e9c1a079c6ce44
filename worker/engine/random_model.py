"""Random-weight cross-encoders with a really trained tokenizer, built on the fly: XLM-RoBERTa (the
bge family: no token types, positions offset by the padding id) and BERT (the MiniLM / TinyBERT
family: token type ids, 512 positions).

Tests, benchmarks and the offline quick start use them: no hub is needed, the loading path is the
real one, and throughput depends on the shape, not on the weights (their scores mean nothing)."""

import string
from pathlib import Path

import torch
from tokenizers import BertWordPieceTokenizer, SentencePieceUnigramTokenizer, processors
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    BertTokenizerFast,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    XLMRobertaConfig,
    XLMRobertaForSequenceClassification,
    XLMRobertaTokenizerFast,
)

SPECIAL = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
BERT_SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
# Every basic CJK ideograph, so Chinese text tokenizes without <unk>s.
ALPHABET = [*string.printable.strip(), *map(chr, range(0x4E00, 0x9FA6)), *"，。？！：；、（）“”《》"]

SHAPES: dict[str, dict[str, int]] = {
    "tiny": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64},
    # bge-reranker-base: XLM-R base.
    "base": {
        "hidden_size": 768,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "intermediate_size": 3072,
        "vocab_size": 250002,
    },
    # bge-reranker-v2-m3: XLM-R large with 8192 positions.
    "v2-m3": {
        "hidden_size": 1024,
        "num_hidden_layers": 24,
        "num_attention_heads": 16,
        "intermediate_size": 4096,
        "vocab_size": 250002,
    },
}
# BERT shapes: 512 positions, two token types, like cross-encoder/ms-marco-MiniLM-L-6-v2.
BERT_SHAPES: dict[str, dict[str, int]] = {
    "bert-tiny": {
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 64,
    },
}


def _corpus() -> list[str]:
    return (Path(__file__).parent / "corpus.txt").read_text(encoding="utf-8").splitlines()


def train_tokenizer() -> XLMRobertaTokenizerFast:
    """A SentencePiece-unigram tokenizer trained on the bundled English and Chinese corpus."""
    lines = _corpus()
    backend = SentencePieceUnigramTokenizer()
    backend.train_from_iterator(
        lines,
        vocab_size=24000,
        special_tokens=SPECIAL,
        unk_token="<unk>",
        initial_alphabet=ALPHABET,
        show_progress=False,
    )
    # (sep, cls) positionally: tokenizers 0.23 renamed the `cls` keyword
    backend.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    return XLMRobertaTokenizerFast(
        tokenizer_object=backend._tokenizer,
        bos_token="<s>",
        eos_token="</s>",
        sep_token="</s>",
        cls_token="<s>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token="<mask>",
        model_max_length=8192,
    )


def train_wordpiece_tokenizer() -> BertTokenizerFast:
    """An uncased WordPiece tokenizer trained on the same corpus; a pair is `[CLS] a [SEP] b [SEP]`
    with token type 0 on the first part and 1 on the second, as BERT's own."""
    backend = BertWordPieceTokenizer(lowercase=True)
    backend.train_from_iterator(
        _corpus(),
        vocab_size=30000,
        special_tokens=BERT_SPECIAL,
        initial_alphabet=ALPHABET,
        limit_alphabet=len(ALPHABET),
        show_progress=False,
    )
    backend.post_processor = processors.BertProcessing(  # (sep, cls) positionally, as above
        ("[SEP]", backend.token_to_id("[SEP]")), ("[CLS]", backend.token_to_id("[CLS]"))
    )
    return BertTokenizerFast(tokenizer_object=backend._tokenizer, model_max_length=512)


def _xlm_roberta(dims: dict[str, int]) -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    tokenizer = train_tokenizer()
    dims = dict(dims)
    vocab = max(dims.pop("vocab_size", 0), len(tokenizer))
    # initializer_range 0.2 (not 0.02): logits then spread over O(1), so parity checks measure something.
    config = XLMRobertaConfig(
        vocab_size=vocab,
        max_position_embeddings=8194,
        num_labels=1,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        initializer_range=0.2,
        **dims,
    )
    return XLMRobertaForSequenceClassification(config), tokenizer


def _bert(dims: dict[str, int]) -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    tokenizer = train_wordpiece_tokenizer()
    config = BertConfig(
        vocab_size=len(tokenizer),
        max_position_embeddings=512,
        type_vocab_size=2,
        num_labels=1,
        pad_token_id=tokenizer.pad_token_id,
        initializer_range=0.2,
        **dims,
    )
    return BertForSequenceClassification(config), tokenizer


def build_random_reranker(path: Path, shape: str = "tiny", seed: int = 0) -> Path:
    """Write a random-weight cross-encoder of `shape` (tiny | base | v2-m3 | bert-tiny) to `path`."""
    torch.manual_seed(seed)
    model, tokenizer = _bert(BERT_SHAPES[shape]) if shape in BERT_SHAPES else _xlm_roberta(SHAPES[shape])
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
