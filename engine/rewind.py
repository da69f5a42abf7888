"""Rewind targets: the weights a state starts from again after a pruning step
(docs/algorithm.md, "Rewind").

``"init"`` — the weights the run started from (pretrained, or the random init saved at start);
``"epoch:K"`` — the weights after K epochs of state 0 (lottery-ticket rewinding);
``"none"`` — keep the trained weights (plain fine-tuning).

A target is a *copy*: the research code kept a reference that shared storage with the live
weights, so from state 2 on "rewinding" restored the previous state's weights.
"""

from __future__ import annotations

import re
from typing import Dict, Optional, Tuple

import torch
from torch import nn

from engine.pruning import reapply_masks

_SPEC = re.compile(r"^(init|none|epoch:(\d+))$")


def parse_rewind(spec: str) -> Tuple[str, Optional[int]]:
    """``"init"`` → ("init", None); ``"epoch:3"`` → ("epoch", 3); ``"none"`` → ("none", None).
    ``"epoch:0"`` is the weights before any training: ("init", None)."""
    m = _SPEC.match(str(spec))
    if not m:
        raise ValueError(f"rewind must be 'init', 'none' or 'epoch:K' (K a whole number of "
                         f"epochs of state 0); got {spec!r}")
    if m.group(2) is not None:
        k = int(m.group(2))
        return ("epoch", k) if k > 0 else ("init", None)
    return m.group(1), None


class RewindTarget:
    """A detached copy of a model's full state (parameters and buffers)."""

    def __init__(self, state: Dict[str, torch.Tensor]):
        self.state = state

    @classmethod
    def capture(cls, model: nn.Module) -> "RewindTarget":
        return cls({k: v.detach().clone() for k, v in model.state_dict().items()})

    @torch.no_grad()
    def restore(self, model: nn.Module) -> None:
        """Copy the saved values into the model in place, then re-apply its masks (pruned
        weights stay exactly zero)."""
        live = model.state_dict()
        missing = [k for k in live if k not in self.state]
        extra = [k for k in self.state if k not in live]
        shapes = [f"{k} {tuple(self.state[k].shape)} vs {tuple(v.shape)}"
                  for k, v in live.items() if k in self.state and self.state[k].shape != v.shape]
        if missing or extra or shapes:  # check everything before copying anything
            raise ValueError(f"rewind target does not match the model: missing {missing[:3]}, "
                             f"unexpected {extra[:3]}, shape mismatches {shapes[:3]}")
        for k, v in live.items():
            v.copy_(self.state[k])
        reapply_masks(model)
