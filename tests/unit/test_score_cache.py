"""The score cache's key: every setting that changes a raw score changes it, and nothing else does."""

from worker.score_cache import ModelIdentity, scoring_key
from worker.spec import ChunkingOptions, JobOptions

MODEL = ModelIdentity("BAAI/bge-reranker-v2-m3", "a" * 64, "float32")


def test_the_key_follows_what_decides_a_raw_score() -> None:
    base = JobOptions()
    key = scoring_key(MODEL, base)
    decisive = [
        scoring_key(ModelIdentity("other/model", MODEL.fingerprint, MODEL.dtype), base),
        scoring_key(ModelIdentity(MODEL.name, "b" * 64, MODEL.dtype), base),
        scoring_key(ModelIdentity(MODEL.name, MODEL.fingerprint, "float16"), base),
        scoring_key(MODEL, base.model_copy(update={"max_length": 512})),
        scoring_key(MODEL, base.model_copy(update={"clean_html": False})),
        scoring_key(MODEL, base.model_copy(update={"chunking": ChunkingOptions(enabled=False)})),
        scoring_key(MODEL, base.model_copy(update={"chunking": ChunkingOptions(overlap=32)})),
        scoring_key(MODEL, base.model_copy(update={"chunking": ChunkingOptions(aggregate="mean")})),
    ]
    assert len({key, *decisive}) == len(decisive) + 1
    applied_when_read = JobOptions(threshold=0.9, top_k=3, normalize=False, cache=True)
    assert scoring_key(MODEL, applied_when_read) == key
