"""The dashboard driven with Textual's Pilot against runs written by the real engine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.pidfile import write_pidfile
from helpers.dash import FAILED, REFILL, RSST, last_of, screen_text, settle, wait_for
from tuiprune.dashboard.app import DashboardApp
from tuiprune.dashboard.keys import keys_for
from tuiprune.dashboard.widgets.screens import ConfirmStop, HelpScreen


def replay(run: Path, speed: float = 0, ascii_only: bool = False) -> DashboardApp:
    return DashboardApp(run / "events.jsonl", run, mode="replay", speed=speed,
                        ascii_only=ascii_only)


def watch(run: Path) -> DashboardApp:
    return DashboardApp(run / "events.jsonl", run, mode="watch")


def pct(value, digits=1) -> str:
    return f"{value:.{digits}f}%"


def layer_rows(text: str):
    return [line for line in text.splitlines() if " attn " in line and " mlp " in line]


def assert_rows_match(text: str, layers) -> None:
    rows = layer_rows(text)
    assert len(rows) == len(layers), text
    for row, layer in zip(rows, layers):
        assert row.split()[1] == f"L{layer['block']}"
        assert f"{layer['heads_kept']}/{layer['heads_total']}" in row
        assert pct(layer["attn_sparsity"]) in row and pct(layer["mlp_sparsity"]) in row
        assert f"{layer['neurons_kept']}/{layer['neurons_total']}" in row


def structures(run: Path, kind: str):
    return {e["state"]: e for e in map(json.loads, (run / "events.jsonl").read_text()
                                       .splitlines()) if e["event"] == kind}


async def run_and_read(app: DashboardApp, *keys: str, size=(120, 40)) -> str:
    """The screen once the app has read its log and ``keys`` were pressed."""
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        await pilot.press(*keys)
        return screen_text(app)


async def test_rsst_replay_ends_on_the_final_screen():
    text = await run_and_read(replay(RSST))
    end = last_of(RSST, "run_ended")
    assert "tuiprune  rsst_global" in text and "COMPLETED" in text
    assert f"final val {pct(end['final_val_acc'], 2)}" in text
    assert f"best val {pct(end['best_val_acc'], 2)}" in text
    cut = structures(RSST, "hard_cut")[2]  # the last state has no pruning step, only its cut
    assert f"Sparsity after state 2 (hard cut) · overall {pct(cut['sparsity'], 2)} " \
           f"({cut['zeros']:,} / {cut['total']:,} zeros)" in text
    assert_rows_match(text, cut["layers"])
    for st in structures(RSST, "state_ended").values():
        assert f"[{st['state']} ✓ {pct(st['best_val_acc'])} sp {pct(st['sparsity'])}]" in text


async def test_left_right_select_a_state_and_its_sparsity_rows():
    app = replay(RSST)
    pruned = structures(RSST, "pruned")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("left")
        one = screen_text(app)
        assert "Sparsity target after state 1 (cut at the end of state 2)" in one
        assert_rows_match(one, pruned[1]["layers"])
        await pilot.press("left")
        zero = screen_text(app)
        assert "Sparsity target after state 0" in zero and "RSST λ (state 0)" in zero
        assert_rows_match(zero, pruned[0]["layers"])
        assert layer_rows(zero) != layer_rows(one)
        await pilot.press("left")  # stays on the first state
        assert screen_text(app) == zero
        await pilot.press("right", "right")
        assert "Sparsity after state 2 (hard cut)" in screen_text(app)


async def test_lambda_panel_shows_rsst_lambda_and_says_refill_has_none():
    app = replay(RSST)
    lam = [e for e in map(json.loads, (RSST / "events.jsonl").read_text().splitlines())
           if e["event"] == "lambda" and e["state"] == 1][-1]
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("left")
        text = screen_text(app)
        assert "RSST λ (state 1)" in text
        assert f"λ {lam['value']:.4g}  {lam['step']}/{lam['steps']} updates" in text
        assert f"squeezing {lam['heads']} heads · {lam['neurons']} neurons" in text
        cut = structures(RSST, "hard_cut")[1]
        assert f"hard cut: val {pct(cut['val_acc_before'], 2)} -> " \
               f"{pct(cut['val_acc_after'], 2)}" in text
        await pilot.press("left")
        assert "state 0 has no target yet: λ starts in state 1." in screen_text(app)
    text = await run_and_read(replay(REFILL))
    assert "λ (refill)" in text and "λ does not apply to refill" in text
    assert "updates" not in text


async def test_failed_run_shows_failed_and_its_error_in_the_log_pane():
    text = await run_and_read(replay(FAILED))
    error = last_of(FAILED, "error")
    assert "FAILED" in text and "run failed" in text
    assert "Log · 1 warning · 2 errors" in text  # opened by itself
    assert f"ERROR s{error['state']} e{error['epoch']} b{error['batch']} " \
           f"{error['message'][:60]}" in text
    assert "[1 ✗]" in text


async def test_a_failed_runs_traceback_is_readable(run_copy):
    run = run_copy(FAILED)
    lines = (run / "events.jsonl").read_text().splitlines()
    tb = ("Traceback (most recent call last):\n  File \"engine/runner.py\", line 217, in loop\n"
          "    loss.backward()\nFloatingPointError: loss is nan\n")
    lines = [json.dumps({**e, "traceback": tb}) if e["event"] == "error" else json.dumps(e)
             for e in map(json.loads, lines)]
    (run / "events.jsonl").write_text("\n".join(lines) + "\n")
    text = await run_and_read(replay(run), "slash", *"nan", size=(100, 40))
    for line in tb.splitlines():
        assert line in text


async def test_log_pane_toggles_and_filters():
    app = replay(RSST)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        assert "Log ·" not in screen_text(app)
        await pilot.press("l")
        text = screen_text(app)
        assert "Log · 0 warnings · 0 errors" in text and "run ended: completed" in text
        await pilot.press("slash", *"hard cut")
        text = screen_text(app)
        assert 'filter "hard cut"' in text
        log_lines = [ln for ln in text.splitlines() if " info " in ln]
        assert len(log_lines) == 2 and all("hard cut at the end of state" in ln
                                           for ln in log_lines)
        await pilot.press("enter", "q")  # the filter is kept; keys work again
        await pilot.pause()
        assert app.return_code == 0


async def test_ctrl_c_quits_even_from_the_filter_box():
    app = replay(RSST)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("slash", "q")
        assert app.return_code is None and 'filter "q"' in screen_text(app)  # q is text here
        await pilot.press("ctrl+c")
        await pilot.pause()
        assert app.return_code == 0


async def test_escape_clears_the_filter_and_l_hides_the_pane():
    app = replay(RSST)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("slash", "x", "y", "z")
        assert "nothing matches" in screen_text(app)
        await pilot.press("escape")
        text = screen_text(app)
        assert "nothing matches" not in text and "run ended: completed" in text
        await pilot.press("l")
        assert "Log ·" not in screen_text(app)


async def test_help_lists_every_key_of_the_mode():
    app = replay(RSST)
    async with app.run_test(size=(100, 40)) as pilot:
        await settle(pilot)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        text = screen_text(app)
        for key in keys_for("replay"):
            assert f"{key.label:<16}{key.help}" in text
        assert "stop the run" not in text  # watch only
        await pilot.press("x")
        assert not isinstance(app.screen, HelpScreen)


async def test_replay_keys_pause_change_speed_and_jump_to_the_end():
    app = replay(RSST, speed=1)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: app.ctx.view.states, what="first events")
        app.redraw()
        await pilot.pause()
        assert "replay ×1" in screen_text(app)
        await pilot.press("plus", "plus")
        assert app.ctx.player.speed == 5 and "replay ×5" in screen_text(app)
        await pilot.press("minus")
        assert app.ctx.player.speed == 2
        await pilot.press("space")
        assert app.ctx.player.paused and "replay PAUSED" in screen_text(app)
        await wait_for(pilot, app.ctx.player.parked.is_set, what="the player to park")
        await pilot.pause()  # apply what was handed on before it parked
        seen = app.ctx.view.events
        await pilot.pause()
        assert app.ctx.player.parked.is_set() and app.ctx.view.events == seen
        assert not app.caught_up
        await pilot.press("end")
        await settle(pilot, timeout=5)
        text = screen_text(app)
        assert "COMPLETED" in text and "replay: end " in text


async def test_stop_is_not_offered_in_a_replay():
    app = replay(RSST)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("S")
        assert not isinstance(app.screen, ConfirmStop)
        assert " stop" not in screen_text(app).splitlines()[-1]


@pytest.fixture
def fake_engine(tmp_path):
    """A process standing in for the engine: on SIGTERM it writes a file and exits."""
    marker = tmp_path / "got-sigterm"
    code = ("import signal, sys, time, pathlib\n"
            f"def stop(*a):\n    pathlib.Path({str(marker)!r}).write_text('stop')\n"
            "    sys.exit(0)\n"
            "signal.signal(signal.SIGTERM, stop)\nprint('ready', flush=True)\n"
            "time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    yield proc, marker
    proc.kill()
    proc.wait()


def cut_before(run_copy, src: Path, kind: str) -> Path:
    """A copy of a fixture run whose log stops before the first ``kind`` event."""
    run = run_copy(src, src.name + "-cut")
    lines = (run / "events.jsonl").read_text().splitlines(keepends=True)
    stop = next(i for i, ln in enumerate(lines) if json.loads(ln)["event"] == kind)
    (run / "events.jsonl").write_text("".join(lines[:stop]))
    return run


async def test_stop_asks_for_y_and_then_signals_the_engine(run_copy, fake_engine):
    proc, marker = fake_engine
    run = cut_before(run_copy, RSST, "run_ended")
    write_pidfile(run, proc.pid)
    app = watch(run)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        assert "RUNNING" in screen_text(app)
        await pilot.press("S")
        assert isinstance(app.screen, ConfirmStop) and "Stop the run?" in screen_text(app)
        await pilot.press("n")
        assert not isinstance(app.screen, ConfirmStop) and proc.poll() is None
        assert "stop cancelled" in screen_text(app)
        await pilot.press("S", "y")
        await wait_for(pilot, marker.exists, what="SIGTERM reaching the engine")
        assert "STOPPING" in screen_text(app)
        assert "stop requested" in screen_text(app)


async def test_engine_lost_shows_the_end_of_engine_log(run_copy):
    run = cut_before(run_copy, RSST, "state_ended")
    (run / "events.jsonl").open("a").write('{"v":1,"event":"batch","sta')  # torn by the kill
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    write_pidfile(run, dead.pid)
    (run / "engine.log").write_text("epoch 2 ...\nlast words of the engine\nKilled\n")
    app = watch(run)
    async with app.run_test(size=(100, 40)) as pilot:
        await settle(pilot)
        # the header and the log pane that opens with it can land in different frames
        await wait_for(pilot, lambda: "ENGINE LOST" in screen_text(app)
                       and "last words of the engine" in screen_text(app), timeout=6,
                       what="engine lost and the end of engine.log")
        await wait_for(pilot, lambda: "the log ends in an incomplete line" in screen_text(app),
                       what="the torn last line, reported")
        text = screen_text(app)
        assert f"process {dead.pid} is gone" in text
        assert "last words of the engine" in text and "Killed" in text
        assert "run engine lost" in text and "malformed" not in text


async def test_watch_follows_a_growing_log(run_copy):
    run = cut_before(run_copy, RSST, "state_ended")
    rest = (RSST / "events.jsonl").read_text()[len((run / "events.jsonl").read_text()):]
    write_pidfile(run, os.getpid())  # "alive": this test process stands in for the engine
    app = watch(run)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        text = screen_text(app)
        assert "RUNNING" in text and "[0 ●" in text and "[1 ·]" in text
        with open(run / "events.jsonl", "a") as f:
            cut = rest.index("\n", len(rest) // 2)
            f.write(rest[:cut + 1] + rest[cut + 1:cut + 20])  # ends mid-line
        await wait_for(pilot, lambda: "[0 ✓" in screen_text(app), what="state 0 done")
        with open(run / "events.jsonl", "a") as f:
            f.write(rest[cut + 20:])
        await wait_for(pilot, lambda: "COMPLETED" in screen_text(app), what="run end")
        assert app.ctx.view.malformed == 0 and not app.ctx.view.torn


async def test_a_newer_schema_opens_with_a_warning(run_copy):
    run = run_copy(REFILL)
    lines = (run / "events.jsonl").read_text().splitlines()
    first = json.loads(lines[0])
    lines[0] = json.dumps({**first, "v": 2, "new_thing": {"x": 1}})
    (run / "events.jsonl").write_text("\n".join(lines) + "\ngarbage\n")
    text = await run_and_read(replay(run), "l")
    assert "event log schema v2 is newer than this viewer (v1)" in text
    assert "1 malformed line skipped from the event log (first: not JSON" in text
    assert "Log · 1 warning · 0 errors · 1 malformed line skipped" in text
    assert "COMPLETED" in text


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
async def test_ascii_mode_draws_only_ascii(size):
    app = replay(RSST, ascii_only=True)
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        screens = [screen_text(app)]
        await pilot.press("left", "l")
        screens.append(screen_text(app))
        await pilot.press("question_mark")
        screens.append(screen_text(app))
    for text in screens:
        bad = sorted({ch for ch in text if ord(ch) > 127})
        assert not bad, f"non-ASCII characters on screen: {bad}"
    assert "L0  attn #" in screens[0] or "L0  attn ." in screens[0]
    assert "+-" in screens[0]  # ASCII borders


async def test_a_bare_log_that_stops_early_says_so(tmp_path):
    lines = (RSST / "events.jsonl").read_text().splitlines(keepends=True)
    log = tmp_path / "copied.jsonl"
    log.write_text("".join(lines[:40]))
    text = await run_and_read(DashboardApp(log, None, mode="replay", speed=0), "l")
    assert "RUNNING" in text
    assert "the log ends without run_ended" in text
