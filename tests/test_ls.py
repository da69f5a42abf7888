"""The run table (``tuiprune.runlist`` / ``runrow``) and ``tuiprune ls``: every row checked
against the whole-log fold (``engine.runlog.read_log``), the head-and-tail reader on logs whose
last state ended far from the end, live refresh, liveness, config diffs, and the command."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest


from helpers import synthlog  # noqa: E402
from engine.config import dumps, load_config  # noqa: E402
from engine.pidfile import write_pidfile  # noqa: E402
from engine.runlog import read_log  # noqa: E402
from engine.sweepdir import write_sweep  # noqa: E402
from tuiprune.runlist import differing_keys, list_runs  # noqa: E402
from tuiprune.runrow import TAIL_BLOCK, read_row, refresh_row  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "runs"


def expected(run_dir: Path) -> tuple:
    """The columns as the whole-log fold gives them (status None: no run_ended at the end)."""
    log = read_log(run_dir / "events.jsonl")
    return (log.status, log.states_done, log.states_total, log.best_val_acc,
            log.final_sparsity, log.images_per_s, log.started_time, log.method)


def got(row) -> tuple:
    status = row.status if row.status in ("completed", "stopped", "failed") else None
    return (status, row.states_done, row.states_total, row.best_val_acc, row.final_sparsity,
            row.images_per_s, row.started, row.method)


def copy_fixtures(tmp_path: Path) -> Path:
    out = tmp_path / "runs"
    for src in FIXTURES.iterdir():
        shutil.copytree(src, out / src.name, ignore=shutil.ignore_patterns("checkpoints"))
    return out


def tuiprune(*args, cwd: Path, env: dict = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), **(env or {}))
    return subprocess.run([sys.executable, "-m", "tuiprune", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_fixture_rows_agree_with_the_whole_log_fold(tmp_path):
    out = copy_fixtures(tmp_path)
    rows = {r.name: r for r in list_runs(out)}
    assert set(rows) == {p.name for p in FIXTURES.iterdir()}
    for name, row in rows.items():
        assert got(row) == expected(out / name), name
    assert {n: r.status for n, r in rows.items()} == {
        "refill_global": "completed", "rsst_global": "completed",
        "rsst_layerwise": "completed", "failed_nan": "failed", "lost_killed": "lost"}
    assert "loss became nan" in rows["failed_nan"].message
    assert rows["refill_global"].states_done == 3 and rows["refill_global"].states_total == 3
    # oldest first: the fixtures were made in this order
    order = [r.name for r in list_runs(out)]
    assert order == sorted(order, key=lambda n: rows[n].started)


@pytest.mark.parametrize("shape", [
    dict(method="rsst"), dict(method="refill"),
    dict(method="rsst", crash_at_state=1), dict(method="refill", crash_at_state=0),
    dict(method="rsst", fail_at_state=1), dict(method="refill", crash_at_state=2),
])
def test_head_and_tail_reader_on_long_logs(tmp_path, shape):
    """The last state_ended lies many 64 KiB blocks before the end (or there is none)."""
    run_dir = tmp_path / "run"
    evs = list(synthlog.events(states=3, epochs=3, batches=400, **shape))
    text = synthlog.write(run_dir / "events.jsonl", evs).read_text()
    assert len(text) > 2 * TAIL_BLOCK
    if shape.get("crash_at_state", 0) >= 1:
        assert len(text) - text.rfind('"event":"state_ended"') > 2 * TAIL_BLOCK
    row = read_row(run_dir)
    assert got(row) == expected(run_dir)
    if "crash_at_state" in shape:
        assert row.status == "lost" and row.last_event == evs[-1]["time"]


def test_resume_after_run_ended_torn_tail_and_garbage(tmp_path):
    """A stopped run resumed (its run_ended no longer describes it), malformed lines in the
    window, and a torn last line that must not be read."""
    run_dir = tmp_path / "run"
    evs = list(synthlog.events(states=3, epochs=2, batches=50, crash_at_state=1))
    stop_t = evs[-1]["time"] + 1
    seq = evs[-1]["seq"] + 1
    evs.append({"v": 1, "event": "run_ended", "time": stop_t, "seq": seq, "status": "stopped",
                "message": "stopped by request", "sparsity": 12.5})
    stopped = synthlog.write(run_dir / "events.jsonl", evs)
    row = read_row(run_dir)
    assert row.status == "stopped" and row.final_sparsity == 12.5
    assert got(row) == expected(run_dir)
    with open(stopped, "a") as f:
        f.write(synthlog.line({"v": 1, "event": "resumed", "time": stop_t + 5, "seq": seq + 1,
                               "from_state": 1, "from_epoch": 1, "from_batch": 0}))
        f.write("not json at all\n")
        f.write(synthlog.line({"v": 1, "event": "epoch_ended", "time": stop_t + 9,
                               "seq": seq + 2, "state": 1, "epoch": 1, "val_acc": 99.5,
                               "images_per_s": 777.0}))
        f.write('{"v":1,"event":"state_ended","time":')  # torn: the writer is mid-line
    row = read_row(run_dir)
    assert row.status == "lost"  # no engine.pid: nobody runs it
    assert got(row) == expected(run_dir)
    assert row.best_val_acc == 99.5 and row.images_per_s == 777.0


def test_refresh_reads_only_what_was_appended(tmp_path):
    """Grow a log in pieces cut at arbitrary bytes; after each, the refreshed row equals a
    fresh read and the whole-log fold."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    text = "".join(synthlog.line(e) for e in synthlog.events(states=3, epochs=2, batches=30))
    data = text.encode()
    path = run_dir / "events.jsonl"
    path.write_bytes(b"")
    row = read_row(run_dir)
    cuts = list(range(0, len(data), len(data) // 23)) + [len(data)]
    for start, end in zip(cuts, cuts[1:]):
        with open(path, "ab") as f:
            f.write(data[start:end])
        refresh_row(row)
        fresh = read_row(run_dir)
        assert got(row) == got(fresh) == expected(run_dir), end
        assert row.fold.offset == data.rfind(b"\n", 0, end) + 1
    assert row.status == "completed"
    # the log replaced by a shorter one: read again from the start
    path.write_text("".join(synthlog.line(e) for e in synthlog.events(states=1, epochs=1,
                                                                      batches=5)))
    assert got(refresh_row(row)) == expected(run_dir)


def test_live_and_lost_follow_the_engine_process(tmp_path):
    run_dir = tmp_path / "run"
    synthlog.write(run_dir / "events.jsonl", synthlog.events(states=2, crash_at_state=1))
    write_pidfile(run_dir, os.getpid())  # a process that is certainly alive: this one
    row = read_row(run_dir)
    assert row.status == "live"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    write_pidfile(run_dir, dead.pid)
    assert refresh_row(row).status == "lost" and "no run_ended" in row.message
    # recorded on another host: live while the log moved recently
    (run_dir / "engine.pid").write_text(json.dumps({"pid": 1, "host": "elsewhere.invalid"}))
    assert refresh_row(row).status == "lost"  # the synthetic log's clock is in 2025
    with open(run_dir / "events.jsonl", "a") as f:
        f.write(synthlog.line({"v": 1, "event": "heartbeat", "time": time.time(), "seq": 10**6,
                               "phase": "train"}))
    assert refresh_row(row).status == "live" and "elsewhere.invalid" in row.message


def make_config_run(out: Path, name: str, *sets: str) -> Path:
    run_dir = out / name
    run_dir.mkdir(parents=True)
    cfg = load_config("demo", [f"run.name='{name}'", *sets])
    (run_dir / "config.toml").write_text(dumps(cfg))
    return run_dir


def test_values_are_the_config_keys_that_differ(tmp_path):
    out = tmp_path / "runs"
    make_config_run(out, "a")
    make_config_run(out, "b", "prune.method='refill'")
    make_config_run(out, "c", "train.lr=0.5", "prune.method='refill'")
    rows = {r.name: r for r in list_runs(out)}
    assert differing_keys(rows.values()) == ["train.lr", "prune.method"]
    assert rows["a"].values == {"train.lr": 0.002, "prune.method": "rsst"}
    assert rows["c"].values == {"train.lr": 0.5, "prune.method": "refill"}
    assert all(r.status == "lost" for r in rows.values())  # a config, no log, no engine


def test_sweep_members_pending_and_started(tmp_path):
    out = tmp_path / "runs"
    base = load_config("demo", ["run.output_dir='" + str(out) + "'"])
    grid = {"prune.method": ["refill", "rsst"], "prune.sorting": ["global", "layer-wise"]}
    sweep = write_sweep(out / "demo-sweep-1", "demo", grid, base, created=1.0)
    shutil.copytree(FIXTURES / "rsst_global", sweep.members[2].run_dir,
                    ignore=shutil.ignore_patterns("checkpoints"))
    rows = list_runs(sweep.path)
    assert [r.name for r in rows] == ["refill_global", "refill_layer-wise", "rsst_global",
                                      "rsst_layer-wise"]
    assert [r.status for r in rows] == ["pending", "pending", "completed", "pending"]
    assert [r.values for r in rows] == [
        {"prune.method": m, "prune.sorting": s} for m in grid["prune.method"]
        for s in grid["prune.sorting"]]
    assert [(r.method, r.sorting) for r in rows] == [
        ("refill", "global"), ("refill", "layer-wise"), ("rsst", "global"),
        ("rsst", "layer-wise")]
    # the output directory lists the sweep's members beside its runs
    shutil.copytree(FIXTURES / "refill_global", out / "plain",
                    ignore=shutil.ignore_patterns("checkpoints"))
    listed = list_runs(out)
    # the sweep was created (1970) before the plain run started (2026)
    assert [(r.sweep, r.name) for r in listed] == [("demo-sweep-1", r.name) for r in rows] + [
        (None, "plain")]


def test_ls_json_plain_and_hostile_names(tmp_path):
    out = copy_fixtures(tmp_path)
    shutil.copytree(out / "refill_global", out / "evil\x1b]0;owned\x07name")
    done = tuiprune("ls", str(out), "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    rows = {r["name"]: r for r in json.loads(done.stdout)}
    assert rows["failed_nan"]["status"] == "failed"
    assert rows["rsst_layerwise"]["best_val_acc"] == read_log(
        out / "rsst_layerwise" / "events.jsonl").best_val_acc
    plain = tuiprune("ls", str(out), cwd=tmp_path)  # redirected: plain columns
    assert plain.returncode == 0
    assert "\x1b" not in plain.stdout and "\x07" not in plain.stdout
    assert "evil\\x1b]0;owned\\x07name" in plain.stdout
    assert not set("│─┃━╭╰") & set(plain.stdout)
    header = plain.stdout.splitlines()[0].split()
    assert header[:3] == ["name", "values", "method"] and header[-1] == "started"
    assert "6 runs: 4 completed, 1 failed, 1 lost" in plain.stdout
    assert "failed_nan failed: loss became nan" in plain.stdout


def test_ls_bad_and_empty_directories(tmp_path):
    missing = tuiprune("ls", str(tmp_path / "nope"), cwd=tmp_path)
    assert missing.returncode == 2
    assert missing.stderr.startswith("error: ") and len(missing.stderr.splitlines()) == 1
    assert "does not exist" in missing.stderr
    (tmp_path / "afile").write_text("x")
    assert tuiprune("ls", str(tmp_path / "afile"), cwd=tmp_path).returncode == 2
    default = tuiprune("ls", cwd=tmp_path)  # no runs/ here
    assert default.returncode == 0 and "no runs in runs" in default.stdout


def test_narrow_terminals_leave_out_the_least_needed_columns():
    from tuiprune.ls_command import COLUMNS, fitting_columns

    widths = {"name": 10, "values": 30, "method": 6, "sorting": 10, "criterion": 9,
              "status": 9, "state": 5, "best val": 8, "sparsity": 8, "img/s": 5, "started": 19}
    # all 11: 89 cells of fixed columns + 16 of values (they fold) + 3 per column = 138
    assert fitting_columns(widths, 138) == list(COLUMNS)
    without = lambda *cols: [c for c in COLUMNS if c not in cols]  # noqa: E731
    assert fitting_columns(widths, 137) == without("criterion")           # needs 126
    assert fitting_columns(widths, 125) == without("criterion", "started")  # needs 104
    assert fitting_columns(widths, 95) == without("criterion", "started", "img/s", "values")
    assert fitting_columns(widths, 50) == ["name", "status", "state", "best val", "sparsity"]


def test_a_list_value_stays_one_part_where_the_compare_screen_flows_them():
    from rich.text import Text

    from tuiprune.dashboard.compare.panels import flow
    from tuiprune.ls_command import value_parts, values_text

    values = {"prune.head_ratio": [0.3, 0.2], "prune.method": "rsst", "rsst.method": "x"}
    parts = value_parts(values)
    assert parts == ["head_ratio=[0.3, 0.2]", "prune.method=rsst", "rsst.method=x"]
    assert values_text(values) == "head_ratio=[0.3, 0.2] prune.method=rsst rsst.method=x"
    lines = [line.plain.strip() for line in flow([Text(p) for p in parts], 24)]
    assert "head_ratio=[0.3, 0.2]" in lines
