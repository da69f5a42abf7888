"""Datasets and batches that keep the accelerator busy.

The research code ran at ~10 % GPU utilisation because two CPU loader workers decoded and
augmented CIFAR. Here the small datasets (``synthetic``, ``cifar10``, ``cifar100``) are held as
one uint8 tensor on the training device and augmented there, a whole batch at a time (random
crop with padding, horizontal flip, resize, normalisation). ``imagefolder`` decodes JPEGs on CPU
workers (a DataLoader with pinned memory and persistent workers) and shares the on-device
normalisation.

Batch order is a function of ``(seed, state, epoch)`` and augmentation of ``(…, batch)``, so a
resumed epoch continues with exactly the batches it would have seen.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from engine.errors import UserError
from engine.ranks import global_batches, rank_rows

Batch = Tuple[torch.Tensor, torch.Tensor]
CIFAR_FOLDERS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}


def mix_seed(*parts: int) -> int:
    """A 63-bit seed from integers (stable across runs and machines)."""
    h = 1469598103934665603
    for p in parts:
        h = ((h ^ (int(p) & 0xFFFFFFFFFFFFFFFF)) * 1099511628211) & 0x7FFFFFFFFFFFFFFF
    return h


class Preprocess:
    """uint8 NCHW batch on the device → float, resized, normalised with the model's mean/std."""

    def __init__(self, size: int, mean: Sequence[float], std: Sequence[float],
                 device: torch.device):
        self.size = size
        self.mean = torch.tensor(mean, device=device).view(1, -1, 1, 1) * 255.0
        self.inv_std = 1.0 / (torch.tensor(std, device=device).view(1, -1, 1, 1) * 255.0)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        if x.shape[-1] != self.size or x.shape[-2] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear",
                              align_corners=False, antialias=x.shape[-1] > self.size)
        return (x - self.mean) * self.inv_std


def random_crop_flip(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Per-image random crop after zero padding by 1/8 of the size, and a random flip."""
    b, c, h, w = x.shape
    p = max(1, h // 8)
    xp = F.pad(x, (p, p, p, p))
    dy = torch.randint(0, 2 * p + 1, (b,), device=x.device, generator=gen)
    dx = torch.randint(0, 2 * p + 1, (b,), device=x.device, generator=gen)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, :, None]      # (B, H, 1)
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, :]      # (B, 1, W)
    out = xp[torch.arange(b, device=x.device)[:, None, None], :, rows, cols]  # (B, H, W, C)
    out = out.permute(0, 3, 1, 2)
    flip = torch.rand(b, device=x.device, generator=gen) < 0.5
    return torch.where(flip[:, None, None, None], out.flip(3), out).contiguous()


class TensorSource:
    """Batches from a uint8 image tensor that lives on the training device. ``batch_size`` is
    the global batch; with ``world`` > 1 this source yields rank ``rank``'s rows of each (see
    :meth:`for_rank`)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int, *,
                 train: bool, augment: bool, preprocess: Preprocess, rank: int = 0,
                 world: int = 1):
        self.images, self.labels = images, labels
        self.global_batch, self.batch_size = batch_size, batch_size // world
        self.train, self.augment, self.preprocess = train, augment, preprocess
        self.rank, self.world = rank, world

    def __len__(self) -> int:
        return global_batches(len(self.labels), self.global_batch, self.world)

    def for_rank(self, rank: int, world: int) -> "TensorSource":
        """The same epochs for rank ``rank`` of ``world``: every rank draws the same global
        batch (order and augmentation) and preprocesses only its own rows of it."""
        return TensorSource(self.images, self.labels, self.global_batch, train=self.train,
                            augment=self.augment, preprocess=self.preprocess, rank=rank,
                            world=world)

    @property
    def num_samples(self) -> int:
        return len(self.labels)

    def part(self, lo: int, hi: int) -> "TensorSource":
        """Samples ``lo…hi-1`` in order, un-augmented (a rank's share of an evaluation
        split)."""
        return TensorSource(self.images[lo:hi], self.labels[lo:hi], self.global_batch,
                            train=False, augment=False, preprocess=self.preprocess)

    def batches(self, seed: int = 0, start: int = 0) -> Iterator[Batch]:
        """Batches ``start…`` of the epoch identified by ``seed`` (shuffled when training)."""
        n, device = len(self.labels), self.images.device
        order = (torch.randperm(n, generator=torch.Generator().manual_seed(seed)).to(device)
                 if self.train else None)
        gen, bs = torch.Generator(device=device), self.global_batch
        for b in range(start, len(self)):
            sl = slice(b * bs, min(n, (b + 1) * bs))
            idx = order[sl] if order is not None else None
            x = self.images[idx] if idx is not None else self.images[sl]
            y = self.labels[idx] if idx is not None else self.labels[sl]
            if self.train and self.augment:  # drawn for the whole global batch
                gen.manual_seed(mix_seed(seed, b))
                x = random_crop_flip(x, gen)
            rows = rank_rows(len(y), self.rank, self.world)  # all of them in one process
            yield self.preprocess(x[rows]), y[rows]


