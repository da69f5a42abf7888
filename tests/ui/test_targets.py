"""What watch/replay accept, and the one-line messages for what they do not."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from engine.config import DEMO_CONFIG
from engine.errors import UserError
from helpers import synthlog
from helpers.dash import FIXTURE_RUNS, ROOT, RSST
from helpers.sweeps import fixture_sweep
from tuiprune.dashboard import targets
from tuiprune.dashboard.targets import WatchTarget
from tuiprune.replay import replay_main
from tuiprune.watch import watch_main


def test_replay_accepts_a_run_dir_or_its_log():
    assert targets.replay_target(str(RSST)) == (RSST, RSST / "events.jsonl")
    assert targets.replay_target(str(RSST / "events.jsonl")) == (RSST, RSST / "events.jsonl")


def test_a_bare_log_outside_a_run_dir_has_no_run_dir(tmp_path):
    log = synthlog.write(tmp_path / "copy.jsonl", synthlog.events("refill", states=1))
    assert targets.replay_target(str(log)) == (None, log)


@pytest.mark.parametrize("make, message", [
    (lambda d: d / "missing", "no such run directory or event log"),
    (lambda d: d, "is not a run directory (it has no events.jsonl)"),
    (lambda d: synthlog.write(d / "events.jsonl", []), "is empty: there is nothing to replay"),
    (lambda d: _text(d / "notes.txt", "hello\n"), "is not a tuiprune event log (no event "
                                                   "in its first lines; the first: not JSON"),
    (lambda d: _text(d / "torn.jsonl", '{"v":1'), "its first line is incomplete"),
])
def test_replay_rejects_with_a_clear_message(tmp_path, make, message):
    with pytest.raises(UserError, match=re.escape(message)):
        targets.replay_target(str(make(tmp_path)))


def test_replay_names_an_unreadable_log(tmp_path, monkeypatch):
    synthlog.write(tmp_path / "events.jsonl", synthlog.events("refill", states=1))

    def denied(path, *args, **kwargs):  # what a chmod 000 file gives a non-root user
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(targets, "open", denied, raising=False)
    with pytest.raises(UserError, match="cannot read .*events.jsonl \\(Permission denied\\): "
                                        "check its permissions"):
        targets.replay_target(str(tmp_path))


def _text(path, text):
    path.write_text(text)
    return path


def test_replay_rejects_a_negative_speed():
    with pytest.raises(UserError, match="--speed must be 0 or more"):
        replay_main(str(RSST), speed=-1, ascii_only=False)


def test_watch_attaches_to_run_dirs_and_browses_directories_of_runs(tmp_path, monkeypatch):
    run = tmp_path / "runs" / "a-20250101-000000"
    synthlog.write(run / "events.jsonl", synthlog.events("refill", states=1))
    sweep = fixture_sweep(tmp_path / "runs")
    assert targets.watch_target(str(run), []) == WatchTarget(run_dir=run)
    assert targets.watch_target(str(run / "events.jsonl"), []) == WatchTarget(run_dir=run)
    assert targets.watch_target(str(tmp_path / "runs"), []) == \
        WatchTarget(browse=tmp_path / "runs")
    assert targets.watch_target(str(sweep), []) == WatchTarget(browse=sweep)
    assert targets.watch_target(str(sweep), [], compare=True) == \
        WatchTarget(browse=sweep, compare=True)
    monkeypatch.chdir(tmp_path)
    assert targets.watch_target(None, []) == WatchTarget(browse=Path("runs"))


@pytest.mark.parametrize("target, overrides, message", [
    ("nowhere", [], "no such config file or directory: nowhere"),
    (".", [], "is not a run, sweep or output directory, nor a .toml config (directory "
              "without runs)"),
    (str(RSST), ["train.epochs=1"], "--set only applies when starting a run"),
])
def test_watch_rejects_with_a_clear_message(tmp_path, monkeypatch, target, overrides, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match=re.escape(message)):
        targets.watch_target(target, overrides)


def test_watch_without_runs_says_how_to_start_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match="no run under runs.* start one with tuiprune watch"):
        targets.watch_target(None, [])
    (tmp_path / "runs").mkdir()  # there, but empty
    with pytest.raises(UserError, match="no run under runs"):
        targets.watch_target(None, [])


def _sweep_of(tmp_path, n: int) -> Path:
    return fixture_sweep(tmp_path, grid={"run.seed": list(range(n))}, members={})


@pytest.mark.parametrize("make, message", [
    (lambda d: RSST, "is not a sweep directory (it has no sweep.toml): --compare takes a "
                     "directory made by tuiprune sweep"),
    (lambda d: FIXTURE_RUNS, "is not a sweep directory"),
    (lambda d: _sweep_of(d, 1), "has 1 member: comparing needs at least 2 runs"),
    (lambda d: _sweep_of(d, 7), "has 7 members and the compare screen shows at most 6: "
                                "open tuiprune watch"),
    (lambda d: DEMO_CONFIG, "--compare takes a sweep directory (made by tuiprune sweep), "
                            "not a config"),
])
def test_compare_needs_a_sweep_of_2_to_6_runs(tmp_path, make, message):
    with pytest.raises(UserError, match=re.escape(message)):
        targets.watch_target(str(make(tmp_path)), [], compare=True)


@pytest.mark.parametrize("members", [1, 0])
def test_cli_compare_on_bad_input_is_one_line_and_exit_2(tmp_path, members):
    """Not a sweep (a run directory), or a sweep of fewer than 2 runs: before any terminal
    is needed."""
    target = _sweep_of(tmp_path, members) if members else RSST
    proc = subprocess.run([sys.executable, "-m", "tuiprune", "watch", str(target),
                           "--compare"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {target} ")
    assert ("is not a sweep directory" if not members else "comparing needs at least 2") \
        in lines[0]


def test_watch_needs_a_terminal(monkeypatch):
    monkeypatch.setattr(sys.stdin, "isatty", lambda: False)
    with pytest.raises(UserError, match="needs an interactive terminal"):
        watch_main(str(RSST), [], ascii_only=False)


def test_cli_prints_one_line_and_exits_2(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "tuiprune", "replay", str(tmp_path / "nope")],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: no such run directory or event log: {tmp_path / 'nope'}"]


def test_watch_resolves_a_config_or_the_word_demo_and_starts_nothing(tmp_path, monkeypatch):
    config = tmp_path / "my.toml"
    config.write_text("")
    monkeypatch.chdir(tmp_path)
    assert targets.watch_target(str(config), ["train.epochs=1"]) == \
        WatchTarget(config=config, overrides=("train.epochs=1",))
    assert targets.watch_target("demo", []) == WatchTarget(config=DEMO_CONFIG)
    assert list(tmp_path.iterdir()) == [config]  # no run directory was made
