"""The model runtime (the only place torch is imported): load a reranker, score pairs.

from worker.engine import load_reranker
reranker = load_reranker("BAAI/bge-reranker-v2-m3", device="auto", dtype="auto")
raw = reranker.score([("what is panda?", "The giant panda is a bear.")], max_length=1024)
"""

from worker.engine.loader import load_configured, load_reranker
from worker.engine.reranker import ModelInput, Pair, Reranker

__all__ = ["ModelInput", "Pair", "Reranker", "load_configured", "load_reranker"]
