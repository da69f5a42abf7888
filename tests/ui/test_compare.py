"""The compare screen: what each panel shows, checked against the raw logs of the engine's
fixture runs; it follows live runs (and stays still while only batches stream in); each run
keeps its colour and letter everywhere; Esc goes back to the list."""

from __future__ import annotations

import json
import os
import sys

import pytest
from rich.text import Text

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - 3.10
    import tomli as tomllib

from engine.logread import iter_events
from engine.pidfile import write_pidfile
from helpers.browse import compared, listed
from helpers.dash import FIXTURE_RUNS, REFILL, RSST, events_of, screen_text, wait_for
from helpers.sweeps import copy_run, fixture_sweep
from tuiprune.dashboard.browser.app import BrowserApp
from tuiprune.dashboard.compare.model import (BEST, FINAL, ComparedRun, epoch_points,
                                              layer_table, sparsity_points)
from tuiprune.dashboard.compare.screen import CompareScreen
from tuiprune.dashboard.glyphs import ASCII, UNICODE
from tuiprune.palette import RUN_COLOURS

LAYERWISE = FIXTURE_RUNS / "rsst_layerwise"
PANELS = ("#compare-header", "#acc-sparsity", "#acc-epochs", "#layer-rows", "#run-lines")


def folded(run_dir, slot=0) -> ComparedRun:
    run = ComparedRun(slot, run_dir, run_dir.name)
    run.reducer.apply_all(iter_events(run_dir / "events.jsonl"))
    return run


def of(run_dir, kind):
    return [e for e in events_of(run_dir) if e["event"] == kind]


@pytest.mark.parametrize("run_dir", [REFILL, RSST, LAYERWISE])
def test_accuracy_vs_sparsity_has_one_point_per_ended_state(run_dir):
    view = folded(run_dir).view
    ended = of(run_dir, "state_ended")
    cuts = {e["state"]: e for e in of(run_dir, "hard_cut")}
    assert sparsity_points(view, BEST) == [(e["sparsity"], e["best_val_acc"]) for e in ended]
    assert sparsity_points(view, FINAL) == [
        (e["sparsity"], cuts[e["state"]]["val_acc_after"] if e["state"] in cuts
         else e["final_val_acc"]) for e in ended]
    epochs = of(run_dir, "run_started")[0]["epochs"]
    assert epoch_points(view) == [(e["state"] * epochs + e["epoch"] + 1, e["val_acc"])
                                  for e in of(run_dir, "epoch_ended")]


def test_per_layer_table_lines_up_refill_steps_and_rsst_cuts():
    """By hand: Refill's step k is in force from state k + 1; RSST's target of step k is cut
    at the end of state k + 1; state 0 is dense."""
    runs = [folded(REFILL, 0), folded(RSST, 1), folded(LAYERWISE, 2)]
    refill_steps = {e["state"]: e for e in of(REFILL, "pruned")}
    cuts = {r: {e["state"]: e for e in of(r, "hard_cut")} for r in (RSST, LAYERWISE)}
    heads = of(REFILL, "run_started")[0]["model"]["heads_per_block"]
    blocks, rows, totals = layer_table(runs, 0)
    assert blocks == list(range(len(heads)))
    for b in blocks:
        assert [(c.heads_kept, c.heads_total, c.mlp_sparsity) for c in rows[b]] == \
            [(heads[b], heads[b], 0.0)] * 3
    for state in (1, 2):
        blocks, rows, totals = layer_table(runs, state)
        events = [refill_steps[state - 1], cuts[RSST][state], cuts[LAYERWISE][state]]
        for b in blocks:
            want = [next(x for x in ev["layers"] if x["block"] == b) for ev in events]
            assert [(c.heads_kept, c.heads_total, c.mlp_sparsity) for c in rows[b]] == \
                [(x["heads_kept"], x["heads_total"], x["mlp_sparsity"]) for x in want]
        assert [(c.heads_kept, c.heads_total, c.mlp_sparsity) for c in totals] == \
            [(ev["heads_kept"], ev["heads_total"], ev["sparsity"]) for ev in events]


def flat(cfg: dict) -> dict:
    return {f"{s}.{k}": v for s, t in cfg.items() if isinstance(t, dict) for k, v in t.items()}


