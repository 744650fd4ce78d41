"""The generic backbone adapter: any staged timm / zoo model as a detection or segmentation backbone.

:func:`build_backbone` wraps timm's ``features_only`` model of a name in a :class:`StagedBackbone`, the
one module every downstream path (torchvision detection here, the mmdet / mmseg / mmaction wrappers)
builds on, so a new staged family needs no per-family adapter code. It adds what detection frameworks
expect of a backbone and timm leaves out: OpenMMLab's ``out_indices`` / ``frozen_stages`` / ``norm_eval``,
checkpoint loading through the zoo's own (official-layout aware, strict, weights-only) path, NCHW maps
whatever the model's native layout, and clear errors at build time for bad names, indices and checkpoints.
"""
from __future__ import annotations

import math
import os
from typing import Any, Optional, Sequence

import timm
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..registry import UnknownModelError, create_model, hub_source, is_zoo_model, model_architecture, model_info
from ..state_dicts import compare_state_dict

__all__ = ['BackboneError', 'StagedBackbone', 'build_backbone']


class BackboneError(ValueError):
    """A backbone request that cannot be honoured (name, stages, indices, checkpoint), raised at build time."""


class StagedBackbone(nn.Module):
    """Stage feature maps of a timm ``features_only`` model, with OpenMMLab's freezing conventions.

    Attributes:
        name: the model name it was built from.
        out_indices: the returned stages, as non-negative indices into the model's ``feature_info``.
        channels: channels of each returned map.
        strides: reduction (input size / map size) of each returned map.
        size_divisor: input height and width must be multiples of this (the model's own divisor and the
            largest returned stride); detection transforms pad to it.
        pretrained_cfg: the model's timm pretrained_cfg (mean, std, input_size, ...).
        frozen_stages, norm_eval: as given to :func:`build_backbone`.
    """

    def __init__(
            self,
            name: str,
            body: nn.Module,
            out_indices: Sequence[int],
            *,
            frozen_stages: int = -1,
            norm_eval: bool = False,
            input_divisor: int = 1,
    ):
        """Wrap ``body``, a timm features_only model whose outputs include every stage in ``out_indices``."""
        super().__init__()
        self.name = name
        self.body = body
        self._input_divisor = input_divisor
        info = body.feature_info
        built = tuple(info.out_indices)
        self.out_indices = tuple(out_indices)
        self._take = [built.index(i) for i in self.out_indices]
        self.channels = [info.info[i]['num_chs'] for i in self.out_indices]
        self.strides = [info.info[i]['reduction'] for i in self.out_indices]
        self.size_divisor = math.lcm(input_divisor, max(self.strides))
        self._nhwc = getattr(body, 'output_fmt', 'NCHW') == 'NHWC'
        self.pretrained_cfg = body.pretrained_cfg
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self._frozen_modules = _freeze(name, body, frozen_stages)
        self.train()

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """NCHW feature maps, one per ``out_indices`` entry."""
        h, w = x.shape[-2:]
        if h % self.size_divisor or w % self.size_divisor:
            raise ValueError(
                f'{self.name}: input {h}x{w} is not a multiple of {self.size_divisor} (the backbone\'s size '
                f'divisor for strides {self.strides}); pad the input to a multiple of {self.size_divisor}')
        features = self.body(x)
        out = [features[i] for i in self._take]
        return [f.permute(0, 3, 1, 2) for f in out] if self._nhwc else out

    def train(self, mode: bool = True) -> StagedBackbone:
        """Set the mode, keeping frozen stages (and with ``norm_eval`` every batch norm) in eval mode."""
        super().train(mode)
        if mode:
            for module_name in self._frozen_modules:
                self.body.get_submodule(module_name).eval()
            if self.norm_eval:
                for module in self.modules():
                    if isinstance(module, _BatchNorm):
                        module.eval()
        return self

    def select(self, out_indices: Sequence[int]) -> StagedBackbone:
        """A backbone over the same body (shared modules and weights) returning a subset of these stages.

        The body still runs up to its last built stage; build a new backbone to drop deeper stages.
        """
        missing = sorted(set(out_indices) - set(self.out_indices))
        if missing:
            raise BackboneError(f'{self.name}: stages {missing} are not among this backbone\'s {self.out_indices}')
        return StagedBackbone(self.name, self.body, out_indices, frozen_stages=self.frozen_stages,
                              norm_eval=self.norm_eval, input_divisor=self._input_divisor)

    def extra_repr(self) -> str:
        return (f'name={self.name!r}, out_indices={self.out_indices}, channels={self.channels}, '
                f'strides={self.strides}, frozen_stages={self.frozen_stages}, norm_eval={self.norm_eval}')


