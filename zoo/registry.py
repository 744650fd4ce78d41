"""The zoo's model registry: a thin layer over timm's.

Zoo-owned models register with :func:`register_model` (timm's decorator plus a record of the family and
of how the contract tests should exercise the model). Models timm already implements faithfully are
*adopted* with :func:`adopt_timm_models` instead of being written twice. Either way they show up in
:func:`list_models`, in ``hubconf.py`` and in the contract tests.
"""
from __future__ import annotations

import difflib
import fnmatch
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence, TypeVar, Union

import timm
from timm.models import is_model as _timm_is_model
from timm.models import register_model as _timm_register_model

from .hub_names import (  # re-exported: the Hub-name half of create_model / model_info lives there
    CONFIG_NAME, WEIGHTS_NAME, HubConfig, HubError, _sam_architectures, hub_config, hub_file, hub_source,
)

__all__ = [
    'ModelInfo', 'register_model', 'adopt_timm_models', 'list_models', 'list_families', 'model_info',
    'is_zoo_model', 'create_model', 'UnknownModelError', 'HubError', 'HubConfig', 'hub_source', 'hub_config',
    'hub_file', 'model_architecture', 'paper_of',
]

F = TypeVar('F', bound=Callable[..., Any])

TASKS = ('classification', 'segmentation', 'video', 'sam')


@dataclass(frozen=True)
class ModelInfo:
    """What the zoo knows about a registered model beyond timm's pretrained_cfg.

    Attributes:
        name: the registered model name.
        family: the family it belongs to (module name for zoo models, e.g. ``vig``).
        task: one of ``TASKS``; decides which contract tests apply.
        adopted: True when timm implements the model and the zoo only adopts it.
        contract_input_size: (C, H, W) the contract tests use (small, to keep CI fast).
        input_divisor: spatial sizes must be multiples of this (1: any size); the contract checks
            that a non-multiple is refused with a clear error.
        official_url: the official release of the weights, where the pretrained_cfg carries another
            source (adopted timm models point at timm's hub copies of the same weights) or none (a release
            no program can download, such as a BaiduDisk share: the link is for people to follow).
        extra: anything else registered with the model; ``contract_slow=True`` runs this variant's contract
            tests only with the slow tests (a larger variant of a network whose smaller one runs always).
    """
    name: str
    family: str
    task: str = 'classification'
    adopted: bool = False
    contract_input_size: tuple[int, int, int] = (3, 64, 64)
    input_divisor: int = 1
    official_url: str = ''
    extra: dict = field(default_factory=dict)


_MODELS: dict[str, ModelInfo] = {}


class UnknownModelError(ValueError):
    """Raised for a model name the zoo does not have; the message lists the closest names."""


def _family_of(module: str) -> str:
    parts = module.split('.')
    if 'models' in parts and parts.index('models') + 1 < len(parts):
        return parts[parts.index('models') + 1]
    return parts[-1]


def _record(info: ModelInfo) -> None:
    if info.task not in TASKS:
        raise ValueError(f'unknown task {info.task!r} for {info.name}; expected one of {TASKS}')
    if info.name in _MODELS:
        raise ValueError(f'{info.name} is already registered in the zoo (family {_MODELS[info.name].family})')
    _MODELS[info.name] = info


def register_model(
        fn: Optional[F] = None,
        *,
        task: str = 'classification',
        contract_input_size: tuple[int, int, int] = (3, 64, 64),
        input_divisor: int = 1,
        official_url: str = '',
        **extra: Any,
) -> Union[F, Callable[[F], F]]:
    """Register a zoo model entrypoint with timm and with the zoo.

    Use it exactly like timm's ``@register_model`` (bare), or with keyword arguments that tell the contract
    tests how to exercise the model (and ``official_url`` for a release the pretrained_cfg cannot download).
    Refuses a name timm already has: the zoo never shadows timm.
    """
    def wrap(f: F) -> F:
        name = f.__name__
        if _timm_is_model(name) and name not in _MODELS:
            raise ValueError(
                f'{name} is already a timm model; zoo models must not shadow timm names '
                f'(adopt it with adopt_timm_models or choose another name)')
        _timm_register_model(f)
        _record(ModelInfo(
            name=name, family=_family_of(f.__module__), task=task, contract_input_size=tuple(contract_input_size),
            input_divisor=input_divisor, official_url=official_url, extra=dict(extra)))
        return f

    return wrap(fn) if fn is not None else wrap


