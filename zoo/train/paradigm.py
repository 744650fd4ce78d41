"""The training paradigms, one :class:`Paradigm` record each, registered in :data:`PARADIGMS` (``--paradigm``).

A record says everything the engine needs to know about a paradigm, so that :mod:`zoo.train.run` has no
per-paradigm branches:

- ``build_net(cfg, student, teacher, num_classes, **data_info)``: the trainable :class:`TrainingNet` around
  the model being trained; its forward gives ``(logits or None, aux)``; it holds the model as ``.student``
  and names its other trainable parts in ``aux_modules()`` (saved beside the model weights, for --resume).
- ``build_objective(cfg, mixup_active)``: turns ``(logits, aux, target, teacher_logits, *extra batch items)``
  into named loss terms.
- ``prepare_data(cfg, data)``: optional; the splits the run trains on and keyword arguments for
  ``build_net`` (GPT4Image pairs each training image with its text embedding: a third batch item).
- ``has_classifier``: False for pre-training without labels (FastMIM): scored by its held-out loss instead
  of top-1, and its classifier head stays unused.
- ``validate(cfg)``: optional; refuses options the paradigm cannot take (a :class:`ConfigError`).
- ``defaults``: options it changes beneath its recipe and flags; ``config_fields``: the TrainConfig fields it
  reads (declared in :class:`~zoo.train.config.TrainConfig`, so every one is a flag and a recipe key).

Adding a paradigm: write its network and objective in a new file, then add one entry to :data:`PARADIGMS`.
Distillation (``--distill kd | soft_ce | ofa``) combines with a paradigm; see :mod:`zoo.train.distill`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional

from .config import ConfigError, TrainConfig
from .data import DataSplits
from .distill import build_student_net, supervised_objective
from .mim import build_masked_image_model, mim_objective, validate_fastmim
from .text_align import attach_text_embeddings, build_text_aligned_net, text_align_objective, validate_gpt4image
from .training_net import TrainingNet

__all__ = ['Paradigm', 'PARADIGMS', 'get_paradigm']

NetBuilder = Callable[..., TrainingNet]
Objective = Callable[..., dict]


@dataclass(frozen=True)
class Paradigm:
    """What a run of one paradigm trains and how it is scored (see the module notes)."""
    name: str
    summary: str
    build_net: NetBuilder
    build_objective: Callable[[TrainConfig, bool], Objective]
    has_classifier: bool = True
    prepare_data: Optional[Callable[[TrainConfig, DataSplits], tuple[DataSplits, dict[str, Any]]]] = None
    validate: Optional[Callable[[TrainConfig], None]] = None
    defaults: Mapping[str, Any] = field(default_factory=dict)
    config_fields: tuple[str, ...] = ()


def _text_embeddings(cfg: TrainConfig, data: DataSplits) -> tuple[DataSplits, dict[str, Any]]:
    data, text_dim = attach_text_embeddings(cfg, data)
    return data, {'text_dim': text_dim}


_MIM_FIELDS = ('mim_mask_ratio', 'mim_mask_patch', 'mim_target', 'mim_hog_bins', 'mim_hog_cell', 'mim_norm_target',
               'mim_decoder_dim', 'mim_decoder_depth', 'mim_sizes', 'mim_size_epochs')

#: every paradigm, by its ``--paradigm`` name
PARADIGMS: dict[str, Paradigm] = {p.name: p for p in (
    Paradigm('supervised', 'classification, with or without a teacher (--distill kd, soft_ce, ofa)',
             build_student_net, supervised_objective),
    # FastMIM regresses a weak, noisy target, and at the supervised digits rate (3e-3) the encoder collapses to
    # a constant within an epoch (its last stage keeps ~1% per-image variation) and fine-tuning from it stays
    # at chance; FastMIM's own rate is lower still (1.5e-4 per 256 images). Measured on the digits (3 + 3
    # epochs, 32 px, fine-tuned vs scratch top-1): at 3e-4 ViT-Ti and Wave-MLP-T still collapse (25 vs 33,
    # 79 vs 94); at 1e-4 pvt_v2_b0 96.4 vs 96.1, vit_tiny 50.6 vs 33.1, ghostnet_050 93.1 vs 92.8, pvig_ti
    # 96.9 vs 98.1, wavemlp_t 87.2 vs 94.4
    Paradigm('fastmim', 'masked image modelling pre-training (no labels used)',
             build_masked_image_model, mim_objective, has_classifier=False, validate=validate_fastmim,
             defaults={'lr': 1e-4}, config_fields=_MIM_FIELDS),
    Paradigm('gpt4image', 'classification plus alignment with text embeddings of image descriptions',
             build_text_aligned_net, text_align_objective, prepare_data=_text_embeddings,
             validate=validate_gpt4image,
             config_fields=('text_embeddings', 'text_dim', 'align_loss', 'align_loss_weight', 'align_temperature')),
)}


def get_paradigm(name: str) -> Paradigm:
    """The record of ``name``; an unknown name is a :class:`ConfigError` listing the known ones."""
    paradigm = PARADIGMS.get(name) if isinstance(name, str) else None
    if paradigm is None:
        raise ConfigError(f'paradigm must be one of {", ".join(PARADIGMS)}; got {name!r}')
    return paradigm
