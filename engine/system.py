"""System metrics of a run: the figures of the ``system`` event (``docs/events.md``).

:class:`SystemSampler` reads the process (RSS, CPU %) and the host's memory with ``psutil``,
and the GPUs the run uses with NVML (``nvidia-ml-py``, the optional extra ``tuiprune[gpu]``):
utilisation, memory, power and temperature. Without NVML it reports what torch knows (device
name, memory in use, ``max_memory_allocated``) and says in ``unavailable`` what is missing and
how to install it. Nothing here raises on a missing library or device.

The run's pace comes from the caller, as plain numbers it already has (no host sync here):
:meth:`SystemSampler.count` adds the images trained, the seconds spent in training steps and
the seconds of those spent waiting for data; :meth:`SystemSampler.poll` is a clock comparison
until ``interval`` seconds have passed, and then reads the machine (well under a millisecond
without GPUs; ``bench/bench_system.py`` measures it).

Distributed runs: every rank keeps a sampler; at the sampling interval the run gathers each
rank's :meth:`SystemSampler.process_sample` to rank 0, which passes the list to
:meth:`SystemSampler.sample` (see :func:`ranks_field`).
"""

from __future__ import annotations

import socket
import time
from typing import Any, Callable, Dict, Iterable, List, Optional

from engine.schema import MAX_GPUS, MAX_RANKS, ProcessSample

INSTALL_GPU = "pip install 'tuiprune[gpu]'"
INSTALL_PSUTIL = "pip install psutil"
DEFAULT = object()  # "import the real library" (tests inject fakes instead)
PROCESS_FIELDS = tuple(ProcessSample.__annotations__)


def import_nvml() -> Any:
    """The ``pynvml`` module of ``nvidia-ml-py``, or None when it is not installed."""
    try:
        import pynvml
    except ImportError:
        return None
    return pynvml


def import_cuda() -> Any:
    """``torch.cuda``, or None without torch."""
    try:
        import torch
    except ImportError:
        return None
    return torch.cuda


def cuda_index(device: Any) -> Optional[int]:
    """The CUDA device index of ``device`` (``"cuda:1"``, a ``torch.device``), 0 for plain
    ``"cuda"``, None for any other device."""
    if device is None:
        return None
    kind, _, index = str(device).partition(":")
    if kind != "cuda":
        return None
    return int(index) if index.isdigit() else 0


