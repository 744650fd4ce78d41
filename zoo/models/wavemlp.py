"""Wave-MLP: "An Image Patch is a Wave: Phase-Aware Vision MLP" (Tang et al., CVPR 2022).

Each token is a wave with an amplitude (its features) and a phase estimated from the input. The
phase-aware token mixing (PATM) unfolds a token ``z * exp(i*theta)`` into its real and imaginary parts
``[z*cos(theta), z*sin(theta)]``, mixes them with fixed weights along the width and along the height,
adds a channel-fc branch and fuses the three branches with split attention.

Paper: https://arxiv.org/abs/2111.12294
Official code: https://github.com/huawei-noah/Efficient-AI-Backbones/tree/master/wavemlp_pytorch

Official checkpoints load as they are (same state-dict layout). Any input of at least 3x3 pixels works;
stage outputs have reductions 4/8/16/32 (``features_only=True`` or ``forward_intermediates``).
"""
from __future__ import annotations

from typing import Any, Dict, List, Tuple

import torch
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import build_model_with_cfg, generate_default_cfgs
from torch import nn

from ..layers.batchnorm_fold import folded_conv_bn
from ..layers.branch_reweight import BranchReweight
from ..layers.hooks import observed
from ..layers.factory_kwargs import with_factory_kwargs
from .mixer_pyramid import MixerPyramid
from ..registry import register_model

__all__ = ['WaveMLP', 'PhaseAwareTokenMixing', 'unfold_wave', 'pairwise_token_fc']


def _phase_estimator(dim: int, phase_mode: str) -> nn.Sequential:
    """theta = ReLU(BN(conv(x))): a 1x1 conv ('fc') or a 3x3 depth-wise conv ('depthwise')."""
    if phase_mode == 'fc':
        conv = nn.Conv2d(dim, dim, 1)
    elif phase_mode == 'depthwise':
        conv = nn.Conv2d(dim, dim, 3, padding=1, groups=dim, bias=False)
    else:
        raise ValueError(f"phase_mode must be 'fc' or 'depthwise', got {phase_mode!r}")
    return nn.Sequential(conv, nn.BatchNorm2d(dim), nn.ReLU())