def adopt_timm_models(
        family: str,
        names: Iterable[str],
        official_urls: Optional[dict[str, str]] = None,
        **info_kwargs: Any,
) -> None:
    """Make models timm already implements faithfully first-class zoo members.

    Args:
        family: the zoo family they belong to (e.g. ``ghostnet``).
        names: timm model names; each must exist in the installed timm.
        official_urls: model name -> URL of the official release of its weights.
        info_kwargs: further :class:`ModelInfo` fields shared by these models.
    """
    official_urls = official_urls or {}
    for name in names:
        if not _timm_is_model(name):
            raise RuntimeError(f'timm {timm.__version__} has no model {name!r} to adopt into family {family!r}')
        _record(ModelInfo(name=name, family=family, adopted=True, official_url=official_urls.get(name, ''),
                          **info_kwargs))


def list_models(filter: Union[str, Sequence[str]] = '', family: str = '', task: str = '') -> list[str]:
    """Sorted names of the zoo's models, optionally matching wildcard pattern(s), a family or a task."""
    patterns = [filter] if isinstance(filter, str) else list(filter)
    names = []
    for name, info in _MODELS.items():
        if family and info.family != family:
            continue
        if task and info.task != task:
            continue
        if patterns and patterns != [''] and not any(fnmatch.fnmatchcase(name, p) for p in patterns):
            continue
        names.append(name)
    return sorted(names)


def list_families() -> list[str]:
    """Sorted names of the zoo's model families."""
    return sorted({info.family for info in _MODELS.values()})


def is_zoo_model(name: str) -> bool:
    """True when ``name`` (optionally with a ``.tag``) is a zoo model."""
    return name.split('.', 1)[0] in _MODELS


def _unknown(name: str) -> UnknownModelError:
    close = difflib.get_close_matches(name, list(_MODELS), n=5, cutoff=0.5)
    hint = f'; did you mean {", ".join(close)}?' if close else '; zoo.list_models() lists them all'
    return UnknownModelError(f'unknown zoo model {name!r}{hint}')


def model_architecture(name: str) -> str:
    """The registered architecture behind a name: the name itself (tag removed), or what a Hub folder's
    ``config.json`` names."""
    if hub_source(name) is not None:
        return hub_config(name).architecture.split('.', 1)[0]
    return name.split('.', 1)[0]


def model_info(name: str) -> ModelInfo:
    """The :class:`ModelInfo` of a zoo model (or of the zoo architecture a ``hf-hub:`` / ``local-dir:`` folder
    holds); raises :class:`UnknownModelError` with suggestions."""
    base = model_architecture(name)
    if base not in _MODELS:
        if base != name.split('.', 1)[0]:
            raise UnknownModelError(f'{name} holds {base!r}, which is not a zoo model (a timm model or a SAM of '
                                    f'zoo.create_sam)')
        raise _unknown(name)
    return _MODELS[base]


