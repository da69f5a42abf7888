"""Hand-made schema-v1 event logs (``docs/events.md``), shaped like ViT-S on CIFAR-10.

Deterministic (seeded, fixed clock). Used for the reducer's unit tests (torn lines,
garbage, unknown events) and by ``bench/bench_reducer.py`` for its 1 M-line log; the
dashboard's Pilot, snapshot and terminal tests use the real engine's fixture runs.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Iterator, List, Optional

BLOCKS, HEADS, NEURONS = 12, 6, 1536
HEAD_WEIGHTS, NEURON_WEIGHTS = 98_304, 768
TOTAL = BLOCKS * (HEADS * HEAD_WEIGHTS + NEURONS * NEURON_WEIGHTS)  # 21,233,664
T0 = 1_764_000_000.0


def _split(kept: int, parts: int, per_part: int, rng: random.Random) -> List[int]:
    """``kept`` structures spread over ``parts`` blocks of ``per_part`` each."""
    counts = [per_part] * parts
    for _ in range(parts * per_part - kept):
        choices = [i for i, c in enumerate(counts) if c > 0]
        counts[rng.choice(choices)] -= 1
    return counts


def structure(step: int, head_ratio: float, mlp_ratio: float, rng: random.Random) -> dict:
    heads_kept = max(1, int(BLOCKS * HEADS * (1 - head_ratio) ** (step + 1)))
    neurons_kept = max(1, int(BLOCKS * NEURONS * (1 - mlp_ratio) ** (step + 1)))
    hk = _split(heads_kept, BLOCKS, HEADS, rng)
    nk = _split(neurons_kept, BLOCKS, NEURONS, rng)
    layers = [{"block": b, "attn_sparsity": round(100 * (1 - hk[b] / HEADS), 2),
               "heads_kept": hk[b], "heads_total": HEADS,
               "mlp_sparsity": round(100 * (1 - nk[b] / NEURONS), 2),
               "neurons_kept": nk[b], "neurons_total": NEURONS} for b in range(BLOCKS)]
    zeros = ((BLOCKS * HEADS - heads_kept) * HEAD_WEIGHTS
             + (BLOCKS * NEURONS - neurons_kept) * NEURON_WEIGHTS)
    return {"sparsity": round(100 * zeros / TOTAL, 2), "zeros": zeros, "total": TOTAL,
            "heads_kept": heads_kept, "heads_total": BLOCKS * HEADS,
            "neurons_kept": neurons_kept, "neurons_total": BLOCKS * NEURONS, "layers": layers}


def events(method: str = "rsst", states: int = 3, epochs: int = 2, batches: int = 20,
           batch_every: int = 1, seed: int = 0, fail_at_state: Optional[int] = None,
           crash_at_state: Optional[int] = None, name: str = "synthetic") -> Iterator[dict]:
    """The events of one run, in order. ``fail_at_state``: an error and ``run_ended`` failed
    in that state; ``crash_at_state``: the log just stops there (engine killed)."""
    rng = random.Random(seed)
    clock = [T0]
    seq = [0]
    rsst = method == "rsst"

    def ev(kind: str, dt: float = 0.0, **fields) -> dict:
        clock[0] += dt
        obj = {"v": 1, "event": kind, "time": round(clock[0], 3), "seq": seq[0], **fields}
        seq[0] += 1
        return obj

    ratios = [0.3] * (states - 1)
    yield ev("run_started", run_id=f"{name}-20251124-160000", name=name,
             config={"run": {"name": name}, "prune": {"method": method}},
             model={"name": "vit_small_patch16_224", "params": 21_342_346,
                    "prunable_weights": TOTAL, "blocks": BLOCKS,
                    "heads_per_block": [HEADS] * BLOCKS, "neurons_per_block": [NEURONS] * BLOCKS,
                    "weights_source": "random init"},
             data={"dataset": "CIFAR-10", "train": 45_000, "val": 5_000, "test": 10_000,
                   "num_classes": 10, "img_size": 32},
             device="cpu", pid=4242, host="synthhost", states=states, epochs=epochs,
             method=method, sorting="global", criterion="magnitude", head_ratio=ratios,
             mlp_ratio=ratios, batches_per_epoch=batches,
             versions={"tuiprune": "0.1.0", "torch": "2.x", "timm": "1.x"})
    sparsity = 0.0
    acc = 40.0
    target = None
    lam_step = 0
    for s in range(states):
        squeezing = None
        if rsst and target is not None:
            squeezing = {"regularized": target["zeros"], "heads": target["heads_total"]
                         - target["heads_kept"], "neurons": target["neurons_total"]
                         - target["neurons_kept"]}
        yield ev("state_started", 1.0, state=s, method=method, epochs=epochs, sparsity=sparsity,
                 rewound_to=None if s == 0 else "init", squeezing=squeezing)
        lam_step = 0
        best = None
        for e in range(epochs):
            yield ev("epoch_started", 0.5, state=s, epoch=e, batches=batches, lr=0.01)
            for b in range(batches):
                if crash_at_state == s and e == epochs - 1 and b == batches // 2:
                    return
                acc = min(95.0, acc + rng.uniform(0.0, 0.2))
                if b % batch_every == 0 or b == batches - 1:
                    yield ev("batch", 0.1, state=s, epoch=e, batch=b, batches=batches,
                             loss=round(2.3 * (1 - acc / 100) + rng.uniform(0, 0.1), 4),
                             acc=round(acc + rng.uniform(-3, 3), 3), lr=0.01,
                             images_per_s=round(1200 + rng.uniform(-50, 50), 1))
                else:
                    clock[0] += 0.1
                if squeezing is not None:
                    lam_step += 1
                    if b % batch_every == 0 or b == batches - 1:
                        yield ev("lambda", state=s, step=lam_step, steps=epochs * batches,
                                 value=round(1e-4 * (lam_step / (epochs * batches)) ** 4 * 1e4,
                                             6), **squeezing)
            if fail_at_state == s and e == epochs - 1:
                yield ev("error", 0.2, state=s, epoch=e,
                         message="KeyError: 'blocks.0.attn.qkv.weight'",
                         traceback="Traceback (most recent call last):\n  File \"engine/"
                         "runner.py\", line 210, in run_state\n    state_dict[name]\n"
                         "KeyError: 'blocks.0.attn.qkv.weight'\n")
                yield ev("run_ended", 0.1, status="failed", best_val_acc=best,
                         final_val_acc=None, test_acc=None, sparsity=sparsity,
                         seconds=round(clock[0] - T0, 3),
                         message="KeyError: 'blocks.0.attn.qkv.weight'")
                return
            val = round(acc - 4 + rng.uniform(-1, 1), 2)
            is_best = best is None or val > best
            best = val if is_best else best
            yield ev("epoch_ended", 3.0, state=s, epoch=e, train_loss=0.8, train_acc=round(acc, 2),
                     val_loss=0.9, val_acc=val, test_loss=None, test_acc=None,
                     seconds=round(batches * 0.1 + 3.5, 3), images_per_s=1200.0, lr=0.01,
                     **{"lambda": (round(1e-4 * lam_step, 6) if squeezing else None)},
                     best=is_best)
        if rsst and target is not None:
            sparsity = target["sparsity"]
            yield ev("hard_cut", 0.5, state=s, val_acc_before=best,
                     val_acc_after=round(best - 0.3, 2), residual_norm=0.0012,
                     **target)
        if s < states - 1:
            target = structure(s, 0.3, 0.3, rng)
            yield ev("pruned", 1.5, state=s, step=s, method=method, sorting="global",
                     criterion="magnitude", applied=not rsst, rate=0.2, head_ratio=0.3,
                     mlp_ratio=0.3, elementwise_sparsity=20.0, seconds=1.5, **target)
            if not rsst:
                sparsity = target["sparsity"]
        yield ev("state_ended", 0.2, state=s, best_val_acc=best, best_epoch=0,
                 final_val_acc=val, test_acc=None, sparsity=sparsity,
                 seconds=round(epochs * (batches * 0.1 + 4), 3))
        acc = max(40.0, acc - 8)
    yield ev("run_ended", 0.3, status="completed", best_val_acc=best, final_val_acc=val,
             test_acc=None, sparsity=sparsity, seconds=round(clock[0] - T0, 3), message="")


def line(obj: dict) -> str:
    return json.dumps(obj, separators=(",", ":")) + "\n"


def write(path: Path, evs, extra: str = "") -> Path:
    """Write events (and ``extra`` raw text at the end) to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for obj in evs:
            f.write(line(obj))
        f.write(extra)
    return path
