"""``system`` events added to a hand-made log (``tests/ui/synthlog.py``), for the report's
figure tests and ``bench/bench_report.py``: one every ``every`` seconds of the log's own
clock and one after each ``epoch_ended``, as the engine writes them (``engine/system.py``).
Deterministic; ``seq`` is renumbered."""

from __future__ import annotations

import random
from typing import Iterable, Iterator

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
