"""engine.system: the figures of the ``system`` event, with the real psutil on this machine,
a fake NVML module (``pynvml``'s interface) and NVML absent. Every sample is checked against
the event schema as a reader would see it."""

from __future__ import annotations

import os
import time
import types
from pathlib import Path

import pytest

from engine.schema import build, validate
from engine.system import INSTALL_GPU, SystemSampler, ranks_field

GIB = 1 << 30


def as_event(fields: dict) -> dict:
    """``fields`` as the validated event a reader gets (raises if they do not fit)."""
    ev = validate({"v": 1, "event": "system", "time": time.time(), "seq": 0,
                   **build("system", dict(fields))})
    assert ev is not None
    return ev


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


# ----------------------------------------------------------------------------- fakes
class NVMLError(Exception):
    pass


def fake_nvml(gpus, init_error: str = "") -> types.ModuleType:
    """A module with pynvml's functions over ``gpus`` (dicts; a value that is an exception
    class is raised by its getter, as NVML does for an unsupported figure)."""
    m = types.ModuleType("pynvml")
    m.NVMLError = NVMLError
    m.NVML_TEMPERATURE_GPU = 0
    m.calls = []

    def init():
        if init_error:
            raise NVMLError(init_error)
        m.calls.append("init")

    def get(h, key):
        value = gpus[h][key]
        if isinstance(value, type) and issubclass(value, Exception):
            raise value("Not Supported")
        return value

    m.nvmlInit = init
    m.nvmlShutdown = lambda: m.calls.append("shutdown")
    m.nvmlDeviceGetCount = lambda: len(gpus)
    m.nvmlDeviceGetHandleByIndex = lambda i: i
    m.nvmlDeviceGetUUID = lambda h: get(h, "uuid")
    m.nvmlDeviceGetName = lambda h: get(h, "name")
    m.nvmlDeviceGetUtilizationRates = lambda h: types.SimpleNamespace(gpu=get(h, "util"),
                                                                      memory=0)
    m.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(
        used=get(h, "used"), total=get(h, "total"), free=get(h, "total") - get(h, "used"))
    m.nvmlDeviceGetPowerUsage = lambda h: get(h, "mw")
    m.nvmlDeviceGetTemperature = lambda h, sensor: get(h, "temp")
    return m


class FakeCuda:
    """torch.cuda's read-only queries for one device (this machine has no GPU)."""

    def __init__(self, free: int, total: int, peak: int, uuid: str = "") -> None:
        self.free, self.total, self.peak, self.uuid = free, total, peak, uuid

    def mem_get_info(self, index):
        return self.free, self.total

    def get_device_name(self, index):
        return "Fake H100"

    def max_memory_allocated(self, index):
        return self.peak

    def get_device_properties(self, index):
        return types.SimpleNamespace(uuid=self.uuid)


GPUS = [
    {"uuid": "GPU-aaaa-0000", "name": b"NVIDIA A800", "util": 11, "used": 3 * GIB,
     "total": 80 * GIB, "mw": 61_500, "temp": 41},
    {"uuid": "GPU-bbbb-1111", "name": "NVIDIA H100", "util": 97, "used": 70 * GIB,
     "total": 80 * GIB, "mw": NVMLError, "temp": 77},
]


# ----------------------------------------------------------------------------- this machine
def test_sane_values_on_this_machine():
    sampler = SystemSampler(10, device="cpu")
    t0, wall0 = os.times(), time.monotonic()
    x = 0
    while time.monotonic() - wall0 < 0.4:  # keep this process busy
        x += sum(range(1000))
    t1, wall1 = os.times(), time.monotonic()
    ev = as_event(sampler.sample(state=0, epoch=1))
    rss = int(Path("/proc/self/status").read_text().split("VmRSS:")[1].split()[0]) * 1024
    assert ev["rss"] > 0 and abs(ev["rss"] - rss) < 0.2 * rss
    busy = 100 * ((t1.user + t1.system) - (t0.user + t0.system)) / (wall1 - wall0)
    assert ev["cpu_percent"] >= 0 and abs(ev["cpu_percent"] - busy) < 35
    meminfo = dict(line.split(":", 1) for line in
                   Path("/proc/meminfo").read_text().splitlines())
    assert ev["host_mem_total"] == int(meminfo["MemTotal"].split()[0]) * 1024
    assert 0 < ev["host_mem_used"] < ev["host_mem_total"]
    assert ev["gpus"] == [] and ev["cuda_max_allocated"] is None
    assert ev["unavailable"] == "GPU figures: the run does not use a CUDA device"
    assert (ev["state"], ev["epoch"], ev["rank"]) == (0, 1, 0) and ev["host"]


