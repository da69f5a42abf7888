"""Real data and weight loading on files the tests generate: ImageFolder trees, CIFAR pickles,
local pretrained weights (.safetensors and .pth), and the failure messages."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from engine import data as data_mod
from engine import model as model_mod
from engine.config import load_config
from engine.errors import UserError
from helpers.images import make_image_folder
from helpers.runs import TINY
from tuiprune.run_command import run_main


def cfg_for(tmp_path, *overrides):
    p = tmp_path / "c.toml"
    p.write_text("")
    return load_config(p, [*TINY, *overrides])


# --------------------------------------------------------------------------- synthetic
def test_synthetic_is_deterministic_cifar_shaped_and_class_dependent():
    x1, y1 = data_mod.synthetic(400, seed=3)
    x2, y2 = data_mod.synthetic(400, seed=3)
    x3, _ = data_mod.synthetic(400, seed=4)
    assert x1.shape == (400, 3, 32, 32) and x1.dtype == torch.uint8
    assert torch.equal(x1, x2) and torch.equal(y1, y2) and not torch.equal(x1, x3)
    assert set(y1.tolist()) == set(range(10))
    # classes differ in colour: per-class mean colours are far apart relative to the noise
    means = torch.stack([x1[y1 == c].float().mean(dim=(0, 2, 3)) for c in range(10)])
    assert torch.cdist(means, means).fill_diagonal_(1e9).min() > 1.0


def test_device_batches_are_augmented_normalised_and_resumable():
    x, y = data_mod.synthetic(100, seed=0)
    pre = data_mod.Preprocess(48, (0.5,) * 3, (0.5,) * 3, torch.device("cpu"))
    src = data_mod.TensorSource(x, y, 32, train=True, augment=True, preprocess=pre)
    batches = list(src.batches(seed=7))
    assert len(batches) == len(src) == 4
    xb, yb = batches[0]
    assert xb.shape == (32, 3, 48, 48) and xb.dtype == torch.float32
    assert -1.01 <= float(xb.min()) and float(xb.max()) <= 1.01
    resumed = list(src.batches(seed=7, start=2))
    assert torch.equal(resumed[0][0], batches[2][0]) and torch.equal(resumed[1][1], batches[3][1])
    other = list(src.batches(seed=8))
    assert not torch.equal(other[0][1], batches[0][1])


# --------------------------------------------------------------------------- ImageFolder
def test_imagefolder_trains_through_a_dataloader_with_workers(tmp_path):
    make_image_folder(tmp_path / "imgs")
    cfg = cfg_for(tmp_path, "data.dataset='imagefolder'", f"data.root='{tmp_path / 'imgs'}'",
                  "data.workers=2", "data.batch_size=8")
    assert data_mod.num_classes(cfg) == 3
    data = data_mod.load(cfg, torch.device("cpu"), 32, (0.5,) * 3, (0.5,) * 3)
    assert data.num_classes == 3 and data.train.num_samples == 36 and data.val.num_samples == 12
    assert data.train.loader.num_workers == 2 and data.train.loader.persistent_workers
    xb, yb = next(iter(data.train.batches(seed=1)))
    assert xb.shape == (8, 3, 32, 32) and set(yb.tolist()) <= {0, 1, 2}
    # resume mid-epoch: the same batches from batch 2 on
    full = [b[1] for b in data.train.batches(seed=1)]
    part = [b[1] for b in data.train.batches(seed=1, start=2)]
    assert all(torch.equal(a, b) for a, b in zip(full[2:], part)) and len(part) == len(full) - 2


def test_imagefolder_ranks_decode_only_their_rows_of_each_global_batch(tmp_path):
    """Under torchrun each rank's loader decodes its own rows of every global batch; the
    ranks' rows together are the one-process batch, checked against the epoch's permutation
    drawn here (36 images in global batches of 8: 8, 8, 8, 8, 4)."""
    make_image_folder(tmp_path / "imgs")
    cfg = cfg_for(tmp_path, "data.dataset='imagefolder'", f"data.root='{tmp_path / 'imgs'}'",
                  "data.workers=0", "data.batch_size=8", "data.augment=false")
    data = data_mod.load(cfg, torch.device("cpu"), 32, (0.5,) * 3, (0.5,) * 3)
    labels = torch.tensor(data.train.dataset.targets)
    order = torch.randperm(36, generator=torch.Generator().manual_seed(5))
    expected = [labels[order[i:i + 8]] for i in range(0, 36, 8)]
    for world in (2, 3):
        ranks = [data.train.for_rank(r, world) for r in range(world)]
        assert all(len(src) == 5 and src.batch_size == 8 // world for src in ranks)
        got = [[y for _, y in src.batches(seed=5)] for src in ranks]
        # what the workers are asked to decode: this rank's rows only
        assert [len(rows) for rows in ranks[0].sampler] == [8 // world] * 4 + [4 // world]
        for b, whole in enumerate(expected):
            per = len(whole) // world  # 4 images over 3 ranks: 1 each, the 4th left out
            assert torch.cat([g[b] for g in got]).tolist() == whole[:per * world].tolist()
        resumed = [y for _, y in ranks[1].batches(seed=5, start=3)]
        assert [t.tolist() for t in resumed] == [t.tolist() for t in got[1][3:]]
    # a last batch smaller than the ranks is left out: 36 = 4 x 9 + 0; in batches of 7 the
    # last has 1 image, fewer than 2 ranks
    sevens = data_mod.LoaderSource(data.train.dataset, 7, train=True, workers=0,
                                   preprocess=data.train.preprocess, device=torch.device("cpu"))
    assert len(sevens) == 6 and len(sevens.for_rank(0, 2)) == 5
    # evaluation shares: contiguous, in order, together the whole split
    shares = [data.val.part(i * 12 // 5, (i + 1) * 12 // 5) for i in range(5)]
    val_labels = [y for _, y in data.val.batches()]
    assert torch.cat([y for s in shares for _, y in s.batches()]).tolist() == \
        torch.cat(val_labels).tolist()


def test_imagefolder_run_end_to_end(tmp_path):
    make_image_folder(tmp_path / "imgs", val=False)
    code = run_main(Path("demo"), [*TINY, "data.dataset='imagefolder'",
                                   f"data.root='{tmp_path / 'imgs'}'", "data.workers=0",
                                   "data.batch_size=8", "prune.states=2", "train.epochs=1",
                                   "data.val_fraction=0.25"], run_dir=tmp_path / "run")
    assert code == 0
    first = (tmp_path / "run" / "events.jsonl").read_text().splitlines()[0]
    assert '"num_classes":3' in first and '"val":9' in first


def test_imagefolder_without_class_folders(tmp_path):
    (tmp_path / "empty" / "train").mkdir(parents=True)
    cfg = cfg_for(tmp_path, "data.dataset='imagefolder'", f"data.root='{tmp_path / 'empty'}'")
    with pytest.raises(UserError, match="no class folders"):
        data_mod.num_classes(cfg)


# --------------------------------------------------------------------------- CIFAR
def write_fake_cifar10(root: Path, n_train=50, n_test=20):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(1, 6):
        with open(folder / f"data_batch_{i}", "wb") as f:
            pickle.dump({"data": rng.integers(0, 255, (n_train // 5, 3072), dtype=np.uint8),
                         "labels": [int(v) for v in rng.integers(0, 10, n_train // 5)]}, f)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({"data": rng.integers(0, 255, (n_test, 3072), dtype=np.uint8),
                     "labels": [int(v) for v in rng.integers(0, 10, n_test)]}, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)]}, f)


def test_cifar_loads_through_torchvision(tmp_path, monkeypatch):
    from torchvision.datasets import cifar

    write_fake_cifar10(tmp_path)
    # generated files cannot match torchvision's md5 list; everything else is the real path
    monkeypatch.setattr(cifar, "check_integrity", lambda *args, **kw: True)
    (xtr, ytr), (xte, yte), classes = data_mod.cifar("cifar10", tmp_path, download=False)
    assert classes == 10 and xtr.shape == (50, 3, 32, 32) and xte.shape == (20, 3, 32, 32)
    assert xtr.dtype == torch.uint8 and ytr.dtype == torch.long


def test_cifar_missing_without_download_says_where_and_how(tmp_path):
    with pytest.raises(UserError) as err:
        data_mod.cifar("cifar100", tmp_path / "data", download=False)
    msg = str(err.value)
    assert str(tmp_path / "data" / "cifar-100-python") in msg
    assert "data.download = true" in msg


def test_cifar_corrupted_folder(tmp_path):
    (tmp_path / "cifar-10-batches-py").mkdir()
    with pytest.raises(UserError, match="missing files or corrupted"):
        data_mod.cifar("cifar10", tmp_path, download=False)


# --------------------------------------------------------------------------- weights
@pytest.fixture(scope="module")
def source_weights():
    """A full-size vit_tiny_patch16_224 state dict (1000 classes, 16-px patches, 224 px)."""
    import timm

    torch.manual_seed(1)
    return timm.create_model("vit_tiny_patch16_224", pretrained=False).state_dict()


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_pretrained_path_resamples_embeddings_and_reinits_the_head(tmp_path, source_weights,
                                                                   suffix):
    path = tmp_path / f"w{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(source_weights, str(path))
    else:
        torch.save({"state_dict": source_weights}, path)
    cfg = cfg_for(tmp_path, "model.pretrained=true", f"model.pretrained_path='{path}'",
                  "model.kwargs={patch_size=4}")
    model, spec, source = model_mod.build(cfg, 10)
    assert source == f"file: {path}"
    sd = model.state_dict()
    assert torch.equal(sd["blocks.5.mlp.fc1.weight"], source_weights["blocks.5.mlp.fc1.weight"])
    assert sd["patch_embed.proj.weight"].shape == (192, 3, 4, 4)   # resampled from 16×16
    assert sd["pos_embed"].shape == (1, 65, 192)                   # 8×8 patches + cls token
    assert sd["head.weight"].shape == (10, 192)                    # fresh 10-class head


def test_pretrained_file_of_another_model_is_refused(tmp_path, source_weights):
    path = tmp_path / "tiny.pth"
    torch.save(source_weights, path)
    cfg = cfg_for(tmp_path, "model.pretrained=true", f"model.pretrained_path='{path}'",
                  "model.name='vit_small_patch16_224'")
    with pytest.raises(UserError, match="does not (match|fit)"):
        model_mod.build(cfg, 10)


def test_pretrained_file_that_is_not_weights(tmp_path):
    path = tmp_path / "notes.pth"
    path.write_text("hello")
    cfg = cfg_for(tmp_path, "model.pretrained=true", f"model.pretrained_path='{path}'")
    with pytest.raises(UserError, match="cannot read .* as weights"):
        model_mod.build(cfg, 10)


def test_hub_failure_is_an_error_never_random_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = cfg_for(tmp_path, "model.pretrained=true")
    with pytest.raises(UserError, match="Refusing to continue with random weights"):
        model_mod.build(cfg, 10)
