"""The system part of the view model: ``system`` events folded into bounded series, and the
starving warning over a minute of the log's own clock (no screen)."""

from __future__ import annotations

from helpers import synthlog
from helpers.dash import validated
from helpers.system_log import GIB, steady, with_samples
from tuiprune.dashboard import sysview
from tuiprune.dashboard.reducer import Reducer

T0 = synthlog.T0


def fold(samples, **run_started):
    """A reducer after a short synthetic run with ``samples`` in it."""
    run = list(synthlog.events("refill", states=1, epochs=1, batches=2))
    r = Reducer()
    r.apply_all(validated(with_samples(run, samples, **run_started)))
    return r.view


def starving_after(samples):
    """For each sample, whether the view says starving once it is folded in."""
    r = Reducer()
    out = []
    for ev in validated(samples):
        r.apply(ev)
        out.append(r.view.system.starving is not None)
    return out


def first_past_a_minute(times, every):
    """The first sample whose covered time (each covers ``every`` seconds before it) since
    the first one's start reaches 60 s: worked out from the times alone."""
    return next(i for i, t in enumerate(times) if t - (times[0] - every) >= 60)


def test_low_gpu_utilisation_for_a_minute_is_starving():
    samples = steady(T0, 9, every=10.0, util=20.0, data_wait=0.05)
    flags = starving_after(samples)
    first = first_past_a_minute([s["time"] for s in samples], 10.0)
    assert first == 5  # samples at 0..50 s cover -10..50 s: a minute
    assert flags == [False] * first + [True] * (len(samples) - first)


def test_high_data_wait_for_a_minute_is_starving_even_with_a_busy_gpu():
    samples = steady(T0, 7, every=10.0, util=95.0, data_wait=0.35)
    assert starving_after(samples) == [False] * 5 + [True] * 2
    fine = steady(T0, 12, every=10.0, util=95.0, data_wait=0.30)  # not above 30 %
    assert not any(starving_after(fine))
    busy = steady(T0, 12, every=10.0, util=50.0, data_wait=0.05)  # not below 50 %
    assert not any(starving_after(busy))


def test_a_good_sample_or_a_gap_starts_the_minute_again():
    every = 10.0
    bad = steady(T0, 4, every=every, util=10.0)
    good = steady(T0 + 40, 1, every=every, util=90.0)
    again = steady(T0 + 50, 6, every=every, util=10.0)
    flags = starving_after(bad + good + again)
    assert not any(flags[:5 + 5]) and flags[10]  # 6 bad samples after the good one
    # a resume an hour later: the first sample after the gap covers only its own interval
    late = steady(T0 + 3600, 6, every=every, util=10.0)
    flags = starving_after(bad + late)
    assert flags == [False] * 4 + [False] * 5 + [True]


def test_starving_is_logged_once_with_its_figures_and_advice():
    view = fold(steady(T0 + 100, 10, every=10.0, util=20.0, data_wait=0.4))
    warnings = [e for e in view.log if e.level == "warning"]
    assert len(warnings) == 1
    assert warnings[0].text == (f"{sysview.STARVING_ADVICE} (data wait 40%, GPU utilisation "
                                "20% for 1m 00s)")
    s = view.system.starving
    assert (s.data_wait, s.gpu_util, s.seconds) == (0.4, 20.0, 100.0)  # -10 s .. 90 s


def test_a_cpu_run_starves_on_data_wait_alone():
    view = fold(steady(T0, 7, every=10.0, gpus=0, data_wait=0.5))
    assert view.system.gpu_count == 0 and view.system.gpu_util is None
    assert view.system.starving.advice == sysview.STARVING_ADVICE_CPU
    assert view.system.unavailable == "GPU: the run uses no GPU"
    assert fold(steady(T0, 7, every=10.0, gpus=0, data_wait=0.1)).system.starving is None


def test_latest_figures_and_ranks_summed():
    samples = steady(T0, 3, util=30.0, ranks=4)
    samples[-1]["ranks"][0]["gpus"][0]["util"] = 70.0  # rank 1
    view = fold(samples)
    system = view.system
    assert (system.samples, system.processes, system.gpu_count) == (3, 4, 4)
    assert system.cpu_percent == 4 * 150.0 and system.rss == 4 * 3 * GIB
    assert system.gpu_util == (30.0 * 3 + 70.0) / 4
    assert (system.gpu_mem_used, system.gpu_mem_total) == (4 * 20 * GIB, 4 * 80 * GIB)
    assert [t.label for t in system.tracks()] == ["r0:0", "r1:1", "r2:2", "r3:3"]
    assert [t.util for t in system.tracks()] == [30.0, 70.0, 30.0, 30.0]
    assert system.tracks()[0].util_series.count == 3 and system.speed.last[1] == 1000.0


def test_series_and_gpu_tracks_stay_bounded():
    samples = steady(T0, 5000, every=1.0, util=80.0)
    for i, ev in enumerate(samples):
        ev["gpus"][0]["util"] = float(i % 100)
    view = fold(samples)
    system = view.system
    assert system.util.count == 5000 and len(system.util) <= sysview.SYSTEM_POINTS
    assert system.util.last == (samples[-1]["time"], float(4999 % 100))
    assert all(len(s) <= sysview.SYSTEM_POINTS for s in
               (system.cpu, system.rss_series, system.wait, system.speed, system.mem,
                system.tracks()[0].util_series, system.tracks()[0].mem_series))
    many = steady(T0, 1, gpus=100, util=10.0)
    many[0]["gpus"][-1]["util"] = 60.0
    system = fold(many).system
    assert len(system.tracks()) == sysview.MAX_GPU_TRACKS and system.gpu_count == 100
    assert system.gpu_util == (99 * 10.0 + 60.0) / 100


def test_ranks_and_hosts_come_from_run_started():
    hosts = ["gpu-a.cluster", "gpu-a.cluster", "gpu-b.cluster", "gpu-b.cluster"]
    view = fold([], world_size=4, hosts=hosts, backend="gloo")
    assert view.world_size == 4 and view.hosts == hosts
    assert fold([]).world_size is None and fold([]).hosts == []
