"""``system`` events for hand-made logs. :func:`with_system` adds random-looking ones to a
synthetic log (``tests/helpers/synthlog.py``), for the report's figure tests and
``bench/bench_report.py``: one every ``every`` seconds of the log's own clock and one after
each ``epoch_ended``, as the engine writes them (``engine/system.py``); ``seq`` is
renumbered. :func:`steady` makes events with fixed figures and :func:`with_samples` puts them
into a real run's log, for the dashboard's system pane tests. Deterministic."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Iterable, Iterator, List, Optional

GIB = 1 << 30


def system_event(t: float, state: int, epoch: int, rng: random.Random,
                 gpus: int = 1) -> dict:
    util = rng.uniform(8.0, 95.0)
    return {"v": 1, "event": "system", "time": round(t, 3), "seq": 0, "state": state,
            "epoch": epoch, "interval": 10.0, "images_per_s": round(rng.uniform(900, 1300), 1),
            "data_wait": round(rng.uniform(0.02, 0.6), 3), "host_mem_used": 9 * GIB,
            "host_mem_total": 64 * GIB, "rank": 0, "host": "synthhost",
            "rss": 3 * GIB + rng.randrange(GIB), "cpu_percent": round(rng.uniform(90, 210), 1),
            "cuda_max_allocated": 5 * GIB,
            "gpus": [{"index": i, "name": "NVIDIA H100", "util": round(util, 1),
                      "mem_used": 20 * GIB, "mem_total": 80 * GIB, "power_w": 300.5,
                      "temp_c": 61.0} for i in range(gpus)]}


def with_system(events: Iterable[dict], every: float = 10.0, seed: int = 0,
                gpus: int = 1) -> Iterator[dict]:
    rng = random.Random(seed)
    seq, next_t, where = 0, None, (0, 0)
    for ev in events:
        if ev["event"] in ("epoch_started", "batch", "epoch_ended"):
            where = (ev["state"], ev["epoch"])
        if next_t is None:
            next_t = ev["time"] + every
        while ev["time"] >= next_t and ev["event"] != "run_ended":
            yield {**system_event(next_t, *where, rng, gpus), "seq": seq}
            seq, next_t = seq + 1, next_t + every
        yield {**ev, "seq": seq}
        seq += 1
        if ev["event"] == "epoch_ended":
            yield {**system_event(ev["time"], *where, rng, gpus), "seq": seq}
            seq += 1


def steady(t0: float, count: int, every: float = 10.0, util: Optional[float] = 90.0,
           data_wait: float = 0.05, gpus: int = 1, ranks: int = 1, state: int = 0,
           epoch: int = 0, host: str = "synthhost") -> List[dict]:
    """``count`` ``system`` events ``every`` seconds from ``t0`` (each covering the ``every``
    seconds before it), all with the same figures: every GPU at ``util`` percent with 20 of
    80 GiB used, each process at 150 % CPU and 3 GiB RSS. ``gpus``: per process (0: a CPU
    run, ``unavailable`` says so); ``ranks`` > 1 lists the other processes in ``ranks``."""

    def process(rank: int) -> dict:
        return {"rank": rank, "host": host, "rss": 3 * GIB, "cpu_percent": 150.0,
                **({"cuda_max_allocated": 5 * GIB} if gpus else {}),
                "gpus": [{"index": rank * gpus + i, "name": "NVIDIA H100", "util": util,
                          "mem_used": 20 * GIB, "mem_total": 80 * GIB, "power_w": 300.0,
                          "temp_c": 61.0} for i in range(gpus)]}

    out = []
    for k in range(count):
        ev = {"v": 1, "event": "system", "time": t0 + k * every, "seq": 0, "state": state,
              "epoch": epoch, "interval": every, "images_per_s": 1000.0,
              "data_wait": data_wait, "host_mem_used": 9 * GIB, "host_mem_total": 64 * GIB,
              **process(0)}
        if not gpus:
            ev["unavailable"] = "GPU: the run uses no GPU"
        if ranks > 1:
            ev["ranks"] = [process(r) for r in range(1, ranks)]
        out.append(ev)
    return out


def with_samples(events: List[dict], samples: List[dict], **run_started: object) -> List[dict]:
    """``events`` (a whole run) with ``samples`` put before its ``run_ended`` and the fields
    ``run_started`` added to its first event; ``seq`` renumbered, ``run_ended`` moved to the
    last sample's time."""
    body = [dict(e) for e in events if e["event"] != "run_ended"]
    end = [dict(e) for e in events if e["event"] == "run_ended"]
    body[0].update(run_started)
    for ev in end:
        ev["time"] = max(ev["time"], samples[-1]["time"] if samples else 0.0)
    out = body + samples + end
    return [{**ev, "seq": i} for i, ev in enumerate(out)]


def write_log(run_dir: Path, events: Iterable[dict]) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    return run_dir
