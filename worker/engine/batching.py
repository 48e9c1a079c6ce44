"""Token-budget batching: length-sorted pairs grouped so each padded batch holds at most `budget`
tokens, of which at most `max_padding` is padding. Fixed-count batches pad short pairs up to the
longest; this does not, and a long pair does not drag a batch of short ones up to its length."""


def token_budget_batches(lengths: list[int], budget: int, max_padding: float = 0.2) -> list[list[int]]:
    """Indices of `lengths`, longest first, cut into batches whose padded size (count x longest)
    fits `budget` with at most `max_padding` of it padding; a single pair longer than the budget
    still gets a batch of its own."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    real = 0
    for index in order:
        padded = (len(current) + 1) * lengths[current[0] if current else index]
        if current and (padded > budget or padded - real - lengths[index] > max_padding * padded):
            batches.append(current)
            current, real = [], 0
        current.append(index)
        real += lengths[index]
    if current:
        batches.append(current)
    return batches
