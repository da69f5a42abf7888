"""One run across processes with torchrun (issue 10), on CPU with gloo and 2 processes: the
same results as one process, identical masks on every rank, stops, a dead rank, and resumes
with a different number of processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from engine.data import Preprocess, TensorSource
from engine.distributed import check_batch, check_gpus
from engine.errors import UserError
from helpers.images import make_image_folder
from helpers.runs import epoch_counts, events, of, overrides, wait_for

pytestmark = pytest.mark.slow

# 200 synthetic images: 180 train = 3 batches of 60 (30 per rank), 20 val (10 per rank)
DDP = overrides("data.train_size=200", "data.batch_size=60", "prune.states=2",
                "train.optimizer='sgd'", "train.lr=0.05", "prune.rewind='epoch:1'",
                "run.dist_timeout=20")


def sets(*extra: str) -> list:
    return [a for s in (*DDP, *extra) for a in ("--set", s)]


def env(tmp_path: Path, digests: bool = False) -> dict:
    """One thread per process (2 ranks on 2 cores); ``digests``: every rank records what it
    holds as a state begins (engine.distributed.write_digest)."""
    out = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    if digests:
        out["TUIPRUNE_RANK_DIGESTS"] = str(tmp_path / "digests")
    return out


def torchrun(tmp_path: Path, *args: str, nproc: int = 2) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone",
                             f"--nproc-per-node={nproc}", "-m", "tuiprune", *args],
                            cwd=tmp_path, env=env(tmp_path, digests=True),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def tuiprune(tmp_path: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tuiprune", *args], cwd=tmp_path,
                            env=env(tmp_path), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def digests(tmp_path: Path, rank: int) -> list:
    path = tmp_path / "digests" / f"rank{rank}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def _complete(run_dir: Path, states: int = 2, epochs: int = 2) -> list:
    evs = events(run_dir)
    assert evs[-1]["event"] == "run_ended" and evs[-1]["status"] == "completed", evs[-1]
    assert epoch_counts(evs) == {(s, e): 1 for s in range(states) for e in range(epochs)}
    assert [e["seq"] for e in evs] == list(range(len(evs)))
    return evs


# ---------------------------------------------------------------- the pieces, in one process
def test_batch_and_gpu_checks_name_the_fix():
    assert check_batch(128, 4) == 32
    with pytest.raises(UserError, match="data.batch_size = 130 .* 2 ranks; use 130|use 128"):
        check_batch(130, 4)
    check_gpus(2, "cpu", 0)
    with pytest.raises(UserError, match="has 1 GPU.*--nproc-per-node 1"):
        check_gpus(4, "cuda", 1)


def test_ranks_split_every_global_batch_and_cover_it():
    # 10 samples in batches of 4: 4, 4, 2; labels 0..9 name the samples, in order
    pre = Preprocess(4, (0.5,) * 3, (0.5,) * 3, torch.device("cpu"))
    source = TensorSource(torch.zeros(10, 3, 4, 4, dtype=torch.uint8), torch.arange(10), 4,
                          train=False, augment=False, preprocess=pre)
    parts = [list(source.for_rank(r, 2).batches()) for r in (0, 1)]
    assert [len(p) for p in parts] == [3, 3]
    for b in range(3):
        both = torch.cat([parts[0][b][1], parts[1][b][1]])
        assert both.tolist() == list(range(b * 4, min(10, b * 4 + 4)))
        assert len(parts[0][b][0]) == len(parts[0][b][1])  # images only of its own rows
    three = source.for_rank(0, 3)  # the last batch of 2 < 3 ranks: left out
    assert len(three) == 2 and len(list(three.batches())) == 2


# ---------------------------------------------------------------- real runs
@pytest.mark.parametrize("method", ["refill", "rsst"])
def test_two_ranks_mean_what_one_process_means(tmp_path, method):
    one = tmp_path / "one"
    proc = tuiprune(tmp_path, "run", "demo", "--run-dir", str(one), *sets(
        f"prune.method='{method}'"))
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    two = tmp_path / "two"
    proc = torchrun(tmp_path, "run", "demo", "--run-dir", str(two),
                    *sets(f"prune.method='{method}'"))
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out

    single, multi = _complete(one), _complete(two)
    started = of(multi, "run_started")[0]
    assert started["world_size"] == 2 and started["backend"] == "gloo"
    assert started["per_rank_batch"] == 30 and len(started["hosts"]) == 2
    # the same structures are cut
    assert [p["layers"] for p in of(single, "pruned")] == [p["layers"] for p in
                                                          of(multi, "pruned")]
    # the weights after the first epoch: the same training up to float summation order
    # (DDP averages two half-batch gradients instead of one full-batch mean)
    a = torch.load(one / "checkpoints" / "rewind.pt", weights_only=True)["model"]
    b = torch.load(two / "checkpoints" / "rewind.pt", weights_only=True)["model"]
    worst = max(float((a[k] - b[k]).abs().max()) for k in a if a[k].is_floating_point())
    assert worst < 1e-5, worst
    # every rank held the same masks and weights at every state start
    held = [[(d["state"], d["masks"], d["target"], d["weights"]) for d in
             digests(tmp_path, r)] for r in (0, 1)]
    assert len(held[0]) == 2 and held[0] == held[1]
    # state 1 starts with new masks (Refill) or a new target (RSST)
    assert len({(masks, target) for _, masks, target, _ in held[0]}) == 2


def test_an_imagefolder_run_on_two_ranks_means_what_it_means_in_one(tmp_path):
    """Each rank's DataLoader decodes its rows of every global batch, and evaluation is
    sharded over the ranks: the same cuts and the same accuracies as one process."""
    make_image_folder(tmp_path / "imgs", per_class=16)  # 48 train (6 batches of 8), 12 val
    folder = [f"data.root='{tmp_path / 'imgs'}'", "data.dataset='imagefolder'",
              "data.batch_size=8", "data.workers=1", "data.augment=false",
              "prune.rewind='init'", "train.epochs=1"]
    runs = {}
    for name, start in (("one", tuiprune), ("two", torchrun)):
        proc = start(tmp_path, "run", "demo", "--run-dir", str(tmp_path / name),
                     *sets(*folder))
        out, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, out
        runs[name] = _complete(tmp_path / name, epochs=1)
    single, multi = runs["one"], runs["two"]
    assert of(multi, "run_started")[0]["world_size"] == 2
    assert [p["layers"] for p in of(single, "pruned")] == [p["layers"] for p in
                                                          of(multi, "pruned")]
    # 12 validation images: an accuracy is a multiple of 1/12 whichever rank counted what
    assert [e["val_acc"] for e in of(single, "epoch_ended")] == \
        [e["val_acc"] for e in of(multi, "epoch_ended")]


def test_sigterm_to_the_agent_stops_all_ranks_then_resume_with_one_then_two(tmp_path):
    run_dir = tmp_path / "r"
    proc = tuiprune(tmp_path, "run", "demo", "--run-dir", str(run_dir), "--nproc-per-node",
                    "2", *sets("data.train_size=2000"))
    wait_for(run_dir, lambda e: e["event"] == "batch" and e["batch"] >= 2, proc)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=180)
    assert proc.returncode == 3, out
    end = events(run_dir)[-1]
    assert end["event"] == "run_ended" and end["status"] == "stopped"
    assert any(c["kind"] == "stop" for c in of(events(run_dir), "checkpoint"))

    proc = tuiprune(tmp_path, "run", "--resume", str(run_dir))  # one process
    wait_for(run_dir, lambda e: e["event"] == "epoch_ended" and
             len(of(events(run_dir), "resumed")) == 1, proc)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=180)
    assert proc.returncode == 3, out

    # two processes again, through the launcher: its --set reaches every rank (6 ms between
    # mid-epoch checkpoints instead of the config's 10 minutes)
    proc = tuiprune(tmp_path, "run", "--resume", str(run_dir), "--nproc-per-node", "2",
                    "--set", "run.checkpoint_minutes=0.0001")
    out, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, out
    evs = _complete(run_dir)
    assert len(of(evs, "resumed")) == 2
    after = evs[evs.index(of(evs, "resumed")[-1]):]
    assert any(c["kind"] == "latest" and c["batch"] is not None
               for c in of(after, "checkpoint")), out


def test_a_rank_killed_does_not_leave_the_others_hanging(tmp_path):
    run_dir = tmp_path / "r"
    proc = torchrun(tmp_path, "run", "demo", "--run-dir", str(run_dir),
                    *sets("data.train_size=2000"))
    wait_for(run_dir, lambda e: e["event"] == "batch" and e["batch"] >= 2, proc)
    rank1 = next(d["pid"] for d in digests(tmp_path, 1))
    t0 = time.time()
    os.kill(rank1, signal.SIGKILL)
    out, _ = proc.communicate(timeout=120)  # run.dist_timeout is 20 s
    assert proc.returncode != 0
    assert time.time() - t0 < 90, "the surviving rank hung"
    proc = torchrun(tmp_path, "run", "--resume", str(run_dir))
    out, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, out
    _complete(run_dir)


def test_a_global_batch_that_does_not_divide_is_refused_before_launch(tmp_path):
    out = subprocess.run([sys.executable, "-m", "tuiprune", "run", "demo", "--nproc-per-node",
                          "2", *sets("data.batch_size=61")], capture_output=True, text=True,
                         timeout=120, cwd=tmp_path)
    assert out.returncode == 2 and "must divide by the 2 ranks" in out.stderr, out
    assert out.stderr.count("\n") == 1