class _EpochBatches(torch.utils.data.Sampler):
    """The index lists of the current epoch's batches from ``start`` on (re-armed by
    ``set_epoch``); with ``world`` > 1, only this rank's rows of each global batch
    (:func:`engine.ranks.rank_rows`), so a worker never decodes another rank's images."""

    def __init__(self, n: int, batch_size: int, shuffle: bool, rank: int = 0, world: int = 1):
        self.n, self.batch_size, self.shuffle = n, batch_size, shuffle
        self.rank, self.world = rank, world
        self.seed, self.start = 0, 0

    def set_epoch(self, seed: int, start_batch: int) -> None:
        self.seed, self.start = seed, start_batch

    def batches(self) -> int:
        """Batches in a whole epoch."""
        return global_batches(self.n, self.batch_size, self.world)

    def __iter__(self) -> Iterator[List[int]]:
        order = (torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed))
                 if self.shuffle else torch.arange(self.n))
        for b in range(self.start, self.batches()):
            batch = order[b * self.batch_size:(b + 1) * self.batch_size]
            yield batch[rank_rows(len(batch), self.rank, self.world)].tolist()

    def __len__(self) -> int:
        return max(0, self.batches() - self.start)


class LoaderSource:
    """Batches decoded by DataLoader workers (ImageFolder), normalised on the device.
    ``batch_size`` is the global batch; with ``world`` > 1 this source yields rank
    ``rank``'s rows of each (see :meth:`for_rank`)."""

    def __init__(self, dataset, batch_size: int, *, train: bool, workers: int,
                 preprocess: Preprocess, device: torch.device, rank: int = 0, world: int = 1):
        self.dataset, self.global_batch, self.train = dataset, batch_size, train
        self.batch_size = batch_size // world
        self.workers, self.preprocess, self.device = workers, preprocess, device
        self.sampler = _EpochBatches(len(dataset), batch_size, shuffle=train, rank=rank,
                                     world=world)
        self.loader = torch.utils.data.DataLoader(
            dataset, batch_sampler=self.sampler, num_workers=workers,
            pin_memory=device.type == "cuda", persistent_workers=workers > 0)

    def __len__(self) -> int:
        return self.sampler.batches()

    @property
    def num_samples(self) -> int:
        return len(self.dataset)

    def for_rank(self, rank: int, world: int) -> "LoaderSource":
        """The same epochs (order, global batch) for rank ``rank`` of ``world``: its rows of
        every global batch, decoded by its own workers."""
        return LoaderSource(self.dataset, self.global_batch, train=self.train,
                            workers=self.workers, preprocess=self.preprocess,
                            device=self.device, rank=rank, world=world)

    def part(self, lo: int, hi: int) -> "LoaderSource":
        """Samples ``lo…hi-1`` in order (a rank's share of an evaluation split)."""
        return LoaderSource(torch.utils.data.Subset(self.dataset, range(lo, hi)),
                            self.global_batch, train=self.train, workers=self.workers,
                            preprocess=self.preprocess, device=self.device)

    def batches(self, seed: int = 0, start: int = 0) -> Iterator[Batch]:
        self.sampler.set_epoch(seed, start)
        for x, y in self.loader:
            yield (self.preprocess(x.to(self.device, non_blocking=True)),
                   y.to(self.device, non_blocking=True))


@dataclass
class Data:
    """The splits of a run; ``test`` is None when the run has no test split. ``calib`` is the
    training split without shuffling or augmentation (batches for activation criteria)."""

    name: str
    num_classes: int
    train: object
    val: object
    test: Optional[object]
    calib: object


