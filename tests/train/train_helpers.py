"""Helpers for the training-engine tests: tiny configurations, tiny image folders."""
from pathlib import Path

import numpy as np
from PIL import Image

from zoo.train import make_config


def tiny_config(tmp_path: Path, **overrides):
    """A run of a few steps on the digits at 32 pixels, writing under tmp_path/run."""
    values = dict(model='test_resnet', img_size=32, epochs=1, batch_size=16, max_steps_per_epoch=2,
                  warmup_epochs=0, progress=False, output=str(tmp_path / 'run'), workers=0, lr=1e-3)
    values.update(overrides)
    return make_config(values)


def make_image_folder(root: Path, classes=('a', 'b'), per_class=3, size=12) -> Path:
    """train/ and val/ ImageFolder splits of small random PNGs."""
    rng = np.random.default_rng(0)
    for split in ('train', 'val'):
        for c in classes:
            d = root / split / c
            d.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                arr = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
                Image.fromarray(arr).save(d / f'{i}.png')
    return root
