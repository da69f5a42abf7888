"""``tuiprune sweep``: the grid checked by the config schema, real sweeps of a tiny ViT run
as real ``tuiprune run`` processes (in turn and two at once), kill -9 and ``--resume``,
``tuiprune stop SWEEP_DIR``, and every bad input of issue 12."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import List

import pytest

from engine.config import load_config
from engine.pidfile import engine_alive, read_pidfile
from engine.sweepdir import SWEEP_FILE, SWEEP_LOG, read_sweep
from helpers.runs import TINY, epoch_counts, events, of
from tuiprune.sweep_plan import parse_grid_args, plan_sweep, split_values
from tuiprune.sweep_slots import Slots

ROOT = Path(__file__).resolve().parent.parent
# TINY, shorter still: 2 states of 1 epoch on 100 images
QUICK = [*TINY, "prune.states=2", "train.epochs=1", "data.train_size=100",
         "data.test_size=20"]
GRID = {"prune.method": ["refill", "rsst"], "prune.sorting": ["global", "layer-wise"]}


def tuiprune(*args: str, cwd: Path, env: dict = None, timeout: float = 300):
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1", **(env or {}))
    return subprocess.run([sys.executable, "-m", "tuiprune", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def sets(*extra: str) -> List[str]:
    return [a for s in (*QUICK, *extra) for a in ("--set", s)]


def the_sweep(out: Path) -> Path:
    found = [p for p in out.iterdir() if (p / SWEEP_FILE).is_file()]
    assert len(found) == 1, found
    return found[0]


def wait_until(predicate, timeout: float = 240, what: str = "") -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def has_event(run_dir: Path, kind: str) -> bool:
    path = run_dir / "events.jsonl"
    return path.exists() and any(e["event"] == kind for e in events(run_dir))


def ls_rows(path: Path, cwd: Path) -> dict:
    done = tuiprune("ls", str(path), "--json", cwd=cwd)
    assert done.returncode == 0, done.stderr
    return {r["name"]: r for r in json.loads(done.stdout)}


def flat_config(run_dir: Path) -> dict:
    import tomllib

    cfg = tomllib.loads((run_dir / "config.toml").read_text())
    return {f"{s}.{k}": v for s, table in cfg.items() for k, v in table.items()}


# ----------------------------------------------------------------------------- real sweeps
@pytest.mark.slow
def test_demo_sweep_two_at_once_completes_every_member(tmp_path):
    out = tmp_path / "out"
    done = tuiprune("sweep", "demo", "--foreground", "--parallel", "2",
                    *sets(f"run.output_dir='{out}'"), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    sweep_dir = the_sweep(out)
    assert sweep_dir.name.startswith("demo-sweep-")
    sweep = read_sweep(sweep_dir)
    assert sweep.grid == GRID and sweep.parallel == 2
    names = ["refill_global", "refill_layer-wise", "rsst_global", "rsst_layer-wise"]
    assert [m.name for m in sweep.members] == names

    # the members' configs differ exactly by the grid, each by its own values
    configs = {n: flat_config(sweep_dir / n) for n in names}
    keys = set().union(*configs.values())
    differ = {k for k in keys if len({json.dumps(c.get(k)) for c in configs.values()}) > 1}
    assert differ == set(GRID)
    for m in sweep.members:
        assert {k: configs[m.name][k] for k in GRID} == m.values
        assert m.values == {"prune.method": m.name.split("_")[0],
                            "prune.sorting": m.name.split("_")[1]}

    rows = ls_rows(sweep_dir, tmp_path)
    assert {n: r["status"] for n, r in rows.items()} == dict.fromkeys(names, "completed")
    assert {n: r["values"] for n, r in rows.items()} == {m.name: m.values
                                                           for m in sweep.members}
    assert all(r["states_done"] == r["states_total"] == 2 for r in rows.values())

    # two at once, never three: the driver's own record of starting and reaping processes
    # (the members' event spans need not overlap: a tiny member can end before the other's
    # torch import is done, so they only bound it from above)
    in_flight, most = 0, 0
    for line in done.stdout.splitlines():
        if any(f"{n}: started" in line for n in names):
            in_flight += 1
        elif any(f"{n}: completed" in line for n in names):
            in_flight -= 1
        most = max(most, in_flight)
    assert most == 2, done.stdout
    spans = []
    for n in names:
        evs = events(sweep_dir / n)
        assert evs[-1]["event"] == "run_ended" and evs[-1]["status"] == "completed"
        spans.append((evs[0]["time"], evs[-1]["time"]))
    assert max(sum(1 for a, b in spans if a <= t <= b) for t, _ in spans) <= 2
    assert "OMP_NUM_THREADS=1" in done.stdout  # 2 cores split between 2 engines
    assert "4 runs: 4 completed" in done.stdout


@pytest.mark.slow
def test_kill_9_a_member_then_resume_finishes_it(tmp_path):
    out = tmp_path / "out"
    started = tuiprune("sweep", "demo", "--grid", "prune.sorting=global",
                       *sets(f"run.output_dir='{out}'", "train.epochs=2"), cwd=tmp_path)
    assert started.returncode == 0, started.stderr  # detached: returns at once
    sweep_dir = the_sweep(out)
    assert f"tuiprune stop {sweep_dir}" in started.stdout
    victim = sweep_dir / "refill_global"
    wait_until(lambda: has_event(victim, "epoch_ended"), what="an epoch of refill_global")
    os.kill(read_pidfile(victim)["pid"], signal.SIGKILL)
    wait_until(lambda: not engine_alive(sweep_dir), what="the driver to end")

    log = (sweep_dir / SWEEP_LOG).read_text()
    assert "refill_global: lost" in log and "SIGKILL" in log
    rows = ls_rows(sweep_dir, tmp_path)
    assert rows["refill_global"]["status"] == "lost"
    assert rows["rsst_global"]["status"] == "completed"  # a lost member stops no other
    # one after another by default: the second began after the first was killed
    killed_at = events(victim)[-1]["time"]
    assert events(sweep_dir / "rsst_global")[0]["time"] > killed_at

    resumed = tuiprune("sweep", "--resume", str(sweep_dir), "--foreground", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "rsst_global: completed before, skipped" in resumed.stdout
    assert "refill_global: resuming" in resumed.stdout
    rows = ls_rows(sweep_dir, tmp_path)
    assert {r["status"] for r in rows.values()} == {"completed"}
    evs = events(victim)
    assert len(of(evs, "resumed")) == 1
    assert epoch_counts(evs) == {(s, e): 1 for s in range(2) for e in range(2)}


@pytest.mark.slow
def test_stop_sweep_dir_stops_every_member(tmp_path):
    out = tmp_path / "out"
    started = tuiprune("sweep", "demo", "--grid", "prune.sorting=global", "--parallel", "2",
                       *sets(f"run.output_dir='{out}'", "train.epochs=200"), cwd=tmp_path)
    assert started.returncode == 0, started.stderr
    sweep_dir = the_sweep(out)
    members = [sweep_dir / "refill_global", sweep_dir / "rsst_global"]
    wait_until(lambda: all(has_event(m, "epoch_started") for m in members),
               what="both members to train")
    stop = tuiprune("stop", str(sweep_dir), cwd=tmp_path)
    assert stop.returncode == 0, stop.stderr
    assert "stop requested" in stop.stdout
    wait_until(lambda: not engine_alive(sweep_dir), timeout=120, what="the driver to end")
    rows = ls_rows(sweep_dir, tmp_path)
    assert {n: r["status"] for n, r in rows.items()} == {"refill_global": "stopped",
                                                           "rsst_global": "stopped"}
    for m in members:
        assert events(m)[-1]["event"] == "run_ended"
        assert (m / "checkpoints" / "latest.pt").is_file()  # resumable
    assert "sweep stopped (SIGTERM)" in (sweep_dir / SWEEP_LOG).read_text()
    again = tuiprune("stop", str(sweep_dir), cwd=tmp_path)
    assert again.returncode == 2 and "nothing of the sweep" in again.stderr


@pytest.mark.slow
def test_a_new_driver_adopts_a_running_member_and_stops_it(tmp_path):
    """The driver is killed (kill -9); its running member goes on. ``sweep --resume`` waits for
    that member instead of starting a second writer, and passes a stop on to it."""
    out = tmp_path / "out"
    started = tuiprune("sweep", "demo", "--grid", "prune.sorting=global",
                       *sets(f"run.output_dir='{out}'", "train.epochs=200"), cwd=tmp_path)
    assert started.returncode == 0, started.stderr
    sweep_dir = the_sweep(out)
    member = sweep_dir / "refill_global"
    wait_until(lambda: has_event(member, "epoch_started"), what="the first member to train")
    os.kill(read_pidfile(sweep_dir)["pid"], signal.SIGKILL)
    wait_until(lambda: not engine_alive(sweep_dir), what="the driver to die")
    assert ls_rows(sweep_dir, tmp_path)["refill_global"]["status"] == "live"

    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    driver = subprocess.Popen([sys.executable, "-m", "tuiprune", "sweep", "--resume",
                               str(sweep_dir), "--foreground"], cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_until(lambda: engine_alive(sweep_dir), what="the new driver")
        assert tuiprune("stop", str(sweep_dir), cwd=tmp_path).returncode == 0
        output, _ = driver.communicate(timeout=120)
    finally:
        driver.kill()
    assert driver.returncode == 3, output
    assert "refill_global: already running" in output
    rows = ls_rows(sweep_dir, tmp_path)
    assert rows["refill_global"]["status"] == "stopped"
    assert rows["rsst_global"]["status"] == "pending"  # the stop came before it started
    assert len(of(events(member), "run_started")) == 1  # never a second writer


# ----------------------------------------------------------------------------- bad input
def _values(n: int, start: int = 0) -> str:
    return ",".join(str(start + i) for i in range(n))


BAD = [
    (["demo", "--grid", "prune.sortng=global"], "did you mean 'prune.sorting'"),
    (["demo", "--grid", "train.epochs=2,three"], "train.epochs must be an integer"),
    (["demo", "--grid", "prune.head_ratio=0.3,1.5"], "prune.head_ratio must be a fraction"),
    (["configs/demo.toml"], "empty grid"),
    (["demo", "--grid", "prune.method="], "empty value"),
    (["demo", "--grid", f"run.seed={_values(17)}", "--grid",
      f"data.train_size={_values(17, 100)}"], "more than 256 needs --yes"),
    (["demo", "--set", "prune.method='rsst'"], "both set with --set and varied by the grid"),
    (["--resume", "configs"], "is not a sweep directory"),
    (["--resume", "tests/fixtures/runs/rsst_global"], "is not a sweep directory"),
    (["demo", "--parallel", "0"], "--parallel"),
]


@pytest.mark.parametrize("args,message", BAD, ids=[str(i) for i in range(len(BAD))])
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, message):
    out = tmp_path / "out"
    args = [str(ROOT / a) if a.startswith(("configs", "tests")) else a for a in args]
    if "--resume" not in args:
        args += ["--set", f"run.output_dir='{out}'"]
    done = tuiprune("sweep", *args, cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.startswith("error: ") and len(done.stderr.splitlines()) == 1
    assert message in done.stderr
    assert not out.exists()  # nothing was started or written


def test_parallel_beyond_the_gpus_names_a_number(tmp_path):
    """On this machine's GPUs (CUDA_VISIBLE_DEVICES honoured): one more member at once than
    there are GPUs is refused, naming how many fit; without a GPU, 'cuda' is refused."""
    import torch

    gpus = torch.cuda.device_count()
    out = tmp_path / "out"
    args = ["sweep", "demo", "--set", f"run.output_dir='{out}'", "--set", "run.device='cuda'",
            "--parallel", str(gpus + 1)]
    done = tuiprune(*args, cwd=tmp_path)
    assert done.returncode == 2 and len(done.stderr.splitlines()) == 1
    if gpus:
        assert f"use --parallel {gpus}" in done.stderr
    else:
        assert "no CUDA GPU is visible" in done.stderr
    hidden = tuiprune(*args[:-1], "2", cwd=tmp_path, env={"CUDA_VISIBLE_DEVICES": ""})
    assert hidden.returncode == 2 and "no CUDA GPU is visible" in hidden.stderr
    assert not out.exists()


def test_dry_run_lists_the_members_and_writes_nothing(tmp_path):
    out = tmp_path / "out"
    done = tuiprune("sweep", "demo", "--dry-run", "--set", f"run.output_dir='{out}'",
                    cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    for name in ("refill_global", "refill_layer-wise", "rsst_global", "rsst_layer-wise"):
        assert name in done.stdout
    assert "4 runs: prune.method (2) × prune.sorting (2)" in done.stdout
    assert not out.exists()
    big = tuiprune("sweep", "demo", "--dry-run", "--yes", "--grid", f"run.seed={_values(17)}",
                   "--grid", f"data.train_size={_values(17, 100)}", "--set",
                   f"run.output_dir='{out}'", cwd=tmp_path)
    assert big.returncode == 0 and "1,156 runs" in big.stdout, big.stderr


# ----------------------------------------------------------------------------- the plan
def test_seed_grid_is_the_four_seed_configs():
    plan = plan_sweep(ROOT / "configs" / "seed_grid.toml", [], [])
    assert plan.grid == GRID
    files = {("refill", "global"): "seed_refill_global", ("refill", "layer-wise"):
             "seed_refill_layerwise", ("rsst", "global"): "seed_rsst_global",
             ("rsst", "layer-wise"): "seed_rsst_layerwise"}
    for cfg in plan.members:
        key = (cfg["prune"]["method"], cfg["prune"]["sorting"])
        seed = load_config(ROOT / "configs" / f"{files[key]}.toml")
        seed["run"]["name"] = cfg["run"]["name"]  # "seed" for all four members
        assert cfg == seed, files[key]


def test_grid_values_parse_like_set_values():
    assert split_values("a,[1,2],{x=1, y=2},'p,q',\"r,s\"") == [
        "a", "[1,2]", "{x=1, y=2}", "'p,q'", '"r,s"']
    grid = parse_grid_args(["prune.head_ratio=0.3,[0.3,0.5]", "prune.method=refill,rsst",
                            "train.epochs=1,2", "train.amp=true,'bf16'"])
    assert grid == {"prune.head_ratio": [0.3, [0.3, 0.5]], "prune.method": ["refill", "rsst"],
                    "train.epochs": [1, 2], "train.amp": [True, "bf16"]}


def test_a_file_grid_in_either_spelling_and_command_line_replacing_it(tmp_path):
    base = (ROOT / "engine" / "demo.toml").read_text()
    quoted = tmp_path / "quoted.toml"
    quoted.write_text(base + '\n[sweep.grid]\n"prune.method" = ["refill", "rsst"]\n'
                      '"train.lr" = [0.001, 0.002]\n')
    nested = tmp_path / "nested.toml"
    nested.write_text(base + '\n[sweep.grid]\nprune.method = ["refill", "rsst"]\n'
                      'train.lr = [0.001, 0.002]\n')
    assert plan_sweep(quoted, [], []).grid == plan_sweep(nested, [], []).grid == {
        "prune.method": ["refill", "rsst"], "train.lr": [0.001, 0.002]}
    plan = plan_sweep(quoted, [], ["train.lr=0.1", "prune.sorting=global,layer-wise"])
    assert plan.grid == {"prune.method": ["refill", "rsst"], "train.lr": [0.1],
                         "prune.sorting": ["global", "layer-wise"]}
    assert [(c["prune"]["method"], c["prune"]["sorting"], c["train"]["lr"])
            for c in plan.members] == [(m, s, 0.1) for m in ("refill", "rsst")
                                       for s in ("global", "layer-wise")]


def test_slots_split_the_cores_and_give_each_a_gpu():
    slots = Slots(3, ["4", "5", "6"], 2)
    assert [slots.env(i)["CUDA_VISIBLE_DEVICES"] for i in range(3)] == ["4", "5", "6"]
    assert slots.env(1)["OMP_NUM_THREADS"] == "2"
    assert Slots().env(0) == {}


def test_a_sweep_file_naming_a_member_outside_the_sweep_is_refused(tmp_path):
    sweep_dir = tmp_path / "evil-sweep"
    sweep_dir.mkdir()
    (sweep_dir / SWEEP_FILE).write_text(
        '[sweep]\nname = "evil"\n[grid]\n"prune.method" = ["rsst"]\n[base.run]\nname = "x"\n'
        '[members."../../outside"]\n"prune.method" = "rsst"\n')
    for args in (["ls", str(sweep_dir)], ["sweep", "--resume", str(sweep_dir), "--foreground"]):
        done = tuiprune(*args, cwd=tmp_path)
        assert done.returncode == 2 and len(done.stderr.splitlines()) == 1, done.stderr
        assert "not a plain directory name" in done.stderr
    assert not (tmp_path / "outside").exists()
