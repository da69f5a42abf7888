"""A compacted model on disk: save, load, and a ``torch.export`` program.

A directory written by :func:`save` holds

- ``model.safetensors``: the compacted state_dict;
- ``structure.json``: the model spec plus, per block, the indices of the heads and neurons
  kept, from which :func:`load` rebuilds the compacted module (timm and tuiprune needed);

and :func:`export_program` adds ``model.pt2``, a ``torch.export`` program that plain PyTorch
loads without tuiprune or timm. Compaction itself is :mod:`engine.compact`.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Union

import torch
from torch import nn

from engine.compact import Kept, MasksOrKept, compact, kept_from_masks, kept_of

STRUCTURE_FILE = "structure.json"
WEIGHTS_FILE = "model.safetensors"
PROGRAM_FILE = "model.pt2"
STRUCTURE_FORMAT = 1


def _compacted(model: nn.Module, masks_or_kept: MasksOrKept) -> "tuple[nn.Module, Kept]":
    """``model`` compacted by ``masks_or_kept``, or itself when it already is."""
    if not isinstance(masks_or_kept, Kept):
        kept = kept_from_masks(model, masks_or_kept)
        return compact(model, kept), kept
    kept = masks_or_kept
    sizes = kept_of(model)
    want = [(len(b.heads_kept), len(b.neurons_kept)) for b in kept.blocks]
    dense = [(b.heads_total, b.neurons_total) for b in kept.blocks]
    if sizes == want:
        return model, kept
    if sizes == dense:
        return compact(model, kept), kept
    raise ValueError(f"masks/model mismatch: the model's blocks compute {sizes} "
                     f"(heads, neurons), the structure keeps {want} of {dense}")


def save(model: nn.Module, masks_or_kept: MasksOrKept, directory: Union[str, Path], *,
         model_spec: Optional[Mapping[str, Any]] = None, extra: Optional[Mapping] = None) -> Kept:
    """Write ``model.safetensors`` + ``structure.json`` into ``directory`` (created if needed).

    ``model`` is either the dense model (it is compacted with ``masks_or_kept`` first) or a
    model already compacted with that :class:`~engine.compact.Kept`. ``model_spec``
    (``{"name": timm name, "kwargs": {...}}``, as in the checkpoints) is what :func:`load`
    rebuilds the dense skeleton from; it defaults to ``model.model_spec`` when the model
    carries one. Returns the ``Kept`` written.
    """
    spec = model_spec if model_spec is not None else getattr(model, "model_spec", None)
    if not spec or "name" not in spec:
        raise ValueError("save: pass model_spec={'name': <timm model name>, 'kwargs': {...}} so "
                         "that load() can rebuild the model")
    small, kept = _compacted(model, masks_or_kept)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous().cpu() for k, v in small.state_dict().items()}
    save_file(state, str(directory / WEIGHTS_FILE), metadata={"format": "pt"})
    doc = {"format": STRUCTURE_FORMAT,
           "model_spec": {"name": spec["name"], "kwargs": dict(spec.get("kwargs") or {})},
           "heads_kept": kept.heads_kept, "heads_total": kept.heads_total,
           "neurons_kept": kept.neurons_kept, "neurons_total": kept.neurons_total,
           "blocks": kept.to_json()}
    if extra:
        doc.update(extra)
    (directory / STRUCTURE_FILE).write_text(json.dumps(doc, indent=1) + "\n")
    return kept


def read_structure(directory: Union[str, Path]) -> Dict[str, Any]:
    """The ``structure.json`` of a saved model (ValueError for another format)."""
    path = Path(directory) / STRUCTURE_FILE
    doc = json.loads(path.read_text())
    if doc.get("format") != STRUCTURE_FORMAT:
        raise ValueError(f"{path}: structure format {doc.get('format')!r}, this version reads "
                         f"{STRUCTURE_FORMAT}")
    return doc


def load(directory: Union[str, Path], map_location: str = "cpu") -> nn.Module:
    """Rebuild the compacted model written by :func:`save` (in eval mode)."""
    from safetensors.torch import load_file

    from engine.checkpoint import build_model

    doc = read_structure(directory)
    spec = doc["model_spec"]
    dense = build_model({"name": spec["name"], "kwargs": dict(spec.get("kwargs") or {})})
    small = compact(dense, Kept.from_json(doc["blocks"]))
    small.load_state_dict(load_file(str(Path(directory) / WEIGHTS_FILE), device=map_location),
                          strict=True)
    return small.to(map_location).eval()


def export_program(model: nn.Module, path: Union[str, Path], example: torch.Tensor) -> None:
    """Write a ``torch.export`` program (``.pt2``) of an eval-mode copy of ``model``, with a
    dynamic batch dimension. Load it with ``torch.export.load(path).module()`` — plain
    PyTorch, no tuiprune, no timm."""
    from torch.export import Dim

    program = torch.export.export(
        copy.deepcopy(model).eval(), (example,),
        dynamic_shapes={"x": {0: Dim("batch", min=1, max=65536)}})
    torch.export.save(program, str(path))