# --------------------------------------------------------------------------- raw datasets
def synthetic(n: int, seed: int, size: int = 32, classes: int = 10) -> Tuple[torch.Tensor,
                                                                             torch.Tensor]:
    """A learnable, CIFAR-shaped dataset generated from ``seed`` (uint8 NCHW, labels).

    Class c draws shape ``c % 5`` (disk, square, triangle, ring, cross) in hue ``36°·c`` ±20°
    on a random dark background with pixel noise, at a random position and size: colour alone
    confuses neighbouring classes, shape alone confuses c and c+5; both together separate all.
    """
    g = torch.Generator().manual_seed(mix_seed(seed, n, 7))
    y = torch.arange(n) % classes
    y = y[torch.randperm(n, generator=g)]

    def u(lo, hi, shape=(n,)):
        return lo + (hi - lo) * torch.rand(shape, generator=g)

    cx, cy = u(0.3 * size, 0.7 * size), u(0.3 * size, 0.7 * size)
    r = u(0.16 * size, 0.3 * size)
    coords = torch.arange(size, dtype=torch.float32) + 0.5
    dx = coords.view(1, 1, -1) - cx.view(-1, 1, 1)
    dy = coords.view(1, -1, 1) - cy.view(-1, 1, 1)
    rr = r.view(-1, 1, 1)
    dist = (dx ** 2 + dy ** 2).sqrt()
    shapes = torch.stack([
        dist <= rr,                                                            # disk
        torch.maximum(dx.abs(), dy.abs()) <= 0.8 * rr,                         # square
        (dy.abs() <= 0.8 * rr) & (dx.abs() <= (dy + 0.8 * rr) * 0.6),          # triangle
        (dist <= rr) & (dist >= 0.55 * rr),                                    # ring
        ((dx.abs() <= 0.3 * rr) & (dy.abs() <= rr))
        | ((dy.abs() <= 0.3 * rr) & (dx.abs() <= rr)),                         # cross
    ], dim=1)                                                                  # (N, 5, H, W)
    mask = shapes[torch.arange(n), y % 5].float().unsqueeze(1)                # (N, 1, H, W)
    hue = ((y.float() * 36.0 + u(-20.0, 20.0)) % 360.0) / 60.0
    fg = _hsv_to_rgb(hue, u(0.6, 1.0), u(0.75, 1.0))                          # (N, 3)
    bg = _hsv_to_rgb(u(0.0, 6.0), u(0.0, 0.4), u(0.1, 0.45))
    img = bg.view(n, 3, 1, 1) * (1 - mask) + fg.view(n, 3, 1, 1) * mask
    img = img + 0.08 * torch.randn((n, 3, size, size), generator=g)
    return (img.clamp(0, 1) * 255).round().to(torch.uint8), y


