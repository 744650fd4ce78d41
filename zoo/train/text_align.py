"""GPT4Image (Ding et al., 2023): text embeddings of image descriptions as extra supervision.

Descriptions of the training images are written once, outside training (a multimodal LLM), and encoded once
by a text encoder (``python -m zoo.train.embed_descriptions``) into an embeddings file keyed by each image's
path relative to the data root. Training adds to the classification loss an alignment term between a small
projection of the vision model's pre-logits features and the image's text embedding. The projection exists
only for training: the model weights a run saves never include it.

The file is checked against the training split before the first step: every image needs an embedding, the
width must be the configured one, and a file written for another dataset is named as such.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import ConfigError, TrainConfig
from .data import DataError, DataSplits, ImageSamples
from .distill import supervised_objective
from .training_net import TrainingNet

__all__ = ['TextEmbeddings', 'read_text_embeddings', 'write_text_embeddings', 'digits_keys', 'sample_keys',
           'embeddings_for', 'TextEmbeddingSamples', 'TextAlignedNet', 'TextAlignObjective',
           'cosine_alignment_loss', 'contrastive_alignment_loss', 'attach_text_embeddings', 'build_text_aligned_net',
           'text_align_objective', 'validate_gpt4image']

FORMAT = 'zoo-text-embeddings/1'


@dataclass
class TextEmbeddings:
    """An embeddings file's content: one row of ``vectors`` (N, D) per key, and what wrote it."""
    keys: list[str]
    vectors: torch.Tensor
    metadata: dict[str, str]

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])


def write_text_embeddings(path: str | Path, keys: Sequence[str], vectors: torch.Tensor,
                          metadata: Optional[dict[str, Any]] = None) -> Path:
    """Write ``.safetensors`` (keys as one UTF-8 byte tensor, so any number fits) or ``.npz``."""
    path = Path(path)
    keys = list(keys)
    if vectors.ndim != 2 or vectors.shape[0] != len(keys):
        raise ValueError(f'need one embedding row per key: {len(keys)} keys, vectors of shape {tuple(vectors.shape)}')
    meta = {'format': FORMAT, **{k: str(v) for k, v in (metadata or {}).items()}}
    path.parent.mkdir(parents=True, exist_ok=True)
    vectors = vectors.detach().float().cpu().contiguous()
    if path.suffix == '.safetensors':
        from safetensors.torch import save_file
        key_bytes = torch.frombuffer(bytearray('\n'.join(keys).encode('utf-8')), dtype=torch.uint8)
        save_file({'embeddings': vectors, 'keys': key_bytes.clone()}, str(path), metadata=meta)
    elif path.suffix == '.npz':
        np.savez(path, embeddings=vectors.numpy(), keys=np.array(keys), metadata=np.array(json.dumps(meta)))
    else:
        raise ValueError(f'embeddings file {path} must end in .safetensors or .npz')
    return path


def read_text_embeddings(path: str | Path) -> TextEmbeddings:
    """Read and check an embeddings file (2-D, one row per distinct key, finite values)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f'text embeddings file {path} does not exist (write it with python -m '
                        f'zoo.train.embed_descriptions)')
    if path.suffix == '.safetensors':
        from safetensors import safe_open
        with safe_open(str(path), framework='pt') as f:
            meta = f.metadata() or {}
            names = set(f.keys())
            if meta.get('format') != FORMAT or names != {'embeddings', 'keys'}:
                raise DataError(f'{path} is not a text embeddings file (format {meta.get("format")!r}, '
                                f'tensors {sorted(names)}); write one with python -m zoo.train.embed_descriptions')
            vectors = f.get_tensor('embeddings')
            keys = bytes(f.get_tensor('keys').numpy()).decode('utf-8').split('\n')
    elif path.suffix == '.npz':
        with np.load(path, allow_pickle=False) as f:
            if set(f.files) != {'embeddings', 'keys', 'metadata'}:
                raise DataError(f'{path} is not a text embeddings file (arrays {sorted(f.files)})')
            meta = json.loads(str(f['metadata']))
            vectors = torch.from_numpy(f['embeddings'])
            keys = [str(k) for k in f['keys']]
    else:
        raise DataError(f'text embeddings file {path} must end in .safetensors or .npz')
    if vectors.ndim != 2 or vectors.shape[0] != len(keys):
        raise DataError(f'{path} holds {len(keys)} keys but embeddings of shape {tuple(vectors.shape)}')
    if len(set(keys)) != len(keys):
        raise DataError(f'{path} holds duplicate keys')
    if not torch.isfinite(vectors).all():
        raise DataError(f'{path} holds non-finite embedding values')
    return TextEmbeddings(keys, vectors.float(), meta)


def digits_keys(labels: Sequence[int], val_fraction: float, seed: int, split: str = 'train') -> list[str]:
    """Keys of the embedded digits, which have no files: sample ``i`` of scikit-learn's ``load_digits`` with
    class ``c`` is ``digits/<c>/<i:04d>.png``, whichever split it falls in (the split repeats
    :func:`zoo.train.data.load_digits_samples`: same arguments, same order)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    target = load_digits().target
    train_idx, val_idx = train_test_split(np.arange(len(target)), test_size=val_fraction, stratify=target,
                                          random_state=seed)
    index = train_idx if split == 'train' else val_idx
    if [int(target[i]) for i in index] != [int(c) for c in labels]:
        raise DataError('the digits split differs from zoo.train.data.load_digits_samples; keys cannot be derived')
    return [f'digits/{target[i]}/{i:04d}.png' for i in index]