def create_model(name: str, pretrained: bool = False, **kwargs: Any) -> Any:
    """Create a zoo model through timm, with a helpful error for unknown names.

    ``name`` is a registered name or a Hub folder: ``'hf-hub:ORG/NAME'`` or ``'local-dir:PATH'`` (what
    ``python -m zoo.hub save`` writes; the architecture comes from its ``config.json``, the weights from its
    ``model.safetensors`` when ``pretrained``). Same arguments as ``timm.create_model`` (``num_classes``,
    ``features_only``, ``in_chans``, ``pretrained_cfg_overlay=dict(file=PATH)`` to load a local checkpoint in
    the official layout, ...).
    """
    if not isinstance(name, str):
        raise TypeError(f'model name must be a str, got {type(name).__name__}')
    if hub_source(name) is None:
        model_info(name)
        return timm.create_model(name, pretrained=pretrained, **kwargs)
    cfg = hub_config(name)
    if cfg.architecture in _sam_architectures():
        raise HubError(f'{name} holds {cfg.architecture}, a whole SAM: build it with '
                       f'zoo.create_sam({name!r}, pretrained=True)')
    weights = hub_file(name, WEIGHTS_NAME) if pretrained else None
    try:
        return timm.create_model(name, pretrained=pretrained, **kwargs)
    except (RuntimeError, KeyError) as e:
        mismatch = _weights_mismatch(name, weights) if weights is not None else None
        if not mismatch:
            raise
        raise HubError(f'the {WEIGHTS_NAME} of {name} does not fit {cfg.architecture}: '
                       f'{mismatch.describe(10)}') from e


def _weights_mismatch(name: str, weights: Path):
    """How the tensors of a safetensors file differ from the freshly built model (shapes only, nothing loaded)."""
    import torch
    from safetensors import safe_open

    from .state_dicts import compare_state_dict
    with safe_open(os.fspath(weights), framework='pt') as f:
        shapes = {k: torch.empty(f.get_slice(k).get_shape(), device='meta') for k in f.keys()}
    return compare_state_dict(shapes, timm.create_model(name, pretrained=False).state_dict())


# Papers of the models whose pretrained_cfg does not name one (timm's adopted GhostNets, ...): a name prefix or a
# family -> (title, arXiv id).
_PAPERS = {
    'ghostnetv3': ('GhostNetV3: Exploring the Training Strategies for Compact Models', 'arXiv:2404.11202'),
    'ghostnetv2': ('GhostNetV2: Enhance Cheap Operation with Long-Range Attention', 'arXiv:2211.12905'),
    'ghostnet': ('GhostNet: More Features from Cheap Operations', 'arXiv:1911.11907'),
    'wavemlp': ('An Image Patch is a Wave: Phase-Aware Vision MLP', 'arXiv:2111.12294'),
    'hiremlp': ('Hire-MLP: Vision MLP via Hierarchical Rearrangement', 'arXiv:2108.13341'),
    'slab': ('SLAB: Efficient Transformers with Simplified Linear Attention and Progressive Re-parameterized '
             'Batch Normalization', 'arXiv:2405.11582'),
    'tinysam': ('TinySAM: Pushing the Envelope for Efficient Segment Anything Model', 'arXiv:2312.13789'),
}


def paper_of(name: str, pretrained_cfg: Optional[dict] = None) -> tuple[str, str]:
    """(title, link) of the paper behind a model: its pretrained_cfg's ``paper_name`` / ``paper_ids`` where it
    names them, else the zoo's record for its family; ``''`` for what neither knows."""
    base = name.split('.', 1)[0]
    cfg = dict(pretrained_cfg or {})
    if not cfg and _timm_is_model(base):
        found = timm.models.get_pretrained_cfg(base)
        cfg = found.to_dict() if found is not None else {}
    keys = [k for k in sorted(_PAPERS, key=len, reverse=True) if base.startswith(k)]
    if base in _MODELS:
        keys.append(_MODELS[base].family)
    title, ids = next((_PAPERS[k] for k in keys if k in _PAPERS), ('', ''))
    title = cfg.get('paper_name') or title
    ids = cfg.get('paper_ids') or ids
    ids = ids[0] if isinstance(ids, (list, tuple)) else ids
    link = f'https://arxiv.org/abs/{ids.split(":", 1)[1]}' if ids.startswith('arXiv:') else ids
    return title, link
