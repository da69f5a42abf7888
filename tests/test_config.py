"""Config loading, overrides and every bad-input message (torch-free code paths)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from engine.config import (SCHEMA, apply_overrides, dumps, load_config, pruning_steps,
                           read_toml, resolve, step_ratios)
from engine.errors import UserError

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = sorted((ROOT / "configs").glob("*.toml"))


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "c.toml"
    p.write_text(text)
    return p


def test_defaults_fill_every_key(tmp_path):
    cfg = load_config(write(tmp_path, ""))
    for section, keys in SCHEMA.items():
        assert set(cfg[section]) == set(keys)
    assert cfg["prune"]["method"] == "refill" and cfg["train"]["lr"] == 0.01
    assert Path(cfg["run"]["output_dir"]).is_absolute()


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_shipped_configs_validate_and_say_what_they_are_for(path):
    if "sweep" in read_toml(path):  # a grid for `tuiprune sweep`: its base config
        from tuiprune.sweep_plan import plan_sweep

        cfg = plan_sweep(path, [], []).base
    else:
        cfg = load_config(path)
    first = path.read_text().lstrip().splitlines()[0]
    assert first.startswith("#"), f"{path.name} must open with a comment saying what it is for"
    assert "hour" in path.read_text() or "minute" in path.read_text()
    assert cfg["prune"]["states"] >= 1


def test_seed_configs_match_the_seed_experiment():
    for name in ("seed_refill_global", "seed_rsst_global", "seed_refill_layerwise",
                 "seed_rsst_layerwise"):
        cfg = load_config(ROOT / "configs" / f"{name}.toml")
        assert cfg["model"]["name"] == "vit_small_patch16_224"
        assert cfg["model"]["pretrained"] is True
        assert cfg["model"]["img_size"] == 32 and cfg["model"]["kwargs"]["patch_size"] == 4
        assert cfg["data"]["dataset"] == "cifar10"
        assert cfg["prune"]["states"] == 3 and cfg["train"]["epochs"] == 2
        assert cfg["prune"]["head_ratio"] == 0.3 and cfg["prune"]["mlp_ratio"] == 0.3
        method, sorting = name.split("_")[1:]
        assert cfg["prune"]["method"] == method
        assert cfg["prune"]["sorting"] == {"global": "global", "layerwise": "layer-wise"}[sorting]


def test_full_config_is_the_planned_experiment():
    cfg = load_config(ROOT / "configs" / "full_rsst_global.toml")
    assert cfg["prune"]["states"] == 20 and cfg["train"]["epochs"] == 40


def test_set_overrides_parse_as_toml_values(tmp_path):
    cfg = load_config(write(tmp_path, "[prune]\nstates = 3\n"),
                      ["prune.sorting=layer-wise", "prune.head_ratio=[0.3, 0.5]",
                       "train.lr=0.1", "run.name=my run", "model.kwargs={patch_size=4}"])
    assert cfg["prune"]["sorting"] == "layer-wise"
    assert cfg["prune"]["head_ratio"] == [0.3, 0.5]
    assert cfg["train"]["lr"] == 0.1 and cfg["run"]["name"] == "my run"
    assert cfg["model"]["kwargs"] == {"patch_size": 4}
    assert step_ratios(cfg, "head_ratio") == [0.3, 0.5]
    assert step_ratios(cfg, "mlp_ratio") == [0.3, 0.3]


def test_pruning_steps_follow_states_and_prune_last(tmp_path):
    cfg = load_config(write(tmp_path, "[prune]\nstates = 4\n"))
    assert pruning_steps(cfg) == 3
    cfg = load_config(write(tmp_path, "[prune]\nstates = 4\nprune_last = true\n"))
    assert pruning_steps(cfg) == 4


def test_resolved_config_round_trips_through_toml(tmp_path):
    cfg = load_config(write(tmp_path, "[prune]\nhead_ratio = [0.2, 0.4]\n"))
    again = resolve(read_toml(write(tmp_path, dumps(cfg))))
    assert again == cfg


@pytest.mark.parametrize("text, overrides, expected", [
    ("[prune]\nsortng = 'global'\n", [], "unknown key prune.sortng (did you mean 'sorting'?)"),
    ("[prune]\nsortng = 'global'\n", [], "valid keys in [prune]: method, states"),
    ("[trian]\nlr = 1\n", [], "unknown section [trian] (did you mean 'train'?)"),
    ("[train]\nlr = 'fast'\n", [], "train.lr must be a number, got a string 'fast'"),
    ("[train]\nepochs = 2.5\n", [], "train.epochs must be an integer"),
    ("[train]\nepochs = 0\n", [], "train.epochs must be >= 1, got 0"),
    ("[prune]\nhead_ratio = 1.0\n", [], "prune.head_ratio must be a fraction in [0, 1)"),
    ("[prune]\nmethod = 'rssst'\n", [], "prune.method must be one of 'refill', 'rsst'; got "
                                        "'rssst' (did you mean 'rsst'?)"),
    ("[prune]\nsorting = 'layerwise'\n", [], "one of 'global', 'layer-wise'"),
    ("[prune]\nstates = 3\nhead_ratio = [0.3]\n", [],
     "prune.head_ratio has 1 values but the run makes 2 pruning step(s)"),
    ("[prune]\nrewind = 'epoch:x'\n", [], "prune.rewind must be 'init', 'none' or 'epoch:K'"),
    ("[prune]\nrewind = 'epoch:9'\n", [], "rewinds to after epoch 9 of state 0"),
    ("[run]\ndevice = 'gpu'\n", [], "run.device must be 'auto', 'cpu', 'cuda'"),
    ("[train]\namp = 'fp8'\n", [], "train.amp must be true, false, 'bf16' or 'fp16'"),
    ("[model]\npretrained_path = 'w.pth'\n", [], "pretrained_path is set but model.pretrained"),
    ("[model]\nkwargs = {num_classes = 3}\n", [], "model.kwargs must not set num_classes"),
    ("", ["prune.sortin=global"], "--set: unknown key prune.sortin (did you mean 'sorting'?)"),
    ("", ["sorting=global"], "expected SECTION.KEY=VALUE"),
    ("", ["data.batch_size=-4"], "data.batch_size must be >= 1, got -4"),
    ("run = 3\n", [], "config [run] must be a table"),
])
def test_bad_values_name_the_key_and_the_allowed_values(tmp_path, text, overrides, expected):
    with pytest.raises(UserError) as err:
        load_config(write(tmp_path, text), overrides)
    assert expected in str(err.value)


def test_missing_and_unparseable_files(tmp_path):
    with pytest.raises(UserError, match="config file not found: .*nope.toml"):
        load_config(tmp_path / "nope.toml")
    with pytest.raises(UserError, match="is not valid TOML"):
        load_config(write(tmp_path, "[run\nname = 1"))
    with pytest.raises(UserError, match="is a directory, not a config file"):
        load_config(tmp_path)


def test_demo_word_finds_the_embedded_demo(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_config("demo")
    assert cfg["data"]["dataset"] == "synthetic" and cfg["prune"]["method"] == "rsst"
    assert (ROOT / "configs" / "demo.toml").read_text() == \
        (ROOT / "engine" / "demo.toml").read_text()


def test_apply_overrides_rejects_non_table_section():
    raw = {"run": 5}
    with pytest.raises(UserError, match=r"\[run\] must be a table"):
        apply_overrides(raw, ["run.name=x"])


@pytest.mark.parametrize("args, expected", [
    (["run", "does-not-exist.toml"], "config file not found"),
    (["run", "{cfg}", "--set", "prune.sortng=global"], "did you mean 'sorting'?"),
    (["run", "{cfg}", "--set", "train.lr=abc"], "train.lr must be a number"),
    (["run"], "missing CONFIG"),
    (["run", "--resume", "{tmp}"], "is not a run directory"),
    (["run", "{cfg}", "--resume", "{tmp}"], "either a CONFIG"),
])
def test_cli_prints_one_line_and_exits_2_without_traceback(tmp_path, args, expected):
    cfg = write(tmp_path, "")
    args = [a.format(cfg=cfg, tmp=tmp_path) for a in args]
    proc = subprocess.run([sys.executable, "-m", "tuiprune", *args], capture_output=True,
                          text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert expected in proc.stderr
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    assert len(proc.stderr.strip().splitlines()) == 1