def sample_keys(cfg: TrainConfig, samples: ImageSamples, split: str = 'train') -> list[str]:
    """Each sample's key: its path relative to the data root (``train/<class>/<file>``), '/'-separated."""
    if cfg.dataset == 'digits':
        return digits_keys(samples.labels, cfg.val_fraction, cfg.data_seed, split)
    root = Path(cfg.data_dir)
    return [Path(os.path.relpath(item, root)).as_posix() for item in samples.items]


def embeddings_for(keys: Sequence[str], table: TextEmbeddings, expected_dim: int = 0,
                   source: str = 'the embeddings file') -> torch.Tensor:
    """The rows of ``table`` for ``keys`` (N, D); refuses a wrong width, a file for another dataset, gaps."""
    if expected_dim and table.dim != expected_dim:
        raise ConfigError(f'{source} holds {table.dim}-dimensional text embeddings but --text-dim is '
                          f'{expected_dim}; re-encode the descriptions or change --text-dim')
    row = {k: i for i, k in enumerate(table.keys)}
    missing = [k for k in keys if k not in row]
    if len(missing) == len(keys):
        written_for = table.metadata.get('data', '?')
        raise DataError(f'{source} was written for another dataset (data {written_for!r}): none of its '
                        f'{len(table.keys)} keys (e.g. {table.keys[:2]}) names a training image of this run '
                        f'(e.g. {list(keys[:2])})')
    if missing:
        raise DataError(f'{source} has no text embedding for {len(missing)} of {len(keys)} training images, '
                        f'e.g. {missing[:3]}; describe and encode them too')
    return table.vectors[torch.tensor([row[k] for k in keys])]


class TextEmbeddingSamples(torch.utils.data.Dataset):
    """The training samples as (image, label, text embedding).

    Reads images through an :class:`ImageSamples` whose label is the sample's own index, so that when a corrupt
    file is replaced by the next readable one, the embedding follows the image actually served.
    """

    def __init__(self, samples: ImageSamples, vectors: torch.Tensor):
        if vectors.shape[0] != len(samples.items):
            raise ValueError(f'{vectors.shape[0]} embeddings for {len(samples.items)} samples')
        self.indexed = ImageSamples(samples.items, range(len(samples.items)), samples.on_corrupt, samples.indices)
        self.labels = samples.labels
        self.vectors = vectors

    @property
    def transform(self):
        return self.indexed.transform

    @transform.setter
    def transform(self, value) -> None:  # timm's create_loader sets the transform on the dataset
        self.indexed.transform = value

    def __len__(self) -> int:
        return len(self.indexed)

    def __getitem__(self, index: int):
        img, i = self.indexed[index]
        return img, self.labels[i], self.vectors[i]


def attach_text_embeddings(cfg: TrainConfig, data: DataSplits) -> tuple[DataSplits, int]:
    """The splits with the training samples paired with their text embeddings, and the embedding width."""
    if not cfg.text_embeddings:
        raise ConfigError('gpt4image needs --text-embeddings FILE (written by python -m zoo.train.embed_descriptions)')
    table = read_text_embeddings(cfg.text_embeddings)
    keys = sample_keys(cfg, data.train)
    vectors = embeddings_for(keys, table, cfg.text_dim, cfg.text_embeddings)
    train = TextEmbeddingSamples(data.train, vectors)
    return DataSplits(train, data.val, data.classes, data.description), table.dim


