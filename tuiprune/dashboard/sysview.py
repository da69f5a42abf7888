"""The system part of the view model: what the ``system`` events (``docs/events.md``) say about
the machine and the run's pace, bounded, and whether the GPU is starving (no Textual here).

The reducer hands each validated ``system`` event to :meth:`SystemView.add`. Every figure kept
over time is a :class:`~engine.series.BoundedSeries`, so a week-long run costs the
same memory as a short one; at most :data:`MAX_GPU_TRACKS` GPUs are followed one by one (the
others still count in the means and sums).

*Starving*: the data wait above :data:`STARVING_DATA_WAIT` or the GPUs' mean utilisation below
:data:`STARVING_GPU_UTIL`, sample after sample, for :data:`STARVING_FOR_S` seconds of the log's
own clock (each sample covers the ``interval`` before its ``time``; a gap the samples do not
cover, such as a resume the next day, starts the count again).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

from engine.series import BoundedSeries, system_point

STARVING_DATA_WAIT = 0.30  # share of step time spent waiting for the next batch
STARVING_GPU_UTIL = 50.0  # percent, mean over the run's GPUs
STARVING_FOR_S = 60.0
STARVING_ADVICE = "the GPU is starving: see data.workers / dataset placement"
STARVING_ADVICE_CPU = "training is starving for data: see data.workers / dataset placement"
SYSTEM_POINTS = 256  # kept points per series; the sparklines draw the latest of them
MAX_GPU_TRACKS = 64
GAP_S = 5.0  # a sample that starts this much after the previous one ended leaves a gap

Text = Callable[[Any], str]  # makes a string from the log printable (the reducer's ``line``)


def _series() -> BoundedSeries:
    return BoundedSeries(SYSTEM_POINTS)


@dataclass
class GpuTrack:
    """One GPU of the run: its latest figures and their history."""

    label: str  # "GPU0"; "r1:0" (rank 1's GPU 0) in a distributed run
    name: str = ""
    util: Optional[float] = None  # percent
    mem_used: Optional[int] = None  # bytes
    mem_total: Optional[int] = None
    temp_c: Optional[float] = None
    power_w: Optional[float] = None
    util_series: BoundedSeries = field(default_factory=_series)
    mem_series: BoundedSeries = field(default_factory=_series)  # share used, 0-1

    @property
    def mem_share(self) -> Optional[float]:
        return _share(self.mem_used, self.mem_total)


@dataclass
class Starving:
    """The starving condition has held since ``since`` (log time) up to the latest sample."""

    since: float
    seconds: float
    data_wait: Optional[float]  # the latest sample's figures
    gpu_util: Optional[float]
    advice: str


def _share(part: Optional[float], whole: Optional[float]) -> Optional[float]:
    return part / whole if part is not None and whole else None


@dataclass
class SystemView:
    samples: int = 0
    time: Optional[float] = None  # of the latest sample
    interval: Optional[float] = None
    host: str = ""
    processes: int = 0  # processes the latest sample covers (ranks)
    cpu_percent: Optional[float] = None  # summed over the processes (of one core: 2 = 200)
    rss: Optional[int] = None  # bytes, summed over the processes
    host_mem_used: Optional[int] = None
    host_mem_total: Optional[int] = None
    data_wait: Optional[float] = None  # share 0-1
    images_per_s: Optional[float] = None
    gpu_count: int = 0  # GPUs in the latest sample
    gpu_util: Optional[float] = None  # mean percent
    gpu_mem_used: Optional[int] = None  # summed
    gpu_mem_total: Optional[int] = None
    unavailable: str = ""
    gpus: Dict[Tuple[int, int], GpuTrack] = field(default_factory=dict)  # (rank, index)
    cpu: BoundedSeries = field(default_factory=_series)
    rss_series: BoundedSeries = field(default_factory=_series)
    wait: BoundedSeries = field(default_factory=_series)
    speed: BoundedSeries = field(default_factory=_series)
    util: BoundedSeries = field(default_factory=_series)  # mean over the GPUs
    mem: BoundedSeries = field(default_factory=_series)  # the GPUs' memory, share used
    starving: Optional[Starving] = None
    bad_since: Optional[float] = None  # the starving condition holds since (log time)

    @property
    def gpu_mem_share(self) -> Optional[float]:
        return _share(self.gpu_mem_used, self.gpu_mem_total)

    def tracks(self) -> List[GpuTrack]:
        """The GPUs followed one by one, in the order they first appeared."""
        return list(self.gpus.values())

    def add(self, ev: dict, text: Text) -> bool:
        """Fold one validated ``system`` event in. True when the GPU has just started
        starving (the caller logs it once)."""
        t, previous = ev["time"], self.time
        ranks = ev["ranks"] or []
        processes = [ev, *ranks]
        self.samples += 1
        self.time, self.interval = t, ev["interval"]
        self.host = text(ev["host"])
        self.processes = len(processes)
        point = system_point(ev)
        self.cpu_percent, self.rss = point.cpu_percent, point.rss
        self.gpu_util, self.gpu_mem_used = point.gpu_util, point.gpu_mem_used
        self.gpu_mem_total = point.gpu_mem_total
        self.host_mem_used, self.host_mem_total = ev["host_mem_used"], ev["host_mem_total"]
        self.data_wait, self.images_per_s = ev["data_wait"], ev["images_per_s"]
        self.unavailable = text(ev["unavailable"]) if ev["unavailable"] else ""
        self._add_gpus(t, processes, bool(ranks), text)
        for series, value in ((self.cpu, self.cpu_percent), (self.rss_series, self.rss),
                              (self.wait, self.data_wait), (self.speed, self.images_per_s),
                              (self.util, self.gpu_util), (self.mem, self.gpu_mem_share)):
            if value is not None:
                series.add(t, value)
        return self._judge(t, ev["interval"], previous)

    def _add_gpus(self, t: float, processes: List[dict], ranked: bool, text: Text) -> None:
        """Each GPU's own track (the run's totals come from ``engine.series.system_point``)."""
        self.gpu_count = 0
        for p in processes:
            rank = p.get("rank") or 0
            for g in p.get("gpus") or ():
                self.gpu_count += 1
                track = self._track(rank, g["index"], ranked)
                if track is None:
                    continue
                util = g.get("util")
                track.name = text(g.get("name") or "")
                track.util, track.mem_used, track.mem_total = util, g.get("mem_used"), \
                    g.get("mem_total")
                track.temp_c, track.power_w = g.get("temp_c"), g.get("power_w")
                if util is not None:
                    track.util_series.add(t, util)
                if track.mem_share is not None:
                    track.mem_series.add(t, track.mem_share)

    def _track(self, rank: int, index: int, ranked: bool) -> Optional[GpuTrack]:
        key = (rank, index)
        track = self.gpus.get(key)
        if track is None and len(self.gpus) < MAX_GPU_TRACKS:
            track = self.gpus[key] = GpuTrack(f"r{rank}:{index}" if ranked else f"GPU{index}")
        return track

    def _judge(self, t: float, interval: Optional[float], previous: Optional[float]) -> bool:
        """Update :attr:`starving` from the latest sample (``previous``: the time of the one
        before); True when it has just begun."""
        wait, util = self.data_wait, self.gpu_util
        bad = ((wait is not None and wait > STARVING_DATA_WAIT)
               or (util is not None and util < STARVING_GPU_UTIL))
        begins = t - (interval or 0.0)
        if not bad:
            self.bad_since = None
        elif self.bad_since is None or (previous is not None and begins > previous + GAP_S):
            self.bad_since = begins
        was = self.starving is not None
        held = t - self.bad_since if self.bad_since is not None else 0.0
        if self.bad_since is None or held < STARVING_FOR_S:
            self.starving = None
            return False
        advice = STARVING_ADVICE if self.gpu_count else STARVING_ADVICE_CPU
        self.starving = Starving(self.bad_since, held, wait, util, advice)
        return not was
