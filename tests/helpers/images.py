"""ImageFolder trees written by the tests: small PNGs, one colour channel raised per class."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def make_image_folder(root: Path, classes=("cat", "dog", "fox"), per_class=12, val=True):
    """``root/train/<class>/<j>.png`` (``per_class`` each) and, with ``val``,
    ``root/val/<class>/`` (4 each): 44x40 RGB noise with the class's channel raised."""
    rng = np.random.default_rng(0)
    splits = ("train", "val") if val else ("train",)
    for split in splits:
        for i, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True)
            for j in range(per_class if split == "train" else 4):
                arr = rng.integers(0, 60, (40, 44, 3), dtype=np.uint8)
                arr[..., i] += 150  # class-coloured
                Image.fromarray(arr).save(folder / f"{j}.png")
