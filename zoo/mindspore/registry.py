"""Which MindSpore twin builds which zoo model: a name-to-builder table that every family module fills.

A family module (``zoo/mindspore/<family>.py``) decorates one builder per registered torch model name with
:func:`register_twin`. A builder takes the torch entrypoint's keyword arguments that apply (``num_classes``,
``img_size``, ``in_chans``, ...) and returns an ``nn.Cell`` whose parameter names equal the torch model's state
dict keys up to the leaf renames in :mod:`zoo.mindspore.convert`.
"""
from __future__ import annotations

import difflib
from typing import Any, Callable

__all__ = ['register_twin', 'twin_builder', 'twin_names']

_TWINS: dict[str, Callable[..., Any]] = {}


def register_twin(*names: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register the decorated builder as the MindSpore twin of the zoo models ``names``."""
    def decorate(builder: Callable[..., Any]) -> Callable[..., Any]:
        for name in names:
            if name in _TWINS:
                raise ValueError(f'a MindSpore twin of {name!r} is registered twice')
            _TWINS[name] = builder
        return builder
    return decorate


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