def build_backbone(
        name: str,
        *,
        out_indices: Optional[Sequence[int]] = None,
        frozen_stages: int = -1,
        norm_eval: bool = False,
        checkpoint: str = '',
        pretrained: bool = False,
        **model_kwargs: Any,
) -> StagedBackbone:
    """Build the staged backbone of a timm or zoo model name.

    Args:
        name: a timm or zoo model name with stage features (``timm.create_model(name, features_only=True)``),
            or a Hub folder of one, ``'hf-hub:ORG/NAME'`` / ``'local-dir:PATH'`` (its weights load with
            ``pretrained=True``).
        out_indices: stages to return, indices into the model's ``feature_info`` (negative from the end);
            None: the last stage at each stride (every stage of a pyramid, the last block of an isotropic
            model).
        frozen_stages: freeze the stem and the first ``frozen_stages`` stages (OpenMMLab semantics): -1 none,
            0 the stem (the top-level module holding ``pretrained_cfg['first_conv']``), k >= 1 every parameter
            the output of stage k - 1 depends on. Frozen parameters get ``requires_grad=False`` and frozen
            modules stay in eval mode (no batch-norm updates, no drop-path) through ``train()``.
        norm_eval: keep every batch norm (``_BatchNorm``: BatchNorm, SyncBatchNorm, ...) in eval mode.
        checkpoint: a local checkpoint file, either a classification checkpoint of this model (official or
            zoo layout, in any of the usual wrappers; loaded strictly through
            ``timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=...))``) or the
            ``state_dict()`` of a StagedBackbone / ``features_only`` model built with the same name and
            the same last stage (loaded as is, strictly).
        pretrained: load the model's released weights through timm (downloads); ignored with a checkpoint.
        model_kwargs: further ``timm.create_model`` arguments (``drop_path_rate``, ``in_chans``, ...).

    Raises:
        BackboneError: unknown name, a model without image stages, out-of-range ``out_indices`` or
            ``frozen_stages``, or a checkpoint that is missing, unreadable or for another model.
    """
    _check_name(name)
    weights: dict = dict(pretrained=pretrained)
    own_layout = False
    if checkpoint and hub_source(name) is not None:
        raise BackboneError(f'{name} brings its own weights: pass pretrained=True instead of checkpoint=')
    if checkpoint:
        if not os.path.isfile(checkpoint):
            raise BackboneError(f'checkpoint {checkpoint!r} for {name} is not a file')
        weights = dict(pretrained=True, pretrained_cfg_overlay=dict(file=checkpoint))
        try:  # strict: timm's features_only loading drops the classifier and with it strictness
            timm.create_model(name, **weights, **model_kwargs)
        except Exception:  # not a classification checkpoint of this model; maybe one of ours
            weights, own_layout = {}, True
    body = _features_only(name, model_kwargs, None, weights)
    stages = body.feature_info.info
    out_indices = _normalise_indices(name, stages, out_indices)
    frozen_stages = _check_frozen_stages(name, stages, frozen_stages)
    needed = sorted(set(out_indices) | ({frozen_stages - 1} if 0 < frozen_stages <= out_indices[-1] else set()))
    built = tuple(body.feature_info.out_indices)
    if not (set(needed) <= set(built) and max(built) == needed[-1]):
        body = _features_only(name, model_kwargs, needed, weights)
    if own_layout:
        _load_own_checkpoint(name, body, checkpoint)
    architecture = model_architecture(name)
    divisor = model_info(architecture).input_divisor if is_zoo_model(architecture) else 1
    return StagedBackbone(name, body, out_indices, frozen_stages=frozen_stages, norm_eval=norm_eval,
                          input_divisor=divisor)