def test_rates_come_from_the_caller():
    clock = Clock()
    sampler = SystemSampler(10, device="cpu", clock=clock)
    for images, step, wait in ((128, 0.50, 0.10), (128, 0.30, 0.20), (64, 0.2, 0.0)):
        sampler.count(images, step, wait)
    clock.now += 12.5
    ev = as_event(sampler.sample(0, 0))
    assert ev["interval"] == pytest.approx(12.5)
    assert ev["images_per_s"] == pytest.approx(320 / 1.0)
    assert ev["data_wait"] == pytest.approx(0.3 / 1.0)
    # the next interval starts empty: no pace without counts
    clock.now += 5
    ev = as_event(sampler.sample(0, 0))
    assert ev["interval"] == pytest.approx(5) and ev["images_per_s"] is None \
        and ev["data_wait"] is None
    # a wait longer than the step (clock skew) is clamped to the schema's share
    sampler.count(10, 0.1, 0.3)
    assert as_event(sampler.sample(0, 0))["data_wait"] == 1.0


def test_interval_due_poll_and_off():
    clock = Clock()
    sampler = SystemSampler(10, device="cpu", clock=clock)
    clock.now += 9.9
    assert not sampler.due() and sampler.poll(0, 0) is None
    assert sampler.poll(0, 0, force=True) is not None  # an epoch end
    clock.now += 9.9
    assert sampler.poll(1, 0) is None  # the forced sample restarted the interval
    clock.now += 0.2
    assert sampler.due() and sampler.poll(1, 0)["state"] == 1
    off = SystemSampler(0, device="cpu", clock=clock)
    clock.now += 1e6
    assert not off.enabled and off.poll(0, 0) is None and off.poll(0, 0, force=True) is None


# ----------------------------------------------------------------------------- GPUs
def test_fake_nvml_reports_the_run_device():
    nvml = fake_nvml(GPUS)
    cuda = FakeCuda(free=0, total=80 * GIB, peak=5 * GIB, uuid="bbbb-1111")
    sampler = SystemSampler(10, device="cuda:0", nvml=nvml, cuda=cuda)
    ev = as_event(sampler.sample(2, 3))
    # the device torch uses is NVML's index 1 (matched by UUID); power unsupported there
    assert ev["gpus"] == [{"index": 1, "name": "NVIDIA H100", "util": 97.0,
                           "mem_used": 70 * GIB, "mem_total": 80 * GIB, "temp_c": 77.0}]
    assert ev["cuda_max_allocated"] == 5 * GIB
    assert ev["unavailable"] is None
    sampler.close()
    assert nvml.calls == ["init", "shutdown"]


def test_fake_nvml_all_devices_when_uuid_unknown():
    sampler = SystemSampler(10, device="cuda", nvml=fake_nvml(GPUS),
                            cuda=FakeCuda(0, 80 * GIB, GIB, uuid="not-there"))
    gpus = as_event(sampler.sample(0, 0))["gpus"]
    assert [g["index"] for g in gpus] == [0, 1]
    assert gpus[0] == {"index": 0, "name": "NVIDIA A800", "util": 11.0, "mem_used": 3 * GIB,
                       "mem_total": 80 * GIB, "power_w": 61.5, "temp_c": 41.0}


