"""``tuiprune report`` on the real fixture runs (``tests/fixtures/runs/``, written by the engine).

Every number the report prints is checked against the fixture's own event log, read here
independently with ``json``; the weight checks run on the fixtures' checkpoints. The failing
case of every verification row is in ``test_report_checks.py``, hostile logs and names in
``test_report_hostile.py``.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys

import pytest
from helpers.report import (COMPLETED, RUNS, copy_run, events, f2, md_table, of, section,
                            verification)

from engine.errors import UserError
from tuiprune import report as R
from tuiprune.report.output import Destination


class _Reports(dict):
    """Each fixture's report, built on first use."""

    def __missing__(self, name):
        self[name] = R.build_report(RUNS / name)
        return self[name]


@pytest.fixture(scope="module")
def reports():
    return _Reports()


@pytest.mark.parametrize("name", COMPLETED)
def test_state_table_equals_the_log(reports, name):
    text, evs = reports[name], events(RUNS / name)
    header, rows = md_table(text, "## States")
    assert header[:5] == ["State", "Epochs", "Train acc %", "Val acc %", "Best val acc %"]
    ended = of(evs, "state_ended")
    assert [r[0] for r in rows] == [str(e["state"]) for e in ended]
    started = {e["state"]: e for e in of(evs, "state_started")}
    for row, e in zip(rows, ended):
        mine = [x for x in of(evs, "epoch_ended") if x["state"] == e["state"]]
        assert row[1] == f"{len(mine)}/{started[e['state']]['epochs']}"
        assert row[2] == f2(mine[-1]["train_acc"])
        assert row[3:8] == [f2(e["final_val_acc"]), f2(e["best_val_acc"]), str(e["best_epoch"]),
                            f2(e["test_acc"]), f2(e["sparsity"])]
    _, rows = md_table(text, "### Epochs")
    ep = of(evs, "epoch_ended")
    assert len(rows) == len(ep)
    for row, e in zip(rows, ep):
        assert row[:2] == [str(e["state"]), str(e["epoch"])]
        assert row[3] == f2(e["train_acc"])
        assert row[5].split()[0] == f2(e["val_acc"])
        assert row[5].endswith("★") == bool(e["best"])


@pytest.mark.parametrize("name", COMPLETED)
def test_pruning_tables_equal_the_log(reports, name):
    text, evs = reports[name], events(RUNS / name)
    pruned = of(evs, "pruned")
    assert pruned, "fixture has no pruning step"
    for ev in pruned:
        heading = f"## Pruning step {ev['step']} (after state {ev['state']})"
        sec = section(text, heading)
        assert f"Overall sparsity **{ev['sparsity']:.2f}%** ({ev['zeros']:,} of " \
               f"{ev['total']:,}" in sec
        assert f"Heads kept **{ev['heads_kept']}/{ev['heads_total']}**" in sec
        _, rows = md_table(text, heading)
        assert len(rows) == len(ev["layers"])
        for row, layer in zip(rows, ev["layers"]):
            assert row[0] == str(layer["block"])
            assert row[1] == f2(layer["attn_sparsity"])
            pruned_heads = layer["heads_total"] - layer["heads_kept"]
            assert row[2] == "█" * pruned_heads + "░" * layer["heads_kept"]
            assert row[3] == f"{layer['heads_kept']}/{layer['heads_total']}"
            assert row[4] == f2(layer["mlp_sparsity"])
            assert row[6] == f"{layer['neurons_kept']:,}/{layer['neurons_total']:,}"
        attn = [l["attn_sparsity"] for l in ev["layers"]]
        if len(set(attn)) > 1:
            most = max(ev["layers"], key=lambda l: (l["attn_sparsity"], -l["block"]))
            least = min(ev["layers"], key=lambda l: (l["attn_sparsity"], l["block"]))
            assert f"most pruned layer {most['block']} ({most['attn_sparsity']:.2f}%" in sec
            assert f"least pruned layer {least['block']} ({least['attn_sparsity']:.2f}%)" in sec
        else:
            assert f"- Attention: every layer {attn[0]:.2f}%" in sec


