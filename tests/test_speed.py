"""Speed features of the engine (issue 11), on CPU: amp/TF32/fused-optimizer resolution,
evaluation under inference mode, masks kept exact under ``torch.compile``, the data-wait
figure and its warning. (Timings are benchmarks, in ``bench/``; nothing here asserts one.)"""

from __future__ import annotations

import re
import time

import pytest
import torch
from timm.models.vision_transformer import VisionTransformer

from engine.config import load_config
from engine.data import Preprocess, TensorSource
from engine.epoch import DATA_WAIT_WARNING, EpochLoop
from engine.pruning import apply_masks, current_masks, elementwise_masks, structured_masks
from engine.train import (Trainer, amp_dtype, configure_backends, evaluate, make_optimizer,
                          optimizer_options)

CPU, CUDA = torch.device("cpu"), torch.device("cuda")  # a device object needs no GPU


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
    # torch's fused kernels exist on CPU too: run one real fused step with masks applied
    model = tiny_vit().train()
    masks = structured_masks(model, elementwise_masks(model, 0.3), 0.5, 0.5)
    apply_masks(model, masks)
    options = optimizer_options(train_cfg(), "cuda")
    for opt in (torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, **options),
                torch.optim.AdamW(model.parameters(), lr=0.1, **options)):
        for p in model.parameters():  # dense gradients: only the step could revive a weight
            p.grad = torch.ones_like(p)
        opt.step()
        assert opt.defaults["fused"]
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
    from runs_helpers import events, of

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
class Host:
    """The three things EpochLoop asks of a run, recorded."""

    stop_requested = False

    def __init__(self):
        self.events = []

    def emit(self, event, **fields):
        self.events.append(dict(event=event, **fields))
        return self.events[-1]

    def report_lambda(self, lr):
        pass

    def save_mid_epoch(self, batch, tally):
        pass


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
    import json
    import math
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    out = tmp_path / "bench.json"
    done = subprocess.run([sys.executable, str(root / "bench" / "bench_gpu.py"), "--device",
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
