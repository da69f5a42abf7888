"""The report's figures and output forms: what each figure plots (against the log, read with
plain ``json``), the PNGs' pixel sizes and colours, the self-contained HTML seen in headless
Chromium, the sweep comparison report, and bad input (no system data, unwritable --out,
matplotlib missing)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from helpers.report import RUNS, copy_run, events, md_table, of, plain

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - 3.10
    import tomli as tomllib

from helpers import synthlog  # noqa: E402
from helpers.system_log import with_system  # noqa: E402

from engine.runlog import read_log  # noqa: E402
from engine.series import SERIES_POINTS  # noqa: E402
from engine.sweepdir import write_sweep  # noqa: E402
from tuiprune.report import figdata, report_main  # noqa: E402
from tuiprune.report.figures import COLOURS, DPI, FIG_H, FIG_H_TALL, FIG_W  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SIZE = (round(FIG_W * DPI), round(FIG_H * DPI))  # README "Write the experiment report"
TALL = (round(FIG_W * DPI), round(FIG_H_TALL * DPI))   # 1000 × 800


def tuiprune(*args, **kw):
    return subprocess.run([sys.executable, "-m", "tuiprune", *args], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "COLUMNS": "120"}, **kw)


def rgb(hex_colour: str):
    return tuple(int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))


def pixels_of(image, colour: str, tol: int = 12) -> int:
    """Pixels of ``image`` (PIL) within ``tol`` of ``colour`` in every channel."""
    a = np.asarray(image.convert("RGB"), dtype=np.int16)
    return int((np.abs(a - np.array(rgb(colour))) <= tol).all(axis=2).sum())


def system_run(tmp_path, name="sysrun", states=3, epochs=2, batches=40) -> Path:
    run = tmp_path / name
    synthlog.write(run / "events.jsonl", with_system(synthlog.events(
        "rsst", states=states, epochs=epochs, batches=batches, name=name), every=1.0))
    return run


# ----------------------------------------------------------------------------- the data
def test_epoch_curve_and_marks_follow_the_log():
    evs = events(RUNS / "rsst_global")
    per = of(evs, "run_started")[0]["epochs"]
    curve = figdata.epoch_curve(read_log(RUNS / "rsst_global" / "events.jsonl"))
    ended = of(evs, "epoch_ended")
    assert curve.x == [e["state"] * per + e["epoch"] + 1 for e in ended]
    assert curve.val == [e["val_acc"] for e in ended]
    assert curve.train == [e["train_acc"] for e in ended]
    assert curve.test == [e["test_acc"] for e in ended]
    # a pruning step after state k, a hard cut at the end of state s: at that state's end
    assert curve.steps == [(p["state"] + 1) * per + 0.5 for p in of(evs, "pruned")]
    assert curve.cuts == [((c["state"] + 1) * per + 0.5, c["val_acc_before"],
                           c["val_acc_after"]) for c in of(evs, "hard_cut")]
    assert len(curve.cuts) == 2 and len(curve.steps) == 2


@pytest.mark.parametrize("name", ["rsst_global", "refill_global"])
def test_accuracy_vs_sparsity_is_the_model_each_state_ends_with(name):
    evs = events(RUNS / name)
    cuts = {c["state"]: c["val_acc_after"] for c in of(evs, "hard_cut")}
    want = [(e["state"], e["sparsity"], cuts.get(e["state"], e["best_val_acc"]))
            for e in of(evs, "state_ended")]
    got = figdata.accuracy_vs_sparsity(read_log(RUNS / name / "events.jsonl"))
    assert got == want and len(got) == 3
    assert got[0][1] == 0.0 and got[-1][1] > got[1][1] > 0


def test_sparsity_grid_is_the_structure_in_force():
    """RSST: a state's weights hold its own hard cut; state 0 is dense."""
    evs = events(RUNS / "rsst_layerwise")
    grid = figdata.sparsity_grid(read_log(RUNS / "rsst_layerwise" / "events.jsonl"))
    cuts = {c["state"]: c["layers"] for c in of(evs, "hard_cut")}
    assert grid.states == [0, 1, 2]
    for b in range(of(evs, "run_started")[0]["model"]["blocks"]):
        assert grid.attn[b] == [0.0] + [cuts[s][b]["attn_sparsity"] for s in (1, 2)]
        assert grid.mlp[b] == [0.0] + [cuts[s][b]["mlp_sparsity"] for s in (1, 2)]
    # Refill: the step after state k is in force from state k+1
    evs = events(RUNS / "refill_global")
    grid = figdata.sparsity_grid(read_log(RUNS / "refill_global" / "events.jsonl"))
    steps = {p["step"]: p["layers"] for p in of(evs, "pruned")}
    assert [row[1:] for row in grid.attn] == [[steps[0][b]["attn_sparsity"],
                                               steps[1][b]["attn_sparsity"]]
                                              for b in range(len(grid.attn))]


