"""Run configuration: TOML in, a validated, fully resolved nested dict out (torch-free).

Every key has a type, a default and (where it matters) a range or a set of choices; an unknown
key, a wrong type or an out-of-range value is a :class:`UserError` naming the dotted key and
what is allowed. ``--set section.key=value`` overrides parse ``value`` as TOML (falling back to a
plain string), so ``--set prune.head_ratio=[0.3,0.5]`` and ``--set run.name=foo`` both work.
"""

from __future__ import annotations

import copy
import difflib
import math
import os
import sys
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

import tomli_w

from engine.config_keys import NUMBER, SCHEMA, Key  # noqa: F401 (SCHEMA re-exported)
from engine.errors import UserError

DEMO_CONFIG = Path(__file__).with_name("demo.toml")
PATH_KEYS = (("run", "output_dir"), ("data", "root"), ("model", "pretrained_path"))
MAX_CONFIG_BYTES = 1 << 20


# --------------------------------------------------------------------------- public API
def load_config(path, overrides: Sequence[str] = (), base_dir: Optional[Path] = None) -> dict:
    """Read, override, validate and resolve a config file (see :data:`SCHEMA`).

    ``path`` may also be the word ``demo`` (the shipped demo). Relative paths in the config
    resolve against ``base_dir`` (default: the current directory) and come back absolute.
    """
    raw = read_toml(path)
    apply_overrides(raw, overrides)
    return resolve(raw, base_dir=base_dir)


def read_toml(path) -> dict:
    """Parse a TOML file into a dict, with one clear error when it cannot be read."""
    p = Path(path)
    if str(path) == "demo" and not p.exists():
        p = DEMO_CONFIG
    if not p.exists():
        raise UserError(f"config file not found: {p} (give the path to a .toml file, e.g. "
                        f"configs/demo.toml)")
    if p.is_dir():
        raise UserError(f"{p} is a directory, not a config file (to resume a run use "
                        f"`tuiprune run --resume {p}`)")
    if not p.is_file():
        raise UserError(f"{p} is not a regular file (a device, pipe or socket); give the path "
                        f"to a .toml config file")
    if p.stat().st_size > MAX_CONFIG_BYTES:
        raise UserError(f"config file {p} is {p.stat().st_size:,} bytes; a config is a few "
                        f"kilobytes (limit {MAX_CONFIG_BYTES:,}): is this the right file?")
    try:
        return tomllib.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read config file {p}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"config file {p} is not valid TOML: {exc}") from None


def apply_overrides(raw: dict, overrides: Sequence[str]) -> None:
    """Apply ``section.key=value`` strings to a raw config dict in place."""
    for item in overrides:
        key, sep, text = item.partition("=")
        parts = key.strip().split(".")
        if not sep or len(parts) != 2 or not all(parts):
            raise UserError(f"--set {item!r}: expected SECTION.KEY=VALUE, e.g. "
                            f"--set prune.sorting=layer-wise")
        section, name = parts
        _known(section, name, where="--set")
        try:
            value = tomllib.loads(f"v = {text.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            value = text.strip()
        raw.setdefault(section, {})
        if not isinstance(raw[section], dict):
            raise UserError(f"config [{section}] must be a table")
        raw[section][name] = value


def resolve(raw: dict, base_dir: Optional[Path] = None) -> dict:
    """Validate a raw dict against the schema and fill in every default."""
    if not isinstance(raw, dict):
        raise UserError("config must be a TOML table")
    for section in raw:
        _known(section)
    cfg: dict = {}
    for section, keys in SCHEMA.items():
        given = raw.get(section, {})
        if not isinstance(given, dict):
            raise UserError(f"config [{section}] must be a table, got {type(given).__name__}")
        for name in given:
            _known(section, name)
        cfg[section] = {}
        for name, key in keys.items():
            value = given.get(name, copy.deepcopy(key.default))
            cfg[section][name] = _validate(f"{section}.{name}", key, value)
    _cross_checks(cfg)
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    for section, name in PATH_KEYS:
        if cfg[section][name]:
            cfg[section][name] = str((base / Path(cfg[section][name]).expanduser()).resolve())
    return cfg


def step_ratios(cfg: dict, key: str) -> List[float]:
    """``prune.head_ratio``/``mlp_ratio`` as one value per pruning step."""
    value = cfg["prune"][key]
    steps = pruning_steps(cfg)
    return [float(v) for v in value] if isinstance(value, list) else [float(value)] * steps


def pruning_steps(cfg: dict) -> int:
    """How many pruning steps a run makes: after every state but the last (unless
    ``prune_last``)."""
    states = cfg["prune"]["states"]
    return states if cfg["prune"]["prune_last"] else states - 1


def check_output_dir(cfg: dict) -> Path:
    """Make sure ``run.output_dir`` is (or can be made) a writable directory, before anything
    heavy is built; returns it."""
    out = Path(cfg["run"]["output_dir"])
    if out.exists() and not out.is_dir():
        raise UserError(f"run.output_dir {out} is a file, not a directory; point it at a "
                        f"folder for run directories")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"run.output_dir {out} cannot be created ({exc.strerror}); point it "
                        f"at a writable folder") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise UserError(f"run.output_dir {out} is not writable; point it at a writable folder")
    return out


