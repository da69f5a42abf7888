"""``tuiprune report`` on the real fixture runs (``tests/fixtures/runs/``, written by the engine).

Every number the report prints is checked against the fixture's own event log, read here
independently with ``json``; the weight checks run on the fixtures' checkpoints.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from engine.errors import UserError
from tuiprune import report as R

RUNS = Path(__file__).parent / "fixtures" / "runs"
COMPLETED = ["refill_global", "rsst_global", "rsst_layerwise"]


def events(name: str):
    out = []
    for line in (RUNS / name / "events.jsonl").read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return out


def of(evs, kind):
    return [e for e in evs if e["event"] == kind]


def md_table(text: str, heading: str):
    """Rows (lists of cells) of the first Markdown table after the line ``heading``."""
    lines = text.splitlines()
    start = lines.index(heading)
    rows = []
    for line in lines[start + 1:]:
        if line.startswith("|"):
            rows.append([c.strip() for c in line.strip().strip("|").split("|")])
        elif rows:
            break
    assert len(rows) >= 2, f"no table after {heading!r}"
    return rows[0], rows[2:]


def section(text: str, heading: str) -> str:
    lines = text.splitlines()
    start = lines.index(heading)
    level = heading.split()[0]
    end = next((i for i in range(start + 1, len(lines))
                if lines[i].startswith("#") and len(lines[i].split()[0]) <= len(level)),
               len(lines))
    return "\n".join(lines[start:end])


def f2(v):
    return "–" if v is None else f"{v:.2f}"


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
    text, evs = reports[name], events(name)
    header, rows = md_table(text, "## States")
    assert header[:5] == ["State", "Epochs", "Train acc %", "Val acc %", "Best val acc %"]
    ended = of(evs, "state_ended")
    assert [r[0] for r in rows] == [str(e["state"]) for e in ended]
    started = {e["state"]: e for e in of(evs, "state_started")}
    for row, e in zip(rows, ended):
        last = [x for x in of(evs, "epoch_ended") if x["state"] == e["state"]][-1]
        assert row[1] == f"{len([x for x in of(evs, 'epoch_ended') if x['state'] == e['state']])}" \
                         f"/{started[e['state']]['epochs']}"
        assert row[2] == f2(last["train_acc"])
        assert row[3] == f2(e["final_val_acc"])
        assert row[4] == f2(e["best_val_acc"])
        assert row[5] == str(e["best_epoch"])
        assert row[6] == f2(e["test_acc"])
        assert row[7] == f2(e["sparsity"])
    # per-epoch table: one row per epoch_ended, same numbers
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
    text, evs = reports[name], events(name)
    pruned = of(evs, "pruned")
    assert pruned, "fixture has no pruning step"
    for ev in pruned:
        heading = f"## Pruning step {ev['step']} (after state {ev['state']})"
        sec = section(text, heading)
        assert f"Overall sparsity **{ev['sparsity']:.2f} %** ({ev['zeros']:,} of " \
               f"{ev['total']:,}" in sec
        assert f"Heads kept **{ev['heads_kept']} / {ev['heads_total']}**" in sec
        _, rows = md_table(text, heading)
        assert len(rows) == len(ev["layers"])
        for row, layer in zip(rows, ev["layers"]):
            assert row[0] == str(layer["block"])
            assert row[1] == f2(layer["attn_sparsity"])
            assert row[2].count("█") == round(layer["attn_sparsity"] / 100 * layer["heads_total"])
            assert row[3] == f"{layer['heads_kept']}/{layer['heads_total']}"
            assert row[4] == f2(layer["mlp_sparsity"])
            assert row[6] == f"{layer['neurons_kept']:,}/{layer['neurons_total']:,}"
        attn = [l["attn_sparsity"] for l in ev["layers"]]
        if len(set(attn)) > 1:
            most = max(ev["layers"], key=lambda l: (l["attn_sparsity"], -l["block"]))
            least = min(ev["layers"], key=lambda l: (l["attn_sparsity"], l["block"]))
            assert f"most pruned layer {most['block']} ({most['attn_sparsity']:.2f} %" in sec
            assert f"least pruned layer {least['block']} ({least['attn_sparsity']:.2f} %)" in sec
        else:
            assert f"- Attention: every layer {attn[0]:.2f} %" in sec


@pytest.mark.parametrize("name", ["rsst_global", "rsst_layerwise"])
def test_rsst_lambda_and_hard_cuts(reports, name):
    text, evs = reports[name], events(name)
    _, rows = md_table(text, "## RSST λ")
    states = sorted({e["state"] for e in of(evs, "lambda")})
    assert [r[0] for r in rows] == [str(s) for s in states]
    for row, s in zip(rows, states):
        lam = [e for e in of(evs, "lambda") if e["state"] == s]
        assert row[1] == f"{lam[0]['value']:.3g}" and row[2] == f"{lam[-1]['value']:.3g}"
        assert row[3] == f"{lam[-1]['step']:,}"        # one ramp per state: steps taken
        assert row[5] == str(len(lam))
    for cut in of(evs, "hard_cut"):
        sec = section(text, f"### Hard cut at the end of state {cut['state']}")
        assert f"Sparsity after the cut **{cut['sparsity']:.2f} %**" in sec
        assert f"{cut['val_acc_before']:.2f} % → {cut['val_acc_after']:.2f} %" in sec


def test_refill_has_no_lambda_section(reports):
    assert "## RSST λ" not in reports["refill_global"]


@pytest.mark.parametrize("name", COMPLETED)
def test_verification_passes_on_completed_runs(reports, name):
    text = reports[name]
    _, rows = md_table(text, "## Verification")
    checks = {r[1]: r[0] for r in rows}
    assert set(checks.values()) == {R.MARK[R.PASS]}, rows
    assert {"Pruning steps cut whole heads and neurons (log)", "Sparsity equals the target",
            "Each pruning step is in force in the next state", "No crash or resume gaps",
            "Final checkpoint: masks cut whole heads and neurons",
            "Final checkpoint: no pruned weight is non-zero",
            "Final checkpoint: structure and sparsity match the log"} == set(checks)
    evs = events(name)
    last = of(evs, "state_ended")[-1]
    detail = {r[1]: r[2] for r in rows}["Final checkpoint: structure and sparsity match the log"]
    assert f"({last['sparsity']:.2f} %)" in detail
    assert "**Status**: ✅ **completed**" in text
    assert "## Missing or incomplete" not in text


def _copy(name: str, tmp_path: Path) -> Path:
    dst = tmp_path / name
    shutil.copytree(RUNS / name, dst)
    return dst


def test_tampered_checkpoint_fails_the_weight_check(tmp_path):
    import torch

    run = _copy("refill_global", tmp_path)
    path = max((run / "checkpoints").glob("state*_best.pt"))
    ckpt = torch.load(path, weights_only=True)
    name, mask = next((k, m) for k, m in ckpt["masks"].items() if not bool(m.all()))
    w = ckpt["model"][name + ".weight"]
    w[mask == 0] = 0.5                                    # a "pruned" weight came back
    torch.save(ckpt, path)
    _, rows = md_table(R.build_report(run), "## Verification")
    row = next(r for r in rows if r[1] == "Final checkpoint: no pruned weight is non-zero")
    assert row[0] == R.MARK[R.FAIL] and f"{int((mask == 0).sum()):,} pruned weights" in row[2]


def test_failed_run(tmp_path):
    text = R.build_report(RUNS / "failed_nan")
    evs = events("failed_nan")
    end = of(evs, "run_ended")[-1]
    assert end["status"] == "failed"
    assert "**Status**: ❌ **failed**" in text
    assert "## Warnings and errors" in text
    for err in of(evs, "error"):
        assert err["message"] in text


def test_killed_run_says_what_is_missing(tmp_path):
    """What SIGKILL leaves: the log stops mid-state (after state 1's first epoch), no
    run_ended, and engine.pid names a process that is not the engine any more."""
    import socket

    run = _copy("rsst_global", tmp_path)
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
    _, rows = md_table(text, "## Verification")
    assert all(r[0] == R.MARK[R.PASS] for r in rows), rows
    assert "state 0:" in rows[-1][2]


def test_torn_and_partial_log(tmp_path):
    run = _copy("rsst_global", tmp_path)
    lines = (run / "events.jsonl").read_text().splitlines(keepends=True)
    cut = next(i for i, line in enumerate(lines) if '"event":"pruned"' in line.replace(" ", ""))
    # lose two lines before the first pruning step, garble one, tear the last line
    kept = lines[:cut - 3] + ["{not json\n"] + lines[cut - 1:-1] + [lines[-1][:25]]
    (run / "events.jsonl").write_text("".join(kept))
    text = R.build_report(run)
    missing = section(text, "## Missing or incomplete")
    assert "the last line is torn" in missing
    assert "1 line(s) could not be read" in missing
    seq_a = json.loads(lines[cut - 4])["seq"]
    assert f"seq jumps from {seq_a} to {seq_a + 3} (2 missing)" in missing
    _, rows = md_table(text, "## Verification")
    assert {r[1]: r[0] for r in rows}["No crash or resume gaps"] == R.MARK[R.FAIL]


def test_log_without_its_beginning(tmp_path):
    run = _copy("refill_global", tmp_path)
    lines = (run / "events.jsonl").read_text().splitlines(keepends=True)
    (run / "events.jsonl").write_text("".join(lines[3:]))
    text = R.build_report(run)
    assert "`run_started` is missing" in text
    assert "_Not available: the log has no `run_started` event._" in text
    assert "## States" in text


def test_compare_global_and_layerwise(reports):
    text = R.build_report(RUNS / "rsst_global", compare=RUNS / "rsst_layerwise")
    assert text.startswith(reports["rsst_global"].rstrip("\n"))
    a, b = events("rsst_global"), events("rsst_layerwise")
    _, rows = md_table(text, "## Comparison: rsst_global (A) vs rsst_layerwise (B)")
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
        # layer-wise ranking: every block pruned alike
        assert "(σ 0.00)" in row[2]
    last = of(a, "pruned")[-1]["step"]
    _, rows = md_table(text, f"### Per layer at pruning step {last}")
    assert [r[1] for r in rows] == [f2(l["attn_sparsity"]) for l in of(a, "pruned")[-1]["layers"]]
    assert [r[3] for r in rows] == [f2(l["attn_sparsity"]) for l in of(b, "pruned")[-1]["layers"]]


def test_report_includes_the_export(tmp_path, monkeypatch):
    from tuiprune.export import export_main

    monkeypatch.setenv("TUIPRUNE_EXPORT_REPS", "1")
    run = _copy("rsst_layerwise", tmp_path)
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
    assert text == R.build_report(RUNS / "rsst_global", compare=RUNS / "rsst_layerwise")
    assert "Pruning report: rsst_global" in res.stdout and "Verification" in res.stdout
    res = subprocess.run([sys.executable, "-m", "tuiprune", "report", str(tmp_path / "nope")],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 2 and res.stderr.startswith("error: ") and \
        len(res.stderr.strip().splitlines()) == 1


def test_not_a_run_directory(tmp_path):
    with pytest.raises(UserError, match="no events.jsonl"):
        R.report_main(tmp_path)


def test_report_without_torch(tmp_path):
    """The log part needs no torch; the weight checks say why they were skipped."""
    run = _copy("refill_global", tmp_path)
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
    _, rows = md_table(res.stdout, "## Verification")
    weights = [r for r in rows if r[1].startswith("Final checkpoint")]
    assert len(weights) == 3
    assert all(r[0] == R.MARK[R.SKIP] and r[2] == "torch is not installed here" for r in weights)
    assert all(r[0] == R.MARK[R.PASS] for r in rows if r not in weights)