def unfold_wave(amplitude: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """The wave ``amplitude * exp(i * theta)`` as its [real, imaginary] parts along channels."""
    return torch.cat([amplitude * torch.cos(theta), amplitude * torch.sin(theta)], dim=1)


def pairwise_token_fc(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """``conv(x)`` for PATM's token fc, a conv with groups == out_channels and two input channels per group.

    Output channel g sums the spatial kernels of input channels 2g and 2g+1, so it is a depth-wise conv of
    all 2C input channels (the same weights, viewed as 2C one-channel kernels) followed by a sum over each
    pair. The same arithmetic in a form oneDNN runs faster: its kernel for two-channel groups is slow, its
    depth-wise kernel fast (about 10x on the 14x14 stage, on par on the 56x56 one; measured on one thread).
    """
    out_chs = conv.out_channels
    y = F.conv2d(x, conv.weight.reshape(2 * out_chs, 1, *conv.kernel_size), None, conv.stride,
                 conv.padding, conv.dilation, 2 * out_chs)
    # the pair sum as two strided slices: a reshape would pin the batch size in a traced (ONNX) graph
    return y[:, 0::2] + y[:, 1::2]


class PhaseAwareTokenMixing(nn.Module):
    """PATM: phase-aware mixing along width and height plus a channel fc, fused by split attention.

    ``tfc_h`` (a 1x7 kernel) mixes along the width and ``tfc_w`` (7x1) along the height, each as a
    grouped conv whose group g reads input channels 2g and 2g+1 of the concatenated
    [amplitude*cos(phase), amplitude*sin(phase)] map, exactly as in the official model.
    """

    def __init__(self, dim: int, qkv_bias: bool = False, phase_mode: str = 'fc', kernel_size: int = 7) -> None:
        super().__init__()
        self.fc_h = nn.Conv2d(dim, dim, 1, bias=qkv_bias)
        self.fc_w = nn.Conv2d(dim, dim, 1, bias=qkv_bias)
        self.fc_c = nn.Conv2d(dim, dim, 1, bias=qkv_bias)
        pad = kernel_size // 2
        self.tfc_h = nn.Conv2d(2 * dim, dim, (1, kernel_size), padding=(0, pad), groups=dim, bias=False)
        self.tfc_w = nn.Conv2d(2 * dim, dim, (kernel_size, 1), padding=(pad, 0), groups=dim, bias=False)
        self.reweight = BranchReweight(dim, num_branches=3)
        self.proj = nn.Conv2d(dim, dim, 1)
        self.theta_h_conv = _phase_estimator(dim, phase_mode)
        self.theta_w_conv = _phase_estimator(dim, phase_mode)

    def _folds(self) -> bool:
        """Whether the phase estimators' BatchNorms use running statistics (eval mode, statistics tracked),
        so that they fold into the convolutions before them."""
        bns = (self.theta_h_conv[1], self.theta_w_conv[1])
        return not self.training and all(
            isinstance(bn, nn.BatchNorm2d) and not bn.training and bn.running_var is not None for bn in bns) and not \
            observed(self.fc_h, self.fc_w, self.fc_c, *self.theta_h_conv, *self.theta_w_conv)  # hooked: run modules

    def _projections(self, x: torch.Tensor) -> List[torch.Tensor]:
        """fc_h(x), fc_w(x), fc_c(x), theta_h(x), theta_w(x) with the inference fast path: the 1x1 convs that
        read x run as ONE conv with their weights concatenated (one pass over x, one larger matrix product
        instead of five small ones) and the phase BatchNorms folded into their convolutions. The weights
        are concatenated at every call (cheap, nothing cached that could go stale)."""
        dim = self.fc_c.out_channels  # an int, not a traced size: torch.fx slices by it below
        fcs = (self.fc_h, self.fc_w, self.fc_c)
        weights = [m.weight for m in fcs]
        biases = [m.bias if m.bias is not None else torch.zeros_like(m.weight[:, 0, 0, 0]) for m in fcs]
        convs = [seq[0] for seq in (self.theta_h_conv, self.theta_w_conv)]
        phases = [folded_conv_bn(conv, seq[1]) for conv, seq in zip(convs, (self.theta_h_conv, self.theta_w_conv))]
        depthwise = convs[0].groups > 1
        if not depthwise:
            weights += [w for w, _ in phases]
            biases += [b for _, b in phases]
        y = F.conv2d(x, torch.cat(weights), torch.cat(biases))
        out = [y[:, i * dim:(i + 1) * dim] for i in range(len(weights))]
        if depthwise:
            out += [F.conv2d(x, w, b, conv.stride, conv.padding, conv.dilation, conv.groups)
                    for conv, (w, b) in zip(convs, phases)]
        return out[:3] + [torch.relu(t) for t in out[3:]]

    def _module_projections(self, x: torch.Tensor) -> List[torch.Tensor]:
        """fc_h(x), fc_w(x), fc_c(x), theta_h(x), theta_w(x), module by module: in training the BatchNorms need
        batch statistics, and separate convs also train faster here than one concatenated conv whose output
        is split (measured)."""
        return [self.fc_h(x), self.fc_w(x), self.fc_c(x), self.theta_h_conv(x), self.theta_w_conv(x)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_scripting():  # TorchScript compiles this branch only
            projections = self._module_projections(x)
        else:
            projections = self._projections(x) if self._folds() else self._module_projections(x)
        x_h, x_w, c, theta_h, theta_w = projections
        h, w = unfold_wave(x_h, theta_h), unfold_wave(x_w, theta_w)
        if torch.jit.is_scripting():
            h, w = self.tfc_h(h), self.tfc_w(w)
        else:  # hooked token fcs run as modules
            h = self.tfc_h(h) if observed(self.tfc_h) else pairwise_token_fc(h, self.tfc_h)
            w = self.tfc_w(w) if observed(self.tfc_w) else pairwise_token_fc(w, self.tfc_w)
        return self.proj(self.reweight([h, w, c]))


def _group_norm1(dim: int) -> nn.GroupNorm:
    """GroupNorm with one group (normalises over C, H, W), the norm of Wave-MLP-S/M/B."""
    return nn.GroupNorm(1, dim)


_NORMS = {'batchnorm': nn.BatchNorm2d, 'groupnorm': _group_norm1}


class WaveMLP(MixerPyramid):
    """Wave-MLP: a four-stage pyramid of PATM blocks.

    Args:
        depths: blocks per stage.
        embed_dims: channels per stage.
        mlp_ratios: channel-MLP expansion per stage.
        phase_mode: 'fc' (1x1 conv) or 'depthwise' (3x3 depth-wise conv) phase estimation.
        norm: 'batchnorm' or 'groupnorm' (one group) in the blocks and the final norm.
        embed_norm: whether the stem and down-sampling convolutions are followed by that norm.
        qkv_bias: bias in the fc_h / fc_w / fc_c projections.
        in_chans, num_classes, global_pool, drop_rate, drop_path_rate: as in timm.
    """

    def __init__(
            self,
            depths=(2, 2, 4, 2),
            embed_dims=(64, 128, 320, 512),
            mlp_ratios=(4, 4, 4, 4),
            phase_mode: str = 'fc',
            norm: str = 'batchnorm',
            embed_norm: bool = True,
            qkv_bias: bool = False,
            in_chans: int = 3,
            num_classes: int = 1000,
            global_pool: str = 'avg',
            drop_rate: float = 0.,
            drop_path_rate: float = 0.,
    ) -> None:
        if norm not in _NORMS:
            raise ValueError(f'norm must be one of {sorted(_NORMS)}, got {norm!r}')
        norm_layer = _NORMS[norm]
        super().__init__(
            lambda stage, block, dim: PhaseAwareTokenMixing(dim, qkv_bias=qkv_bias, phase_mode=phase_mode),
            depths=depths, embed_dims=embed_dims, mlp_ratios=mlp_ratios, norm_layer=norm_layer,
            embed_norm_layer=norm_layer if embed_norm else None, embed_act_layer=None,
            in_chans=in_chans, num_classes=num_classes, global_pool=global_pool,
            drop_rate=drop_rate, drop_path_rate=drop_path_rate)
        # as the official code: truncated-normal linear weights, default convs
        self.init_weights()


def _create_wavemlp(variant: str, pretrained: bool = False, **kwargs: Any) -> WaveMLP:
    out_indices = kwargs.pop('out_indices', (0, 1, 2, 3))
    return build_model_with_cfg(
        with_factory_kwargs(WaveMLP), variant, pretrained,
        feature_cfg=dict(out_indices=out_indices, feature_cls='getter'),
        **kwargs)


_RELEASES = 'https://github.com/huawei-noah/Efficient-AI-Backbones/releases/download/wavemlp'


def _cfg(url: str = '', **kwargs: Any) -> Dict[str, Any]:
    return {
        'url': url,
        'num_classes': 1000, 'input_size': (3, 224, 224), 'pool_size': (7, 7),
        'crop_pct': 0.9, 'interpolation': 'bicubic',
        'mean': IMAGENET_DEFAULT_MEAN, 'std': IMAGENET_DEFAULT_STD,
        'first_conv': 'patch_embed.proj', 'classifier': 'head',
        'paper_ids': 'arXiv:2111.12294', 'license': 'apache-2.0',
        **kwargs,
    }


default_cfgs = generate_default_cfgs({
    'wavemlp_t_dw.in1k': _cfg(url=f'{_RELEASES}/WaveMLP_T_dw.pth.tar'),
    'wavemlp_t.in1k': _cfg(url=f'{_RELEASES}/WaveMLP_T.pth.tar'),
    'wavemlp_s.in1k': _cfg(url=f'{_RELEASES}/WaveMLP_S.pth.tar'),
    'wavemlp_m.in1k': _cfg(url=f'{_RELEASES}/WaveMLP_M.pth.tar'),
    # defined by the official code, no released weights
    'wavemlp_b.untrained': _cfg(crop_pct=0.875),
})


@register_model
def wavemlp_t_dw(pretrained: bool = False, **kwargs: Any) -> WaveMLP:
    """Wave-MLP-T* (15M params, 2.1G MACs): Wave-MLP-T with depth-wise phase estimation."""
    model_args = dict(depths=(2, 2, 4, 2), embed_dims=(64, 128, 320, 512), mlp_ratios=(4, 4, 4, 4),
                      phase_mode='depthwise')
    return _create_wavemlp('wavemlp_t_dw', pretrained, **dict(model_args, **kwargs))


@register_model
def wavemlp_t(pretrained: bool = False, **kwargs: Any) -> WaveMLP:
    """Wave-MLP-T (17M params, 2.4G MACs)."""
    model_args = dict(depths=(2, 2, 4, 2), embed_dims=(64, 128, 320, 512), mlp_ratios=(4, 4, 4, 4))
    return _create_wavemlp('wavemlp_t', pretrained, **dict(model_args, **kwargs))


@register_model
def wavemlp_s(pretrained: bool = False, **kwargs: Any) -> WaveMLP:
    """Wave-MLP-S (30M params, 4.5G MACs)."""
    model_args = dict(depths=(2, 3, 10, 3), embed_dims=(64, 128, 320, 512), mlp_ratios=(4, 4, 4, 4),
                      norm='groupnorm')
    return _create_wavemlp('wavemlp_s', pretrained, **dict(model_args, **kwargs))


@register_model
def wavemlp_m(pretrained: bool = False, **kwargs: Any) -> WaveMLP:
    """Wave-MLP-M (44M params, 7.9G MACs): no norm after the stem and down-sampling convolutions."""
    model_args = dict(depths=(3, 4, 18, 3), embed_dims=(64, 128, 320, 512), mlp_ratios=(8, 8, 4, 4),
                      norm='groupnorm', embed_norm=False)
    return _create_wavemlp('wavemlp_m', pretrained, **dict(model_args, **kwargs))


@register_model
def wavemlp_b(pretrained: bool = False, **kwargs: Any) -> WaveMLP:
    """Wave-MLP-B (64M params): defined in the official code, not in its results table."""
    model_args = dict(depths=(2, 2, 18, 2), embed_dims=(96, 192, 384, 768), mlp_ratios=(4, 4, 4, 4),
                      norm='groupnorm', embed_norm=False)
    return _create_wavemlp('wavemlp_b', pretrained, **dict(model_args, **kwargs))