@pytest.mark.parametrize("name", ["rsst_global", "rsst_layerwise"])
def test_rsst_lambda_and_hard_cuts(reports, name):
    text, evs = reports[name], events(RUNS / name)
    _, rows = md_table(text, "## RSST λ")
    states = sorted({e["state"] for e in of(evs, "lambda")})
    assert [r[0] for r in rows] == [str(s) for s in states]
    for row, s in zip(rows, states):
        lam = [e for e in of(evs, "lambda") if e["state"] == s]
        assert row[1] == f"{lam[0]['value']:.4g}" and row[2] == f"{lam[-1]['value']:.4g}"
        assert row[3] == f"{lam[-1]['step']:,}"        # one ramp per state: steps taken
        assert row[5] == str(len(lam))
    for cut in of(evs, "hard_cut"):
        sec = section(text, f"### Hard cut at the end of state {cut['state']}")
        assert f"Sparsity after the cut **{cut['sparsity']:.2f}%**" in sec
        assert f"{cut['val_acc_before']:.2f}% → {cut['val_acc_after']:.2f}%" in sec
        assert "The cut structure (heads and neurons per block) equals the target" in sec


def test_refill_has_no_lambda_section(reports):
    assert "## RSST λ" not in reports["refill_global"]


ROWS = {"Pruning steps cut whole heads and neurons (log)", "Sparsity equals the target",
        "Each pruning step is in force in the next state", "No crash or resume gaps",
        "Final checkpoint: masks cut whole heads and neurons",
        "Final checkpoint: no pruned weight is non-zero",
        "Final checkpoint: structure matches the log",
        "Final checkpoint: sparsity equals the target"}


@pytest.mark.parametrize("name", COMPLETED)
def test_verification_passes_on_completed_runs(reports, name):
    text = reports[name]
    rows = verification(text)
    assert {mark for mark, _ in rows.values()} == {R.MARK[R.PASS]}, rows
    want = ROWS | ({"Each hard cut equals its target"} if name.startswith("rsst") else set())
    assert set(rows) == want
    last = of(events(RUNS / name), "state_ended")[-1]
    assert f"({last['sparsity']:.2f}%)" in rows["Final checkpoint: structure matches the log"][1]
    assert "**Status**: ✅ **completed**" in text
    assert "## Missing or incomplete" not in text


def test_failed_run():
    text = R.build_report(RUNS / "failed_nan")
    evs = events(RUNS / "failed_nan")
    assert of(evs, "run_ended")[-1]["status"] == "failed"
    assert "**Status**: ❌ **failed**" in text
    messages = section(text, "## Warnings and errors")
    for err in of(evs, "error"):
        assert err["message"].replace("_", "\\_") in messages


def test_killed_run_says_what_is_missing(tmp_path):
    """What SIGKILL leaves: the log stops mid-state (after state 1's first epoch), no
    run_ended, and engine.pid names a process that is not the engine any more."""
    import socket

    run = copy_run("rsst_global", tmp_path)
    lines = (run / "events.jsonl").read_text().splitlines(keepends=True)
    stop = next(i for i, line in enumerate(lines)
                if json.loads(line)["event"] == "epoch_ended" and json.loads(line)["state"] == 1)
    (run / "events.jsonl").write_text("".join(lines[:stop + 3]))
    (run / "checkpoints" / "state1_best.pt").unlink(missing_ok=True)
    (run / "checkpoints" / "state2_best.pt").unlink(missing_ok=True)
    (run / "engine.pid").write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                                "proc_start": "0"}))     # recycled pid
    text = R.build_report(run)
    assert "⚠️ **ended without `run_ended`**" in text
    missing = section(text, "## Missing or incomplete")
    assert "`run_ended` is missing: the engine process is gone" in missing
    assert "state 1: not finished (1/3 epochs logged)" in missing
    assert "state(s) 2 of 3 not started" in missing
    _, rows = md_table(text, "## States")
    assert [r[0] for r in rows] == ["0", "1 (unfinished)"]
    assert rows[1][1] == "1/3"
    # the weight checks fall back to the last best checkpoint there is (state 0)
    rows = verification(text)
    assert all(mark == R.MARK[R.PASS] for mark, _ in rows.values()), rows
    assert rows["Final checkpoint: structure matches the log"][1].startswith("state 0:")