def _check_name(name: str) -> None:
    if not isinstance(name, str):
        raise BackboneError(f'backbone name must be a str, got {type(name).__name__}')
    if hub_source(name) is not None:
        try:
            name = model_architecture(name)  # reads the folder's config.json: the architecture it holds
        except ValueError as error:  # HubError, UnknownModelError: what is missing and what to do
            raise BackboneError(str(error)) from None
    elif not timm.is_model(name):
        try:
            model_info(name)
        except UnknownModelError as error:
            raise BackboneError(f'{error} (timm model names work too)') from None
    if is_zoo_model(name) and model_info(name).task == 'video':
        raise BackboneError(
            f'{name} is a video model (its input is a clip, N x C x T x H x W): it has no image stages to '
            f'serve as a backbone; zoo.list_models(task="classification") lists the image backbones')


def _create(name: str, **kwargs: Any) -> nn.Module:
    """timm.create_model, or for a Hub folder zoo.create_model (which reads its config and weights)."""
    return (create_model if hub_source(name) is not None else timm.create_model)(name, **kwargs)


def _features_only(name: str, model_kwargs: dict, out_indices: Optional[Sequence[int]],
                   weights: dict) -> nn.Module:
    """timm's features_only model; any failure to build it is reported as the model having no stages."""
    extra = {} if out_indices is None else dict(out_indices=tuple(out_indices))
    try:
        return _create(name, features_only=True, **extra, **weights, **model_kwargs)
    except Exception as error:
        raise BackboneError(
            f'{name} cannot be built as a staged backbone (timm.create_model(..., features_only=True) failed: '
            f'{type(error).__name__}: {error})') from error


def _load_own_checkpoint(name: str, body: nn.Module, checkpoint: str) -> None:
    """Load a StagedBackbone or features_only state dict strictly; else report what does not fit."""
    try:
        state = timm.models.load_state_dict(checkpoint)
    except Exception as error:
        raise BackboneError(f'cannot read checkpoint {checkpoint!r}: {type(error).__name__}: {error}') from error
    own = body.state_dict()
    if set(state) == {f'body.{k}' for k in own}:
        state = {k[len('body.'):]: v for k, v in state.items()}
    mismatch = compare_state_dict(state, own)
    if mismatch:
        raise BackboneError(f'checkpoint {checkpoint!r} does not fit {name}: {mismatch.describe(3)}')
    body.load_state_dict(state)


def _describe_stages(stages: Sequence[dict]) -> str:
    return ', '.join(f'{i}: {s["num_chs"]} ch / stride {s["reduction"]}' for i, s in enumerate(stages))


def _normalise_indices(name: str, stages: Sequence[dict], out_indices: Optional[Sequence[int]]) -> tuple[int, ...]:
    n = len(stages)
    if out_indices is None:  # the last stage at each stride: every stage of a pyramid, the last block of a ViT
        return tuple(i for i in range(n) if i == n - 1 or stages[i + 1]['reduction'] != stages[i]['reduction'])
    if isinstance(out_indices, int):  # timm reads an int as "the last n", OpenMMLab never uses one
        raise BackboneError(f'out_indices must be a sequence of stage indices, got {out_indices!r}')
    indices = list(out_indices)
    bad = [i for i in indices if not isinstance(i, int) or not -n <= i < n]
    if bad or not indices:
        raise BackboneError(
            f'out_indices {tuple(indices)} out of range for {name}: it has {n} stages, valid indices are '
            f'0..{n - 1} (or -{n}..-1): {_describe_stages(stages)}')
    normalised = tuple(i % n for i in indices)
    if list(normalised) != sorted(set(normalised)):
        raise BackboneError(f'out_indices {tuple(indices)} for {name} must be distinct and increasing '
                            f'(normalised: {normalised})')
    return normalised


