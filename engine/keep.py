"""How many heads or neurons a pruning step keeps (docs/algorithm.md, "Keep counts";
torch-free).

One rule, used by the engine when it selects structures, by ``--dry-run`` when it plans a run,
and by the report when it checks a log against the plan:

- the ratio: ``max(1, int(alive * (1 - ratio)))`` of the structures alive, over all blocks
  (``global``) or per block (``layer-wise``);
- then ``prune.round_to`` (Torch-Pruning's ``round_to``): each block's count is rounded down
  to a multiple, so compacted matrices get tensor-core-friendly shapes. A block whose count is
  below one multiple keeps it unrounded (rounding never empties a block, never adds). For
  neurons the multiple is ``round_to``; for heads it is the smallest head count whose width
  (heads × head_dim) is a multiple of ``round_to`` — 1 for head_dim 64 up to ``round_to`` 64.
"""

from __future__ import annotations

import math
from typing import List


def keep_count(alive: int, ratio: float) -> int:
    """``max(1, int(alive * (1 - ratio)))`` of ``alive`` structures (0 stays 0)."""
    return max(1, int(alive * (1 - ratio))) if alive else 0


def round_kept(kept: int, multiple: int) -> int:
    """``kept`` rounded down to a multiple of ``multiple``; unchanged when below one."""
    return kept - kept % multiple if kept >= multiple else kept


def head_multiple(round_to: int, head_dim: int) -> int:
    """Heads per multiple: the fewest heads whose width ``heads * head_dim`` is a multiple of
    ``round_to``."""
    return round_to // math.gcd(round_to, head_dim)


def expected_kept(prev: List[int], ratio: float, sorting: str, multiple: int = 1) -> List[int]:
    """Structures kept after a step from ``prev`` alive per block: ``layer-wise`` keeps per
    block (each rounded to ``multiple``); ``global`` ranks all blocks together and one total
    comes back — exact when ``multiple`` is 1, otherwise the most it can be (how the rounding
    falls on each block depends on the scores)."""
    if sorting == "global":
        return [keep_count(sum(prev), ratio)]
    return [round_kept(keep_count(p, ratio), multiple) for p in prev]
