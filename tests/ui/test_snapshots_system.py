"""SVG snapshots of the system pane (pytest-textual-snapshot), on RSST's log with steady
``system`` events added. After an intended change of the look:
``pytest tests/ui/test_snapshots_system.py --snapshot-update``."""

from __future__ import annotations

from helpers.dash import RSST, events_of, settle
from helpers.system_log import steady, with_samples, write_log
from tuiprune.dashboard.app import DashboardApp


def replay(tmp_path, samples, ascii_only=False, **run_started):
    run = write_log(tmp_path / "run", with_samples(events_of(RSST), samples, **run_started))
    return DashboardApp(run / "events.jsonl", run, mode="replay", speed=0,
                        ascii_only=ascii_only)


def t0():
    return events_of(RSST)[-2]["time"] + 10


def test_two_ranks_starving_at_80x24(snap_compare, tmp_path):
    samples = steady(t0(), 8, every=10.0, util=31.0, data_wait=0.42, ranks=2)
    app = replay(tmp_path, samples, world_size=2, hosts=["gpu-a", "gpu-b"], backend="nccl")
    assert snap_compare(app, terminal_size=(80, 24), run_before=settle)


def test_one_gpu_ascii_at_80x24(snap_compare, tmp_path):
    samples = steady(t0(), 6, every=10.0, util=88.0, data_wait=0.08)
    for i, ev in enumerate(samples):  # some movement for the sparklines
        ev["gpus"][0]["util"] = 60.0 + 5 * i
        ev["images_per_s"] = 900.0 + 40 * i
    assert snap_compare(replay(tmp_path, samples, ascii_only=True), terminal_size=(80, 24),
                        run_before=settle)
