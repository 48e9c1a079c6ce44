"""A job's pairs -> batches: length-sorted so each Celery task holds pairs of similar size
(little padding inside the engine), at most `task_pairs` each. Pure: the I/O is in worker.pipeline."""


def plan_batches(pairs: list[tuple[int, int]], task_pairs: int) -> list[list[int]]:
    """Group (pair id, text length) items, longest first, into lists of at most `task_pairs` ids."""
    ordered = [pair_id for pair_id, _ in sorted(pairs, key=lambda item: (-item[1], item[0]))]
    return [ordered[start : start + task_pairs] for start in range(0, len(ordered), task_pairs)]