def test_lambda_curves_are_the_logged_values():
    evs = events(RUNS / "rsst_global")
    st = of(evs, "run_started")[0]
    per = st["epochs"] * st["batches_per_epoch"]
    curves = figdata.lambda_curves(read_log(RUNS / "rsst_global" / "events.jsonl"))
    assert [s for s, _, _ in curves] == [1, 2]
    for s, xs, ys in curves:
        lam = [e for e in of(evs, "lambda") if e["state"] == s]
        assert ys == [e["value"] for e in lam]
        assert xs == [s * per + e["step"] for e in lam]


def test_series_stay_bounded_on_a_long_log(tmp_path):
    """40,000 λ events and ~4,000 system events: each series keeps at most SERIES_POINTS,
    evenly spread, the first and the last value exact."""
    run = system_run(tmp_path, states=2, epochs=2, batches=10_000)
    evs = events(run)
    log = read_log(run / "events.jsonl")
    lam = [e for e in of(evs, "lambda") if e["state"] == 1]
    series = log.states[1].lam.series
    assert series.count == len(lam) == 20_000
    kept = series.snapshot()
    assert len(kept) <= SERIES_POINTS + 1
    assert kept[0] == (lam[0]["step"], lam[0]["value"])
    assert kept[-1] == (lam[-1]["step"], lam[-1]["value"])
    gaps = {b[0] - a[0] for a, b in zip(kept[:-2], kept[1:-1])}
    assert len(gaps) == 1  # evenly spaced
    system = of(evs, "system")
    t, points = figdata.system_curve(log)
    assert log.system.count == len(system) > SERIES_POINTS and len(points) <= SERIES_POINTS + 1
    assert points[-1].images_per_s == system[-1]["images_per_s"]
    assert t[-1] == pytest.approx(system[-1]["time"] - evs[0]["time"])


def test_system_curve_follows_the_events(tmp_path):
    run = system_run(tmp_path)
    evs = events(run)
    t, points = figdata.system_curve(read_log(run / "events.jsonl"))
    system = of(evs, "system")
    assert len(points) == len(system) > 10
    assert t == pytest.approx([e["time"] - evs[0]["time"] for e in system])
    assert [p.gpu_util for p in points] == [e["gpus"][0]["util"] for e in system]
    assert [p.data_wait for p in points] == [e["data_wait"] for e in system]


# ----------------------------------------------------------------------------- the files
def test_pngs_have_the_documented_sizes(tmp_path):
    assert SIZE == (1000, 600) and TALL == (1000, 800)  # the sizes the README promises
    run = system_run(tmp_path)
    assert report_main(run, out=tmp_path / "out") == 0
    out = tmp_path / "out"
    names = sorted(p.name for p in out.glob("*.png"))
    assert names == ["acc_vs_sparsity.png", "accuracy.png", "lambda.png", "sparsity.png",
                     "system.png"]
    for name in names:
        with Image.open(out / name) as im:
            assert im.size == (TALL if name == "system.png" else SIZE), name
            assert im.info.get("dpi", (DPI, DPI))[0] == pytest.approx(DPI, abs=1)
    text = (out / "report.md").read_text()
    for name in names:
        assert f"]({name})" in text


def test_no_system_data_skips_that_figure(tmp_path):
    out = tmp_path / "r.md"
    assert report_main(RUNS / "rsst_global", out=out) == 0
    text = out.read_text()
    assert "Throughput and GPU: no system data in the log" in plain(text)
    assert not (tmp_path / "r-system.png").exists() and (tmp_path / "r-accuracy.png").exists()


def test_a_crafted_run_name_is_plain_text_in_figures(tmp_path):
    run = copy_run("rsst_global", tmp_path, checkpoints=False)
    other = copy_run("rsst_layerwise", tmp_path, checkpoints=False)
    lines = (run / "events.jsonl").read_text().splitlines(True)
    first = json.loads(lines[0])
    first["name"] = "$\\frac{a}{$ \x1b[31mred" + "x" * 200
    (run / "events.jsonl").write_text(json.dumps(first) + "\n" + "".join(lines[1:]))
    assert report_main(run, compare=other, out=tmp_path / "o") == 0
    assert (tmp_path / "o" / "sparsity-1.png").is_file()