def dumps(cfg: dict) -> str:
    """The resolved config as TOML (``None`` values are left out)."""
    return tomli_w.dumps(without_none(cfg))


# --------------------------------------------------------------------------- helpers
def _known(section: str, name: Optional[str] = None, where: str = "config") -> None:
    if section not in SCHEMA:
        raise UserError(f"{where}: unknown section [{section}]{_did_you_mean(section, SCHEMA)}; "
                        f"sections are {', '.join(f'[{s}]' for s in SCHEMA)}")
    if name is not None and name not in SCHEMA[section]:
        raise UserError(f"{where}: unknown key {section}.{name}"
                        f"{_did_you_mean(name, SCHEMA[section])}; valid keys in [{section}]: "
                        f"{', '.join(SCHEMA[section])}")


def _did_you_mean(word: str, options) -> str:
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _type_ok(value, types: Tuple[type, ...]) -> bool:
    if isinstance(value, bool):
        return bool in types
    if isinstance(value, int) and float in types:
        return True
    return isinstance(value, types)


def _validate(dotted: str, key: Key, value):
    if value is None and (key.nullable or key.default is None):
        return None
    shown = [t for t in key.types if not (t is int and float in key.types)]
    names = " or ".join(_type_name(t) for t in shown)
    if not _type_ok(value, key.types):
        raise UserError(f"{dotted} must be {names}, got {_type_name(type(value))} {value!r}")
    if key.choices and value not in key.choices:
        raise UserError(f"{dotted} must be one of {', '.join(map(repr, key.choices))}; got "
                        f"{value!r}{_did_you_mean(str(value), key.choices)}")
    if isinstance(value, NUMBER) and not isinstance(value, bool):
        if isinstance(value, float) and not math.isfinite(value):
            raise UserError(f"{dotted} must be a finite number, got {value}")
        if key.low is not None and (value <= key.low if key.low_open else value < key.low):
            raise UserError(f"{dotted} must be {'>' if key.low_open else '>='} {key.low}, "
                            f"got {value}")
        if key.high is not None and (value >= key.high if key.high_open else value > key.high):
            bound = f"< {key.high}" if key.high_open else f"<= {key.high}"
            raise UserError(f"{dotted} must be {bound}, got {value}")
    if key.check is not None:
        problem = key.check(value)
        if problem:
            raise UserError(f"{dotted} {problem}; got {value!r}")
    if float in key.types and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    return value


def _type_name(t: type) -> str:
    return {bool: "true/false", int: "an integer", float: "a number", str: "a string",
            list: "a list", dict: "a table"}.get(t, t.__name__)


def _cross_checks(cfg: dict) -> None:
    steps = pruning_steps(cfg)
    for key in ("head_ratio", "mlp_ratio"):
        value = cfg["prune"][key]
        if isinstance(value, list) and len(value) != steps:
            raise UserError(f"prune.{key} has {len(value)} values but the run makes {steps} "
                            f"pruning step(s) (prune.states = {cfg['prune']['states']}"
                            f"{', prune_last = true' if cfg['prune']['prune_last'] else ''}); "
                            f"give one value per step or a single number")
    rewind = cfg["prune"]["rewind"]
    if rewind.startswith("epoch:") and int(rewind[6:]) > cfg["train"]["epochs"]:
        raise UserError(f"prune.rewind = {rewind!r} rewinds to after epoch {rewind[6:]} of "
                        f"state 0, but states have only {cfg['train']['epochs']} epochs")
    if cfg["model"]["pretrained_path"] and not cfg["model"]["pretrained"]:
        raise UserError("model.pretrained_path is set but model.pretrained = false; set "
                        "pretrained = true to load it (or remove pretrained_path)")
    _check_model_kwargs(cfg["model"]["kwargs"])
    reserved = {"pretrained", "num_classes", "img_size", "pretrained_cfg_overlay"}
    clash = reserved & set(cfg["model"]["kwargs"])
    if clash:
        raise UserError(f"model.kwargs must not set {', '.join(sorted(clash))}: use the "
                        f"[model] keys of the same name")


MAX_KWARG_INT = 1_000_000
MAX_DEPTH = 1_024  # transformer blocks


def _check_model_kwargs(kwargs: dict) -> None:
    """Numbers in ``model.kwargs`` within sane bounds, checked before timm allocates (the
    model's total size is checked on the meta device in ``engine.model``)."""
    for name, value in kwargs.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise UserError(f"model.kwargs.{name} must be a finite number, got {value}")
        if isinstance(value, int) and not isinstance(value, bool) and \
                abs(value) > MAX_KWARG_INT:
            raise UserError(f"model.kwargs.{name} = {value} is beyond any ViT "
                            f"(limit {MAX_KWARG_INT:,})")
    depth = kwargs.get("depth")
    if isinstance(depth, int) and depth > MAX_DEPTH:
        raise UserError(f"model.kwargs.depth = {depth}: at most {MAX_DEPTH} blocks")


def without_none(obj):
    if isinstance(obj, dict):
        return {k: without_none(v) for k, v in obj.items() if v is not None}
    return obj