def test_torn_and_partial_log(tmp_path):
    run = copy_run("rsst_global", tmp_path)
    lines = (run / "events.jsonl").read_text().splitlines(keepends=True)
    cut = next(i for i, line in enumerate(lines) if '"event":"pruned"' in line.replace(" ", ""))
    # lose two lines before the first pruning step, garble one, tear the last line
    kept = lines[:cut - 3] + ["{not json\n"] + lines[cut - 1:-1] + [lines[-1][:25]]
    (run / "events.jsonl").write_text("".join(kept))
    text = R.build_report(run)
    missing = section(text, "## Missing or incomplete")
    assert "the last line is torn" in missing
    assert "1 malformed line(s) skipped" in missing
    seq_a = json.loads(lines[cut - 4])["seq"]
    assert f"seq jumps from {seq_a} to {seq_a + 3} (2 missing)" in missing
    assert verification(text)["No crash or resume gaps"][0] == R.MARK[R.FAIL]


def test_log_without_its_beginning(tmp_path):
    run = copy_run("refill_global", tmp_path)
    lines = (run / "events.jsonl").read_text().splitlines(keepends=True)
    (run / "events.jsonl").write_text("".join(lines[3:]))
    text = R.build_report(run)
    assert "`run_started` is missing" in text
    assert "_Not available: the log has no `run_started` event._" in text
    assert "## States" in text
    rows = verification(text)
    assert rows["Sparsity equals the target"][0] == R.MARK[R.SKIP]


def test_compare_global_and_layerwise(reports):
    text = R.build_report(RUNS / "rsst_global", compare=RUNS / "rsst_layerwise")
    assert text.startswith(reports["rsst_global"].rstrip("\n"))
    a, b = events(RUNS / "rsst_global"), events(RUNS / "rsst_layerwise")
    _, rows = md_table(text, "## Comparison: rsst\\_global (A) vs rsst\\_layerwise (B)")
    assert ["sorting", "global", "layer-wise", "≠"] in rows
    _, rows = md_table(text, "### Accuracy and sparsity per state")
    for row, ea, eb in zip(rows, of(a, "state_ended"), of(b, "state_ended")):
        assert row[1:3] == [f2(ea["best_val_acc"]), f2(eb["best_val_acc"])]
        assert row[3] == f"{ea['best_val_acc'] - eb['best_val_acc']:+.2f}"
        assert row[4:6] == [f2(ea["sparsity"]), f2(eb["sparsity"])]
    _, rows = md_table(text, "### Spread of per-layer sparsity per pruning step")
    for row, pa, pb in zip(rows, of(a, "pruned"), of(b, "pruned")):
        for cell, layers in ((row[1], pa["layers"]), (row[2], pb["layers"])):
            v = [l["attn_sparsity"] for l in layers]
            assert cell == f"{min(v):.2f} … {max(v):.2f} % (σ {statistics.pstdev(v):.2f})"
        assert "(σ 0.00)" in row[2]     # layer-wise ranking: every block pruned alike
    last = of(a, "pruned")[-1]["step"]
    _, rows = md_table(text, f"### Per layer at pruning step {last}")
    assert [r[1] for r in rows] == [f2(l["attn_sparsity"]) for l in of(a, "pruned")[-1]["layers"]]
    assert [r[3] for r in rows] == [f2(l["attn_sparsity"]) for l in of(b, "pruned")[-1]["layers"]]


def test_report_includes_the_export(tmp_path, monkeypatch):
    from tuiprune.export import export_main

    monkeypatch.setenv("TUIPRUNE_EXPORT_REPS", "1")
    run = copy_run("rsst_layerwise", tmp_path)
    assert export_main(run) == 0
    doc = json.loads(next(run.glob("export-state*/export.json")).read_text())
    text = R.build_report(run)
    _, rows = md_table(text, "## Export (compacted model)")
    assert rows[0] == ["Parameters", f"{doc['params']['before']:,}", f"{doc['params']['after']:,}",
                       f"{doc['params']['ratio']:.2f}×"]
    assert rows[1][1:3] == [f"{doc['macs']['before']:,}", f"{doc['macs']['after']:,}"]
    assert rows[2][0].startswith("cpu batch 1")