# ----------------------------------------------------------------------------- sweeps
def make_sweep(tmp_path) -> Path:
    """The seed's 2 × 2 grid from the fixture runs; ``refill_layer-wise`` never started."""
    base = tomllib.loads((RUNS / "rsst_global" / "config.toml").read_text())
    sweep = write_sweep(tmp_path / "seed-sweep", "seed", {
        "prune.method": ["refill", "rsst"], "prune.sorting": ["global", "layer-wise"]},
        base, 1.0)
    source = {"refill_global": "refill_global", "rsst_global": "rsst_global",
              "rsst_layer-wise": "rsst_layerwise"}
    for m in sweep.members:
        if m.name in source:
            shutil.copytree(RUNS / source[m.name], m.run_dir)
    return sweep.path


def test_sweep_report_sets_every_member_side_by_side(tmp_path):
    res = tuiprune("report", str(make_sweep(tmp_path)), "--out", str(tmp_path / "out"))
    assert res.returncode == 0, res.stderr
    text = (tmp_path / "out" / "report.md").read_text()
    _, members = md_table(text, "## Members")
    assert [(r[0], plain(r[1]), r[4]) for r in members] == [
        ("A", "refill_global", "completed"), ("–", "refill_layer-wise", "not started"),
        ("B", "rsst_global", "completed"), ("C", "rsst_layer-wise", "completed")]
    header, rows = md_table(text, "## Accuracy, sparsity and heads kept per state")
    assert header[1:5] == ["A val acc %", "A test acc %", "A sparsity %", "A heads kept"]
    assert len(header) == 1 + 3 * 4 and len(rows) == 3
    for code, fixture in (("A", "refill_global"), ("B", "rsst_global"), ("C", "rsst_layerwise")):
        evs = events(RUNS / fixture)
        cuts = {c["state"]: c for c in of(evs, "hard_cut")}
        col = header.index(f"{code} val acc %")
        for row, end in zip(rows, of(evs, "state_ended")):
            acc = cuts[end["state"]]["val_acc_after"] if end["state"] in cuts else \
                end["best_val_acc"]
            assert row[col:col + 3] == [f"{acc:.2f}", f"{end['test_acc']:.2f}",
                                        f"{end['sparsity']:.2f}"]
    header, rows = md_table(text, "### Per layer at the end of state 2")
    last = of(events(RUNS / "rsst_layerwise"), "hard_cut")[-1]["layers"]
    col = header.index("C attn %")
    assert [r[col:col + 2] for r in rows] == [[f"{x['attn_sparsity']:.2f}",
                                               f"{x['mlp_sparsity']:.2f}"] for x in last]
    # one line per member in the comparison figures, in its colour
    with Image.open(tmp_path / "out" / "acc_vs_sparsity.png") as im:
        assert all(pixels_of(im, COLOURS[i]) > 200 for i in range(3))
        assert pixels_of(im, COLOURS[3]) == 0
    assert sorted(p.name for p in (tmp_path / "out").glob("sparsity-*.png")) == [
        "sparsity-1.png", "sparsity-2.png", "sparsity-3.png"]


def test_not_a_sweep_nor_a_run(tmp_path):
    (tmp_path / "sweep.toml").write_text("not = [toml")
    res = tuiprune("report", str(tmp_path))
    assert res.returncode == 2 and res.stderr.startswith("error: ") and \
        "sweep.toml cannot be read" in res.stderr and len(res.stderr.splitlines()) == 1


# ----------------------------------------------------------------------------- HTML
def screenshot(page: Path, png: Path, tmp_path: Path) -> Image.Image:
    profile = tmp_path / "chromium-profile"
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
                    "--hide-scrollbars", "--window-size=1200,2000", f"--screenshot={png}",
                    page.as_uri()], capture_output=True, timeout=120, check=True)
    return Image.open(png)


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed "
                    "(Debian: apt-get install -y chromium)")
