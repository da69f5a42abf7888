"""Where a process stands in a run that torchrun started, and the checks that need no torch
(``engine.distributed`` holds the collective steps)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from engine.errors import UserError


@dataclass(frozen=True)
class Ranks:
    """Where this process stands in the run: ``rank`` of ``world``, ``local_rank`` on its
    host. A plain run is rank 0 of 1 and takes no collective step."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def from_env() -> Ranks:
    """The ranks torchrun describes in the environment (``RANK``, ``WORLD_SIZE``,
    ``LOCAL_RANK``); a single process without them."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise UserError("RANK, WORLD_SIZE and LOCAL_RANK must be whole numbers (they are set "
                        "by torchrun)") from None
    return Ranks(rank, max(1, world), local)


def check_batch(batch_size: int, world: int) -> int:
    """The per-rank batch for a global ``batch_size``, or a UserError when it does not
    divide."""
    if batch_size % world:
        lower = batch_size - batch_size % world
        raise UserError(f"data.batch_size = {batch_size} is the global batch and must divide "
                        f"by the {world} ranks of this run; use {lower} or "
                        f"{lower + world}")
    return batch_size // world


def global_batches(n: int, batch_size: int, world: int) -> int:
    """Batches of ``batch_size`` in an epoch of ``n`` samples split over ``world`` ranks: a
    last batch with fewer samples than ranks is left out (no rank may train an empty slice)."""
    short = n % batch_size
    return math.ceil(n / batch_size) - (1 if 0 < short < world else 0)


def rank_rows(length: int, rank: int, world: int) -> slice:
    """This rank's rows of a global batch of ``length``: ``length // world`` of them, so every
    rank trains the same shape and DDP's average is the exact global mean (a short last batch
    that does not divide loses its last ``length % world`` rows)."""
    per = length // world
    return slice(rank * per, (rank + 1) * per)


def check_gpus(nproc: int, device: str, available: int) -> None:
    """``nproc`` processes on one node need that many GPUs when they train on CUDA."""
    if device.startswith("cuda") and nproc > available:
        raise UserError(f"run.nproc_per_node = {nproc} processes on CUDA but this machine has "
                        f"{available} GPU(s); use --nproc-per-node {max(1, available)} (or "
                        f"run.device = 'cpu')")
