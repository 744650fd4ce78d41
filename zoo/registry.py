"""The zoo's model registry: a thin layer over timm's.

Zoo-owned models register with :func:`register_model` (timm's decorator plus a record of the family and
of how the contract tests should exercise the model). Models timm already implements faithfully are
*adopted* with :func:`adopt_timm_models` instead of being written twice. Either way they show up in
:func:`list_models`, in ``hubconf.py`` and in the contract tests.
"""
from __future__ import annotations

import difflib
import fnmatch
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Optional, Sequence, TypeVar, Union

import timm
from timm.models import is_model as _timm_is_model
from timm.models import register_model as _timm_register_model

__all__ = [
    'ModelInfo', 'register_model', 'adopt_timm_models', 'list_models', 'list_families', 'model_info',
    'is_zoo_model', 'create_model', 'UnknownModelError',
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
            source (adopted timm models point at timm's hub copies of the same weights).
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
        **extra: Any,
) -> Union[F, Callable[[F], F]]:
    """Register a zoo model entrypoint with timm and with the zoo.

    Use it exactly like timm's ``@register_model`` (bare), or with keyword arguments that tell the contract
    tests how to exercise the model. Refuses a name timm already has: the zoo never shadows timm.
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
            input_divisor=input_divisor, extra=dict(extra)))
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


def model_info(name: str) -> ModelInfo:
    """The :class:`ModelInfo` of a zoo model; raises :class:`UnknownModelError` with suggestions."""
    base = name.split('.', 1)[0]
    if base not in _MODELS:
        raise _unknown(name)
    return _MODELS[base]


def create_model(name: str, pretrained: bool = False, **kwargs: Any) -> Any:
    """Create a zoo model through timm, with a helpful error for unknown names.

    Same arguments as ``timm.create_model`` (``num_classes``, ``features_only``, ``in_chans``,
    ``pretrained_cfg_overlay=dict(file=PATH)`` to load a local checkpoint in the official layout, ...).
    """
    if not isinstance(name, str):
        raise TypeError(f'model name must be a str, got {type(name).__name__}')
    model_info(name)
    return timm.create_model(name, pretrained=pretrained, **kwargs)
