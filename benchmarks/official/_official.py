"""Shared by the official comparators: where the checkout is, and official files loaded under private names.

Official files register timm names the zoo registers too, import timm from paths it has since moved, use NumPy's
removed ``np.float``, and some print while building. :func:`official_imports` covers all of it for as long as
official code loads or builds, changing no arithmetic, and undoes it afterwards.
"""
from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import sys
import types
from typing import Any, Iterator, Mapping, Optional

import numpy as np

__all__ = ['checkout', 'official_imports', 'load_file']


def checkout(repo: str, *parts: str) -> str:
    """A path inside the official checkout ``$ZOO_OFFICIAL_SRC/<owner>+<repo>`` (default ``/work/official-src``)."""
    return os.path.join(os.environ.get('ZOO_OFFICIAL_SRC', '/work/official-src'), repo, *parts)


@contextlib.contextmanager
def official_imports(stand_ins: Optional[Mapping[str, Any]] = None, folder: Optional[str] = None,
                     quiet: bool = False) -> Iterator[None]:
    """timm's ``register_model`` a no-op, ``timm.models.layers.helpers`` (and ``stand_ins``) in ``sys.modules``,
    ``np.float`` aliased, ``folder`` importable, and with ``quiet`` stdout silenced; all undone afterwards."""
    import timm.layers
    import timm.models
    import timm.models.registry as registry

    modules = {'timm.models.layers.helpers': types.SimpleNamespace(to_2tuple=timm.layers.to_2tuple),
               **(stand_ins or {})}
    saved_modules = {name: sys.modules.get(name) for name in modules}
    saved_register = registry.register_model, timm.models.register_model
    sys.modules.update(modules)
    registry.register_model = timm.models.register_model = lambda fn: fn
    if not hasattr(np, 'float'):
        np.float = float  # NumPy removed the alias; official files still use it
    if folder:
        sys.path.insert(0, folder)
    try:
        with contextlib.redirect_stdout(io.StringIO()) if quiet else contextlib.nullcontext():
            yield
    finally:
        if folder:
            sys.path.remove(folder)
        registry.register_model, timm.models.register_model = saved_register
        for name, module in saved_modules.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def load_file(path: str, name: str, **imports: Any) -> types.ModuleType:
    """The official file ``path`` executed once as module ``name`` (cached in ``sys.modules``), inside
    :func:`official_imports` (``imports`` are its arguments)."""
    if name in sys.modules:
        return sys.modules[name]
    if not os.path.isfile(path):
        raise FileNotFoundError(f'no official code at {path}; set ZOO_OFFICIAL_SRC (see benchmarks/README.md)')
    with official_imports(**imports):
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(name, None)
            raise
    return module