def test_cli_writes_the_file_and_prints(tmp_path):
    out = tmp_path / "report.md"
    res = subprocess.run([sys.executable, "-m", "tuiprune", "report", str(RUNS / "rsst_global"),
                          "--compare", str(RUNS / "rsst_layerwise"), "--out", str(out)],
                         capture_output=True, text=True, timeout=300,
                         env={**os.environ, "COLUMNS": "160"})
    assert res.returncode == 0, res.stderr
    text = out.read_text()
    # the figures go beside the file, named after it
    assert text == R.build_report(RUNS / "rsst_global", compare=RUNS / "rsst_layerwise",
                                  dest=Destination(out, "md", "report-"))
    assert "![Accuracy per epoch](report-accuracy.png)" in text
    assert (tmp_path / "report-accuracy.png").is_file()
    # redirected, the report itself is printed (on a terminal Rich renders it)
    assert res.stdout.startswith(text) and "report written to" in res.stdout
    res = subprocess.run([sys.executable, "-m", "tuiprune", "report", str(tmp_path / "nope")],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 2 and res.stderr.startswith("error: ") and \
        len(res.stderr.strip().splitlines()) == 1


def test_not_a_run_directory(tmp_path):
    with pytest.raises(UserError, match="no events.jsonl"):
        R.report_main(tmp_path)


def test_out_is_a_directory(tmp_path):
    """``--out DIR`` writes DIR/report.md with the figures beside it."""
    assert R.report_main(RUNS / "refill_global", out=tmp_path) == 0
    text = (tmp_path / "report.md").read_text()
    assert text.startswith("# Pruning report: refill\\_global")
    assert "![Accuracy per epoch](accuracy.png)" in text and (tmp_path / "accuracy.png").is_file()


def test_report_without_torch(tmp_path):
    """The log part needs no torch; the weight checks say why they were skipped."""
    run = copy_run("refill_global", tmp_path)
    script = (
        "import sys, importlib.abc\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('torch', 'timm', 'safetensors'):\n"
        "            raise ImportError('blocked: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from tuiprune.report import build_report\n"
        "sys.stdout.write(build_report(__import__('pathlib').Path(sys.argv[1])))\n"
        "assert 'torch' not in sys.modules\n")
    res = subprocess.run([sys.executable, "-c", script, str(run)], capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    rows = verification(res.stdout)
    weights = {k: v for k, v in rows.items() if k.startswith("Final checkpoint")}
    assert len(weights) == 4
    assert all(v == (R.MARK[R.SKIP], "torch is not installed here") for v in weights.values())
    assert all(v[0] == R.MARK[R.PASS] for k, v in rows.items() if k not in weights)


def test_prune_last_run_verifies(tmp_path):
    """A real RSST run with ``prune_last``: its last best checkpoint holds the step made after
    the last state (applied at once), and every row says so."""
    from helpers.runs import sets, tuiprune

    proc = tuiprune("run", "demo", *sets(f"run.output_dir='{tmp_path}'", "run.name='pl'",
                                         "prune.states=2", "prune.prune_last=true",
                                         "prune.method='rsst'", "train.epochs=1"), cwd=tmp_path)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-2000:]
    run = next(tmp_path.glob("pl-*"))
    last = of(events(run), "pruned")[-1]
    assert (last["step"], last["applied"]) == (1, True)
    rows = verification(R.build_report(run))
    assert {mark for mark, _ in rows.values()} == {R.MARK[R.PASS]}, rows
    assert "equal the log's pruning step 1" in rows["Final checkpoint: structure matches the log"][1]
    assert "2 step(s) (the last: prune_last)" in rows["Final checkpoint: sparsity equals the target"][1]
