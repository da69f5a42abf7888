"""The system pane (``m``) and the header's ranks, driven with Pilot on real runs' logs with
``system`` events added (``tests/helpers/system_log.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers.dash import HOSTILE, REFILL, RSST, UNSAFE, events_of, screen_text, settle
from helpers.system_log import steady, with_samples, write_log
from helpers.tmux import TUIPRUNE
from tuiprune.dashboard.app import DashboardApp
from tuiprune.dashboard.sysview import STARVING_ADVICE
from tuiprune.dashboard.widgets.system import NO_DATA, NO_DATA_YET

ADVICE = "the GPU is starving: see data.workers / dataset placement"  # the words
HOSTS4 = ["gpu-a.cluster", "gpu-a.cluster", "gpu-b.cluster", "gpu-b.cluster"]


def run_with(tmp_path: Path, samples, src: Path = RSST, name: str = "run", **run_started):
    """A run directory whose log is ``src``'s with ``samples`` before its end."""
    return write_log(tmp_path / name, with_samples(events_of(src), samples, **run_started))


def last_time(src: Path = RSST) -> float:
    return events_of(src)[-2]["time"]  # before run_ended


def replay(run: Path, ascii_only: bool = False) -> DashboardApp:
    return DashboardApp(run / "events.jsonl", run, mode="replay", speed=0,
                        ascii_only=ascii_only)


def pane(text: str) -> list:
    """The system pane's lines (its title line, its rows, its bottom border)."""
    lines = text.splitlines()
    top = next(i for i, ln in enumerate(lines) if "System" in ln and ln[0] in "╭+")
    bottom = next(i for i in range(top + 1, len(lines)) if lines[i][0] in "╰+")
    return lines[top:bottom + 1]


def assert_fits(text: str, size) -> None:
    lines = text.splitlines()
    assert len(lines) == size[1] and all(len(ln) <= size[0] for ln in lines)


async def read(app: DashboardApp, *keys: str, size=(80, 24)) -> str:
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        await pilot.press(*keys)
        await pilot.pause()
        return screen_text(app)


async def test_the_pane_shows_the_latest_figures_at_80x24(tmp_path):
    samples = steady(last_time() + 1, 5, util=72.0, data_wait=0.12)
    text = await read(replay(run_with(tmp_path, samples)))
    assert_fits(text, (80, 24))
    rows = pane(text)
    assert len(rows) == 4  # border, GPU, process figures, border
    assert "System · synthhost · 5 samples" in rows[0]
    gpu, proc = rows[1], rows[2]
    # 72 % util, 20 of 80 GiB; 150 % CPU and 3 GiB RSS; 12 % wait; 1000 img/s (steady())
    assert gpu.startswith("│ GPU0 util ") and " 72% " in gpu and " 20.0/80.0 GiB " in gpu
    assert "CPU 150%" in proc and "RSS 3.0 GiB" in proc and "data wait 12%" in proc
    assert "img/s 1,000" in proc
    assert "STARVING" not in text and "starving" not in text
    # the other panes are still there
    assert "Accuracy" in text and "Sparsity" in text and "run completed" in text


async def test_m_hides_and_shows_the_pane(tmp_path):
    app = replay(run_with(tmp_path, steady(last_time() + 1, 3)))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert "System ·" in screen_text(app)
        await pilot.press("m")
        assert "System" not in screen_text(app)
        await pilot.press("m")
        assert "System ·" in screen_text(app)


async def test_a_log_without_system_events_says_no_system_data():
    app = replay(REFILL)  # written before the engine sampled the machine
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert "System" not in screen_text(app)  # hidden until asked for
        await pilot.press("m")
        await pilot.pause()
        text = screen_text(app)
        rows = pane(text)
        assert len(rows) == 3 and rows[1] == f"│ {NO_DATA}".ljust(79) + "│"
        assert_fits(text, (80, 24))


async def test_a_live_run_without_samples_yet_says_so(run_copy):
    run = run_copy(RSST)
    lines = (run / "events.jsonl").read_text().splitlines(keepends=True)
    (run / "events.jsonl").write_text("".join(lines[:-1]))  # no run_ended
    app = DashboardApp(run / "events.jsonl", run, mode="watch")
    text = await read(app, "m", size=(100, 30))
    assert NO_DATA_YET in text


async def test_the_starving_warning_after_a_minute_of_low_utilisation(tmp_path):
    samples = steady(last_time() + 10, 8, every=10.0, util=20.0, data_wait=0.05)
    assert STARVING_ADVICE == ADVICE
    text = await read(replay(run_with(tmp_path, samples)))
    assert_fits(text, (80, 24))
    rows = pane(text)
    assert "! STARVING 1m 20s" in rows[0]  # 8 samples of 10 s
    assert len(rows) == 5 and f"!  {ADVICE}" in rows[3]
    assert " 20% " in rows[1]


