"""The real thing in a real terminal: ``tuiprune`` inside tmux, read with ``capture-pane``."""

from __future__ import annotations

import subprocess
import sys

import pytest

from helpers.dash import FAILED, RSST, inject_hostile, last_of
from helpers.tmux import TUIPRUNE

pytestmark = pytest.mark.slow


def final_screen_ready(text: str) -> bool:
    return "COMPLETED" in text and "L5" in text and "replay: end" in text


def check_final_screen(text: str) -> None:
    end = last_of(RSST, "run_ended")
    assert f"final val {end['final_val_acc']:.2f}%" in text
    cut = last_of(RSST, "hard_cut")
    rows = [ln for ln in text.splitlines() if " attn " in ln and " mlp " in ln]
    assert [r.split()[1] for r in rows] == [f"L{layer['block']}" for layer in cut["layers"]]
    for row, layer in zip(rows, cut["layers"]):
        assert f"{layer['heads_kept']}/{layer['heads_total']}" in row
        assert f"{layer['neurons_kept']}/{layer['neurons_total']}" in row


def test_replay_in_a_real_terminal_then_q(term):
    term.start(f"{TUIPRUNE} replay {RSST} --speed 0")
    check_final_screen(term.wait_screen(final_screen_ready))
    term.keys("q")
    assert term.wait_exit() == 0


def test_ascii_replay_in_a_real_terminal(term):
    term.start(f"{TUIPRUNE} replay {RSST} --speed 0 --ascii", size=(80, 24))
    text = term.wait_screen(final_screen_ready)
    assert all(ord(ch) < 128 for ch in text), text
    term.keys("q")
    assert term.wait_exit() == 0


def test_replay_works_with_torch_unimportable(term, tmp_path):
    tried = tmp_path / "import-attempts"
    runner = tmp_path / "blocked.py"
    runner.write_text(
        "import sys\n"
        "class Blocker:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('torch', 'timm', 'torchvision'):\n"
        f"            open({str(tried)!r}, 'a').write(name + '\\n')\n"
        "            raise ImportError(name + ' is blocked in this test')\n"
        "sys.meta_path.insert(0, Blocker())\n"
        "try:\n"
        "    import torch\n"
        "except ImportError:\n"
        "    pass\n"
        "else:\n"
        "    raise SystemExit('the blocker does not work')\n"
        f"open({str(tried)!r}, 'w').close()  # the check above counts as nothing\n"
        "sys.argv = ['tuiprune', 'replay', sys.argv[1], '--speed', '0']\n"
        "from tuiprune.cli import main\n"
        "main()\n")
    term.start(f"{sys.executable} {runner} {RSST}")
    check_final_screen(term.wait_screen(final_screen_ready))
    term.keys("q")
    assert term.wait_exit() == 0
    assert tried.read_text() == ""  # nothing tried to import torch or timm


def test_watch_attaches_and_q_leaves_the_run_going(term, run_copy):
    run = run_copy(RSST)
    lines = (run / "events.jsonl").read_text().splitlines(keepends=True)
    (run / "events.jsonl").write_text("".join(lines[:-1]))  # no run_ended yet
    engine = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        from engine.pidfile import write_pidfile

        write_pidfile(run, engine.pid)
        term.start(f"{TUIPRUNE} watch {run}")
        term.wait_screen(lambda s: "RUNNING" in s and "L5" in s)
        term.keys("S")  # shift+s in a real terminal
        term.wait_screen(lambda s: "Stop the run?" in s)
        term.keys("n")
        term.wait_screen(lambda s: "stop cancelled" in s)
        term.keys("q")
        assert term.wait_exit() == 0
        assert engine.poll() is None
        assert f"Re-attach with: tuiprune watch {run}" in term.screen(joined=True)
    finally:
        engine.kill()
        engine.wait()


def test_a_hostile_log_cannot_set_the_title_or_clear_a_real_terminal(term, run_copy):
    run = inject_hostile(run_copy(FAILED))
    term.start(f"{TUIPRUNE} replay {run} --speed 0", size=(200, 50))
    text = term.wait_screen(lambda s: "FAILED" in s and "run failed" in s)
    assert "\\x1b]0;pwned\\x07" in text  # shown as text: the sequence did not act
    assert "tuiprune" in text.splitlines()[0]  # nothing cleared the screen under it
    assert "pwned" not in term.pane_title()
    term.keys("q")
    assert term.wait_exit() == 0
