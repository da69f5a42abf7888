"""How big and how fast a model is: parameter and MAC counts, output differences and latency.

Every function here reads the caller's model and never changes it: what needs eval mode,
another device or a switched attention path runs on a copy (in the manner of Torch-Pruning's
``utils/op_counter.py`` and ``benchmark.py``, kept apart from pruning and compaction).
"""

from __future__ import annotations

import copy
import math
import statistics
import time
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

import torch
from torch import nn


def input_shape(model: nn.Module) -> Tuple[int, int, int]:
    """(channels, height, width) the model's patch embedding expects."""
    pe = model.patch_embed
    h, w = pe.img_size
    return int(pe.proj.in_channels), int(h), int(w)


def count_params(model: nn.Module) -> int:
    """Parameters of ``model`` (each shared tensor once). The one parameter count: the run's
    ``run_started.model.params``, export and the benchmarks use it."""
    return sum(p.numel() for p in model.parameters())


def eval_copy(model: nn.Module, device: Optional[str] = None) -> nn.Module:
    """A deep copy of ``model`` in eval mode (on ``device`` when given)."""
    twin = copy.deepcopy(model).eval()
    return twin.to(device) if device is not None else twin


def random_batch(model: nn.Module, batch: int, seed: int = 0) -> torch.Tensor:
    """A fixed random batch for ``model`` (its device and dtype)."""
    p = next(model.parameters())
    gen = torch.Generator().manual_seed(seed)
    return torch.randn((batch,) + input_shape(model), generator=gen).to(device=p.device,
                                                                         dtype=p.dtype)


def count_macs(model: nn.Module, batch: int = 1) -> int:
    """Multiply-accumulates of one forward pass on ``batch`` images.

    Counted with ``torch.utils.flop_counter.FlopCounterMode`` (FLOPs / 2) on a copy switched to
    timm's non-fused attention path, whose matmuls the counter sees (it does not count CPU SDPA
    kernels): all Linear layers, the patch-embedding convolution and the two attention matmuls
    (q·kᵀ and attn·v). Element-wise ops (norms, softmax, GELU) are not MACs and not counted.
    """
    from torch.utils.flop_counter import FlopCounterMode

    twin = eval_copy(model)
    for m in twin.modules():
        if hasattr(m, "fused_attn"):
            m.fused_attn = False
    p = next(twin.parameters())
    x = torch.zeros((batch,) + input_shape(twin), dtype=p.dtype, device=p.device)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        twin(x)
    return int(counter.get_total_flops()) // 2


def max_abs_output(model: nn.Module, batch: int = 2, seed: int = 0) -> float:
    """Largest |output| of ``model`` (eval mode) on a fixed random batch."""
    twin = eval_copy(model)
    with torch.no_grad():
        return float(twin(random_batch(twin, batch, seed)).abs().max())


def max_abs_diff(a: nn.Module, b: nn.Module, batch: int = 2, seed: int = 0) -> float:
    """Largest |a(x) − b(x)| over a fixed random batch, both in eval mode (inf if not finite)."""
    ta, tb = eval_copy(a), eval_copy(b)
    x = random_batch(ta, batch, seed)
    with torch.no_grad():
        d = (ta(x) - tb(x.to(next(tb.parameters()).device))).abs().max().item()
    return d if math.isfinite(d) else float("inf")


def time_models(models: Mapping[str, nn.Module], batch: int, *, reps: int, warmup: int = 2,
                device: str = "cpu", seed: int = 0) -> Dict[str, Dict[str, Any]]:
    """Median forward latency of each model, measured *interleaved* on eval-mode copies.

    Every repetition times each model once, alternating the order between repetitions, so
    drift (thermal, other load) hits all models alike. ``torch.inference_mode``, one fixed
    random batch; CUDA timings synchronise around each forward. Returns, per model,
    ``median_ms``, ``min_ms``, ``max_ms``, ``reps`` and ``batch``.
    """
    names = list(models)
    mods = {n: eval_copy(models[n], device) for n in names}
    x = random_batch(mods[names[0]], batch, seed)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    times: Dict[str, List[float]] = {n: [] for n in names}
    with torch.inference_mode():
        for n in names:
            for _ in range(warmup):
                mods[n](x)
        sync()
        for r in range(reps):
            for n in (names if r % 2 == 0 else names[::-1]):
                sync()
                t0 = time.perf_counter()
                mods[n](x)
                sync()
                times[n].append((time.perf_counter() - t0) * 1000.0)
    return {n: {"median_ms": statistics.median(t), "min_ms": min(t), "max_ms": max(t),
                "reps": len(t), "batch": batch} for n, t in times.items()}


def cpu_name() -> str:
    """The CPU model (``/proc/cpuinfo`` on Linux), else what ``platform`` knows."""
    import platform

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
