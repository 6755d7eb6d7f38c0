"""How the Ray executor cuts a pass's jobs into blocks: guided self-scheduling in whole generation batches.

Each block holds a fixed share of the work still left after the blocks before it, so the first blocks are
large (few calls to schedule, long batches for vLLM) and the last are one batch each: the workers finish
within about a batch of each other, and no batch is cut short at a block's end.
"""

from __future__ import annotations

MAX_ITEMS_PER_BLOCK = 512
SHARE = 4  # a block holds 1/(SHARE x workers) of the work left


def block_sizes(items: int, workers: int, batch_size: int) -> list[int]:
    """Items per block: each `1 / (SHARE * workers)` of what is left, in whole batches, between one batch and
    `MAX_ITEMS_PER_BLOCK`; the last holds the remainder."""
    sizes: list[int] = []
    cap = max(batch_size, MAX_ITEMS_PER_BLOCK // batch_size * batch_size)
    left = items
    while left > 0:
        share = -(-left // (SHARE * max(1, workers)))
        size = min(left, cap, -(-share // batch_size) * batch_size)
        sizes.append(size)
        left -= size
    return sizes
