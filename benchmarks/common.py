"""Seeded benchmark inputs: (query, document) pairs of realistic mixed lengths, English and Chinese,
drawn from the bundled corpus and examples, and random-weight models built once into a cache."""

import argparse
import json
import random
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "worker" / "engine" / "corpus.txt"
EXAMPLES = ROOT / "examples"
# The random models' tokenizer, trained on a small corpus, cuts text into about twice as many tokens
# per word as XLM-R's: half the words give the token counts that 10-250 (600-800) words have with
# the real bge tokenizer (about 15-330 and 1000 tokens).
SHORT_WORDS = (5, 125)
LONG_WORDS = (350, 450)
POSTGRES = "postgresql://postgres@127.0.0.1:5432"


def _is_chinese(text: str) -> bool:
    return any("\u4e00" <= ch <= "\u9fa5" for ch in text)


def _sentences() -> tuple[list[str], list[str], list[str]]:
    """(queries, English sentences, Chinese sentences) from the corpus and the example jobs."""
    lines = [line.strip() for line in CORPUS.read_text(encoding="utf-8").splitlines() if line.strip()]
    queries = [line for line in lines if line.endswith(("?", "？"))]
    texts = list(lines)
    for path in sorted(EXAMPLES.glob("*.jsonl")):
        for row in map(json.loads, path.read_text(encoding="utf-8").splitlines()):
            queries.append(row["text"])
            texts += [doc["text"] for doc in row["documents"]]
    pieces = [p.strip() for text in texts for p in re.split(r"(?<=[.!?。！？])\s*", text) if p.strip()]
    english = sorted({p for p in pieces if not _is_chinese(p)})
    chinese = sorted({p for p in pieces if _is_chinese(p)})
    return sorted(set(queries)), english, chinese


def _document(rng: random.Random, pool: list[str], words: int, chinese: bool) -> str:
    """Sentences drawn from `pool` until the text holds `words` words (a Chinese word: 2 characters)."""
    parts: list[str] = []
    size = 0
    while size < words:
        sentence = rng.choice(pool)
        parts.append(sentence)
        size += len(sentence) // 2 if chinese else len(sentence.split())
    if chinese:
        return "".join(parts)[: words * 2]
    return " ".join(" ".join(parts).split()[:words])


def make_pairs(count: int, long_every: int = 0, seed: int = 0) -> list[tuple[str, str]]:
    """`count` pairs, a quarter Chinese, documents of 10-250 real words, and every `long_every`-th
    one (when not 0) a long document of about 1000 tokens. The same seed, the same pairs."""
    rng = random.Random(seed)
    queries, english, chinese = _sentences()
    pairs = []
    for i in range(count):
        zh = rng.random() < 0.25
        long = long_every > 0 and i % long_every == 0
        words = rng.randint(*LONG_WORDS) if long else rng.randint(*SHORT_WORDS)
        query = rng.choice([q for q in queries if _is_chinese(q) == zh])
        pairs.append((query, _document(rng, chinese if zh else english, words, zh)))
    return pairs


def random_model(cache: Path, shape: str) -> Path:
    """A random-weight reranker of `shape` under `cache`, built on first use and reused after."""
    from worker.engine.random_model import build_random_reranker

    path = cache / f"bench-{shape}"
    if not (path / "config.json").exists():
        build_random_reranker(path, shape)
    return path


def positive(text: str) -> int:
    """An argparse type for a count or a size (pairs, rounds, workers, threads, tokens): 0 or less
    would leave nothing to time, or a worker that never starts, and end in a traceback, not a usage
    error."""
    count = int(text)
    if count < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {count}")
    return count


def benchmark_parser(doc: str | None) -> argparse.ArgumentParser:
    """A benchmark's options; --help shows `doc` (its module docstring) as written."""
    return argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)


def add_model_options(parser: argparse.ArgumentParser, shape: str | None = None) -> None:
    """--cache, where the random models are built, and --shape (defaulting to `shape`) if given."""
    if shape is not None:
        parser.add_argument("--shape", default=shape, help="tiny | base | v2-m3 (random weights)")
    parser.add_argument("--cache", type=Path, default=ROOT / ".models")


def add_server_options(parser: argparse.ArgumentParser, redis_db: int | None = None) -> None:
    """--postgres, the server the benchmark's scratch database is made on, and --redis (the
    broker, database `redis_db` by default) if a database is given."""
    parser.add_argument("--postgres", default=POSTGRES)
    if redis_db is not None:
        parser.add_argument("--redis", default=f"redis://127.0.0.1:6379/{redis_db}")
