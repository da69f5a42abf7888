"""Building the timm model a run prunes, and loading its starting weights.

Starting weights come from exactly one place, recorded in ``run_started.model.weights_source``:
random init (seeded), timm's hub (``pretrained = true``), or a local file
(``pretrained_path``). A failed download is an error, never a silent fall-back to random
weights (the research team lost days to that).
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Dict, Tuple

import psutil
import torch
from torch import nn

from engine.errors import UserError
from engine.measure import count_params


def model_spec(cfg: dict, num_classes: int) -> dict:
    """The ``timm.create_model`` name and kwargs (everything but ``pretrained``)."""
    m = cfg["model"]
    kwargs = dict(m["kwargs"])
    kwargs["num_classes"] = m["num_classes"] or num_classes
    if m["img_size"]:
        kwargs["img_size"] = m["img_size"]
    return {"name": m["name"], "kwargs": kwargs}


def create(spec: dict) -> nn.Module:
    """``timm.create_model`` with random weights, turning timm's complaints into UserErrors."""
    check_buildable(spec)
    return _build(spec, meta=False)


def check_buildable(spec: dict) -> None:
    """A UserError unless timm can build ``spec`` and its weights fit in free memory: built
    on the meta device (shapes only, nothing allocated). A timm that cannot build on the
    meta device (older ViTs read a tensor while building) is checked by a real build."""
    import timm

    name = spec["name"]
    if not timm.is_model(name):
        close = timm.list_models(f"*{name.split('_')[0]}*")[:5] if "_" in name else []
        hint = f" (similar: {', '.join(close)})" if close else ""
        raise UserError(f"model.name {name!r} is not a timm model{hint}; see "
                        f"timm.list_models('vit_*')")
    try:
        shape_only = _build(spec, meta=True)
    except UserError:
        shape_only = _build(spec, meta=False)
    _check_fits(name, count_params(shape_only))


def _build(spec: dict, meta: bool) -> nn.Module:
    import timm

    try:
        with torch.device("meta") if meta else contextlib.nullcontext():
            return timm.create_model(spec["name"], pretrained=False, **spec["kwargs"])
    except (TypeError, ValueError, AssertionError, OverflowError, RuntimeError) as exc:
        raise UserError(f"timm cannot build {spec['name']!r} with {spec['kwargs']}: "
                        f"{type(exc).__name__}: {str(exc)[:300]}") from None


def _check_fits(name: str, params: int) -> None:
    """Refuse a model whose weights alone exceed the memory this machine has free (training
    needs several times that: gradients, optimizer state, activations)."""
    need = params * 4
    free = psutil.virtual_memory().available
    if need > free:
        raise UserError(f"model {name!r} as configured has {params:,} parameters "
                        f"({need / 2**30:,.1f} GiB in float32), more than the "
                        f"{free / 2**30:,.1f} GiB of memory available; check model.kwargs "
                        f"(embed_dim, depth, num_heads, mlp_ratio)")


def build(cfg: dict, num_classes: int) -> Tuple[nn.Module, dict, str]:
    """Model, its spec, and where its starting weights came from."""
    spec = model_spec(cfg, num_classes)
    m = cfg["model"]
    if not m["pretrained"]:
        return create(spec), spec, "random init"
    if m["pretrained_path"]:
        model = create(spec)
        load_weights_file(model, Path(m["pretrained_path"]))
        return model, spec, f"file: {m['pretrained_path']}"
    return _from_hub(spec), spec, f"timm hub: {spec['name']}"


def _from_hub(spec: dict) -> nn.Module:
    import timm

    check_buildable(spec)  # name, kwargs and size, with a clear message before any download
    try:
        return timm.create_model(spec["name"], pretrained=True, **spec["kwargs"])
    except Exception as exc:  # network, hub, missing file: all end the run here
        raise UserError(
            f"could not fetch pretrained weights for {spec['name']!r} from the timm hub "
            f"({type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}). "
            f"Refusing to continue with random weights: run once with network access (timm "
            f"caches the weights), or download them and set model.pretrained_path, or set "
            f"model.pretrained = false") from None


def read_state_dict(path: Path) -> Dict[str, torch.Tensor]:
    """Tensors of a .safetensors/.pth/.pt/.bin file, loaded safely (no pickled code)."""
    if not path.is_file():
        raise UserError(f"model.pretrained_path: file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            sd = load_file(str(path), device="cpu")
        except Exception as exc:
            raise UserError(f"model.pretrained_path: cannot read {path} as safetensors "
                            f"({type(exc).__name__}: {str(exc)[:200]})") from None
    else:
        from engine.checkpoint import load_weights

        sd = load_weights(path, what="model.pretrained_path")
    for key in ("state_dict", "model", "model_ema", "module"):  # common wrappers
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
            break
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise UserError(f"model.pretrained_path: {path} does not hold a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in sd.items()}


def load_weights_file(model: nn.Module, path: Path) -> None:
    """Load a local weights file into ``model`` the way timm loads hub weights: patch and
    position embeddings are resampled to the model's patch/image size; a classifier head of
    another size is left at its fresh init."""
    sd = read_state_dict(path)
    module = sys.modules.get(type(model).__module__)
    filter_fn = getattr(module, "checkpoint_filter_fn", None)
    if filter_fn is not None:
        try:
            sd = filter_fn(sd, model)
        except Exception as exc:
            raise UserError(f"model.pretrained_path: {path} does not fit {type(model).__name__}"
                            f" ({type(exc).__name__}: {exc})") from None
    own = model.state_dict()
    head = _head_keys(model)
    for k in head:
        if k in sd and k in own and sd[k].shape != own[k].shape:
            del sd[k]  # other number of classes: keep the fresh head
    missing = [k for k in own if k not in sd and k not in head]
    unexpected = [k for k in sd if k not in own]
    wrong = [f"{k} {tuple(sd[k].shape)} vs {tuple(own[k].shape)}" for k in sd
             if k in own and sd[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} keys (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (e.g. {', '.join(unexpected[:3])})")
        if wrong:
            parts.append(f"shape mismatches: {'; '.join(wrong[:3])}")
        raise UserError(f"model.pretrained_path: {path} does not match model "
                        f"{type(model).__name__}: {'; '.join(parts)}")
    model.load_state_dict(sd, strict=False)


def _head_keys(model: nn.Module):
    head = getattr(model, "head", None)
    if isinstance(head, nn.Linear):
        return {"head.weight", "head.bias"}
    return set()


def normalization(model: nn.Module) -> Tuple[Tuple[float, ...], Tuple[float, ...]]:
    """The mean and std the model's weights expect (timm's pretrained config)."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    mean = tuple(cfg.get("mean", (0.485, 0.456, 0.406)))
    std = tuple(cfg.get("std", (0.229, 0.224, 0.225)))
    return mean, std


def input_size(model: nn.Module) -> int:
    """The square image size the model was built for."""
    size = getattr(getattr(model, "patch_embed", None), "img_size", None)
    if isinstance(size, (tuple, list)):
        return int(size[0])
    if isinstance(size, int):
        return size
    return 224