def _hsv_to_rgb(h: torch.Tensor, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Hue in sextants [0, 6), saturation and value in [0, 1] → RGB in [0, 1], shape (N, 3)."""
    k = torch.stack([(5 + h) % 6, (3 + h) % 6, (1 + h) % 6], dim=1)
    return v[:, None] - v[:, None] * s[:, None] * torch.clamp(torch.minimum(k, 4 - k), 0, 1)


def cifar(name: str, root: Path, download: bool) -> Tuple[Tuple[torch.Tensor, torch.Tensor],
                                                          Tuple[torch.Tensor, torch.Tensor],
                                                          int]:
    """CIFAR-10/100 through torchvision: (train, test, num_classes) as uint8 NCHW tensors."""
    from torchvision import datasets

    cls = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
    folder = Path(root) / CIFAR_FOLDERS[name]
    if not download and not folder.is_dir():
        raise UserError(f"{name} not found: looked for {folder} (data.root = {root}). Set "
                        f"data.download = true to fetch it, or point data.root at the folder "
                        f"that contains {CIFAR_FOLDERS[name]}/")
    try:
        splits = [cls(str(root), train=t, download=download) for t in (True, False)]
    except RuntimeError as exc:
        raise UserError(f"{name} under {folder} is missing files or corrupted ({exc}); delete "
                        f"the folder and set data.download = true to fetch it again") from None
    except OSError as exc:  # no network, disk full, …
        raise UserError(f"could not download {name} into {root}: {exc}") from None
    out = []
    for ds in splits:
        x = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()
        out.append((x, torch.tensor(ds.targets, dtype=torch.long)))
    return out[0], out[1], len(splits[0].classes)


def split_val(n: int, fraction: float, seed: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Indices (train, val): a seeded random ``fraction`` of ``n`` held out."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(mix_seed(seed, 11)))
    k = int(round(n * fraction))
    return order[k:], order[:k]


# --------------------------------------------------------------------------- assembling
def num_classes(cfg: dict) -> int:
    """Classes of the configured dataset, known before any image is read."""
    d = cfg["data"]
    if d["dataset"] == "imagefolder":
        from torchvision.datasets.folder import find_classes

        root = Path(d["root"])
        folder = root / "train" if (root / "train").is_dir() else root
        try:
            return len(find_classes(str(folder))[0])
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise UserError(f"data.root: no class folders in {folder} ({exc}); imagefolder "
                            f"expects ROOT/train/<class>/<image> (or ROOT/<class>/<image>), "
                            f"optionally ROOT/val and ROOT/test") from None
    return {"synthetic": 10, "cifar10": 10, "cifar100": 100}[d["dataset"]]


def load(cfg: dict, device: torch.device, size: int, mean, std) -> Data:
    """The run's splits, ready to iterate, for a model of input ``size``."""
    d = cfg["data"]
    seed = cfg["run"]["seed"]
    out_size = d["resize"] or size
    pre = Preprocess(out_size, mean, std, device)
    bs = d["batch_size"]
    ebs = d["eval_batch_size"] or 2 * bs
    if d["dataset"] == "imagefolder":
        return _imagefolder(cfg, device, out_size, pre, bs, ebs)
    if d["dataset"] == "synthetic":
        train = synthetic(d["train_size"], seed)
        test = synthetic(d["test_size"], seed + 1_000_003) if d["test_size"] else None
        classes = 10
    else:
        train, test, classes = cifar(d["dataset"], Path(d["root"]), d["download"])
    if not d["test"]:
        test = None
    tr_idx, va_idx = split_val(len(train[1]), d["val_fraction"], seed)
    if len(va_idx) == 0:
        raise UserError("data.val_fraction leaves no validation images; raise it above 0")

    x_tr, y_tr = train[0][tr_idx].to(device), train[1][tr_idx].to(device)
    x_va, y_va = train[0][va_idx].to(device), train[1][va_idx].to(device)

    def source(x, y, batch, train_split):
        return TensorSource(x, y, batch, train=train_split, augment=d["augment"],
                            preprocess=pre)

    return Data(d["dataset"], classes,
                train=source(x_tr, y_tr, bs, True),
                val=source(x_va, y_va, ebs, False),
                test=source(test[0].to(device), test[1].to(device), ebs, False)
                if test is not None and len(test[1]) else None,
                calib=source(x_tr, y_tr, bs, False))


def _imagefolder(cfg: dict, device, size: int, pre: Preprocess, bs: int, ebs: int) -> Data:
    from torchvision import datasets, transforms

    d = cfg["data"]
    root = Path(d["root"])
    train_dir = root / "train" if (root / "train").is_dir() else root
    if not train_dir.is_dir():
        raise UserError(f"data.root {root} is not a folder; imagefolder expects "
                        f"ROOT/train/<class>/*.jpg (and optionally ROOT/val, ROOT/test)")
    pad = max(1, size // 8)
    aug = [transforms.RandomCrop(size, padding=pad), transforms.RandomHorizontalFlip()] \
        if d["augment"] else [transforms.CenterCrop(size)]
    to_uint8 = transforms.PILToTensor()
    tf_train = transforms.Compose([transforms.Resize(size), *aug, to_uint8])
    tf_eval = transforms.Compose([transforms.Resize(size), transforms.CenterCrop(size),
                                  to_uint8])
    try:
        train_ds = datasets.ImageFolder(str(train_dir), transform=tf_train)
    except (FileNotFoundError, RuntimeError) as exc:
        raise UserError(f"imagefolder {train_dir}: {exc}") from None
    eval_ds = copy.copy(train_ds)  # the same file list, un-augmented (no second folder scan)
    eval_ds.transform = tf_eval
    if (root / "val").is_dir():
        val_ds = datasets.ImageFolder(str(root / "val"), transform=tf_eval)
        train_part, calib_ds = train_ds, eval_ds
    else:
        tr_idx, va_idx = split_val(len(train_ds), d["val_fraction"], cfg["run"]["seed"])
        train_part = torch.utils.data.Subset(train_ds, tr_idx.tolist())
        calib_ds = torch.utils.data.Subset(eval_ds, tr_idx.tolist())
        val_ds = torch.utils.data.Subset(eval_ds, va_idx.tolist())
    test_ds = (datasets.ImageFolder(str(root / "test"), transform=tf_eval)
               if d["test"] and (root / "test").is_dir() else None)
    w = d["workers"]
    return Data("imagefolder", len(train_ds.classes),
                train=LoaderSource(train_part, bs, train=True, workers=w, preprocess=pre,
                                   device=device),
                val=LoaderSource(val_ds, ebs, train=False, workers=w, preprocess=pre,
                                 device=device),
                test=LoaderSource(test_ds, ebs, train=False, workers=w, preprocess=pre,
                                  device=device) if test_ds is not None else None,
                calib=LoaderSource(calib_ds, bs, train=False, workers=0, preprocess=pre,
                                   device=device))
