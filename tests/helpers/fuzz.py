"""A seeded corpus of mutated event logs, for fuzzing every reader of the log.

:func:`corpus` takes real logs (the engine's fixture runs and ``synthlog`` logs) and applies
one to three mutations to each copy: truncation, type swaps, NaN/inf literals, 1000-deep JSON,
huge numbers, ``event`` as a dict, hostile strings (terminal escapes, markup, lone
surrogates), duplicated and backward ``seq``, garbage bytes, oversized lists, deleted fields.
Each mutated log lands in its own run directory (``RUN_DIR/events.jsonl``) with a name that
says which base and mutations made it, so a failure can be replayed by hand.
"""

from __future__ import annotations

import dataclasses
import json
import random
from collections import deque
from pathlib import Path
from typing import Any, Callable, Iterator, List, Tuple

from helpers import synthlog
from helpers.system_log import steady, with_samples, with_system
from helpers.dash import FIXTURE_RUNS, UNSAFE

HOSTILE = [
    "\x1b]0;pwned\x07",  # OSC: set the window title
    "\x1b]52;c;cHduZWQ=\x07",  # OSC 52: write the clipboard
    "\x1b[2J\x1b[H",  # CSI: clear the screen
    "\x9b2J\x90q\x9c",  # C1 CSI / DCS / ST
    "x[/]y", "[link=https://evil.example]click[/link]", "[bold red", "[/]",
    "\u202eevil\u202c", "nul\x00byte", "bell\x07", "\ud800lone surrogate",
    "tab\tnew\nline\r\n", ":smile: :pile_of_poo:", "é" * 3 + "\U0001f600", "x" * 100_000,
]
ODD_VALUES: List[Any] = ["str", 7, -1, 1.5, True, False, None, [], {}, [1, "a"], {"a": 1},
                         "", 0, -0.0]
HUGE: List[str] = ["1e30", "1e308", "-1e308", "1e400", "-1e400", "1" + "0" * 30,
                   str(2 ** 63), "-" + str(2 ** 63), "9999", "10000", "99999", "4096",
                   "1000000000", str(10 ** 12), str(2 ** 62), str(2 ** 62 - 1)]
NONFINITE = ["NaN", "Infinity", "-Infinity"]
SIZING = ["state", "epoch", "batch", "batches", "states", "epochs", "step", "steps", "block",
          "heads_total", "heads_kept", "neurons_total", "from_state", "best_epoch",
          "blocks", "batches_per_epoch"]
SEED = 20261129


def deep(depth: int = 1000) -> str:
    return "[" * depth + "]" * depth


