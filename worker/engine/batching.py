"""Token-budget batching: length-sorted pairs grouped so each padded batch holds at most
`budget` tokens. Fixed-count batches pad short pairs up to the longest; this does not."""


def token_budget_batches(lengths: list[int], budget: int) -> list[list[int]]:
    """Indices of `lengths`, longest first, cut into batches whose padded size (count x longest)
    fits `budget`; a single pair longer than the budget still gets a batch of its own."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    for index in order:
        longest = lengths[current[0]] if current else lengths[index]
        if current and (len(current) + 1) * longest > budget:
            batches.append(current)
            current = []
        current.append(index)
    if current:
        batches.append(current)
    return batches
