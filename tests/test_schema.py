"""The event schema is the one definition: every event type round-trips through the writer and
the reader with every field it declares, what does not fit is refused, and docs/events.md
describes every field the schema has."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Annotated, Any, Dict, List, get_args, get_origin, get_type_hints

import pytest

from engine import schema
from engine.events import EventLog
from engine.logread import ReadStats, iter_events

ROOT = Path(__file__).resolve().parent.parent


def sample(tp) -> Any:
    """A valid value of annotation ``tp``, inside its bounds (built here from the annotations,
    not by the validator under test)."""
    lo = hi = None
    if get_origin(tp) is Annotated:
        for meta in get_args(tp)[1:]:
            if isinstance(meta, schema.Range):
                lo, hi = meta.lo, meta.hi
        tp = get_args(tp)[0]
    if tp is int:
        return int(lo) + 1 if lo is not None and hi is not None and hi > lo else 3
    if tp is float:
        if lo is None or not math.isfinite(hi):
            return 0.25 if lo is None else lo + 0.25
        return (lo + hi) / 2
    if tp is str:
        return "text"
    if tp is bool:
        return True
    if get_origin(tp) in (list, List):
        return [sample(get_args(tp)[0]) for _ in range(2)]
    if get_origin(tp) in (dict, Dict):
        return {"k": sample(get_args(tp)[1])} if get_args(tp)[1] is not Any else {"a": [1]}
    hints = get_type_hints(tp, include_extras=True)
    return {name: sample(t) for name, t in hints.items()}


def full_event(kind: str) -> Dict[str, Any]:
    hints = dict(get_type_hints(schema.PAYLOADS[kind], include_extras=True))
    hints.update(schema.EXTRA_FIELDS.get(kind, {}))
    return {name: sample(t) for name, t in hints.items()}


@pytest.mark.parametrize("kind", schema.EVENT_TYPES)
def test_every_event_type_round_trips_with_every_field(tmp_path, kind):
    fields = full_event(kind)
    assert set(fields) == schema.FIELD_NAMES[kind]
    log = EventLog(tmp_path / "events.jsonl")
    log.emit(kind, **fields)
    log.close()
    stats = ReadStats()
    (ev,) = list(iter_events(tmp_path / "events.jsonl", stats))
    assert stats.malformed == 0, stats.problems
    assert {k: ev[k] for k in fields} == fields
    assert ev["event"] == kind and ev["v"] == schema.SCHEMA_VERSION and ev["seq"] == 0


@pytest.mark.parametrize("kind", schema.EVENT_TYPES)
def test_absent_optional_fields_read_as_none_and_required_ones_are_refused(kind):
    envelope = {"v": 1, "event": kind, "time": 1.0, "seq": 0}
    fields = full_event(kind)
    required = [n for n, _, req in schema.FIELDS[kind] if req]
    minimal = dict(envelope, **{n: fields[n] for n in required})
    ev = schema.validate(dict(minimal))
    assert all(ev[n] is None for n in fields if n not in required)
    for name in required:
        broken = {k: v for k, v in minimal.items() if k != name}
        with pytest.raises(schema.Malformed, match=name):
            schema.validate(broken)


@pytest.mark.parametrize("bad", [
    {"state": -1}, {"state": 10 ** 30}, {"state": 1.5}, {"state": True}, {"state": "0"},
    {"epoch": schema.MAX_EPOCHS}, {"val_acc": 100.5}, {"val_acc": float("nan")},
    {"seconds": float("inf")}, {"best": 1},
])
def test_values_outside_their_type_or_bounds_are_malformed(bad):
    ev = {"v": 1, "event": "epoch_ended", "time": 1.0, "seq": 0, "state": 0, "epoch": 0}
    ev.update(bad)
    with pytest.raises(schema.Malformed, match=next(iter(bad))):
        schema.validate(ev)


def test_free_form_objects_are_depth_limited_and_lists_length_limited():
    deep: dict = {}
    node = deep
    for _ in range(schema.MAX_DEPTH + 2):
        node["x"] = {}
        node = node["x"]
    with pytest.raises(schema.Malformed, match="config"):
        schema.validate({"v": 1, "event": "run_started", "time": 1.0, "seq": 0,
                         "config": deep})
    with pytest.raises(schema.Malformed, match="layers"):
        schema.validate({"v": 1, "event": "pruned", "time": 1.0, "seq": 0, "state": 0,
                         "step": 0, "layers": [sample(schema.Layer)] * (schema.MAX_BLOCKS + 1)})


def test_unknown_event_types_are_ignored_not_malformed():
    assert schema.validate({"v": 2, "event": "from_the_future", "time": 1.0, "seq": 0}) is None


@pytest.mark.parametrize("kind", schema.EVENT_TYPES)
def test_docs_describe_every_field(kind):
    text = (ROOT / "docs" / "events.md").read_text()
    section = re.search(rf"^### `{kind}`.*?(?=^### |\Z)", text, re.S | re.M)
    assert section, f"docs/events.md has no section for {kind}"
    for name in schema.FIELD_NAMES[kind]:
        assert f"`{name}`" in section.group(0), f"docs/events.md: {kind}.{name} undocumented"
