"""What watch/replay accept, and the one-line messages for what they do not."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from engine.config import DEMO_CONFIG
from engine.errors import UserError
from helpers import synthlog
from helpers.dash import ROOT, RSST
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


def test_watch_attaches_to_run_dirs_and_the_newest_run(tmp_path, monkeypatch):
    old = tmp_path / "runs" / "a-20250101-000000"
    new = tmp_path / "runs" / "b-20250102-000000"
    for d, t in ((old, 1000), (new, 2000)):
        synthlog.write(d / "events.jsonl", synthlog.events("refill", states=1))
        os.utime(d, (t, t))
    assert targets.watch_target(str(old), []) == WatchTarget(run_dir=old)
    assert targets.watch_target(str(old / "events.jsonl"), []) == WatchTarget(run_dir=old)
    monkeypatch.chdir(tmp_path)
    assert targets.watch_target(None, []).run_dir.resolve() == new.resolve()


@pytest.mark.parametrize("target, overrides, message", [
    ("nowhere", [], "no such config file or run directory"),
    (".", [], "is not a run directory or a .toml config"),
    (str(RSST), ["train.epochs=1"], "--set only applies when starting a run"),
])
def test_watch_rejects_with_a_clear_message(tmp_path, monkeypatch, target, overrides, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match=message):
        targets.watch_target(target, overrides)


def test_watch_without_runs_says_how_to_start_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match="no run under runs.* start one with tuiprune watch"):
        targets.watch_target(None, [])


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
