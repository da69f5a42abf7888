"""The run browser (``tuiprune watch [DIR]``) driven with Textual's Pilot on copies of the
engine's fixture runs: every row against the raw logs, sorting, filters, live updates,
Enter/Esc to a run's dashboard and back, marks and the way to the compare screen."""

from __future__ import annotations

import os
import shutil

import pytest

from engine.pidfile import write_pidfile
from helpers.browse import (assert_only_ascii, compared, expected_row, listed, row_of,
                            table_names)
from helpers.dash import FIXTURE_RUNS, RSST, events_of, screen_text, wait_for
from helpers.sweeps import copy_fixtures, copy_run, fixture_sweep
from tuiprune.dashboard.app import RunScreen
from tuiprune.dashboard.browser.app import BrowserApp
from tuiprune.dashboard.browser.screen import BROWSER_KEYS
from tuiprune.dashboard.compare.screen import CompareScreen
from tuiprune.dashboard.widgets.screens import HelpScreen

NAMES = sorted(p.name for p in FIXTURE_RUNS.iterdir())


def browse(directory, ascii_only=False) -> BrowserApp:
    return BrowserApp(directory, ascii_only=ascii_only)


def started_order(out) -> list:
    """The runs oldest first, from their run_started times."""
    return sorted(NAMES, key=lambda n: events_of(out / n)[0]["time"])


async def test_every_row_says_what_its_log_says(tmp_path):
    out = copy_fixtures(tmp_path / "runs")
    app = browse(out)
    async with app.run_test(size=(140, 30)) as pilot:
        await listed(pilot, rows=len(NAMES))
        text = screen_text(app)
    for name in NAMES:
        want = expected_row(out / name)
        words = row_of(text, name)
        assert want["status"] in words and want["state"] in words, (name, words)
        assert want["best val"] in words and want["sparsity"] in words, (name, words)
    assert "5 runs: 3 completed, 1 failed, 1 lost" in text
    assert table_names(text, NAMES) == started_order(out)  # oldest first, as tuiprune ls


async def test_s_sorts_by_the_next_column_and_r_reverses(tmp_path):
    out = copy_fixtures(tmp_path / "runs")
    best = {n: float(expected_row(out / n)["best val"].rstrip("%")) for n in NAMES}
    order = started_order(out)
    app = browse(out)
    async with app.run_test(size=(120, 30)) as pilot:
        await listed(pilot, rows=len(NAMES))
        await pilot.press("s")
        assert table_names(screen_text(app), NAMES) == sorted(NAMES)
        assert "sorted by name ↑" in screen_text(app)
        await pilot.press("s", "s")  # status, then best val
        text = screen_text(app)
        assert "sorted by best val ↓" in text
        by_best = sorted(NAMES, key=lambda n: (-best[n], order.index(n)))
        assert table_names(text, NAMES) == by_best
        await pilot.press("r")
        assert "sorted by best val ↑" in screen_text(app)
        assert table_names(screen_text(app), NAMES) == \
            sorted(NAMES, key=lambda n: (best[n], order.index(n)))


async def test_text_and_status_filters(tmp_path):
    out = copy_fixtures(tmp_path / "runs")
    app = browse(out)
    async with app.run_test(size=(120, 30)) as pilot:
        await listed(pilot, rows=len(NAMES))
        await pilot.press("slash", *"layerwise")
        text = screen_text(app)
        assert table_names(text, NAMES) == ["rsst_layerwise"]
        assert 'filter "layerwise"' in text and "1 shown" in text
        await pilot.press("enter", "q")  # the filter is kept; keys work again
        await pilot.pause()
        assert app.return_code == 0
    app = browse(out)
    async with app.run_test(size=(120, 30)) as pilot:
        await listed(pilot, rows=len(NAMES))
        await pilot.press("slash", *"zzz")
        assert table_names(screen_text(app), NAMES) == []
        await pilot.press("escape")  # clears it
        assert len(table_names(screen_text(app), NAMES)) == len(NAMES)
        statuses = {n: expected_row(out / n)["status"] for n in NAMES}
        for status in ("completed", "failed", "lost"):  # the statuses listed, in ls's order
            await pilot.press("f")
            text = screen_text(app)
            assert f"only {status}" in text
            assert set(table_names(text, NAMES)) == {n for n in NAMES if statuses[n] == status}
        await pilot.press("f")
        assert len(table_names(screen_text(app), NAMES)) == len(NAMES)


