"""Checking JSON values against annotated ``TypedDict`` s (torch-free): the machinery behind
``engine/schema.py``.

An annotation is also a rule: ``int``/``float``/``str``/``bool`` (exact JSON types; an int is
never a bool; floats are finite), ``List[X]``, ``Dict[str, X]``, ``Dict[str, Any]`` (free-form
JSON, at most :data:`MAX_DEPTH` deep), a nested ``TypedDict``, and ``Annotated[X, Range(lo,
hi)]`` for bounds, ``Annotated[X, REQUIRED]`` (:func:`Req`) for a field that must be present.
"""

from __future__ import annotations

import math
from typing import (Annotated, Any, Callable, Dict, List, Optional, Tuple, get_args,
                    get_origin, get_type_hints)

MAX_LIST = 100_000
MAX_DEPTH = 8  # nesting of free-form objects such as run_started.config


class Range:
    """Inclusive bounds of a number field."""

    def __init__(self, lo: float, hi: float) -> None:
        self.lo, self.hi = lo, hi


class _Required:
    pass


REQUIRED = _Required()


def Req(tp):  # noqa: N802 - reads like a type in the annotations below
    """Annotate ``tp`` as a field every event of its type must have."""
    return Annotated[tp, REQUIRED]


class Malformed(ValueError):
    """An event that does not fit the schema; the message names the field."""


Check = Callable[[Any, int], bool]


def _compile(tp) -> Check:
    """A function ``(value, depth) -> bool`` that accepts the values of annotation ``tp``."""
    lo = hi = None
    if get_origin(tp) is Annotated:
        args = get_args(tp)
        tp = args[0]
        for meta in args[1:]:
            if isinstance(meta, Range):
                lo, hi = meta.lo, meta.hi
    origin = get_origin(tp)
    if tp is int:
        return lambda v, d: (v.__class__ is int and (lo is None or lo <= v <= hi))
    if tp is float:
        return lambda v, d: ((v.__class__ is float or v.__class__ is int)
                             and math.isfinite(v) and (lo is None or lo <= v <= hi))
    if tp is str:
        return lambda v, d: v.__class__ is str
    if tp is bool:
        return lambda v, d: v.__class__ is bool
    if origin in (list, List):
        item = _compile(get_args(tp)[0])
        most = MAX_LIST if hi is None else hi
        return lambda v, d: (v.__class__ is list and len(v) <= most
                             and all(item(x, d + 1) for x in v))
    if origin in (dict, Dict):
        key_t, val_t = get_args(tp)
        if val_t is Any:
            return lambda v, d: v.__class__ is dict and _free_ok(v, d)
        val = _compile(val_t)
        return lambda v, d: (v.__class__ is dict and len(v) <= MAX_LIST
                             and all(k.__class__ is str and val(x, d + 1) for k, x in v.items()))
    if isinstance(tp, type) and issubclass(tp, dict):  # a nested TypedDict
        fields = compile_fields(tp)
        return lambda v, d: v.__class__ is dict and check_fields(fields, v, fill=False) is None
    raise TypeError(f"schema: unsupported annotation {tp!r}")


def _free_ok(v: Any, depth: int) -> bool:
    """A JSON value nested at most MAX_DEPTH deep, with finite floats."""
    if depth > MAX_DEPTH:
        return False
    if v.__class__ is dict:
        return len(v) <= MAX_LIST and all(_free_ok(x, depth + 1) for x in v.values())
    if v.__class__ is list:
        return len(v) <= MAX_LIST and all(_free_ok(x, depth + 1) for x in v)
    if v.__class__ is float:
        return math.isfinite(v)
    return v is None or v.__class__ in (str, int, bool)


Fields = List[Tuple[str, Check, bool]]


def compile_fields(payload: type, extra: Optional[Dict[str, Any]] = None) -> Fields:
    hints = dict(get_type_hints(payload, include_extras=True))
    hints.update(extra or {})
    out = []
    for name, tp in hints.items():
        required = get_origin(tp) is Annotated and any(m is REQUIRED for m in get_args(tp)[1:])
        out.append((name, _compile(tp), required))
    return out


def check_fields(fields: Fields, obj: dict, fill: bool) -> Optional[str]:
    """None when ``obj`` fits ``fields`` (filling absent optional fields with None when
    ``fill``), else the name of the first field that does not fit."""
    for name, check, required in fields:
        value = obj.get(name)
        if value is None:
            if required:
                return name
            if fill:
                obj[name] = None
        elif not check(value, 1):
            return name
    return None