class TextAlignedNet(TrainingNet):
    """The vision model plus a linear projection of its pre-logits features into the text embedding space;
    forward gives ``(logits, projected features)``."""

    def __init__(self, student: nn.Module, text_dim: int, img_size: int, in_chans: int = 3):
        super().__init__()
        self.student = student
        was_training = student.training
        with torch.no_grad():  # the pre-logits width, whatever the head (pooling, conv head, fc_norm, ...)
            probe = torch.zeros(1, in_chans, img_size, img_size)
            width = student.eval().forward_head(student.forward_features(probe), pre_logits=True).shape[-1]
        student.train(was_training)
        self.text_head = nn.Linear(width, text_dim)

    def aux_modules(self) -> dict[str, nn.Module]:
        """The projection: saved apart from the model weights, for --resume only."""
        return {'text_head': self.text_head}

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.student.forward_features(x)
        pre_logits = self.student.forward_head(features, pre_logits=True)
        return self.student.forward_head(features), self.text_head(pre_logits)


def cosine_alignment_loss(pred: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """1 - cosine similarity between each projected image and its text embedding, averaged."""
    return 1. - F.cosine_similarity(pred.float(), text.float(), dim=-1).mean()


def contrastive_alignment_loss(pred: torch.Tensor, text: torch.Tensor, temperature: float = 0.07) -> torch.Tensor:
    """Symmetric InfoNCE between projected images and text embeddings within the batch.

    Images whose text embeddings are identical (the same description) are all positives of each other, with
    equal weight, instead of being pushed apart as negatives.
    """
    p, t = F.normalize(pred.float(), dim=-1), F.normalize(text.float(), dim=-1)
    logits = p @ t.t() / temperature
    same = (t @ t.t() > 1. - 1e-6).float()
    target = same / same.sum(1, keepdim=True)
    image_to_text = -(target * F.log_softmax(logits, dim=1)).sum(1).mean()
    text_to_image = -(target * F.log_softmax(logits.t(), dim=1)).sum(1).mean()
    return (image_to_text + text_to_image) / 2


class TextAlignObjective:
    """The base objective's terms (classification, optional KD) plus ``align``, weighted by
    ``align_loss_weight``."""

    def __init__(self, cfg: TrainConfig, base):
        self.cfg = cfg
        self.base = base

    def __call__(self, logits: torch.Tensor, projected: torch.Tensor, target: torch.Tensor,
                 teacher_logits: Optional[torch.Tensor], text: torch.Tensor) -> dict[str, torch.Tensor]:
        losses = self.base(logits, [], target, teacher_logits)
        if self.cfg.align_loss == 'cosine':
            align = cosine_alignment_loss(projected, text)
        else:
            align = contrastive_alignment_loss(projected, text, self.cfg.align_temperature)
        losses['align'] = self.cfg.align_loss_weight * align
        return losses


def build_text_aligned_net(cfg: TrainConfig, student: nn.Module, teacher: Optional[nn.Module], num_classes: int,
                           text_dim: int) -> TextAlignedNet:
    """The GPT4Image paradigm's network (``text_dim``: the width :func:`attach_text_embeddings` found)."""
    return TextAlignedNet(student, text_dim, cfg.img_size)


def text_align_objective(cfg: TrainConfig, mixup_active: bool) -> TextAlignObjective:
    """The GPT4Image paradigm's objective: the supervised terms plus ``align``."""
    return TextAlignObjective(cfg, supervised_objective(cfg, mixup_active))


def validate_gpt4image(cfg: TrainConfig) -> None:
    """Refuse options GPT4Image training cannot take."""
    if cfg.distill == 'ofa':
        raise ConfigError('gpt4image combines with --distill kd or soft_ce, not ofa')
    if cfg.mixup > 0 or cfg.cutmix > 0:
        raise ConfigError('gpt4image pairs each image with its own description; mixup / cutmix would blend '
                          'images but not their descriptions: set --mixup 0 --cutmix 0')
    if cfg.align_loss not in ('contrastive', 'cosine'):
        raise ConfigError(f"align_loss must be 'contrastive' or 'cosine', got {cfg.align_loss!r}")
    if cfg.align_loss_weight < 0 or cfg.align_temperature <= 0 or cfg.text_dim < 0:
        raise ConfigError('align_loss_weight and text_dim must be >= 0 and align_temperature > 0')
