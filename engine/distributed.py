"""One run across processes and hosts with ``torchrun`` (DistributedDataParallel): the ranks'
environment, the process group, and the few collective steps the run loop takes.

A distributed run means what the same config means in one process:

- ``data.batch_size`` is the *global* batch. Every rank draws the same global batch (the
  order and augmentation are functions of seed, state, epoch and batch) and trains on its
  slice, so a resume continues at the exact sample with any number of ranks.
- Gradients are averaged by DDP, so every rank holds the same weights; masks are computed on
  rank 0 and broadcast, and the RSST squeeze acts on the synchronised gradients.
- Evaluation is sharded and its sums are all-reduced.
- Only rank 0 writes (event log, ``engine.log``, checkpoints, pid file, lock); every rank
  loads ``latest.pt`` on resume.
- Ranks agree on stops (a signal on any rank, or a stop request file) and mid-epoch
  checkpoints every ``AGREE_EVERY`` steps: a tiny all-reduce, not a sync per step.
"""

from __future__ import annotations

import hashlib
import os
import socket
from datetime import timedelta
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch
import torch.distributed as dist

from engine.errors import UserError
from engine.ranks import Ranks, check_batch, check_gpus, from_env  # noqa: F401 (re-exported)

AGREE_EVERY = 8  # training steps between the ranks' agreement on stop/checkpoint


def device_for(ranks: Ranks, configured: str) -> str:
    """``auto``/``cuda`` become ``cuda:LOCAL_RANK`` in a distributed run on GPUs."""
    if ranks.distributed and configured in ("auto", "cuda") and torch.cuda.is_available():
        return f"cuda:{ranks.local_rank}"
    return configured


def start(ranks: Ranks, device: torch.device, timeout_s: float) -> Optional[str]:
    """Join the process group (NCCL on CUDA, gloo on CPU); returns the backend, or None for a
    plain run. A rank that waits longer than ``timeout_s`` for the others fails."""
    if not ranks.distributed:
        return None
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s))
    return backend


def stop(ranks: Ranks) -> None:
    if ranks.distributed and dist.is_initialized():
        dist.destroy_process_group()


def agree_run_dir(ranks: Ranks, cfg: dict, run_dir: Optional[Path], resume: bool) -> Path:
    """The run directory every rank uses: rank 0 names it (a new one unless given) and makes
    it; then every rank checks that it sees it, so an output directory that is not on a
    filesystem all nodes share is one clear error instead of ranks writing apart."""
    from engine.device import resolve_device
    from engine.rundir import new_run_dir

    device = resolve_device(device_for(ranks, cfg["run"]["device"]))
    start(ranks, device, cfg["run"]["dist_timeout"])
    if ranks.main:
        run_dir = Path(run_dir) if run_dir is not None else new_run_dir(cfg)
        if not resume:
            run_dir.mkdir(parents=True, exist_ok=True)
    run_dir = Path(broadcast_object(str(run_dir) if ranks.main else None, ranks))
    seen = all_gather_object((run_dir.is_dir(), host(), ranks.rank), ranks)
    blind = [f"rank {r} on {h}" for ok, h, r in seen if not ok]
    if blind:
        raise UserError(f"run directory {run_dir} is not visible from {', '.join(blind[:4])}: "
                        f"run.output_dir must be on a filesystem that every node shares")
    return run_dir


def broadcast_object(obj: Any, ranks: Ranks) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not ranks.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_gather_object(obj: Any, ranks: Ranks) -> List[Any]:
    if not ranks.distributed:
        return [obj]
    out: List[Any] = [None] * ranks.world
    dist.all_gather_object(out, obj)
    return out


