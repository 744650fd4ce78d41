"""timm's ``device`` / ``dtype`` model-factory arguments for zoo model classes.

``timm.create_model(name, device='meta', dtype=torch.bfloat16)`` passes both to the model constructor
(timm >= 1.0.20); timm's own models thread them through every layer. A zoo model gets the same contract
by being built inside a ``torch.device`` context (every factory call lands on the device, so no weight is
allocated elsewhere first) and then cast, which also places tensors computed on the CPU on purpose
(cached position tables) with the rest.
"""
from __future__ import annotations

from contextlib import nullcontext
from typing import Any, Callable, Optional, Type, TypeVar, Union

import torch
from torch import nn

__all__ = ['with_factory_kwargs']

ModelT = TypeVar('ModelT', bound=nn.Module)


def with_factory_kwargs(model_cls: Type[ModelT]) -> Callable[..., ModelT]:
    """A constructor for ``model_cls`` that also takes ``device`` and ``dtype`` (for ``build_model_with_cfg``).

    Any other unknown argument still raises ``TypeError`` from the class itself.
    """

    def build(
            *args: Any,
            device: Optional[Union[str, torch.device]] = None,
            dtype: Optional[torch.dtype] = None,
            **kwargs: Any,
    ) -> ModelT:
        with torch.device(device) if device is not None else nullcontext():
            model = model_cls(*args, **kwargs)
        if device is not None or dtype is not None:
            model.to(device=device, dtype=dtype)
        return model

    build.__name__ = model_cls.__name__
    build.__qualname__ = model_cls.__qualname__
    build.__doc__ = model_cls.__doc__
    return build
