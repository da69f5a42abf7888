"""Where a sweep's members run when several run at once (torch-free).

``--parallel N`` gives the sweep N *slots*; a member takes a free slot and its environment:

- CUDA (``run.device`` ``auto`` with a GPU visible, or ``cuda``): slot ``i`` gets GPU ``i``
  alone through ``CUDA_VISIBLE_DEVICES`` (so a member always sees its GPU as ``cuda:0``);
  more slots than GPUs is refused.
- CPU: the cores are split, ``OMP_NUM_THREADS = cores // N`` (torch's intra-op threads), so
  N engines do not each take every core. An ``OMP_NUM_THREADS`` already in the environment
  is kept.

The GPUs are counted by a short ``python -c "import torch …"`` subprocess, so neither the
command line nor the driver imports torch.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional

from engine.errors import UserError

THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
_PROBE = ("import torch; print(torch.cuda.device_count() if torch.cuda.is_available() "
          "else 0)")


@dataclass
class Slots:
    """``count`` slots; ``gpus[i]``: slot i's ``CUDA_VISIBLE_DEVICES`` (empty: leave it);
    ``threads``: ``OMP_NUM_THREADS`` per member (None: leave it)."""

    count: int = 1
    gpus: List[str] = field(default_factory=list)
    threads: Optional[int] = None

    def env(self, slot: int) -> Dict[str, str]:
        """The environment variables a member in ``slot`` runs with (on top of ours)."""
        out: Dict[str, str] = {}
        if self.gpus:
            out["CUDA_VISIBLE_DEVICES"] = self.gpus[slot % len(self.gpus)]
        if self.threads is not None:
            out.update({var: str(self.threads) for var in THREAD_VARS})
        return out

    def describe(self, slot: int) -> str:
        return " ".join(f"{k}={v}" for k, v in self.env(slot).items()
                        if k != "MKL_NUM_THREADS")


def cpu_cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def visible_gpus() -> List[str]:
    """The ``CUDA_VISIBLE_DEVICES`` entries (or indices) of the GPUs torch can use here."""
    try:
        done = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True,
                              timeout=300, stdin=subprocess.DEVNULL)
        count = int(done.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        raise UserError("cannot count the CUDA GPUs (importing torch failed); "
                        "run `python -c 'import torch'` to see why") from None
    given = os.environ.get("CUDA_VISIBLE_DEVICES")
    if given is not None:
        entries = [e.strip() for e in given.split(",") if e.strip()]
        return entries[:count]
    return [str(i) for i in range(count)]


def plan_slots(devices: Iterable[str], parallel: int) -> Slots:
    """The slots for members whose ``run.device`` values are ``devices``; a UserError when
    ``parallel`` does not fit the machine (more members at once than GPUs, or a CUDA device
    where none is visible)."""
    devices = set(devices)
    explicit = {d for d in devices if d.startswith("cuda")}
    if parallel <= 1 and not explicit:
        return Slots()
    threads = None if "OMP_NUM_THREADS" in os.environ else max(1, cpu_cores() // parallel)
    if not explicit and "auto" not in devices:
        return Slots(parallel, [], threads)
    pinned = sorted(d for d in explicit if d != "cuda" and d != "cuda:0")
    if pinned and parallel > 1:
        raise UserError(f"--parallel {parallel}: run.device = {pinned[0]!r} pins every member "
                        f"to one GPU; use run.device = 'cuda' or 'auto' and each member gets "
                        f"a GPU of its own")
    gpus = visible_gpus()
    shown = os.environ.get("CUDA_VISIBLE_DEVICES", "unset")
    if not gpus and explicit:
        raise UserError(f"run.device = {sorted(explicit)[0]!r} but no CUDA GPU is visible "
                        f"here (CUDA_VISIBLE_DEVICES={shown}); use run.device = 'cpu' or "
                        f"'auto'")
    if not gpus:  # auto means CPU here
        return Slots(parallel, [], threads)
    if parallel > len(gpus):
        raise UserError(f"--parallel {parallel} is more than the {len(gpus)} CUDA GPU(s) visible "
                        f"here (CUDA_VISIBLE_DEVICES={shown}); use --parallel {len(gpus)}: "
                        f"one GPU per member")
    if parallel <= 1:
        return Slots()
    return Slots(parallel, gpus[:parallel], threads)