def test_html_is_self_contained_and_shows_the_figures(tmp_path):
    run = system_run(tmp_path)
    page = tmp_path / "page" / "report.html"
    res = tuiprune("report", str(run), "--out", str(page.parent), "--format", "html")
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in page.parent.iterdir()) == ["report.html"]
    html = page.read_text()
    assert html.count('src="data:image/png;base64,') == 5
    assert "src=\"http" not in html and "<script" not in html
    # the same page without its images: what the figures add to the screenshot
    bare = page.with_name("bare.html")
    bare.write_text(html.replace('src="data:image/png;base64,', 'src="data:,'))
    shot = screenshot(page, tmp_path / "shot.png", tmp_path)
    blank = screenshot(bare, tmp_path / "bare.png", tmp_path)
    run_colour = COLOURS[0]
    assert pixels_of(shot, run_colour) > 2000 and pixels_of(blank, run_colour) == 0
    grey = np.asarray(shot.convert("L"), dtype=float)
    assert grey.std() > np.asarray(blank.convert("L"), dtype=float).std()


# ----------------------------------------------------------------------------- bad input
def test_unwritable_out_is_one_line_and_exit_2(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for out in (blocker / "sub", Path("/proc/tuiprune-report"),
                Path("/proc/tuiprune-report.md")):
        res = tuiprune("report", str(RUNS / "rsst_global"), "--out", str(out))
        assert res.returncode == 2, (out, res.stderr)
        assert res.stderr.startswith(f"error: --out {out}") and \
            len(res.stderr.strip().splitlines()) == 1, res.stderr
        assert res.stdout == ""  # found before anything was read or printed


@pytest.mark.parametrize("args, says", [
    (["--format", "html"], "--format html writes a file"),
    (["--out", "x.md", "--format", "html"], "is a .md file but --format is html"),
    (["--format", "pdf"], "--format pdf: choose md or html"),
])
def test_format_mistakes(tmp_path, args, says):
    res = tuiprune("report", str(RUNS / "rsst_global"), *args, cwd=tmp_path)
    assert res.returncode == 2 and says in res.stderr and len(res.stderr.splitlines()) == 1


def test_without_matplotlib_the_markdown_is_written(tmp_path):
    script = (
        "import sys, importlib.abc\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'matplotlib':\n"
        "            raise ImportError('blocked: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from tuiprune.cli import main\n"
        "main()\n")
    res = subprocess.run([sys.executable, "-c", script, "report", str(RUNS / "rsst_global"),
                          "--out", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "matplotlib is not installed (pip install matplotlib)" in res.stderr
    text = (tmp_path / "report.md").read_text()
    assert "figures not drawn: matplotlib is not installed" in plain(text)
    assert "## States" in text and not list(tmp_path.glob("*.png"))


def test_sampler_events_reach_the_system_figure(tmp_path):
    """Events of the real sampler, written by the engine's EventLog after a fixture run's
    events, are read back and drawn (the run loop's call is the integrator's)."""
    from engine.events import EventLog
    from engine.system import SystemSampler

    run = copy_run("refill_global", tmp_path, checkpoints=False)
    last_seq = events(run)[-1]["seq"]
    log = EventLog(run / "events.jsonl", seq=last_seq + 1)
    sampler = SystemSampler(10, device="cpu")
    for i in range(3):
        sampler.count(images=256, step_seconds=0.5, data_wait_seconds=0.1 * i)
        log.emit("system", **sampler.sample(state=2, epoch=i))
    log.close()
    folded = read_log(run / "events.jsonl")
    assert folded.malformed == 0 and folded.system.count == 3
    t, points = figdata.system_curve(folded)
    assert [p.images_per_s for p in points] == [512.0] * 3
    assert [p.data_wait for p in points] == pytest.approx([0.0, 0.2, 0.4])
    assert all(p.rss > 0 and p.gpu_util is None for p in points)
    assert report_main(run, out=tmp_path / "out") == 0
    with Image.open(tmp_path / "out" / "system.png") as im:
        assert im.size == TALL


def test_a_distributed_runs_figures_count_every_rank_as_the_dashboard_does():
    """Four ranks of one GPU each (rank 1 at 70 %, the rest at 30 %): the report's point is
    the whole run's, the figures the system pane shows (tests/ui/test_sysview.py)."""
    from engine.series import system_point
    from helpers.system_log import GIB, steady

    ev = steady(1.7e9, 1, util=30.0, ranks=4)[0]
    ev["ranks"][0]["gpus"][0]["util"] = 70.0
    point = system_point(ev)
    assert point.gpu_util == (30.0 * 3 + 70.0) / 4
    assert (point.gpu_mem_used, point.gpu_mem_total) == (4 * 20 * GIB, 4 * 80 * GIB)
    assert point.cpu_percent == 4 * 150.0 and point.rss == 4 * 3 * GIB
