"""Speed features of the engine (issue 11), on CPU: amp/TF32/fused-optimizer resolution,
evaluation under inference mode, masks kept exact under ``torch.compile``, the data-wait
figure and its warning. (Timings are benchmarks, in ``bench/``; nothing here asserts one.)"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from timm.models.vision_transformer import VisionTransformer

from engine.config import load_config
from engine.data import Preprocess, TensorSource
from engine.epoch import DATA_WAIT_WARNING, EpochLoop, QuietHost
from engine.pruning import apply_masks, current_masks, elementwise_masks, structured_masks
from engine.train import (Trainer, amp_dtype, configure_backends, evaluate, make_optimizer,
                          optimizer_options)

CPU, CUDA = torch.device("cpu"), torch.device("cuda")  # a device object needs no GPU
ROOT = Path(__file__).resolve().parent.parent


def train_cfg(*extra: str) -> dict:
    return load_config("demo", ["train.optimizer='sgd'", "train.lr=0.05", *extra])["train"]


# --------------------------------------------------------------------------- resolution
def test_amp_auto_is_the_default_and_resolves_per_device():
    assert train_cfg()["amp"] == "auto"
    yes, no = (lambda: True), (lambda: False)
    assert amp_dtype("auto", CPU, yes) == (None, None)          # off on CPU, no warning
    assert amp_dtype("auto", CUDA, yes) == (torch.bfloat16, None)
    assert amp_dtype("auto", CUDA, no) == (None, None)          # no bf16: full precision
    assert amp_dtype(True, CUDA, no) == (torch.float16, None)   # explicit: fp16 + scaling
    assert amp_dtype("fp16", CUDA, yes) == (torch.float16, None)
    assert amp_dtype(False, CUDA, yes) == (None, None)
    dtype, warning = amp_dtype(True, CPU, yes)
    assert dtype is None and "CUDA-only" in warning


def test_amp_auto_asks_torch_about_bf16_only_for_cuda():
    """The real check runs for a CUDA device (it answers False without one); CPU never asks."""
    asked = []
    amp_dtype("auto", CPU, lambda: asked.append(1) or True)
    assert asked == []
    assert amp_dtype("auto", CUDA)[0] == (torch.bfloat16 if torch.cuda.is_available()
                                         and torch.cuda.is_bf16_supported() else None)


def test_tf32_is_switched_on_for_cuda_only_and_only_when_configured():
    before = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("highest")
        configure_backends(CPU, train_cfg())
        assert torch.get_float32_matmul_precision() == "highest"
        configure_backends(CUDA, train_cfg("train.tf32=false"))
        assert torch.get_float32_matmul_precision() == "highest"
        configure_backends(CUDA, train_cfg())
        assert torch.get_float32_matmul_precision() == "high"
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    finally:
        torch.set_float32_matmul_precision(before)


def test_fused_optimizer_on_cuda_only_and_masks_stay_exact_through_a_fused_step(tiny_vit):
    assert optimizer_options(train_cfg(), "cuda") == {"fused": True}
    assert optimizer_options(train_cfg(), "cpu") == {}
    assert optimizer_options(train_cfg("train.fused=false"), "cuda") == {}
    model = tiny_vit().train()
    assert not make_optimizer(model, train_cfg()).defaults["fused"]  # CPU parameters
    masks = structured_masks(model, elementwise_masks(model, 0.3), 0.5, 0.5)
    apply_masks(model, masks)
    # the optimizer a CUDA run builds, on CPU parameters (torch's fused kernels exist there
    # too): SGD with Nesterov momentum and weight-decay groups, AdamW
    for kind in ("sgd", "adamw"):
        opt = make_optimizer(model, train_cfg(f"train.optimizer='{kind}'"), device_type="cuda")
        assert opt.defaults["fused"] and len(opt.param_groups) == 2
        for _ in range(2):
            for p in model.parameters():  # dense gradients: only the step could revive one
                p.grad = torch.ones_like(p)
            opt.step()
            _assert_pruned_zero(model, masks)


# --------------------------------------------------------------------------- evaluation
def test_evaluation_runs_under_inference_mode_in_eval_batches(tiny_vit):
    model = tiny_vit().train()
    x = torch.randint(0, 256, (10, 3, 32, 32), dtype=torch.uint8)
    y = torch.randint(0, 10, (10,))
    pre = Preprocess(32, (0.5,) * 3, (0.25,) * 3, CPU)
    source = TensorSource(x, y, 4, train=False, augment=False, preprocess=pre)
    modes, sizes = [], []

    def record(_module, args, _out):
        modes.append(torch.is_inference_mode_enabled())
        sizes.append(len(args[0]))

    model.register_forward_hook(record)
    loss, acc = evaluate(model, source, CPU, None)
    assert modes == [True] * 3 and sizes == [4, 4, 2] and model.training
    with torch.no_grad():  # reference: one batch, plain eval forward
        model.eval()
        logits = model(pre(x))
    ref_loss = torch.nn.functional.cross_entropy(logits, y).item()
    ref_acc = 100.0 * sum(int(a == b) for a, b in zip(logits.argmax(1).tolist(), y.tolist())) / 10
    assert loss == pytest.approx(ref_loss, rel=1e-5) and acc == ref_acc


# --------------------------------------------------------------------------- compile
COMPILED_VIT = dict(img_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=4,
                    num_classes=10)
COMPILED_RUN = ["run.device='cpu'", "model.name='vit_tiny_patch16_224'", "model.img_size=32",
                "model.kwargs={patch_size=8, embed_dim=32, depth=1, num_heads=4}",
                "data.dataset='synthetic'", "data.train_size=200", "data.val_fraction=0.2",
                "data.batch_size=40", "data.eval_batch_size=40", "data.test=false",
                "train.epochs=1", "train.optimizer='sgd'", "train.compile=true",
                "prune.method='refill'", "prune.states=2", "prune.head_ratio=0.5",
                "prune.mlp_ratio=0.5", "run.checkpoint_minutes=0"]


def _assert_pruned_zero(model, masks) -> None:
    for name, mask in masks.items():
        w = model.get_submodule(name).weight
        assert torch.count_nonzero(w[mask == 0]) == 0, name


def _steps(trainer, n: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for _ in range(n):
        x = torch.randn(40, 3, 32, 32, generator=g)
        trainer.step(x, torch.randint(0, 10, (40,), generator=g), lr=0.05)


@pytest.mark.slow
def test_masks_stay_exact_under_torch_compile_across_a_new_pruning_step():
    torch.manual_seed(0)
    model = VisionTransformer(**COMPILED_VIT).train()
    first = structured_masks(model, elementwise_masks(model, 0.3), 0.5, 0.5)
    apply_masks(model, first)
    trainer = Trainer(model, make_optimizer(model, train_cfg()), train_cfg("train.compile=true"),
                      CPU, None)
    assert trainer.forward is not model and trainer.forward._orig_mod is model
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    _steps(trainer, 3, seed=1)
    _assert_pruned_zero(model, first)
    for name, mask in first.items():  # gradients of pruned weights were masked in backward
        assert torch.count_nonzero(model.get_submodule(name).weight.grad[mask == 0]) == 0
    moved = [n for n, p in model.named_parameters() if not torch.equal(p, start[n])]
    assert "blocks.0.mlp.fc1.weight" in moved and "head.weight" in moved  # it trained

    # a new pruning step with new masks, the same compiled forward
    second = structured_masks(model, elementwise_masks(model, 0.3, current_masks(model)),
                              0.5, 0.5)
    assert sum(int((m == 0).sum()) for m in second.values()) > \
        sum(int((m == 0).sum()) for m in first.values())
    apply_masks(model, second)
    _steps(trainer, 3, seed=2)
    _assert_pruned_zero(model, second)
    x = torch.randn(40, 3, 32, 32)  # the compiled graph computes with the masked weights of now
    assert torch.allclose(trainer.forward(x).detach(), model(x).detach(), atol=1e-5)


@pytest.mark.slow
def test_a_short_run_with_train_compile_completes_with_exact_masks(tmp_path):
    from engine.checkpoint import load_model
    from engine.runner import Run
    from helpers.runs import events, of

    cfg = load_config("demo", COMPILED_RUN)
    run = Run(cfg, tmp_path / "r")
    compiled = []
    run.listeners.append(lambda ev: ev["event"] == "epoch_ended" and compiled.append(
        getattr(run.trainer.forward, "_orig_mod", None) is run.model))
    assert run.start() == 0
    assert compiled == [True, True]
    evs = events(tmp_path / "r")
    assert evs[-1]["event"] == "run_ended" and evs[-1]["status"] == "completed"
    assert len(of(evs, "epoch_ended")) == 2
    assert [e["seq"] for e in evs] == list(range(len(evs)))
    model, masks, _ = load_model(tmp_path / "r" / "checkpoints" / "state1_best.pt")
    assert masks  # the Refill cut is in force in state 1
    _assert_pruned_zero(model, masks)


# --------------------------------------------------------------------------- data wait
class Host(QuietHost):
    """What EpochLoop asks of a run, its events recorded."""

    def __init__(self):
        self.events = []

    def emit(self, event, **fields):
        self.events.append(dict(event=event, **fields))
        return self.events[-1]


class SlowSource:
    """A loader that keeps the trainer waiting ``delay`` seconds for every batch."""

    def __init__(self, inner: TensorSource, delay: float):
        self.inner, self.delay = inner, delay

    def __len__(self):
        return len(self.inner)

    def batches(self, seed=0, start=0):
        for batch in self.inner.batches(seed, start):
            time.sleep(self.delay)
            yield batch


def _loop(source_of, width: int, depth: int, n: int, batch: int):
    torch.manual_seed(0)
    model = VisionTransformer(img_size=32, patch_size=4, embed_dim=width, depth=depth,
                              num_heads=4, num_classes=10).train()
    x = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8)
    y = torch.randint(0, 10, (n,))
    pre = Preprocess(32, (0.5,) * 3, (0.25,) * 3, CPU)
    source = source_of(TensorSource(x, y, batch, train=True, augment=True, preprocess=pre))
    t = train_cfg("train.epochs=2")
    host = Host()
    return EpochLoop(Trainer(model, make_optimizer(model, t), t, CPU, None), source, t,
                     host), host


def _warnings(host):
    return [e for e in host.events if e["event"] == "warning"]


def test_a_slow_loader_is_reported_once_per_state_with_its_share(one_thread):
    delay = 0.1
    loop, host = _loop(lambda s: SlowSource(s, delay), width=32, depth=1, n=64, batch=16)
    loop.run(0, 0, 0, seed=1)
    pace = loop.take_pace()
    assert pace.images == 64
    assert 4 * delay <= pace.data_wait_seconds <= pace.step_seconds  # 4 batches slept
    [warning] = _warnings(host)
    share = int(re.search(r"waiting (\d+)% of the step time", warning["message"]).group(1))
    assert (warning["state"], warning["epoch"]) == (0, 0)
    assert share == round(100 * pace.data_wait_seconds / pace.step_seconds)
    assert share > 100 * DATA_WAIT_WARNING and "data.workers" in warning["message"]
    loop.run(0, 1, 0, seed=2)  # the same state: no second warning
    assert len(_warnings(host)) == 1
    assert loop.take_pace().images == 64 and loop.take_pace() == (0, 0.0, 0.0)  # reset


def test_device_resident_data_keeps_the_warning_silent(one_thread):
    loop, host = _loop(lambda s: s, width=128, depth=4, n=256, batch=64)
    loop.run(0, 0, 0, seed=1)
    pace = loop.take_pace()
    assert pace.images == 256 and 0 < pace.data_wait_seconds < pace.step_seconds
    assert pace.data_wait_seconds / pace.step_seconds <= DATA_WAIT_WARNING
    assert _warnings(host) == []
    assert [e["batch"] for e in host.events if e["event"] == "batch"][-1] == 3


# --------------------------------------------------------------------------- the benchmark
def _quick_vit_flops_per_image() -> int:
    """Forward + backward FLOPs of bench_gpu's --quick ViT (width 64, 2 blocks, 2 heads, MLP
    256, patch 4 at 32 px: 64 patches + a class token, 10 classes), counted by hand: 2 FLOPs
    per multiply-add; a backward pass costs two forward passes for every layer whose input
    needs a gradient, one (the weight gradient) for the patch embedding."""
    tokens, width, hidden, heads, blocks = 65, 64, 256, 2, 2
    head_dim = width // heads
    patch = 2 * 64 * width * (3 * 4 * 4)
    linears = tokens * 2 * (width * 3 * width + width * width + 2 * width * hidden)
    attention = heads * 2 * (2 * tokens * tokens * head_dim)  # q·kᵀ and attn·v
    classifier = 2 * width * 10
    return 2 * patch + 3 * (blocks * (linears + attention) + classifier)


@pytest.mark.slow
def test_bench_gpu_quick_runs_on_cpu_and_writes_its_json(tmp_path):
    out = tmp_path / "bench.json"
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_gpu.py"), "--device",
                           "cpu", "--quick", "--peak-tflops", "1.0", "--json", str(out)],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "projected full experiment" in done.stdout
    result = json.loads(out.read_text())
    rows = result["variants"]
    names = {r["name"] for r in rows}
    assert {"plain fp32", "plain bf16", "engine refill fp32", "engine refill bf16",
            "engine rsst fp32", "engine rsst bf16", "engine rsst bf16 no events",
            "research rsst fp32"} == names
    assert sorted({r["batch"] for r in rows}) == [16, 32] and len(rows) == 16
    for r in rows:
        for key in ("images_per_s", "step_ms", "step_ms_min", "achieved_tflops", "mfu"):
            assert math.isfinite(r[key]) and r[key] > 0, (r["name"], key)
        assert r["flops_per_step"] == r["batch"] * _quick_vit_flops_per_image()
        assert r["mfu"] == pytest.approx(r["achieved_tflops"] / 1.0)
        assert r["images_per_s"] == pytest.approx(1000 * r["batch"] / r["step_ms"])
        assert r["peak_mem_bytes"] is None  # CUDA only
        assert (r["vs_plain"] is not None) == (r["family"] == "engine")
    for batch in ("16", "32"):
        for who in ("engine", "research"):
            p = result["projection"][batch][who]
            want = 20 * 40 * (45_000 / p["train_images_per_s"]
                              + 15_000 / p["eval_images_per_s"]) / 3600
            assert p["hours"] == pytest.approx(want) and math.isfinite(p["hours"])
        assert result["event_path"][batch]["ratio"] > 0
    assert result["environment"]["device"] == "cpu" and result["environment"]["load_average"]


# --------------------------------------------------------------------------- prune.round_to
def _largest_multiple_at_most(n: int, m: int) -> int:
    best = 0
    for k in range(0, n + 1, m):
        best = k
    return best


def _reference_keep(scores, ratio, sorting, m):
    """Keep sets per block by hand: rank (score desc, block, index), keep the ratio's count
    globally or per block, then in each block only the best largest-multiple-of-m (a block
    below one multiple keeps its count)."""
    items = [(-float(s), b, i) for b, row in enumerate(scores) for i, s in enumerate(row)]
    groups = [items] if sorting == "global" else \
        [[it for it in items if it[1] == b] for b in range(len(scores))]
    kept = [[] for _ in scores]
    for group in groups:
        k = max(1, int(len(group) * (1 - ratio)))
        for _, b, i in sorted(group)[:k]:
            kept[b].append(i)
    out = []
    for b, ids in enumerate(kept):
        n = len(ids)
        n = _largest_multiple_at_most(n, m) if n >= m else n
        out.append(sorted(sorted(ids, key=lambda i: (-float(scores[b][i]), i))[:n]))
    return out


@pytest.mark.parametrize("sorting", ["global", "layer-wise"])
def test_round_to_keeps_the_best_multiple_of_neurons_per_block(tiny_vit, sorting):
    from helpers.pruning import randomize, structure_flags

    model = randomize(tiny_vit(), seed=5)  # 3 blocks, 4 heads of 16, 256 neurons
    masks = structured_masks(model, None, 0.3, 0.3, sorting, round_to=48)
    heads, neurons = structure_flags(model, masks)
    fc1 = [[sum(abs(float(v)) for v in row) for row in blk.mlp.fc1.weight.detach()] for blk in
           model.blocks]
    want = _reference_keep(fc1, 0.3, sorting, 48)
    assert [[i for i, k in enumerate(n) if k] for n in neurons] == want
    assert all(len(w) % 48 == 0 for w in want)
    # heads: 48 / gcd(48, 16) = 3 heads make a multiple of 48 wide
    qkv = [[sum(abs(float(v)) for s in range(3) for r in range(16)
                for v in blk.attn.qkv.weight.detach()[s * 64 + h * 16 + r]) for h in range(4)]
           for blk in model.blocks]
    assert [[i for i, k in enumerate(h) if k] for h in heads] == \
        _reference_keep(qkv, 0.3, sorting, 3)


def test_round_to_one_changes_nothing_and_bad_values_are_refused(tiny_vit):
    model = tiny_vit()
    plain = structured_masks(model, None, 0.3, 0.3, "global")
    same = structured_masks(model, None, 0.3, 0.3, "global", round_to=1)
    assert all(torch.equal(plain[k], same[k]) for k in plain)
    with pytest.raises(ValueError, match="round_to must be >= 1"):
        structured_masks(model, None, 0.3, 0.3, round_to=0)
    with pytest.raises(TypeError, match="round_to must be a whole number"):
        structured_masks(model, None, 0.3, 0.3, round_to=8.0)
    from engine.errors import UserError
    with pytest.raises(UserError, match="prune.round_to must be >= 1"):
        load_config("demo", ["prune.round_to=0"])


def test_vit_small_at_30_percent_keeps_multiples_of_64_neurons_per_block():
    """The issue's case: 30 % of ViT-S's 18,432 neurons, ranked globally, leaves 12,902
    (a multiple of neither 8 nor 64); round_to = 64 rounds every block down to one."""
    import timm

    from helpers.pruning import structure_flags

    torch.manual_seed(0)
    model = timm.create_model("vit_small_patch16_224", pretrained=False)
    _, neurons = structure_flags(model, structured_masks(model, None, 0.3, 0.3, "global",
                                                         round_to=64))
    per_block = [sum(n) for n in neurons]
    ratio_keeps = int(18_432 * 0.7)
    assert ratio_keeps == 12_902 and ratio_keeps % 8 and ratio_keeps % 64
    assert all(n % 64 == 0 and n > 0 for n in per_block)
    assert ratio_keeps - 12 * 63 <= sum(per_block) <= ratio_keeps


def test_dry_run_prints_the_rounded_counts():
    out = subprocess.run([sys.executable, "-m", "tuiprune", "run", "demo", "--dry-run",
                          "--set", "prune.round_to=64", "--set", "prune.sorting='layer-wise'"],
                         capture_output=True, text=True, timeout=300, cwd=ROOT,
                         env={**os.environ, "COLUMNS": "200"})
    assert out.returncode == 0, out.stderr
    # demo: 4 blocks, 4 heads of 32 (64 wide = 2 heads), 512 neurons; heads 25 %, MLP 30 %
    heads, neurons = [4] * 4, [512] * 4
    for step in range(2):
        heads = [max(1, int(h * 0.75)) for h in heads]
        heads = [h - h % 2 if h >= 2 else h for h in heads]
        neurons = [_largest_multiple_at_most(max(1, int(n * 0.7)), 64) for n in neurons]
        line = (f"after pruning step {step} (layer-wise): {sum(heads)} of 16 heads and "
                f"{sum(neurons)} of 2048 neurons kept (per block: "
                f"{', '.join(map(str, neurons))})")
        assert line in out.stdout, out.stdout
    assert neurons == [192] * 4 and heads == [1] * 4


@pytest.mark.slow
def test_a_run_with_round_to_prunes_to_multiples(tmp_path):
    from engine.runner import Run
    from helpers.runs import events, of, overrides

    cfg = load_config("demo", overrides("prune.states=2", "prune.sorting='layer-wise'",
                                        "prune.round_to=16", "prune.method='refill'",
                                        "train.epochs=1"))
    assert Run(cfg, tmp_path / "r").start() == 0
    [pruned] = of(events(tmp_path / "r"), "pruned")
    # TINY: 3 blocks of 4 heads × 8 wide (16 wide = 2 heads) and 128 neurons, ratios 0.3
    assert [layer["neurons_kept"] for layer in pruned["layers"]] == [80] * 3  # int(89.6) → 80
    assert [layer["heads_kept"] for layer in pruned["layers"]] == [2] * 3     # int(2.8) = 2