async def test_the_starving_warning_for_high_data_wait_in_ascii(tmp_path):
    samples = steady(last_time() + 10, 7, every=10.0, util=95.0, data_wait=0.45)
    text = await read(replay(run_with(tmp_path, samples), ascii_only=True))
    assert text.isascii()
    assert_fits(text, (80, 24))
    rows = pane(text)
    assert rows[0].startswith("+- System  ! STARVING 1m 10s  | synthhost | 7 samples")
    assert f"!  {ADVICE}" in rows[3] and "data wait 45%" in rows[2]


async def test_a_short_pane_shows_everything_in_brief_when_the_log_opens(tmp_path):
    samples = steady(last_time() + 1, 3, util=72.0, data_wait=0.12)
    text = await read(replay(run_with(tmp_path, samples)), "l")
    assert_fits(text, (80, 24))
    rows = pane(text)
    assert len(rows) == 3
    assert "GPU 72% mem 25% · CPU 150% · RSS 3.0 GiB · data wait 12% · 1,000 img/s" in rows[1]
    assert "Log ·" in text and "Accuracy" in text


async def test_several_ranks_one_line_per_gpu_and_means_past_four(tmp_path):
    two = steady(last_time() + 1, 2, util=66.0, ranks=2)
    text = await read(replay(run_with(tmp_path, two, name="two", world_size=2,
                                      hosts=["gpu-a", "gpu-a"])), size=(100, 40))
    rows = pane(text)
    assert "2 processes" in rows[0] and rows[1].startswith("│ r0:0 util") \
        and rows[2].startswith("│ r1:1 util") and "CPU 300%" in rows[3]
    eight = steady(last_time() + 1, 2, util=40.0, ranks=8)
    text = await read(replay(run_with(tmp_path, eight, name="eight")), size=(100, 40))
    rows = pane(text)
    assert rows[1].startswith("│ 8 GPUs util") and " 40% " in rows[1] \
        and " 160/640 GiB " in rows[1]  # 8 x 20 of 8 x 80 GiB


async def test_the_header_shows_ranks_and_hosts_at_80_columns(tmp_path):
    run = run_with(tmp_path, [], world_size=4, hosts=HOSTS4, backend="nccl")
    first = (await read(replay(run))).splitlines()[0]
    assert first.startswith("tuiprune  rsst_global  ×4 on gpu-a,gpu-b ") and \
        first.rstrip().endswith("COMPLETED   0:00:08")
    first = (await read(replay(run, ascii_only=True))).splitlines()[0]
    assert first.startswith("tuiprune  rsst_global  x4 on gpu-a,gpu-b ")
    many = run_with(tmp_path, [], name="many", world_size=16,
                    hosts=[f"node{i // 4:02d}.cluster" for i in range(16)])
    events = events_of(many)
    name = events[0]["name"] = "a-very-long-run-name-that-cannot-fit-in-the-header"
    write_log(many, events)
    first = (await read(replay(many))).splitlines()[0]
    # the name gives way to the ranks: what is left of 80 columns, cut with an ellipsis
    right, where = "replay: end   COMPLETED   0:00:08", "  ×16 on node00 +3 hosts"
    room = 80 - len(right) - 1 - len("tuiprune  ") - len(where)
    assert first == "tuiprune  " + name[:room - 1] + "…" + where + " " + right


async def test_strings_of_system_events_cannot_reach_the_terminal(tmp_path):
    samples = steady(last_time() + 1, 2, gpus=0)
    for ev in samples:
        ev["host"] = f"host:{HOSTILE}"
        ev["unavailable"] = f"why:{HOSTILE}"
    text = await read(replay(run_with(tmp_path, samples)), size=(200, 40))
    assert not UNSAFE.search(text)
    rows = pane(text)
    assert "host:\\x1b]0;pwned\\x07" in rows[0]
    assert "│ why:\\x1b]0;pwned\\x07" in rows[1] and "[link=https://evil" in rows[1]


@pytest.mark.slow
def test_the_pane_in_a_real_terminal_m_and_ascii(term, tmp_path):
    samples = steady(last_time() + 10, 7, every=10.0, util=20.0, data_wait=0.05)
    run = run_with(tmp_path, samples)
    term.start(f"{TUIPRUNE} replay {run} --speed 0 --ascii", size=(80, 24))
    text = term.wait_screen(lambda t: "replay: end" in t and "STARVING" in t)
    assert text.isascii() and f"!  {ADVICE}" in text and "GPU0 util" in text
    term.keys("m")
    term.wait_screen(lambda t: "System" not in t and "Sparsity" in t)
    term.keys("m")
    term.wait_screen(lambda t: "STARVING" in t)
    term.keys("q")
    assert term.wait_exit() == 0