async def test_the_list_follows_runs_that_start_and_end(tmp_path):
    out = tmp_path / "runs"
    copy_fixtures(out, ["refill_global"])
    live = copy_run(RSST, out / "rsst_live")
    lines = (live / "events.jsonl").read_text().splitlines(keepends=True)
    (live / "events.jsonl").write_text("".join(lines[:-1]))  # no run_ended yet
    write_pidfile(live, os.getpid())  # this test process stands in for its engine
    app = browse(out)
    async with app.run_test(size=(120, 30)) as pilot:
        await listed(pilot, rows=2)
        assert "live" in row_of(screen_text(app), "rsst_live")
        with open(live / "events.jsonl", "a") as f:
            f.write(lines[-1])
        await wait_for(pilot, lambda: "completed" in row_of(screen_text(app), "rsst_live"),
                       timeout=5, what="the run's end in the list")
        copy_run(FIXTURE_RUNS / "failed_nan", out / "failed_nan")
        await wait_for(pilot, lambda: "failed_nan" in screen_text(app), timeout=5,
                       what="a new run in the list")
        assert "3 runs: 2 completed, 1 failed" in screen_text(app)


async def test_enter_opens_the_runs_dashboard_and_escape_comes_back(tmp_path):
    out = copy_fixtures(tmp_path / "runs")
    order = started_order(out)
    app = browse(out)
    async with app.run_test(size=(120, 40)) as pilot:
        await listed(pilot, rows=len(NAMES))
        await pilot.press("down", "enter")
        assert isinstance(app.screen, RunScreen)
        dashboard = app.screen
        await wait_for(pilot, lambda: dashboard.caught_up, what="the dashboard's read")
        dashboard.redraw(urgent=True)
        await pilot.pause()
        text = screen_text(app)
        assert f"tuiprune  {order[1]}" in text and "Esc back" in text
        listings = app.browser.lister.listings
        await pilot.pause(1.5)
        assert app.browser.lister.listings == listings  # the hidden list is not read again
        await pilot.press("escape")
        assert app.screen is app.browser
        assert dashboard.source.stopped()  # its log is no longer followed
        assert app.browser.current().name == order[1]  # the cursor stayed on it
        await wait_for(pilot, lambda: app.browser.lister.listings > listings,
                       what="the list read again")
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        text = screen_text(app)
        for key in BROWSER_KEYS:
            assert f"{key.label:<16}{key.help}" in text
        await pilot.press("x")
        await pilot.press("q")
        await pilot.pause()
        assert app.return_code == 0


async def test_marks_lead_to_the_compare_screen(tmp_path):
    out = copy_fixtures(tmp_path / "runs")
    fixture_sweep(out)  # 4 members more: 9 rows
    app = browse(out)
    async with app.run_test(size=(120, 40)) as pilot:
        await listed(pilot, rows=9)
        await pilot.press("space", "c")
        assert app.screen is app.browser
        assert "mark 2 to 6 runs with space first (1 marked)" in screen_text(app)
        await pilot.press(*["space"] * 6)
        assert "at most 6 runs can be compared" in screen_text(app)
        assert sorted(app.browser.state.marks.values()) == list(range(6))
        await pilot.press("up", "space", "up", "up", "space")  # unmark the 6th and 5th
        lines = screen_text(app).splitlines()
        marked = [ln.split()[0] for ln in lines if ln.split() and ln.split()[0] in "ABCDEF"]
        assert marked == ["A", "B", "C", "D"], lines
        await pilot.press("c")
        assert isinstance(app.screen, CompareScreen)
        assert [r.letter for r in app.screen.ctx.runs] == ["A", "B", "C", "D"]
        assert [r.path for r in app.screen.ctx.runs] == \
            [e.path for e in app.browser.state.marked()]
        await pilot.press("escape")
        assert app.screen is app.browser
        await pilot.press("u")
        assert app.browser.state.marks == {}


