"""Every configuration key: its types, default, help, and the range, choices or check that
bound it (torch-free). ``engine.config`` reads, overrides and validates configs against it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Tuple

NUMBER = (int, float)


@dataclass(frozen=True)
class Key:
    """One config key: accepted types, default, optional choices/range/check, help text."""

    types: Tuple[type, ...]
    default: Any
    help: str
    choices: Tuple[Any, ...] = ()
    low: Optional[float] = None          # inclusive
    high: Optional[float] = None         # inclusive unless high_open
    high_open: bool = False
    low_open: bool = False
    check: Optional[Callable[[Any], Optional[str]]] = None  # returns an error text or None
    nullable: bool = False               # may be absent (None) with no default


def _name_check(v: str) -> Optional[str]:
    if not v or v in (".", "..") or any(c in v for c in "/\\") or not v.isprintable() \
            or len(v) > 100:
        return ("must be a plain name (1-100 printable characters, no '/' or '\\', not '.' "
                "or '..'): it names the run's directory inside run.output_dir")
    return None


def _rewind_check(v: str) -> Optional[str]:
    if v in ("init", "none"):
        return None
    if v.startswith("epoch:") and v[6:].isdigit():
        return None
    return "must be 'init', 'none' or 'epoch:K' (K = epochs of state 0 to rewind to)"


def _device_check(v: str) -> Optional[str]:
    if v in ("auto", "cpu", "cuda", "mps") or (v.startswith("cuda:") and v[5:].isdigit()):
        return None
    return "must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"


def _ratio_check(v) -> Optional[str]:
    values = v if isinstance(v, list) else [v]
    for x in values:
        if isinstance(x, bool) or not isinstance(x, NUMBER) or not 0 <= x < 1 \
                or not math.isfinite(x):
            return "must be a fraction in [0, 1) or a list of them (one per pruning step)"
    return None


def _amp_check(v) -> Optional[str]:
    if isinstance(v, bool) or v in ("auto", "bf16", "fp16"):
        return None
    return "must be true, false, 'bf16' or 'fp16', or 'auto' (the default)"


SCHEMA: Dict[str, Dict[str, Key]] = {
    "run": {
        "name": Key((str,), "run", "run name; the directory is <output_dir>/<name>-<time>",
                    check=_name_check),
        "output_dir": Key((str,), "runs", "where run directories are created"),
        "seed": Key((int,), 0, "seed for weights, data order, augmentation and synthetic data",
                    low=0, high=2 ** 63 - 1),
        "device": Key((str,), "auto", "auto | cpu | cuda | cuda:N | mps", check=_device_check),
        "nproc_per_node": Key((int,), 1, "processes (GPUs) on this node: > 1 starts torchrun "
                              "for `tuiprune run` and `watch`", low=1, high=1024),
        "dist_timeout": Key(NUMBER, 600.0, "seconds a rank waits for the others before the "
                            "run fails (a dead or hung rank)", low=1, high=86_400),
        "checkpoint_minutes": Key(NUMBER, 10.0, "also checkpoint inside an epoch this often "
                                  "(0: only at epoch ends)", low=0, high=1e6),
        "system_seconds": Key(NUMBER, 10.0, "write a `system` event (CPU, memory, GPU, "
                              "images/s, data wait) this often and at each epoch end (0: off)",
                              low=0, high=1e6),
    },
    "model": {
        "name": Key((str,), "vit_small_patch16_224", "timm model name"),
        "pretrained": Key((bool,), False, "load timm's pretrained weights (from the hub, or "
                          "from pretrained_path)"),
        "pretrained_path": Key((str,), "", "local .safetensors/.pth/.bin weights file"),
        "num_classes": Key((int,), None, "classes (default: the dataset's)", low=1,
                           high=1_000_000, nullable=True),
        "img_size": Key((int,), None, "input size the model is built for (default: the "
                        "model's own)", low=8, high=8192, nullable=True),
        "kwargs": Key((dict,), {}, "extra timm.create_model keyword arguments, e.g. "
                      "{patch_size = 4, drop_path_rate = 0.1}"),
    },
    "data": {
        "dataset": Key((str,), "synthetic", "synthetic | cifar10 | cifar100 | imagefolder",
                       choices=("synthetic", "cifar10", "cifar100", "imagefolder")),
        "root": Key((str,), "data", "dataset folder"),
        "download": Key((bool,), False, "download CIFAR through torchvision when missing"),
        "batch_size": Key((int,), 128, "training batch size", low=1, high=1_000_000),
        "eval_batch_size": Key((int,), None, "evaluation batch size (default: 2 × batch_size)",
                               low=1, high=1_000_000, nullable=True),
        "workers": Key((int,), 2, "DataLoader workers (imagefolder only: the small datasets "
                       "live on the training device)", low=0, high=256),
        "val_fraction": Key(NUMBER, 0.1, "share of the training set held out for validation",
                            low=0, high=1, high_open=True),
        "resize": Key((int,), None, "resize images to this size (default: the model's "
                      "img_size)", low=8, high=8192, nullable=True),
        "augment": Key((bool,), True, "random crop (padding 1/8) and horizontal flip"),
        "test": Key((bool,), True, "also evaluate the test split each epoch (test_acc)"),
        "train_size": Key((int,), 5000, "synthetic: training images", low=20, high=200_000),
        "test_size": Key((int,), 1000, "synthetic: test images", low=0, high=200_000),
    },
    "train": {
        "epochs": Key((int,), 2, "epochs per pruning state", low=1, high=100_000),
        "optimizer": Key((str,), "sgd", "sgd | adamw", choices=("sgd", "adamw")),
        "lr": Key(NUMBER, 0.01, "peak learning rate", low=0, high=10),
        "momentum": Key(NUMBER, 0.9, "SGD momentum", low=0, high=1, high_open=True),
        "weight_decay": Key(NUMBER, 1e-4, "weight decay", low=0, high=10),
        "warmup_epochs": Key(NUMBER, 0.0, "linear warm-up at the start of every state", low=0,
                             high=100_000),
        "schedule": Key((str,), "cosine", "cosine | step | constant (per state)",
                        choices=("cosine", "step", "constant")),
        "step_epochs": Key((int,), 30, "step schedule: epochs between decays", low=1,
                           high=100_000),
        "gamma": Key(NUMBER, 0.1, "step schedule: decay factor", low=0, high=1),
        "amp": Key((bool, str), "auto", "mixed precision on CUDA: 'auto' (bf16 where "
                   "supported, else off; off on CPU), true (bf16 where supported, else fp16), "
                   "'bf16', 'fp16', false", check=_amp_check),
        "compile": Key((bool,), False, "torch.compile the model (the first steps of each "
                       "batch size compile; masks stay exact)"),
        "tf32": Key((bool,), True, "CUDA: float32 matmuls and convolutions on TF32 tensor "
                    "cores (Ampere and later)"),
        "fused": Key((bool,), True, "CUDA: fused optimizer kernels (one launch updates every "
                     "parameter)"),
        "label_smoothing": Key(NUMBER, 0.0, "cross-entropy label smoothing", low=0, high=1,
                               high_open=True),
        "grad_clip": Key(NUMBER, 0.0, "clip the gradient norm to this (0: off)", low=0,
                         high=1e9),
    },
    "prune": {
        "method": Key((str,), "refill", "refill | rsst", choices=("refill", "rsst")),
        "states": Key((int,), 3, "pruning states (a pruning step after each but the last)",
                      low=1, high=10_000),
        "rate": Key(NUMBER, 0.3, "element-wise step: fraction of alive weights removed",
                    low=0, high=1, high_open=True),
        "head_ratio": Key((float, int, list), 0.3, "fraction of alive heads pruned per step "
                          "(or one value per step)", check=_ratio_check),
        "mlp_ratio": Key((float, int, list), 0.3, "fraction of alive MLP neurons pruned per "
                         "step (or one value per step)", check=_ratio_check),
        "sorting": Key((str,), "global", "global | layer-wise",
                       choices=("global", "layer-wise")),
        "criterion": Key((str,), "magnitude", "remain | magnitude | l1 | l2 | saliency",
                         choices=("remain", "magnitude", "l1", "l2", "saliency")),
        "rewind": Key((str,), "init", "init | epoch:K | none", check=_rewind_check),
        "calib_batches": Key((int,), 4, "batches for the l1/l2/saliency criteria", low=1,
                             high=10_000),
        "prune_last": Key((bool,), False, "also prune after the last state"),
        "round_to": Key((int,), 1, "keep each block's neurons (and heads × head_dim) a "
                        "multiple of this, rounded down (Torch-Pruning's round_to; 1: off)",
                        low=1, high=4096),
    },
    "rsst": {
        "schedule": Key((str,), "exp_custom_exponents", "λ schedule",
                        choices=("x", "x^2", "x^3", "exp", "exp_custom",
                                 "exp_custom_exponents")),
        "reg_granularity": Key(NUMBER, 1.0, "λ at the end of the ramp (exp_custom*), or the "
                               "per-step increment (x, x^2, x^3, exp)", low=0, low_open=True,
                               high=1e30),
        "exponents": Key(NUMBER, 4.0, "k of exp_custom_exponents", low=0, low_open=True,
                         high=1000),
        "ramp": Key((str,), "state", "state: one ramp over the whole state; epoch: restart "
                    "every epoch (research code)", choices=("state", "epoch")),
        "reg_ceiling": Key(NUMBER, 1.0, "cap on λ", low=0, low_open=True, high=1e30),
    },
}
