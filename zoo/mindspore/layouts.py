"""Parameter layouts of ``.ckpt`` files: the zoo's (the torch names with MindSpore's norm leaves) and, for the
models whose family has one, the official MindSpore port's (``mindspore-ai/models``, ``research/cv``).

A port's layout is reached from the zoo's by renaming each parameter (:mod:`zoo.mindspore.official_layouts`
holds the rules, read off the ports' code and checked against fixtures of the ports' parameter names and shapes,
``tests/fixtures/mindspore_*.json``).
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping

__all__ = ['LAYOUTS', 'register_official_layout', 'official_models', 'to_layout', 'from_layout']

LAYOUTS = ('zoo', 'official')
Rename = Callable[[str, str], str]  # (parameter name, model name) -> parameter name

_OFFICIAL: dict[str, tuple[Rename, Rename]] = {}


def register_official_layout(names: Iterable[str], to_official: Rename, from_official: Rename) -> None:
    """Record how the parameters of models ``names`` map to their official port's names and back."""
    for name in names:
        _OFFICIAL[name] = (to_official, from_official)


def official_models() -> list[str]:
    """Models whose official MindSpore port's layout the zoo reads and writes."""
    from . import official_layouts  # noqa: F401  (registers them)
    return sorted(_OFFICIAL)


def _rules(name: str, layout: str) -> tuple[Rename, Rename] | None:
    if layout not in LAYOUTS:
        raise ValueError(f'unknown layout {layout!r}: use one of {", ".join(LAYOUTS)}')
    if layout == 'zoo':
        return None
    if name not in official_models():
        raise ValueError(f'{name} has no official MindSpore port, so there is no official layout: use --layout zoo '
                         f'(the ports cover {", ".join(official_models())})')
    return _OFFICIAL[name]


def to_layout(params: Mapping[str, Any], name: str, layout: str) -> dict[str, Any]:
    """The zoo-layout ``params`` of model ``name`` renamed into ``layout``."""
    rules = _rules(name, layout)
    return dict(params) if rules is None else {rules[0](k, name): v for k, v in params.items()}


def from_layout(params: Mapping[str, Any], name: str, layout: str) -> dict[str, Any]:
    """``params`` of model ``name`` in ``layout`` renamed into the zoo's layout."""
    rules = _rules(name, layout)
    return dict(params) if rules is None else {rules[1](k, name): v for k, v in params.items()}
