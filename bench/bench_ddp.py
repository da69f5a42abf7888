"""DDP overhead (issue 10): per-step time of DistributedDataParallel with world size 1 against
the same model without DDP, on the same device, with the engine's masks and RSST squeeze.

    .venv/bin/python bench/bench_ddp.py [--device cpu|cuda] [--batch 64] [--steps 30] [--reps 7]

Both loops train the same ViT (masked, RSST regulariser on) with the engine's Trainer on the
same device-resident batches; repetitions alternate the two (interleaved, so drift and other
load hit both alike) and the median ratio is reported. Target: ≤ 1.03. With world size 1 the
all-reduce has nothing to exchange: what is measured is DDP's own bookkeeping (bucketing,
autograd hooks), the part a multi-GPU run pays on top of communication.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.pruning import apply_masks, elementwise_masks, structured_masks  # noqa: E402
from engine.rsst import RSSTRegularizer  # noqa: E402
from engine.train import Trainer, make_optimizer  # noqa: E402

TRAIN = {"optimizer": "sgd", "lr": 0.01, "momentum": 0.9, "weight_decay": 1e-4,
         "label_smoothing": 0.0, "grad_clip": 0.0}


def build(device: torch.device):
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    model = VisionTransformer(img_size=32, patch_size=4, embed_dim=192, depth=6, num_heads=3,
                              num_classes=10).to(device)
    m_e = elementwise_masks(model, 0.3)
    apply_masks(model, structured_masks(model, m_e, 0.3, 0.3))
    target = structured_masks(model, elementwise_masks(model, 0.3, m_e), 0.3, 0.3)
    return model, target


def trainer_for(model, target, device, wrap: bool) -> Trainer:
    net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda"
                                  else None) if wrap else model
    reg = RSSTRegularizer(model, target, ramp_steps=1000)
    return Trainer(net, make_optimizer(model, TRAIN), TRAIN, device, None, reg)


def time_steps(trainer: Trainer, batches, device) -> float:
    t = time.perf_counter()
    for x, y in batches:
        trainer.step(x, y, 0.01)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t) / len(batches)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--reps", type=int, default=7)
    args = ap.parse_args()
    device = torch.device(args.device)
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(29500 + os.getpid() % 1000))
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=0, world_size=1)
    g = torch.Generator().manual_seed(1)
    batches = [(torch.randn(args.batch, 3, 32, 32, generator=g).to(device),
                torch.randint(0, 10, (args.batch,), generator=g).to(device))
               for _ in range(args.steps)]
    model, target = build(device)
    plain = trainer_for(model, target, device, wrap=False)
    other = copy.deepcopy(model)
    ddp = trainer_for(other, {k: v.clone() for k, v in target.items()}, device, wrap=True)
    for t in (plain, ddp):  # warm-up
        time_steps(t, batches[:5], device)
    ratios, p_times, d_times = [], [], []
    for rep in range(args.reps):
        order = (plain, ddp) if rep % 2 == 0 else (ddp, plain)
        got = {id(t): time_steps(t, batches, device) for t in order}
        p_times.append(got[id(plain)])
        d_times.append(got[id(ddp)])
        ratios.append(got[id(ddp)] / got[id(plain)])
    dist.destroy_process_group()
    ratio = statistics.median(ratios)
    print(f"device {device}, batch {args.batch}, {args.steps} steps x {args.reps} reps "
          f"(interleaved), torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(f"  no DDP       {statistics.median(p_times) * 1e3:8.2f} ms/step (median)")
    print(f"  DDP world 1  {statistics.median(d_times) * 1e3:8.2f} ms/step (median)")
    print(f"  ratio        {ratio:8.3f}  (target <= 1.03; per-rep "
          f"{', '.join(f'{r:.3f}' for r in ratios)})")
    return 0 if ratio <= 1.03 else 1


if __name__ == "__main__":
    sys.exit(main())
