"""The networks a run builds: the student and the teacher, their names checked against the zoo and timm, their
checkpoints read safely (:mod:`zoo.checkpoint_io`: archive CRCs and the zoo's tensor digest)."""
from __future__ import annotations

import difflib
import sys
import warnings
from pathlib import Path
from typing import Any, Optional

import timm
import torch
import torch.nn as nn

import zoo  # noqa: F401  (registers the zoo's models with timm)
from ..checkpoint_io import load_checkpoint_file
from ..registry import HubError, hub_config, hub_source
from ..state_dicts import compare_state_dict, unwrap_state_dict
from .config import ConfigError, TrainConfig

__all__ = ['check_model_name', 'read_state_dict', 'create_student', 'create_teacher', 'classifier_out_features',
           'adapt_state_dict', 'load_initial_weights']


def check_model_name(name: str, role: str = 'model') -> None:
    """Refuse a name neither the zoo nor timm knows, suggesting the closest ones; a ``hf-hub:`` / ``local-dir:``
    name must hold a config.json naming a known architecture."""
    if hub_source(name) is not None:
        try:
            hub_config(name)
        except ValueError as e:  # HubError, UnknownModelError: what is missing and what to do
            raise ConfigError(f'{role} {name}: {e}') from None
        return
    if timm.is_model(name.split('.', 1)[0]):
        return
    close = difflib.get_close_matches(name, timm.list_models(), n=5, cutoff=0.6)
    hint = f'; did you mean {", ".join(close)}?' if close else '; zoo.list_models() and timm.list_models() list them'
    raise ConfigError(f'unknown {role} {name!r}{hint}')


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A model state dict from a checkpoint file, read with ``weights_only=True``.

    Accepts a bare state dict or one wrapped as ``state_dict`` / ``model`` / ``state_dict_ema`` / ``model_ema``
    (our own run checkpoints included, their digest verified); strips a DistributedDataParallel ``module.``
    prefix. A missing, empty, truncated, corrupt or refused file is a :class:`~zoo.checkpoint_io.CheckpointError`.
    (timm's ``load_state_dict`` reads the same wrappers, but checks neither the archive nor the digest, and
    prefers EMA weights over the model's.)
    """
    state_dict = unwrap_state_dict(load_checkpoint_file(path))
    if not state_dict:
        raise ConfigError(f'{path} holds no model state dict')
    return state_dict


def classifier_out_features(model: nn.Module, state_dict: Optional[dict] = None) -> Optional[int]:
    """Class count of a timm model (or of a state dict for it), read from its classifier weight."""
    clf = model.pretrained_cfg.get('classifier') if hasattr(model, 'pretrained_cfg') else None
    if state_dict is not None and clf:
        names = [clf] if isinstance(clf, str) else list(clf)
        for n in names:
            w = state_dict.get(f'{n}.weight')
            if w is not None:
                return int(w.shape[0])
        return None
    return getattr(model, 'num_classes', None)


def _create(name: str, img_size: Optional[int], **kwargs: Any) -> nn.Module:
    """timm.create_model (zoo.create_model for a Hub folder), at ``img_size`` for models whose size is a
    constructor argument (ViTs, MLPs)."""
    create = zoo.create_model if hub_source(name) is not None else timm.create_model
    try:
        if img_size:
            try:
                return create(name, img_size=img_size, **kwargs)
            except TypeError as e:
                if 'img_size' not in str(e):
                    raise
        return create(name, **kwargs)
    except HubError as e:  # the folder's weights are missing, not cached, or do not fit
        raise ConfigError(str(e)) from None


def create_student(cfg: TrainConfig, num_classes: int) -> nn.Module:
    """The model to train, with the dataset's class count; optional initial weights."""
    check_model_name(cfg.model)
    kwargs: dict[str, Any] = dict(num_classes=num_classes, drop_rate=cfg.drop)
    if cfg.drop_path is not None:
        kwargs['drop_path_rate'] = cfg.drop_path
    if cfg.global_pool is not None:
        kwargs['global_pool'] = cfg.global_pool
    try:
        model = _create(cfg.model, cfg.img_size, pretrained=cfg.pretrained, **kwargs)
    except (TypeError, AssertionError, ValueError) as e:
        if cfg.global_pool is None or isinstance(e, ValueError) and 'pool' not in str(e):
            raise
        raise ConfigError(f'{cfg.model} does not take --global-pool {cfg.global_pool} ({e or type(e).__name__}); '
                          'leave it out for the model\'s own pooling') from None
    if cfg.initial_checkpoint:
        load_initial_weights(model, cfg.initial_checkpoint)
    return model


def _classifier_keys(model: nn.Module) -> list[str]:
    clf = getattr(model, 'pretrained_cfg', {}).get('classifier')
    names = [clf] if isinstance(clf, str) else list(clf or ())
    return [f'{n}.{p}' for n in names for p in ('weight', 'bias')]


def adapt_state_dict(state_dict: dict[str, torch.Tensor],
                     model: nn.Module) -> tuple[dict[str, torch.Tensor], list[str]]:
    """A state dict of the same architecture made to fit ``model``: (state dict, classifier keys left out).

    Weights that depend on the input size (position tables), e.g. after FastMIM pre-training at 128 px for a
    fine-tune at 224, go through the model family's own ``checkpoint_filter_fn`` (timm's ViT / Swin, the zoo's
    SLAB, ViG, PyramidTNT), which resamples them; a classifier for another class count is left out, so the
    run trains a new one, as timm does for pretrained weights.
    """
    target = model.state_dict()

    def mismatched(sd: dict[str, torch.Tensor]) -> list[str]:
        return [k for k, v in sd.items() if k in target and v.shape != target[k].shape]

    if mismatched(state_dict):
        filter_fn = getattr(sys.modules.get(type(model).__module__), 'checkpoint_filter_fn', None)
        if filter_fn is not None:
            state_dict = filter_fn(state_dict, model)
    dropped = [k for k in _classifier_keys(model) if k in mismatched(state_dict)]
    return {k: v for k, v in state_dict.items() if k not in dropped}, dropped


def load_initial_weights(model: nn.Module, path: str | Path) -> list[str]:
    """Load ``--initial-checkpoint`` into ``model`` strictly but for what :func:`adapt_state_dict` adapts; the
    classifier keys left out are returned. Any other missing, unexpected or mismatched key is an error."""
    state_dict, dropped = adapt_state_dict(read_state_dict(path), model)
    mismatch = compare_state_dict(state_dict, model.state_dict(), may_miss=dropped)
    if mismatch:
        raise ConfigError(f'{path} does not fit {type(model).__name__}: {mismatch.describe()}')
    model.load_state_dict(state_dict, strict=not dropped)
    if dropped:
        warnings.warn(f'initial checkpoint {path}: its classifier {dropped[0].rsplit(".", 1)[0]} is for another '
                      f'class count; the run trains a new one')
    return dropped


def create_teacher(cfg: TrainConfig, num_classes: int) -> nn.Module:
    """A frozen teacher in eval mode, from a name plus a checkpoint (or timm's pretrained weights).

    Refuses a teacher whose class count differs from the student's: its logits could not be compared.
    """
    check_model_name(cfg.teacher, 'teacher')
    if not cfg.teacher_checkpoint and not cfg.teacher_pretrained:
        raise ConfigError('a teacher needs weights: pass --teacher-checkpoint PATH or --teacher-pretrained')
    if cfg.teacher_checkpoint:
        sd = read_state_dict(cfg.teacher_checkpoint)
        size = cfg.teacher_img_size or cfg.img_size
        probe = _create(cfg.teacher, size, pretrained=False)
        teacher_classes = classifier_out_features(probe, sd)
        if teacher_classes is None:
            raise ConfigError(f'cannot find the classifier of {cfg.teacher} in {cfg.teacher_checkpoint}')
        _check_classes(cfg.teacher, teacher_classes, num_classes)
        teacher = _create(cfg.teacher, size, num_classes=teacher_classes)
        mismatch = compare_state_dict(sd, teacher.state_dict())
        if mismatch:
            raise ConfigError(f'{cfg.teacher_checkpoint} does not fit {cfg.teacher}: {mismatch.describe()}')
        teacher.load_state_dict(sd)
    else:
        teacher = _create(cfg.teacher, None, pretrained=True)
        _check_classes(cfg.teacher, teacher.num_classes, num_classes)
    teacher.requires_grad_(False)
    return teacher.eval()


def _check_classes(name: str, teacher_classes: int, num_classes: int) -> None:
    if teacher_classes != num_classes:
        raise ConfigError(f'teacher {name} predicts {teacher_classes} classes but the student is trained on '
                          f'{num_classes}; distillation compares their logits class by class')
