"""What the four SLAB twins share: the classifier head and the stage loop's outputs of the hierarchical
backbones, the pooling check, and what the builders read off a torch model (for ``kwargs_from_torch``)."""
from __future__ import annotations

from typing import Any

from mindspore import nn

from ..layers import Linear

__all__ = ['make_head', 'check_pool', 'StagedHead', 'NormedStages', 'torch_is_fused', 'base_kwargs']


def make_head(num_features: int, num_classes: int) -> nn.Cell:
    """The linear classifier, or the identity for ``num_classes=0`` (as the torch models)."""
    return Linear(num_features, num_classes) if num_classes > 0 else nn.Identity()


def check_pool(global_pool: str, allowed: tuple) -> str:
    """``global_pool`` if the model offers it, else one ValueError naming the choices."""
    if global_pool not in allowed:
        raise ValueError(f'global_pool must be one of {allowed}, got {global_pool!r}')
    return global_pool


class StagedHead(nn.Cell):
    """Classifier over the average of the last (B, C, H, W) map: PVT, Swin and CSWin."""

    def forward_head(self, x, pre_logits: bool = False):
        if self.global_pool == 'avg':
            x = x.mean(axis=(2, 3))
        return x if pre_logits else self.head(x)

    def construct(self, x):
        return self.forward_head(self.forward_features(x))


class NormedStages(StagedHead):
    """Outputs of a stage loop ``_run(x, collect)`` over NHWC maps with a final norm: Swin and CSWin."""

    def forward_features(self, x):
        x, _ = self._run(x, False)
        return self.norm(x).transpose(0, 3, 1, 2)

    def forward_intermediates(self, x) -> list:
        """Each stage's output, (B, C, H, W) (no final norm)."""
        return self._run(x, True)[1]


def torch_is_fused(model: Any) -> bool:
    """True for a torch SLAB model after ``fuse()``: no RepBN / PRepBN is left in it."""
    from ...layers.prepbn import PRepBN, RepBN
    return not any(isinstance(m, (RepBN, PRepBN)) for m in model.modules())


def base_kwargs(model: Any) -> dict:
    """The builder kwargs every SLAB family reads off a torch model the same way."""
    return dict(num_classes=model.num_classes, in_chans=model.in_chans, global_pool=model.global_pool,
                deploy=torch_is_fused(model))