class NvmlGpus:
    """The GPUs NVML reports for this process. Raises ``nvml.NVMLError`` when NVML cannot
    start (no driver); afterwards a figure a GPU does not support is left out."""

    def __init__(self, nvml: Any, uuid: Optional[str] = None) -> None:
        self.nvml = nvml
        self.error = getattr(nvml, "NVMLError", OSError)
        nvml.nvmlInit()
        handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(nvml.nvmlDeviceGetCount())]
        self.devices = list(enumerate(handles))[:MAX_GPUS]
        if uuid:  # only the device the run uses, when NVML knows it
            mine = [(i, h) for i, h in self.devices
                    if _text(nvml.nvmlDeviceGetUUID(h)).lower().endswith(uuid.lower())]
            self.devices = mine or self.devices
        self.names = {i: _text(nvml.nvmlDeviceGetName(h)) for i, h in self.devices}

    def _read(self, call: Callable[[], Any]) -> Any:
        try:
            return call()
        except (self.error, OSError):
            return None

    def read(self) -> List[dict]:
        nvml, out = self.nvml, []
        for i, h in self.devices:
            util = self._read(lambda: nvml.nvmlDeviceGetUtilizationRates(h).gpu)
            mem = self._read(lambda: nvml.nvmlDeviceGetMemoryInfo(h))
            power = self._read(lambda: nvml.nvmlDeviceGetPowerUsage(h))  # milliwatts
            temp = self._read(lambda: nvml.nvmlDeviceGetTemperature(
                h, nvml.NVML_TEMPERATURE_GPU))
            gpu = {"index": i, "name": self.names[i],
                   "util": None if util is None else float(util),
                   "mem_used": None if mem is None else int(mem.used),
                   "mem_total": None if mem is None else int(mem.total),
                   "power_w": None if power is None else power / 1000.0,
                   "temp_c": None if temp is None else float(temp)}
            out.append({k: v for k, v in gpu.items() if v is not None})
        return out

    def close(self) -> None:
        try:
            self.nvml.nvmlShutdown()
        except (self.error, OSError):
            pass


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class SystemSampler:
    """Samples the figures of the ``system`` event for one process (see the module docstring).

    ``interval``: seconds between samples (``run.system_seconds``; 0 turns sampling off).
    ``device``: the training device (``"cuda:0"``, ``"cpu"``, a ``torch.device``).
    ``nvml``/``cuda``/``psutil``: the libraries, injectable for tests (None = absent).
    """

    def __init__(self, interval: float, device: Any = None, rank: int = 0,
                 host: Optional[str] = None, nvml: Any = DEFAULT, cuda: Any = DEFAULT,
                 psutil: Any = DEFAULT, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = float(interval)
        self.rank, self.host = rank, host or socket.gethostname()
        self.clock = clock
        self.cuda_index = cuda_index(device)
        self.cuda = (import_cuda() if cuda is DEFAULT else cuda) if self.cuda_index is not None \
            else None
        self.notes: List[str] = []
        self._process = self._start_psutil(psutil)
        self._gpus = self._start_nvml(import_nvml() if nvml is DEFAULT else nvml)
        self._zero()

    # ------------------------------------------------------------------ set-up
    def _start_psutil(self, psutil: Any) -> Any:
        if psutil is DEFAULT:
            try:
                import psutil
            except ImportError:
                psutil = None
        if psutil is None:
            self.notes.append(f"process and host figures: psutil is not installed "
                              f"({INSTALL_PSUTIL})")
            return None
        self.psutil = psutil
        process = psutil.Process()
        process.cpu_percent(None)  # the first call only starts the measurement
        return process

    def _start_nvml(self, nvml: Any) -> Optional[NvmlGpus]:
        if self.cuda_index is None:  # no GPU in use: nothing to read
            return None
        missing = "GPU utilisation, power and temperature"
        if nvml is None:
            self.notes.append(f"{missing}: nvidia-ml-py is not installed ({INSTALL_GPU})")
            return None
        try:
            return NvmlGpus(nvml, self._torch_uuid())
        except (getattr(nvml, "NVMLError", OSError), OSError) as exc:
            self.notes.append(f"{missing}: NVML cannot start ({_text(exc) or type(exc).__name__})")
            return None

    def _torch_uuid(self) -> Optional[str]:
        try:
            return str(self.cuda.get_device_properties(self.cuda_index).uuid)
        except (AttributeError, RuntimeError, AssertionError):
            return None

    # ------------------------------------------------------------------ the run's pace
    def _zero(self) -> None:
        self._since = self.clock()
        self._images = self._step_seconds = self._wait_seconds = 0.0
        self._counted = False

    def count(self, images: float, step_seconds: float, data_wait_seconds: float) -> None:
        """Add the images trained since the last call, the seconds spent in training steps
        (data wait included) and the seconds of those spent waiting for the next batch. In a
        distributed run ``images`` counts all ranks (the per-rank batch × world size)."""
        self._images += images
        self._step_seconds += step_seconds
        self._wait_seconds += data_wait_seconds
        self._counted = True

    @property
    def enabled(self) -> bool:
        return self.interval > 0

    def due(self) -> bool:
        """Whether ``interval`` seconds have passed since the last sample."""
        return self.enabled and self.clock() - self._since >= self.interval

    def poll(self, state: Optional[int], epoch: Optional[int], force: bool = False,
             ranks: Optional[Iterable[dict]] = None) -> Optional[dict]:
        """The ``system`` event's fields when a sample is due (or ``force``: at an epoch end),
        else None. Always None when sampling is off."""
        if not self.enabled or not (force or self.due()):
            return None
        return self.sample(state, epoch, ranks)

    # ------------------------------------------------------------------ reading the machine
    def process_sample(self) -> dict:
        """This process's figures (``ProcessSample``): what a rank sends to rank 0."""
        out: Dict[str, Any] = {"rank": self.rank, "host": self.host}
        if self._process is not None:
            try:
                out["rss"] = int(self._process.memory_info().rss)
                out["cpu_percent"] = float(self._process.cpu_percent(None))
            except (self.psutil.Error, OSError):
                pass
        out["gpus"] = self._gpu_list()
        if self.cuda is not None:
            try:
                out["cuda_max_allocated"] = int(self.cuda.max_memory_allocated(self.cuda_index))
            except (RuntimeError, AssertionError, AttributeError):
                pass
        return out

    def _gpu_list(self) -> List[dict]:
        if self._gpus is not None:
            return self._gpus.read()
        if self.cuda is None:
            return []
        try:  # what torch knows: name and memory
            free, total = self.cuda.mem_get_info(self.cuda_index)
            return [{"index": self.cuda_index, "name": str(self.cuda.get_device_name(
                self.cuda_index)), "mem_used": int(total - free), "mem_total": int(total)}]
        except (RuntimeError, AssertionError, AttributeError):
            return []

    def _host_memory(self) -> Dict[str, int]:
        if self._process is None:
            return {}
        try:
            vm = self.psutil.virtual_memory()
        except (self.psutil.Error, OSError):
            return {}
        return {"host_mem_used": int(vm.total - vm.available), "host_mem_total": int(vm.total)}

    def _unavailable(self) -> Optional[str]:
        notes = list(self.notes)
        if self.cuda_index is None:
            notes.append("GPU figures: the run does not use a CUDA device")
        return "; ".join(notes) or None

    def sample(self, state: Optional[int], epoch: Optional[int],
               ranks: Optional[Iterable[dict]] = None, own: Optional[dict] = None) -> dict:
        """The ``system`` event's fields now, covering the time since the last sample; the
        interval starts again. ``images_per_s``: the images counted per second of step time
        (per second of the interval when no step time was counted); ``data_wait``: the wait
        seconds' share of the step seconds. Both are absent when nothing was counted.
        ``ranks``: the other ranks' :meth:`process_sample` (rank 0 of a distributed run);
        ``own``: this process's, when it was just read (psutil's CPU % covers the time since
        the previous reading: a second one a moment later would read about 0)."""
        now = self.clock()
        interval = max(now - self._since, 0.0)
        images_per_s = data_wait = None
        if self._counted:
            seconds = self._step_seconds if self._step_seconds > 0 else interval
            images_per_s = self._images / seconds if seconds > 0 else None
            if self._step_seconds > 0:
                data_wait = min(1.0, max(0.0, self._wait_seconds / self._step_seconds))
        fields: Dict[str, Any] = {"state": state, "epoch": epoch, "interval": interval,
                                  "images_per_s": images_per_s, "data_wait": data_wait}
        fields.update(self._host_memory())
        fields.update(own if own is not None else self.process_sample())
        fields["unavailable"] = self._unavailable()
        if ranks is not None:
            fields["ranks"] = ranks_field(ranks, own_rank=self.rank)
        self._zero()
        return {k: v for k, v in fields.items() if v is not None}

    def close(self) -> None:
        if self._gpus is not None:
            self._gpus.close()
            self._gpus = None


def ranks_field(samples: Iterable[dict], own_rank: int = 0) -> List[dict]:
    """The ``ranks`` field of rank ``own_rank``'s ``system`` event from the gathered
    per-rank :meth:`SystemSampler.process_sample` dicts: the other ranks, by rank, with only
    the ``ProcessSample`` fields."""
    others = [{k: v for k, v in s.items() if k in PROCESS_FIELDS and v is not None}
              for s in samples if isinstance(s, dict) and s.get("rank") != own_rank]
    others.sort(key=lambda s: s.get("rank", MAX_RANKS))
    return others[:MAX_RANKS]
