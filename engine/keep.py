"""How many heads or neurons a pruning step keeps (docs/algorithm.md, "Keep counts";
torch-free).

One rule, used by the engine when it selects structures, by ``--dry-run`` when it plans a run,
and by the report when it checks a log against the plan.
"""

from __future__ import annotations

from typing import List


def keep_count(alive: int, ratio: float) -> int:
    """``max(1, int(alive * (1 - ratio)))`` of ``alive`` structures (0 stays 0)."""
    return max(1, int(alive * (1 - ratio))) if alive else 0


def expected_kept(prev: List[int], ratio: float, sorting: str) -> List[int]:
    """Structures kept after a step from ``prev`` alive per block: ``global`` ranks all blocks
    together (one total comes back), ``layer-wise`` keeps per block."""
    if sorting == "global":
        return [keep_count(sum(prev), ratio)]
    return [keep_count(p, ratio) for p in prev]
