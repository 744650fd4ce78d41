"""zoo: efficient vision backbones from Huawei Noah's Ark Lab and collaborators, registered with timm.

``import zoo`` registers every model, after which ``timm.create_model(name)`` works for each of them.
"""
import argparse as _argparse
import importlib as _importlib

import torch as _torch

from .version import __version__
from .registry import (
    HubError, ModelInfo, UnknownModelError, create_model, is_zoo_model, list_families, list_models, model_info,
)
# The official training scripts store their argparse.Namespace beside the weights. It is plain data, so
# allowing it keeps weights_only=True loading (which refuses arbitrary classes) working for their releases.
_torch.serialization.add_safe_globals([_argparse.Namespace])

from . import models  # noqa: F401  (registers the families with timm)
from .models.tinysam import create_sam


def __getattr__(name: str):
    """``zoo.export(...)`` (a callable module: python -m zoo.export as a function), loaded on first use."""
    if name == 'export':
        return _importlib.import_module('.export', __name__)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


__all__ = [
    '__version__', 'HubError', 'ModelInfo', 'UnknownModelError', 'create_model', 'create_sam', 'export', 'is_zoo_model',
    'list_families', 'list_models', 'model_info',
]
