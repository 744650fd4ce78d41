"""Datasets and loaders: the embedded digits set and ImageFolder-style folders, checked before training.

Loaders come from timm's ``create_loader`` (timm transforms, DistributedSampler under torchrun). Images are
read by :class:`ImageSamples`, which also handles corrupt files (skip with a warning and a count, or fail)
and gives each rank its own slice of the validation set.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from timm.data import create_loader, resolve_data_config
from timm.data.readers.img_extensions import get_img_extensions

from ..images import read_image, to_rgb8
from .config import TrainConfig

__all__ = ['DataError', 'CorruptImageError', 'ImageSamples', 'DataSplits', 'build_datasets', 'build_loaders',
           'load_digits_samples', 'find_folder_samples']


class DataError(ValueError):
    """A data folder that cannot be trained on; the message names the folder and the problem."""


class CorruptImageError(DataError):
    """An image file that cannot be decoded, with ``on_corrupt='error'``."""


class ImageSamples(torch.utils.data.Dataset):
    """(image, label) samples from in-memory arrays or image files, with a timm transform.

    Args:
        items: per sample, a uint8 HxW / HxWxC array or a file path.
        labels: class index per sample.
        on_corrupt: 'skip' replaces an unreadable file by the next readable sample and counts it;
            'error' raises :class:`CorruptImageError`.
        indices: the subset of samples this view serves (a rank's validation shard); all when None.
    """

    def __init__(self, items: Sequence[Any], labels: Sequence[int], on_corrupt: str = 'skip',
                 indices: Optional[Sequence[int]] = None, transform: Optional[Callable] = None):
        self.items = list(items)
        self.labels = [int(t) for t in labels]
        self.on_corrupt = on_corrupt
        self.indices = list(range(len(self.items))) if indices is None else list(indices)
        self.transform = transform
        # shared across loader worker processes, so the count is exact whatever the worker count
        self._corrupt = torch.zeros(len(self.items), dtype=torch.bool).share_memory_()

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def corrupt_count(self) -> int:
        """Distinct files found unreadable so far."""
        return int(self._corrupt.sum())

    def subset(self, indices: Sequence[int]) -> 'ImageSamples':
        view = ImageSamples.__new__(ImageSamples)
        view.__dict__.update(self.__dict__)
        view.indices = [self.indices[i] for i in indices]
        return view

    def _load(self, i: int) -> Image.Image:
        item = self.items[i]
        if isinstance(item, np.ndarray):
            return to_rgb8(Image.fromarray(item))
        return read_image(item)  # 16-bit files scaled to 8 bits, not clipped

    def __getitem__(self, index: int):
        n = len(self.indices)
        for offset in range(n):
            i = self.indices[(index + offset) % n]
            try:
                img = self._load(i)
            except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as e:
                if self.on_corrupt == 'error':
                    raise CorruptImageError(
                        f'corrupt image {self.items[i]}: {e} (pass --on-corrupt skip to skip such files)') from e
                if not self._corrupt[i]:
                    self._corrupt[i] = True
                    warnings.warn(f'skipping corrupt image {self.items[i]} ({e})')
                continue
            if self.transform is not None:
                img = self.transform(img)
            return img, self.labels[i]
        raise CorruptImageError('every image in the dataset is unreadable')


@dataclass
class DataSplits:
    train: ImageSamples
    val: ImageSamples
    classes: list[str]
    description: str


def load_digits_samples(val_fraction: float, seed: int) -> tuple[list, list, list, list, list[str]]:
    """scikit-learn's handwritten digits (1,797 8x8 images, 10 classes), split stratified and reproducibly."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    digits = load_digits()
    images = (digits.images * (255. / 16.)).round().clip(0, 255).astype(np.uint8)
    x_tr, x_va, y_tr, y_va = train_test_split(
        list(images), list(digits.target), test_size=val_fraction, stratify=digits.target, random_state=seed)
    return x_tr, y_tr, x_va, y_va, [str(c) for c in range(10)]


def find_folder_samples(root: Path, class_names: Optional[list[str]] = None) -> tuple[list, list, list[str]]:
    """Files and labels of an ImageFolder split (one sub-folder per class); refuses empty folders."""
    if not root.is_dir():
        raise DataError(f'data folder {root} does not exist')
    exts = tuple(e.lower() for e in get_img_extensions())
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith('.'))
    if not classes:
        raise DataError(f'data folder {root} is empty: expected one sub-folder of images per class')
    if class_names is not None and classes != class_names:
        missing = sorted(set(class_names) - set(classes))
        extra = sorted(set(classes) - set(class_names))
        raise DataError(f'class folders of {root} differ from the training split: missing {missing}, extra {extra}')
    files, labels = [], []
    for idx, name in enumerate(classes):
        found = sorted(str(Path(d) / f) for d, _, fs in os.walk(root / name) for f in fs
                       if f.lower().endswith(exts))
        if not found:
            raise DataError(f'class folder {root / name} holds no images (extensions {", ".join(exts)})')
        files += found
        labels += [idx] * len(found)
    return files, labels, classes


def build_datasets(cfg: TrainConfig) -> DataSplits:
    """Train and validation samples for the configured dataset (no transforms yet)."""
    if cfg.dataset == 'digits':
        x_tr, y_tr, x_va, y_va, classes = load_digits_samples(cfg.val_fraction, cfg.data_seed)
        desc = f'digits (scikit-learn): {len(x_tr)} train / {len(x_va)} held-out images, 10 classes'
    else:
        root = Path(cfg.data_dir)
        if not root.is_dir():
            raise DataError(f'data folder {root} does not exist')
        x_tr, y_tr, classes = find_folder_samples(root / cfg.train_split)
        x_va, y_va, _ = find_folder_samples(root / cfg.val_split, classes)
        desc = f'{root}: {len(x_tr)} train / {len(x_va)} val images, {len(classes)} classes'
    return DataSplits(ImageSamples(x_tr, y_tr, cfg.on_corrupt), ImageSamples(x_va, y_va, cfg.on_corrupt),
                      classes, desc)


def build_loaders(cfg: TrainConfig, data: DataSplits, model: torch.nn.Module, rank: int = 0,
                  world_size: int = 1) -> tuple[Any, Any, dict]:
    """timm loaders: augmented, shuffled (distributed) training batches; this rank's validation shard."""
    overrides = dict(input_size=(3, cfg.img_size, cfg.img_size), crop_pct=cfg.crop_pct, mean=cfg.mean, std=cfg.std)
    data_config = resolve_data_config({k: v for k, v in overrides.items() if v is not None}, model=model)
    common = dict(input_size=data_config['input_size'], mean=data_config['mean'], std=data_config['std'],
                  num_workers=cfg.workers, use_prefetcher=False, persistent_workers=False)
    train_loader = create_loader(
        data.train, batch_size=cfg.batch_size, is_training=True, scale=tuple(cfg.scale), ratio=tuple(cfg.ratio),
        hflip=cfg.hflip, color_jitter=cfg.color_jitter, auto_augment=cfg.auto_augment, re_prob=cfg.reprob,
        interpolation=cfg.train_interpolation, distributed=world_size > 1, **common)
    val_view = data.val.subset(range(rank, len(data.val), world_size)) if world_size > 1 else data.val
    val_loader = create_loader(
        val_view, batch_size=cfg.batch_size * 2, is_training=False, interpolation=data_config['interpolation'],
        crop_pct=data_config['crop_pct'], **common)
    return train_loader, val_loader, data_config
