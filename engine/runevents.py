"""The run loop's larger events, built from what the run knows (fields: ``engine/schema.py``).

Each builder returns ``{"event": kind, **fields}``; the run stores summary events in its
checkpoint before it writes them, so they are plain dicts until then.
"""

from __future__ import annotations

import os
import socket
from typing import List, Optional

import torch
from torch import nn

from engine import __version__
from engine import model as model_mod
from engine.measure import count_params
from engine.pruning import sparsity_report
from engine.rsst import squeeze_counts


def run_started(cfg: dict, run_id: str, model: nn.Module, struct, spec: dict,
                weights_source: str, data, device: torch.device, head_ratios: List[float],
                mlp_ratios: List[float], batches_per_epoch: int,
                distributed: Optional[dict] = None) -> dict:
    """``distributed``: world_size, backend, hosts and per_rank_batch of a torchrun run."""
    import timm

    p = cfg["prune"]
    return dict(
        event="run_started", run_id=run_id, name=cfg["run"]["name"], config=cfg,
        model={"name": spec["name"], "params": count_params(model),
               "prunable_weights": struct.total_weights, "blocks": len(struct),
               "heads_per_block": [b.num_heads for b in struct],
               "neurons_per_block": [b.hidden for b in struct],
               "head_dims": [b.head_dim for b in struct],
               "weights_source": weights_source, "img_size": model_mod.input_size(model)},
        data={"dataset": data.name, "train": data.train.num_samples,
              "val": data.val.num_samples,
              "test": data.test.num_samples if data.test else 0,
              "num_classes": data.num_classes,
              "img_size": cfg["data"]["resize"] or model_mod.input_size(model)},
        device=str(device), pid=os.getpid(), host=socket.gethostname(),
        states=p["states"], epochs=cfg["train"]["epochs"], method=p["method"],
        sorting=p["sorting"], criterion=p["criterion"], head_ratio=head_ratios,
        mlp_ratio=mlp_ratios, batches_per_epoch=batches_per_epoch,
        versions={"tuiprune": __version__, "torch": torch.__version__,
                  "timm": timm.__version__}, **(distributed or {}))


def state_started(state: int, method: str, epochs: int, model: nn.Module,
                  target: Optional[dict], rewound_to: Optional[str]) -> dict:
    squeezing = None
    if method == "rsst" and target is not None:
        weights, heads, neurons = squeeze_counts(model, target)
        squeezing = {"regularized": weights, "heads": heads, "neurons": neurons}
    return dict(event="state_started", state=state, method=method, epochs=epochs,
                sparsity=round(sparsity_report(model).sparsity, 4), rewound_to=rewound_to,
                squeezing=squeezing)


def pruned(state: int, method: str, prune_cfg: dict, head_ratio: float, mlp_ratio: float,
           result, applied: bool) -> dict:
    return dict(event="pruned", state=state, step=state, method=method,
                sorting=prune_cfg["sorting"], criterion=prune_cfg["criterion"],
                applied=applied, rate=prune_cfg["rate"], head_ratio=head_ratio,
                mlp_ratio=mlp_ratio,
                elementwise_sparsity=round(result.elementwise_sparsity, 4),
                **result.report.to_dict(), seconds=result.seconds)


def hard_cut(state: int, model: nn.Module, before: Optional[float], after: float,
             residual: float) -> dict:
    return dict(event="hard_cut", state=state, **sparsity_report(model).to_dict(),
                val_acc_before=before, val_acc_after=after, residual_norm=residual)