async def test_sweep_compare_screen_shows_every_panel(tmp_path):
    sweep = fixture_sweep(tmp_path)
    app = BrowserApp(sweep, compare=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await compared(pilot)
        text = screen_text(app)
        names = [r.name for r in app.screen.ctx.runs]
        assert names == ["refill_global", "refill_layer-wise", "rsst_global", "rsst_layer-wise"]
        assert "compare 4 runs" in text and "v: best val" in text
        assert "State 2 per layer" in text  # the latest state that ended
        cut = {e["state"]: e for e in of(LAYERWISE, "hard_cut")}[2]
        refill = {e["state"]: e for e in of(REFILL, "pruned")}[1]
        for layer, step in zip(cut["layers"], refill["layers"]):
            line = next(ln for ln in text.splitlines() if f" L{layer['block']} " in ln)
            cells = line.split("│")[1].split()  # the per-layer pane, left of the runs pane
            assert cells[1] == f"{step['heads_kept']}/{step['heads_total']}"  # A: refill
            assert cells[3] == "--"  # B: pending
            assert cells[-2] == f"{layer['heads_kept']}/{layer['heads_total']}"  # D
            assert cells[-1] == f"{layer['mlp_sparsity']:.1f}%"
        assert "refill_layer-wise  pending" in text
        # the config diff: the keys that differ between the members' configs, by hand
        configs = [flat(tomllib.loads((FIXTURE_RUNS / n / "config.toml").read_text()))
                   for n in ("refill_global", "rsst_global", "rsst_layerwise")]
        differ = {k for c in configs for k in c if k not in ("run.name", "run.output_dir")
                  and len({json.dumps(x.get(k)) for x in configs}) > 1}
        assert differ == {"prune.method", "prune.sorting"}
        assert "method=refill  sorting=layer-wise" in text  # the pending member's, too
        assert "method=rsst  sorting=global" in text and "num_classes" not in text
        await pilot.press("left")
        assert "State 1 per layer" in screen_text(app)
        await pilot.press("v")
        assert "Accuracy vs sparsity · final val" in screen_text(app)
        screen = app.screen
        await pilot.press("escape")
        await listed(pilot, rows=4)  # the sweep's list below it
        assert app.screen is app.browser
        assert all(t.stopped() for t in screen.tailers)  # no log is followed any more


def cut_run(run_copy, src, before_state_ended: int):
    """A copy of ``src`` whose log stops before its ``before_state_ended``-th state_ended; the
    rest of the log is returned."""
    run = run_copy(src, src.name + "-live")
    text = (run / "events.jsonl").read_text()
    lines = text.splitlines(keepends=True)
    at = [i for i, ln in enumerate(lines) if '"state_ended"' in ln][before_state_ended]
    (run / "events.jsonl").write_text("".join(lines[:at]))
    return run, "".join(lines[at:])


async def test_follows_live_runs_and_batches_redraw_nothing(run_copy):
    live, rest = cut_run(run_copy, LAYERWISE, 2)
    write_pidfile(live, os.getpid())  # this test process stands in for the engine
    runs = [ComparedRun(0, REFILL, "refill"), ComparedRun(1, live, "live")]
    app = BrowserApp(live.parent)
    async with app.run_test(size=(120, 40)) as pilot:
        await listed(pilot)
        app.push_screen(CompareScreen(runs, UNICODE, live.parent))
        await pilot.pause()
        await compared(pilot)
        screen = app.screen
        assert "live  live" in screen_text(app)
        assert len(sparsity_points(runs[1].view, BEST)) == 2
        line = next(ln for ln in screen_text(app).splitlines() if " L0 " in ln)
        assert line.split("│")[1].split()[3] == "--"  # state 2 has not ended in the live run
        redraws = {p: screen.query_one(p).redraws for p in PANELS}
        applied = screen.chunks_applied
        batch = next(e for e in of(LAYERWISE, "batch") if e["state"] == 2)
        with open(live / "events.jsonl", "a") as f:
            for i in range(30):
                f.write(json.dumps({**batch, "seq": 90_000 + i, "batch": i}) + "\n")
        await wait_for(pilot, lambda: screen.chunks_applied > applied, what="the batches")
        await pilot.pause(0.4)
        assert {p: screen.query_one(p).redraws for p in PANELS} == redraws
        with open(live / "events.jsonl", "a") as f:
            f.write(rest)
        await wait_for(pilot, lambda: "completed" in screen_text(app).split("live  ")[-1][:12],
                       what="the run's end")
        assert len(sparsity_points(runs[1].view, BEST)) == 3
        cut = {e["state"]: e for e in of(LAYERWISE, "hard_cut")}[2]
        line = next(ln for ln in screen_text(app).splitlines() if " L0 " in ln)
        assert line.split("│")[1].split()[3] == \
            f"{cut['layers'][0]['heads_kept']}/{cut['layers'][0]['heads_total']}"


def spans_of(texts, what: str):
    """The styles of the spans of ``texts`` whose text is ``what``."""
    out = set()
    for text in texts if isinstance(texts, list) else [texts]:
        for span in text.spans:
            if text.plain[span.start:span.end] == what:
                out.add(str(span.style))
    return out


def chart_styles(texts):
    return {str(s.style) for t in texts for s in t.spans
            if t.plain[s.start:s.end].strip(" ") and str(s.style) != "dim"}


@pytest.mark.parametrize("glyphs", [UNICODE, ASCII])
async def test_each_run_keeps_its_colour_and_letter_everywhere(tmp_path, glyphs):
    runs = [ComparedRun(0, REFILL, "refill"), ComparedRun(1, LAYERWISE, "layerwise")]
    app = BrowserApp(tmp_path, ascii_only=glyphs.ascii)
    copy_run(REFILL, tmp_path / "refill")
    async with app.run_test(size=(120, 40)) as pilot:
        await listed(pilot)
        app.push_screen(CompareScreen(runs, glyphs, tmp_path))
        await pilot.pause()
        await compared(pilot)
        screen = app.screen
        drawn = {p: screen.query_one(p).lines(100, 12) for p in PANELS}
    for run, colour in zip(runs, RUN_COLOURS):
        for panel in ("#compare-header", "#layer-rows", "#run-lines"):
            assert f"bold {colour}" in spans_of(drawn[panel], run.letter), (panel, run.letter)
    for chart in ("#acc-sparsity", "#acc-epochs"):
        assert chart_styles(drawn[chart]) == set(RUN_COLOURS[:2]), chart
        plain = "".join(t.plain for t in drawn[chart])
        if glyphs.ascii:  # each run's letter is its mark
            assert "A" in plain and "B" in plain


def test_browser_marks_use_the_compare_colours():
    from tuiprune.dashboard.browser.table import RunTable
    from tuiprune.dashboard.browser.entries import Entry

    e = Entry(REFILL, "refill", 0, "completed", {c: "x" for c in (
        "name", "values", "method", "sorting", "criterion", "status", "state", "best val",
        "sparsity", "img/s", "started")})
    table = RunTable(UNICODE)
    cells = table.cells(e, ["mark", "name"], {"name": 10}, 3)
    assert cells[0] == Text("D", style=f"bold {RUN_COLOURS[3]}")


async def test_a_killed_run_shows_lost_and_names_stay_apart(tmp_path):
    """A run whose engine is gone without run_ended is lost within 2 s (never left "live");
    two runs with one name are told apart by their sweeps'."""
    from tuiprune.dashboard.browser.entries import entries_of
    from tuiprune.dashboard.compare.screen import compared_runs

    out = tmp_path / "runs"
    copy_run(FIXTURE_RUNS / "lost_killed", out / "lost_killed")
    fixture_sweep(out)
    fixture_sweep(out, stamp="20251125-090000")
    entries, _ = entries_of(out)
    twins = [e for e in entries if e.name == "rsst_global"]
    lost = [e for e in entries if e.name == "lost_killed"]
    runs = compared_runs(lost + twins, [0, 1, 2])
    assert [r.name for r in runs] == ["lost_killed", "demo-sweep-20251124-160000/rsst_global",
                                      "demo-sweep-20251125-090000/rsst_global"]
    app = BrowserApp(out)
    async with app.run_test(size=(120, 40)) as pilot:
        await listed(pilot)
        app.push_screen(CompareScreen(runs, UNICODE, out))
        await wait_for(pilot, lambda: "lost_killed  lost" in screen_text(app), timeout=2,
                       what="lost within 2 s")
