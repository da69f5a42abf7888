"""Runs that never lose work (issues 8 and 14): divergence at an epoch's last batch, an
interrupted start, two writers, frequent mid-epoch checkpoints, signals at awkward moments, a
full disk, and configs and names that must be refused."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from engine import checkpoint as ckpt_mod
from engine.config import load_config
from engine.lock import RunLock
from engine.errors import EXIT_COMPLETED, EXIT_FAILED, EXIT_STOPPED
from engine.runner import Run
from helpers.runs import epoch_counts, events, of, overrides, sets, tuiprune, wait_for

pytestmark = pytest.mark.slow


def _cfg(*extra: str) -> dict:
    return load_config("demo", overrides("data.train_size=200", *extra))


def _all_finite(run_dir: Path) -> None:
    for path in (run_dir / "checkpoints").glob("*.pt"):
        ck = torch.load(path, weights_only=True)
        for name, t in ck["model"].items():
            if t.is_floating_point():
                assert torch.isfinite(t).all(), (path.name, name)


def _complete(run_dir: Path, evs: list, states: int = 3, epochs: int = 2) -> None:
    assert evs[-1]["event"] == "run_ended" and evs[-1]["status"] == "completed"
    assert epoch_counts(evs) == {(s, e): 1 for s in range(states) for e in range(epochs)}
    assert [e["seq"] for e in evs] == list(range(len(evs)))


# ---------------------------------------------------------------- issue 8: divergence
def test_weights_that_diverge_on_an_epochs_last_batch_never_reach_a_checkpoint(tmp_path):
    """The weights turn NaN in the last step of state 0's second epoch (the loss of that step
    was still finite): the run fails there, every checkpoint holds finite weights, and a
    resume continues from the last good one."""
    run_dir = tmp_path / "r"
    run = Run(_cfg("prune.method='refill'"), run_dir)

    def poison(ev):
        if ev["event"] == "batch" and (ev["state"], ev["epoch"]) == (0, 1) \
                and ev["batch"] == ev["batches"] - 1:
            with torch.no_grad():
                run.model.blocks[0].mlp.fc1.weight[0, 0] = float("nan")

    run.listeners.append(poison)
    assert run.start() == EXIT_FAILED
    evs = events(run_dir)
    assert evs[-1]["status"] == "failed"
    err = of(evs, "error")[-1]
    assert (err["state"], err["epoch"]) == (0, 1) and "non-finite" in err["message"]
    assert not any(e["event"] == "epoch_ended" and e["epoch"] == 1 for e in evs)
    _all_finite(run_dir)
    latest = torch.load(run_dir / "checkpoints" / "latest.pt", weights_only=True)
    assert (latest["state"], latest["epoch"], latest["batch"]) == (0, 1, 0)

    resumed = Run(_cfg("prune.method='refill'"), run_dir)
    assert resumed.resume() == EXIT_COMPLETED
    evs = events(run_dir)
    assert of(evs, "resumed")[0]["checkpoint"] == "checkpoints/latest.pt"
    _complete(run_dir, evs)


def test_a_non_finite_loss_names_the_batch_in_message_and_field(tmp_path):
    run_dir = tmp_path / "r"
    run = Run(_cfg("prune.method='refill'"), run_dir)

    def poison(ev):  # from state 1, epoch 0, batch 1 on, every forward yields NaN
        if ev["event"] == "batch" and (ev["state"], ev["epoch"], ev["batch"]) == (1, 0, 0):
            with torch.no_grad():
                run.model.norm.weight.fill_(float("nan"))

    run.listeners.append(poison)
    assert run.start() == EXIT_FAILED
    err = of(events(run_dir), "error")[-1]
    said = int(re.search(r"batch (\d+)", err["message"]).group(1))
    assert said == err["batch"] == 1 and (err["state"], err["epoch"]) == (1, 0)
    _all_finite(run_dir)


# ---------------------------------------------------------------- issue 14.1: init.pt
def test_a_run_interrupted_before_its_init_checkpoint_resumes_and_resumes_again(tmp_path):
    run_dir = tmp_path / "r"
    args = sets("data.train_size=1500", "run.checkpoint_minutes=0")
    proc = tuiprune("run", "demo", "--run-dir", str(run_dir), *args, cwd=tmp_path)
    wait_for(run_dir, lambda e: e["event"] == "run_started", proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    # the moment of the bug: killed before checkpoints/ held anything
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)

    proc = tuiprune("run", "--resume", str(run_dir), cwd=tmp_path)
    wait_for(run_dir, lambda e: e["event"] == "batch" and e["state"] == 0 and e["batch"] >= 2
             and e["seq"] > 2, proc)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_STOPPED, out
    assert (run_dir / "checkpoints" / "init.pt").is_file()

    proc = tuiprune("run", "--resume", str(run_dir), cwd=tmp_path)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == EXIT_COMPLETED, out
    _complete(run_dir, events(run_dir))


# ---------------------------------------------------------------- issue 14.2: one writer
def test_a_second_writer_is_refused_with_who_holds_the_run(tmp_path):
    run_dir = tmp_path / "r"
    assert Run(_cfg("prune.states=1"), run_dir).start() == EXIT_COMPLETED
    (run_dir / "events.jsonl").write_text(
        "".join(ln + "\n" for ln in (run_dir / "events.jsonl").read_text().splitlines()[:-1]))
    before = (run_dir / "events.jsonl").read_bytes()
    with RunLock(run_dir):  # this test process is the first writer
        out = subprocess.run([sys.executable, "-m", "tuiprune", "run", "--resume",
                              str(run_dir)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out
    assert f"pid {os.getpid()}" in out.stderr and "in use" in out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert (run_dir / "events.jsonl").read_bytes() == before


def test_two_resumes_at_once_make_one_consistent_log(tmp_path):
    run_dir = tmp_path / "r"
    proc = tuiprune("run", "demo", "--run-dir", str(run_dir),
                    *sets("data.train_size=1000"), cwd=tmp_path)
    wait_for(run_dir, lambda e: e["event"] == "epoch_ended", proc)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=120)
    a = tuiprune("run", "--resume", str(run_dir), cwd=tmp_path)
    b = tuiprune("run", "--resume", str(run_dir), cwd=tmp_path)
    outs = [p.communicate(timeout=600) for p in (a, b)]
    codes = sorted([a.returncode, b.returncode])
    assert codes == [EXIT_COMPLETED, 2], outs
    _complete(run_dir, events(run_dir))
    assert len(of(events(run_dir), "resumed")) == 1


# ---------------------------------------------------------------- issue 14.3: tallies
def test_mid_epoch_checkpoints_do_not_change_the_reported_metrics(tmp_path):
    plain = Run(_cfg("run.checkpoint_minutes=0"), tmp_path / "plain")
    often = Run(_cfg("run.checkpoint_minutes=0.000001"), tmp_path / "often")
    assert plain.start() == EXIT_COMPLETED and often.start() == EXIT_COMPLETED
    ep_plain = of(events(tmp_path / "plain"), "epoch_ended")
    evs = events(tmp_path / "often")
    ep_often = of(evs, "epoch_ended")
    mid = [c for c in of(evs, "checkpoint") if c["batch"] is not None]
    assert len(mid) >= len(ep_often)  # really checkpointed inside the epochs
    for a, b in zip(ep_plain, ep_often):
        assert (a["train_loss"], a["train_acc"]) == (b["train_loss"], b["train_acc"])
    starts = {(e["state"], e["epoch"]): e["time"] for e in of(evs, "epoch_started")}
    for e in ep_often:  # the epoch's seconds fit inside its wall-clock span
        span = e["time"] - starts[e["state"], e["epoch"]]
        assert 0 < e["seconds"] <= span


# ---------------------------------------------------------------- issue 14.10: signals
def test_a_second_interrupt_during_a_checkpoint_write_waits_for_it(tmp_path, monkeypatch):
    run_dir = tmp_path / "r"
    original = ckpt_mod.save_atomic
    fired = []

    def slow_save(obj, path):
        if path.name == "latest.pt" and not fired:
            fired.append(path)
            os.kill(os.getpid(), signal.SIGINT)   # first: stop after this checkpoint
            time.sleep(0.2)
            os.kill(os.getpid(), signal.SIGINT)   # second: abort, but not mid-write
            time.sleep(0.5)
        original(obj, path)

    monkeypatch.setattr(ckpt_mod, "save_atomic", slow_save)
    assert Run(_cfg(), run_dir).start() == EXIT_STOPPED
    evs = events(run_dir)
    assert evs[-1]["status"] == "stopped" and "second interrupt" in evs[-1]["message"]
    assert not of(evs, "error")
    latest = torch.load(run_dir / "checkpoints" / "latest.pt", weights_only=True)
    assert latest["epoch"] == 1  # the interrupted write completed
    assert not list((run_dir / "checkpoints").glob("*.tmp"))
    monkeypatch.setattr(ckpt_mod, "save_atomic", original)
    assert Run(_cfg(), run_dir).resume() == EXIT_COMPLETED
    _complete(run_dir, events(run_dir))


def test_sigterm_during_set_up_stops_and_says_so_in_a_watch_directory(tmp_path, monkeypatch):
    from engine import data as data_mod

    run_dir = tmp_path / "r"
    run_dir.mkdir()
    (run_dir / "config.toml").write_text("")  # as `watch CONFIG` leaves it for the engine
    real_load = data_mod.load

    def load_then_sigterm(*a, **kw):
        os.kill(os.getpid(), signal.SIGTERM)
        return real_load(*a, **kw)

    monkeypatch.setattr(data_mod, "load", load_then_sigterm)
    run = Run(_cfg(), run_dir)
    assert run.start() == EXIT_STOPPED
    evs = events(run_dir)
    assert [e["event"] for e in evs] == ["run_ended"] and evs[0]["status"] == "stopped"
    assert "set-up" in run.exit_note


def test_sigterm_while_the_engine_starts_is_an_orderly_stop(tmp_path):
    run_dir = tmp_path / "r"
    run_dir.mkdir()
    cfg = run_dir / "config.toml"
    from engine.config import dumps

    cfg.write_text(dumps(_cfg()))
    proc = subprocess.Popen([sys.executable, "-m", "tuiprune", "run", str(cfg), "--run-dir",
                             str(run_dir)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    time.sleep(1.5)  # the CLI is up; torch is loading or the model is being built
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_STOPPED, (out, err)
    assert "Traceback" not in err
    evs = events(run_dir)
    assert evs[-1]["event"] == "run_ended" and evs[-1]["status"] == "stopped"


# ---------------------------------------------------------------- issue 14.7: disk full
def _mount_tmpfs(where: Path, size: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    where.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs",
                           str(where)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")


def test_a_full_disk_ends_the_run_with_one_line_and_resume_continues(tmp_path):
    disk = tmp_path / "disk"
    _mount_tmpfs(disk, "1m")
    try:
        run_dir = disk / "r"
        out = subprocess.run([sys.executable, "-m", "tuiprune", "run", "demo", "--run-dir",
                              str(run_dir), *sets("data.train_size=200")],
                             capture_output=True, text=True, timeout=600)
        assert out.returncode == EXIT_FAILED, out
        errors = [ln for ln in out.stderr.splitlines() if ln.startswith("error:")]
        assert len(errors) == 1 and "no space left on" in errors[0], out.stderr
        assert "Traceback" not in out.stderr and "last good checkpoint" in errors[0]
        assert not list(run_dir.rglob("*.tmp"))
        lines = (run_dir / "events.jsonl").read_text().split("\n")
        assert lines[-1] == ""  # no torn line
        subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)
        out = subprocess.run([sys.executable, "-m", "tuiprune", "run", "--resume",
                              str(run_dir)], capture_output=True, text=True, timeout=600)
        assert out.returncode == EXIT_COMPLETED, out
        _complete(run_dir, events(run_dir))
    finally:
        subprocess.run(["umount", "-l", str(disk)])


# ---------------------------------------------------------------- issues 14.8/14.9: input
@pytest.mark.parametrize("extra, expected", [
    (["train.lr=nan"], "train.lr must be a finite number"),
    (["prune.rate=inf"], "prune.rate must be a finite number"),
    (["data.val_fraction=nan"], "data.val_fraction must be a finite number"),
    (["train.weight_decay=-inf"], "train.weight_decay must be a finite number"),
    (["rsst.exponents=nan"], "rsst.exponents must be a finite number"),
    (["rsst.exponents=0"], "rsst.exponents must be > 0"),
    (["run.seed=18446744073709551616"], "run.seed must be <="),
    (["data.train_size=100000000000"], "data.train_size must be <="),
    (["prune.states=1000000000"], "prune.states must be <="),
    (["model.kwargs={patch_size=4, embed_dim=1000000, depth=4, num_heads=4}"],
     "GiB of memory available"),
    (["model.kwargs={patch_size=4, depth=100000000}"], "model.kwargs.depth"),
    (["run.output_dir='/proc/tuiprune-runs'"], "run.output_dir /proc/tuiprune-runs cannot"),
    (["run.name='../escape'"], "run.name must be a plain name"),
    (["run.name='/abs/path'"], "run.name must be a plain name"),
    (["run.name=''"], "run.name must be a plain name"),
    (["run.name='a/b'"], "run.name must be a plain name"),
])
def test_bad_configs_and_names_are_one_line_exit_2(tmp_path, extra, expected):
    out = subprocess.run([sys.executable, "-m", "tuiprune", "run", "demo",
                          *sets("run.output_dir='out'", *extra)], capture_output=True,
                         text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 2, out
    assert out.stderr.count("\n") == 1 and expected in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
    made = [p for p in tmp_path.rglob("*") if p.name != "out"]
    assert made == []  # nothing created, inside output_dir or outside it


def test_output_dir_that_is_a_file_and_config_that_is_not_a_file(tmp_path):
    (tmp_path / "out").write_text("a file")
    for args, expected in ((["demo", "--set", "run.output_dir='out'"], "is a file"),
                           (["/dev/zero"], "not a regular file")):
        out = subprocess.run([sys.executable, "-m", "tuiprune", "run", *args],
                             capture_output=True, text=True, timeout=300, cwd=tmp_path)
        assert out.returncode == 2 and expected in out.stderr, out
        assert out.stderr.count("\n") == 1


def test_pickled_code_is_refused_in_its_own_words(tmp_path):
    class Payload:
        def __reduce__(self):
            return (os.system, ("touch pwned",))

    torch.save({"w": Payload()}, tmp_path / "weights.pth")
    out = subprocess.run([sys.executable, "-m", "tuiprune", "run", "demo",
                          *sets("model.pretrained=true",
                                f"model.pretrained_path='{tmp_path / 'weights.pth'}'")],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 2 and "holds pickled code" in out.stderr, out
    assert "weights_only" not in out.stderr and not (tmp_path / "pwned").exists()


def test_escape_sequences_in_arguments_and_keys_reach_the_terminal_escaped(tmp_path):
    esc = "\x1b]0;owned\x07\x1b[2J"
    for args in (["run", esc], ["run", "demo", "--set", f"prune.{esc}=1"], [esc],
                 ["run", "--bogus" + esc]):
        out = subprocess.run([sys.executable, "-m", "tuiprune", *args], capture_output=True,
                             text=True, timeout=120, cwd=tmp_path)
        assert out.returncode == 2, out
        assert "\x1b" not in out.stderr + out.stdout and "\x07" not in out.stderr
        assert "\\x1b" in out.stderr


# ---------------------------------------------------------------- issue 10: cross-host stop
def test_a_stop_request_file_stops_an_engine_on_another_host(tmp_path):
    import json

    run_dir = tmp_path / "r"
    proc = tuiprune("run", "demo", "--run-dir", str(run_dir), *sets("data.train_size=1500"),
                    cwd=tmp_path)
    wait_for(run_dir, lambda e: e["event"] == "batch", proc)
    info = json.loads((run_dir / "engine.pid").read_text())
    info["host"] = "elsewhere.cluster"  # as a login node sees a compute node's engine
    (run_dir / "engine.pid").write_text(json.dumps(info))
    out = subprocess.run([sys.executable, "-m", "tuiprune", "stop", str(run_dir)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "stop.request" in out.stdout, out
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_STOPPED, out
    end = events(run_dir)[-1]
    assert end["status"] == "stopped" and end["stopped_by"].startswith("stop request from")
    assert not (run_dir / "stop.request").exists()
