"""Which MindSpore twin builds which zoo model: a name-to-builder table that every family module fills.

A family module (``zoo/mindspore/<family>.py``) decorates a builder with :func:`register_twin` for the torch
model names it builds. A builder is called as ``builder(variant, **kwargs)``: ``variant`` is the registered
torch name, ``kwargs`` the torch entrypoint's keyword arguments that apply (``num_classes``, ``img_size``,
``in_chans``, ...). It returns an ``nn.Cell`` whose parameter names equal the torch model's state dict keys up
to the leaf renames in :mod:`zoo.mindspore.convert`.

``kwargs_from_torch`` (optional) reads those keyword arguments off a built torch model, for
``zoo.mindspore.from_torch``: e.g. ``{'num_classes': model.num_classes, 'deploy': <is it re-parameterised>}``.
"""
from __future__ import annotations

import difflib
from typing import Any, Callable

__all__ = ['register_twin', 'twin_builder', 'twin_names', 'kwargs_reader']

_TWINS: dict[str, Callable[..., Any]] = {}
_KWARGS_FROM_TORCH: dict[str, Callable[[Any], dict]] = {}


def register_twin(*names: str, kwargs_from_torch: Callable[[Any], dict] | None = None
                  ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register the decorated ``builder(variant, **kwargs)`` as the MindSpore twin of the zoo models ``names``."""
    def decorate(builder: Callable[..., Any]) -> Callable[..., Any]:
        for name in names:
            if name in _TWINS:
                raise ValueError(f'a MindSpore twin of {name!r} is registered twice')
            _TWINS[name] = builder
            if kwargs_from_torch is not None:
                _KWARGS_FROM_TORCH[name] = kwargs_from_torch
        return builder
    return decorate


def kwargs_reader(name: str) -> Callable[[Any], dict] | None:
    """The family's reader of builder kwargs off a torch model, if it registered one."""
    _import_families()
    return _KWARGS_FROM_TORCH.get(name)


def twin_names() -> list[str]:
    """Every zoo model name with a MindSpore twin, sorted."""
    _import_families()
    return sorted(_TWINS)


def twin_builder(name: str) -> Callable[..., Any]:
    """The builder of ``name``'s twin; a ValueError with close names when there is none."""
    _import_families()
    if name not in _TWINS:
        close = difflib.get_close_matches(name, _TWINS, n=3)
        hint = f'; did you mean {", ".join(close)}?' if close else '; see zoo.mindspore.list_models()'
        raise ValueError(f'no MindSpore twin of model {name!r}{hint}')
    return _TWINS[name]


def _import_families() -> None:
    """Import every family module once, so that their decorators have filled the table."""
    from . import families  # noqa: F401  (the import registers the twins)