def _paths(obj: Any, prefix: Tuple = ()) -> Iterator[Tuple]:
    """Every key path inside a JSON value."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield prefix + (k,)
            yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj[:8]):
            yield prefix + (i,)
            yield from _paths(v, prefix + (i,))


def _set(obj: Any, path: Tuple, value: Any) -> None:
    for key in path[:-1]:
        obj = obj[key]
    obj[path[-1]] = value


def _with_raw(obj: dict, path: Tuple, raw: str) -> str:
    """``obj`` as a JSON line whose value at ``path`` is the raw JSON text ``raw``."""
    marker = "\u2603MARK\u2603"
    _set(obj, path, marker)
    return json.dumps(obj).replace(json.dumps(marker), raw)


class Mutator:
    """The mutations; each takes and returns the log's lines (without newlines)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def _pick(self, lines: List[str]) -> Tuple[int, Any]:
        """A random line that parses as a JSON object, and that object (or (-1, None))."""
        for _ in range(10):
            i = self.rng.randrange(len(lines))
            try:
                obj = json.loads(lines[i])
            except (ValueError, RecursionError):
                continue
            if isinstance(obj, dict) and obj:
                return i, obj
        return -1, None

    def _field(self, lines: List[str], wanted=None) -> Tuple[int, Any, Tuple]:
        """A random line and a random key path in it; with ``wanted``, first a random one of
        those keys that the log holds, then a line and a path with that key."""
        if wanted is None:
            i, obj = self._pick(lines)
            paths = list(_paths(obj)) if obj is not None else []
            return (i, obj, self.rng.choice(paths)) if paths else (-1, None, ())
        keys = [k for k in wanted if any(f'"{k}"' in line for line in lines)]
        if not keys:
            return -1, None, ()
        key = self.rng.choice(keys)
        holders = [i for i, line in enumerate(lines) if f'"{key}"' in line]
        for _ in range(10):
            i = self.rng.choice(holders)
            try:
                obj = json.loads(lines[i])
            except (ValueError, RecursionError):
                continue
            paths = [p for p in _paths(obj) if p and p[-1] == key]
            if paths:
                return i, obj, self.rng.choice(paths)
        return -1, None, ()

    def truncate(self, lines: List[str]) -> List[str]:
        text = "\n".join(lines).encode()
        cut = self.rng.randrange(len(text) + 1)
        return text[:cut].decode("utf-8", "ignore").split("\n")

    def type_swap(self, lines: List[str]) -> List[str]:
        i, obj, path = self._field(lines)
        if obj is not None:
            _set(obj, path, self.rng.choice(ODD_VALUES))
            lines[i] = json.dumps(obj)
        return lines

    def nonfinite(self, lines: List[str]) -> List[str]:
        return self._raw_value(lines, NONFINITE)

    def huge(self, lines: List[str]) -> List[str]:
        return self._raw_value(lines, HUGE)

    def sizing(self, lines: List[str]) -> List[str]:
        return self._raw_value(lines, HUGE, wanted=SIZING)

    def _raw_value(self, lines, raws, wanted=None) -> List[str]:
        i, obj, path = self._field(lines, wanted)
        if obj is not None:
            lines[i] = _with_raw(obj, path, self.rng.choice(raws))
        return lines

    def deep_json(self, lines: List[str]) -> List[str]:
        i, obj, path = self._field(lines)
        if obj is not None and self.rng.random() < 0.5:
            lines[i] = _with_raw(obj, path, deep(self.rng.choice([100, 1000, 5000])))
        else:
            lines.insert(self.rng.randrange(len(lines) + 1), deep())
        return lines

    def event_as_dict(self, lines: List[str]) -> List[str]:
        i, obj = self._pick(lines)
        if obj is not None:
            obj["event"] = self.rng.choice([{"event": "batch"}, ["warning"], 3, None, ""])
            lines[i] = json.dumps(obj)
        return lines

    def hostile_string(self, lines: List[str]) -> List[str]:
        i, obj = self._pick(lines)
        if obj is None:
            return lines
        strings = [p for p in _paths(obj) if isinstance(_get(obj, p), str) and p != ("event",)]
        payload = self.rng.choice(HOSTILE)
        if strings:
            _set(obj, self.rng.choice(strings), payload)
        else:
            obj["message"] = payload
        lines[i] = json.dumps(obj, ensure_ascii=self.rng.random() < 0.5)
        return lines

    def seq_games(self, lines: List[str]) -> List[str]:
        i = self.rng.randrange(len(lines))
        choice = self.rng.randrange(3)
        if choice == 0:  # duplicated line (and seq)
            lines.insert(i, lines[i])
        elif choice == 1:  # a line moved earlier: seq goes backward
            lines.insert(self.rng.randrange(i + 1), lines.pop(i))
        else:
            i, obj = self._pick(lines)
            if obj is not None:
                obj["seq"] = self.rng.choice([0, -1, 1.5, "7", 2 ** 70])
                lines[i] = json.dumps(obj)
        return lines

    def garbage(self, lines: List[str]) -> List[str]:
        junk = self.rng.choice(["\ufeff" + lines[0] if lines else "\ufeff", "not json",
                                '{"v":1,"event":', "\x00\x01\x02", "{}", "[]", "null", "\r",
                                '"just a string"', "\udcff\udcfe"])
        lines.insert(self.rng.randrange(len(lines) + 1), junk)
        return lines

    def long_list(self, lines: List[str]) -> List[str]:
        i, obj, path = self._field(lines, wanted={"layers", "head_ratio", "mlp_ratio",
                                                  "heads_per_block", "neurons_per_block"})
        if obj is not None:
            value = _get(obj, path)
            item = value[0] if isinstance(value, list) and value else 0.1
            _set(obj, path, [item] * self.rng.choice([4096, 4097, 100_001]))
            lines[i] = json.dumps(obj)
        return lines

    def delete_field(self, lines: List[str]) -> List[str]:
        i, obj, path = self._field(lines)
        if obj is not None:
            parent = _get(obj, path[:-1])
            if isinstance(parent, dict):
                del parent[path[-1]]
                lines[i] = json.dumps(obj)
        return lines