def test_nvml_cannot_start_falls_back_to_torch():
    cuda = FakeCuda(free=30 * GIB, total=80 * GIB, peak=7 * GIB)
    sampler = SystemSampler(10, device="cuda:0", cuda=cuda,
                            nvml=fake_nvml(GPUS, init_error="Driver Not Loaded"))
    ev = as_event(sampler.sample(0, 0))
    assert ev["gpus"] == [{"index": 0, "name": "Fake H100", "mem_used": 50 * GIB,
                           "mem_total": 80 * GIB}]
    assert "NVML cannot start (Driver Not Loaded)" in ev["unavailable"]


def test_nvml_absent_on_a_cuda_device():
    cuda = FakeCuda(free=79 * GIB, total=80 * GIB, peak=512 << 20)
    ev = as_event(SystemSampler(10, device="cuda:0", nvml=None, cuda=cuda).sample(0, 0))
    assert ev["gpus"] == [{"index": 0, "name": "Fake H100", "mem_used": GIB,
                           "mem_total": 80 * GIB}]
    assert ev["cuda_max_allocated"] == 512 << 20
    assert ev["unavailable"] == ("GPU utilisation, power and temperature: nvidia-ml-py is "
                                 f"not installed ({INSTALL_GPU})")


def test_nvml_absent_on_cpu_and_the_real_library():
    """This machine has no GPU: with or without the real nvidia-ml-py, no error."""
    for nvml in (None, pytest.importorskip("pynvml")):
        ev = as_event(SystemSampler(10, device="cpu", nvml=nvml).sample(0, 0))
        assert ev["gpus"] == []
    real = SystemSampler(10, device="cuda:0", cuda=FakeCuda(GIB, 2 * GIB, 0))
    ev = as_event(real.sample(0, 0))
    assert ev["gpus"][0]["mem_used"] == GIB
    assert "NVML cannot start" in ev["unavailable"] or "nvidia-ml-py is not installed" in \
        ev["unavailable"]


def test_psutil_absent():
    ev = as_event(SystemSampler(10, device="cpu", psutil=None).sample(0, 0))
    assert ev["rss"] is None and ev["host_mem_total"] is None
    assert "psutil is not installed (pip install psutil)" in ev["unavailable"]


# ----------------------------------------------------------------------------- ranks
def test_ranks_field_from_gathered_samples():
    samplers = [SystemSampler(10, device="cpu", rank=r, host=f"node{r // 2}")
                for r in range(4)]
    gathered = [s.process_sample() for s in reversed(samplers)]
    gathered.append({"rank": 5, "host": "node2", "rss": 1, "state": 3})  # a stray key
    ranks = ranks_field(gathered, own_rank=0)
    assert [r["rank"] for r in ranks] == [1, 2, 3, 5]
    assert [r["host"] for r in ranks] == ["node0", "node1", "node1", "node2"]
    assert "state" not in ranks[-1]
    ev = as_event(samplers[0].sample(0, 0, ranks=gathered))
    assert [r["rank"] for r in ev["ranks"]] == [1, 2, 3, 5]
    assert all(r["rss"] > 0 for r in ev["ranks"][:3])


@pytest.mark.slow
def test_demo_run_has_system_events(tmp_path):
    from helpers.runs import sets, tuiprune

    proc = tuiprune("run", "demo", *sets(f"run.output_dir='{tmp_path}'", "run.name='sys'",
                                         "prune.states=1", "train.epochs=2",
                                         "run.system_seconds=1"), cwd=tmp_path)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-2000:]
    from engine.logread import iter_events

    evs = [e for e in iter_events(next(tmp_path.glob("sys-*")) / "events.jsonl")
           if e["event"] == "system"]
    assert len(evs) >= 2  # at least one per epoch end
    for ev in evs:
        assert ev["rss"] > 0 and ev["cpu_percent"] >= 0 and ev["images_per_s"] > 0
        assert 0 <= ev["data_wait"] <= 1 and ev["host_mem_used"] <= ev["host_mem_total"]
