"""MindSpore twin of Wave-MLP (:mod:`zoo.models.wavemlp`): phase-aware token mixing on the mixer pyramid.

The official MindSpore port (``research/cv/wave_mlp``) does not build on MindSpore 2.x; this twin follows the
PyTorch model, attribute for attribute.
"""
from __future__ import annotations

from typing import Any

from mindspore import nn, ops

from .layers import BatchNorm2d, Conv2d, GroupNorm
from .mixer_pyramid import BranchReweight, MixerPyramid, mixer_kwargs_from_torch
from .registry import register_twin

__all__ = ['WaveMLP', 'PhaseAwareTokenMixing']

_BASE = dict(depths=(2, 2, 4, 2), embed_dims=(64, 128, 320, 512), mlp_ratios=(4, 4, 4, 4))
#: Registered name -> constructor arguments (as in zoo.models.wavemlp).
VARIANTS = {
    'wavemlp_t_dw': dict(_BASE, phase_mode='depthwise'),
    'wavemlp_t': dict(_BASE),
    'wavemlp_s': dict(_BASE, depths=(2, 3, 10, 3), norm='groupnorm'),
    'wavemlp_m': dict(_BASE, depths=(3, 4, 18, 3), mlp_ratios=(8, 8, 4, 4), norm='groupnorm', embed_norm=False),
    'wavemlp_b': dict(depths=(2, 2, 18, 2), embed_dims=(96, 192, 384, 768), mlp_ratios=(4, 4, 4, 4),
                      norm='groupnorm', embed_norm=False),
}


def _phase_estimator(dim: int, phase_mode: str) -> nn.SequentialCell:
    """theta = ReLU(BN(conv(x))), the conv a 1x1 ('fc') or a 3x3 depthwise ('depthwise')."""
    conv = Conv2d(dim, dim, 1) if phase_mode == 'fc' else Conv2d(dim, dim, 3, padding=1, groups=dim, bias=False)
    return nn.SequentialCell([conv, BatchNorm2d(dim), nn.ReLU()])


class PhaseAwareTokenMixing(nn.Cell):
    """PATM: each token as ``amplitude * exp(i * theta)``, mixed along width and height by grouped convs over
    its [real, imaginary] parts, plus a channel fc; the three fused by split attention."""

    def __init__(self, dim: int, qkv_bias: bool = False, phase_mode: str = 'fc', kernel_size: int = 7):
        super().__init__()
        self.fc_h = Conv2d(dim, dim, 1, bias=qkv_bias)
        self.fc_w = Conv2d(dim, dim, 1, bias=qkv_bias)
        self.fc_c = Conv2d(dim, dim, 1, bias=qkv_bias)
        pad = kernel_size // 2
        self.tfc_h = Conv2d(2 * dim, dim, (1, kernel_size), padding=(0, pad), groups=dim, bias=False)
        self.tfc_w = Conv2d(2 * dim, dim, (kernel_size, 1), padding=(pad, 0), groups=dim, bias=False)
        self.reweight = BranchReweight(dim, num_branches=3)
        self.proj = Conv2d(dim, dim, 1)
        self.theta_h_conv = _phase_estimator(dim, phase_mode)
        self.theta_w_conv = _phase_estimator(dim, phase_mode)

    def construct(self, x):
        amp_h, theta_h = self.fc_h(x), self.theta_h_conv(x)
        amp_w, theta_w = self.fc_w(x), self.theta_w_conv(x)
        h = self.tfc_h(ops.cat((amp_h * ops.cos(theta_h), amp_h * ops.sin(theta_h)), 1))
        w = self.tfc_w(ops.cat((amp_w * ops.cos(theta_w), amp_w * ops.sin(theta_w)), 1))
        return self.proj(self.reweight((h, w, self.fc_c(x))))


def _group_norm1(dim: int) -> nn.GroupNorm:
    return GroupNorm(1, dim)


_NORMS = {'batchnorm': BatchNorm2d, 'groupnorm': _group_norm1}


class WaveMLP(MixerPyramid):
    """Wave-MLP: a four-stage pyramid of PATM blocks (arguments as :class:`zoo.models.wavemlp.WaveMLP`)."""

    def __init__(self, depths, embed_dims, mlp_ratios, phase_mode: str = 'fc', norm: str = 'batchnorm',
                 embed_norm: bool = True, qkv_bias: bool = False, **kwargs: Any):
        norm_layer = _NORMS[norm]
        super().__init__(
            lambda stage, block, dim: PhaseAwareTokenMixing(dim, qkv_bias=qkv_bias, phase_mode=phase_mode),
            depths, embed_dims, mlp_ratios, norm_layer, norm_layer if embed_norm else None, **kwargs)


def _kwargs_from_torch(model) -> dict:
    return dict(mixer_kwargs_from_torch(model), qkv_bias=model.network[0][0].attn.fc_h.bias is not None)


@register_twin(*VARIANTS, kwargs_from_torch=_kwargs_from_torch)
def wavemlp(variant: str, **kwargs: Any) -> WaveMLP:
    """The twin of a registered Wave-MLP variant (``num_classes``, ``in_chans``, ``global_pool``, ...)."""
    return WaveMLP(**dict(VARIANTS[variant], **kwargs))