async def test_a_pending_sweep_member_cannot_be_opened(tmp_path):
    sweep = fixture_sweep(tmp_path)
    app = browse(sweep)
    async with app.run_test(size=(160, 30)) as pilot:
        await listed(pilot, rows=4)
        text = screen_text(app)
        assert "pending" in row_of(text, "refill_layer-wise")
        assert "method=refill sorting=layer-wise" in text  # a member's grid values
        while app.browser.current().name != "refill_layer-wise":
            await pilot.press("down")
        await pilot.press("enter")
        assert app.screen is app.browser
        assert "refill_layer-wise has not started yet" in screen_text(app)


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
async def test_ascii_browser_and_compare_draw_only_ascii(tmp_path, size):
    sweep = fixture_sweep(tmp_path)
    app = browse(sweep, ascii_only=True)
    screens = []
    async with app.run_test(size=size) as pilot:
        await listed(pilot, rows=4)
        await pilot.press("space", "space", "space")
        screens.append(screen_text(app))
        await pilot.press("c")
        await compared(pilot)
        screens.append(screen_text(app))
        await pilot.press("question_mark")
        screens.append(screen_text(app))
    assert_only_ascii(screens)
    assert "+-" in screens[1]  # ASCII borders


def test_fixture_names_are_what_the_tests_expect():
    assert NAMES == ["failed_nan", "lost_killed", "refill_global", "rsst_global",
                     "rsst_layerwise"]
    assert shutil.which("tmux")  # the terminal test needs it


@pytest.mark.parametrize("name, width, ellipsis, shown", [  # worked by hand
    ("demo-sweep-20251124-160000/rsst_global", 22, "…", "demo-swee…/rsst_global"),
    ("demo-sweep-20251124-160000/rsst_global", 16, "...", "...0/rsst_global"),
    ("a-very-long-run-name-20251124", 12, "...", "...-20251124"),
    ("short", 12, "…", "short"),
])
def test_long_names_keep_the_member_name(name, width, ellipsis, shown):
    from tuiprune.dashboard.browser.table import short_name

    assert short_name(name, width, ellipsis) == shown


async def test_a_directory_that_goes_away_is_said_and_the_list_kept(tmp_path):
    out = copy_fixtures(tmp_path / "runs", ["refill_global"])
    app = browse(out)
    async with app.run_test(size=(120, 30)) as pilot:
        await listed(pilot, rows=1)
        shutil.rmtree(out)
        await wait_for(pilot, lambda: "does not exist" in screen_text(app), timeout=5,
                       what="the problem on screen")
        assert "refill_global" in screen_text(app)  # what was listed stays
        copy_fixtures(out, ["rsst_global"])
        await wait_for(pilot, lambda: "rsst_global" in screen_text(app)
                       and "does not exist" not in screen_text(app), timeout=5,
                       what="the list back")


@pytest.mark.parametrize("width, dropped, values", [  # worked by hand: 10 columns of 8,
    (137, [], 30),               # values 30 (16 at the least), 2 cells of padding each, 5
    (123, [], 16),               # for the mark column and the scrollbar: 123 with all
    (122, ["criterion"], 25),    # shown and the values at 16
])
def test_columns_fit_the_width_as_ls_fits_them(width, dropped, values):
    from tuiprune.dashboard.browser.table import fit_columns
    from tuiprune.ls_command import COLUMNS

    widths = {c: 30 if c == "values" else 8 for c in COLUMNS}
    shown, got = fit_columns(widths, width)
    assert shown == ["mark"] + [c for c in COLUMNS if c not in dropped]
    assert got["values"] == values