def all_sum(values: List[float], ranks: Ranks, device: torch.device) -> List[float]:
    """The element-wise sum of ``values`` over all ranks (one all-reduce)."""
    if not ranks.distributed:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def agree(flags: List[bool], ranks: Ranks, device: torch.device) -> List[bool]:
    """For each flag: whether any rank raised it (one all-reduce of a few bytes)."""
    if not ranks.distributed:
        return list(flags)
    t = torch.tensor([int(f) for f in flags], dtype=torch.int32, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return [bool(v) for v in t.tolist()]


def broadcast_masks(masks: Optional[Dict[str, torch.Tensor]], names: List[str],
                    ranks: Ranks, device: torch.device) -> Optional[Dict[str, torch.Tensor]]:
    """Rank 0's masks (keyed by layer ``names``; None = none) on every rank, as 0/1 floats."""
    if not ranks.distributed:
        return masks
    present = broadcast_object(masks is not None, ranks)
    if not present:
        return None
    shapes = broadcast_object({k: tuple(v.shape) for k, v in masks.items()}
                              if ranks.main else None, ranks)
    out = {}
    for name in names:
        if name not in shapes:
            continue
        t = (masks[name].to(device=device, dtype=torch.uint8).contiguous() if ranks.main
             else torch.empty(shapes[name], dtype=torch.uint8, device=device))
        dist.broadcast(t, src=0)
        out[name] = t.float()
    return out


def digest(tensors: Dict[str, torch.Tensor]) -> str:
    """A short hash of named tensors' values (to compare what ranks hold)."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        h.update(name.encode())
        h.update(tensors[name].detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def host() -> str:
    return socket.gethostname()


def wrap(model: torch.nn.Module, ranks: Ranks, device: torch.device) -> torch.nn.Module:
    """The model as the training step sees it: DistributedDataParallel in a distributed run.
    Buffers are not broadcast each step (a ViT has no running statistics, and the masks,
    which are buffers, are the same on every rank)."""
    if not ranks.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda"
                                   else None, broadcast_buffers=False)


class RankAgreement:
    """The decisions the ranks of a run take together (``engine.epoch.EpochLoop``'s
    ``ranks``): every ``every`` steps each rank says whether it wants to stop, checkpoint,
    report the machine or give up on a diverged loss, and all follow whoever said yes."""

    def __init__(self, ranks: Ranks, device: torch.device, every: int = AGREE_EVERY) -> None:
        self.ranks, self.device, self.every = ranks, device, every
        self.world, self.main = ranks.world, ranks.main

    def agree(self, flags: List[bool]) -> List[bool]:
        return agree(flags, self.ranks, self.device)


def shard_train(source, ranks: Ranks):
    """The training batches this rank trains on (the source itself in a plain run): its
    rows of every global batch (``engine.ranks.rank_rows``). A device-resident source draws
    the whole batch and preprocesses only those rows; an ``imagefolder`` one decodes only
    them."""
    return source.for_rank(ranks.rank, ranks.world) if ranks.distributed else source


def shard_eval(source, ranks: Ranks):
    """This rank's contiguous share of an evaluation split."""
    if not ranks.distributed:
        return source
    n = source.num_samples
    return source.part(ranks.rank * n // ranks.world, (ranks.rank + 1) * n // ranks.world)


def write_digest(ranks: Ranks, state: int, model, target=None) -> None:
    """With ``TUIPRUNE_RANK_DIGESTS=DIR`` set, every rank appends to ``DIR/rank<r>.jsonl``
    what it holds as a state begins (hashes of the masks in force and of the RSST target
    pending, and of the weights, and its pid): a way to check that the ranks agree."""
    folder = os.environ.get("TUIPRUNE_RANK_DIGESTS")
    if not folder:
        return
    import json

    from engine.pruning import current_masks

    os.makedirs(folder, exist_ok=True)
    line = {"state": state, "pid": os.getpid(), "masks": digest(current_masks(model) or {}),
            "target": digest(target or {}), "weights": digest(dict(model.state_dict()))}
    with open(os.path.join(folder, f"rank{ranks.rank}.jsonl"), "a") as f:
        f.write(json.dumps(line) + "\n")