def _check_frozen_stages(name: str, stages: Sequence[dict], frozen_stages: int) -> int:
    if not isinstance(frozen_stages, int) or not -1 <= frozen_stages <= len(stages):
        raise BackboneError(
            f'frozen_stages={frozen_stages!r} out of range for {name}: -1 (none), 0 (stem) .. {len(stages)} '
            f'(all stages): {_describe_stages(stages)}')
    return frozen_stages


def _freeze(name: str, body: nn.Module, frozen_stages: int) -> tuple[str, ...]:
    """Set ``requires_grad=False`` on the stem and the first ``frozen_stages`` stages of ``body``.

    Args:
        name: the model name (picks a valid sample input size for the dependency trace).
        body: a timm features_only model whose outputs include stage ``frozen_stages - 1``, or that ends
            before it (then everything is frozen).
        frozen_stages: -1 none, 0 the stem, k >= 1 the stem and stages 0..k-1.

    Returns:
        Names (in ``body``) of the largest modules whose parameters are all frozen: the modules a
        ``train()`` call must put back into eval mode.
    """
    if frozen_stages < 0:
        return ()
    built = tuple(body.feature_info.out_indices)
    if frozen_stages == 0:
        frozen = set(_stem(name, body).parameters())
    elif frozen_stages - 1 >= built[-1]:
        frozen = set(body.parameters())
    else:
        frozen = _parameters_before(body, built.index(frozen_stages - 1))
    for parameter in frozen:
        parameter.requires_grad_(False)
    return _frozen_modules(body)


def _stem(name: str, body: nn.Module) -> nn.Module:
    first_conv = body.pretrained_cfg.get('first_conv')
    top = (first_conv if isinstance(first_conv, str) else first_conv[0]).split('.')[0] if first_conv else ''
    found = sorted((n for n, _ in body.named_modules() if top and (n == top or n.endswith(f'.{top}'))), key=len)
    if not found:
        raise BackboneError(f'{name}: cannot find the stem module {top!r} (from pretrained_cfg first_conv '
                         f'{first_conv!r}) to freeze with frozen_stages=0')
    return body.get_submodule(found[0])


def _parameters_before(body: nn.Module, position: int) -> set[nn.Parameter]:
    """The parameters output ``position`` of ``body`` depends on, from one forward pass in eval mode at the
    input size the model is built for (its pretrained_cfg's)."""
    size = tuple(body.pretrained_cfg['input_size'][-2:])
    sample = torch.randn(1, body.in_chans, *size, generator=torch.Generator().manual_seed(0))
    parameters = [p for p in body.parameters() if p.requires_grad]
    was_training = body.training
    body.eval()
    with torch.enable_grad():
        output = body(sample)[position]
        grads = torch.autograd.grad(output.float().sum(), parameters, allow_unused=True) \
            if output.requires_grad else [None] * len(parameters)  # already frozen (``select``)
    body.train(was_training)
    return {p for p, g in zip(parameters, grads) if g is not None}


def _frozen_modules(body: nn.Module) -> tuple[str, ...]:
    names: list[str] = []
    for module_name, module in body.named_modules():
        parameters = list(module.parameters())
        inside = any(outer == '' or module_name.startswith(f'{outer}.') for outer in names)
        if parameters and not inside and not any(p.requires_grad for p in parameters):
            names.append(module_name)
    return tuple(names)