def _get(obj: Any, path: Tuple) -> Any:
    for key in path:
        obj = obj[key]
    return obj


MUTATIONS: List[Callable] = [getattr(Mutator, name) for name in (
    "truncate", "type_swap", "nonfinite", "huge", "sizing", "deep_json", "event_as_dict",
    "hostile_string", "seq_games", "garbage", "long_list", "delete_field")]


def base_logs() -> List[Tuple[str, List[str]]]:
    """Real logs to mutate: the engine's fixture runs and synthetic RSST/Refill logs."""
    logs = [(run.name, (run / "events.jsonl").read_text().splitlines())
            for run in sorted(FIXTURE_RUNS.iterdir()) if (run / "events.jsonl").is_file()]
    for name, kw in [("synth-rsst", dict(method="rsst", states=3, epochs=1, batches=4)),
                     ("synth-refill", dict(method="refill", states=2, epochs=2, batches=3)),
                     ("synth-failed", dict(method="rsst", states=3, epochs=1, batches=3,
                                           fail_at_state=1)),
                     ("synth-crashed", dict(method="rsst", states=3, epochs=1, batches=4,
                                            crash_at_state=1))]:
        logs.append((name, [synthlog.line(e).rstrip("\n") for e in synthlog.events(**kw)]))
    # system events: random ones on one GPU, steady ones of a 3-rank run (its ranks list)
    rsst = list(with_system(synthlog.events("rsst", states=2, epochs=1, batches=4), every=0.5))
    ranked = with_samples(rsst, steady(rsst[-1]["time"], 3, ranks=3), world_size=3,
                          hosts=["a", "b", "c"])
    logs.append(("synth-system", [synthlog.line(e).rstrip("\n") for e in ranked]))
    return logs


def corpus(root: Path, count: int = 500, seed: int = SEED) -> List[Path]:
    """``count`` run directories under ``root``, each with one mutated ``events.jsonl``."""
    rng = random.Random(seed)
    mutator = Mutator(rng)
    bases = base_logs()
    runs = []
    for n in range(count):
        name, lines = rng.choice(bases)
        lines = list(lines)
        applied = []
        for _ in range(rng.choice([1, 1, 2, 3])):
            op = rng.choice(MUTATIONS)
            applied.append(op.__name__)
            lines = op(mutator, lines) or [""]
        run = root / f"{n:03d}-{name}-{'+'.join(applied)}"
        run.mkdir()
        ending = "" if "truncate" in applied else "\n"
        (run / "events.jsonl").write_bytes(("\n".join(lines) + ending).encode(
            "utf-8", "surrogatepass"))
        runs.append(run)
    return runs


def unsafe_strings(obj: Any, seen=None) -> List[str]:
    """Every string inside ``obj`` (dataclasses, dicts, lists, deques) that holds a control
    character a terminal would act on."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return []
    seen.add(id(obj))
    if isinstance(obj, str):
        return [obj] if UNSAFE.search(obj) else []
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        obj = vars(obj)
    if isinstance(obj, dict):
        return [s for k, v in obj.items() for s in unsafe_strings(k, seen) +
                unsafe_strings(v, seen)]
    if isinstance(obj, (list, tuple, deque)):
        return [s for v in obj for s in unsafe_strings(v, seen)]
    return []
