"""CGRSeg: Context-Guided Spatial Feature Reconstruction for Efficient Semantic Segmentation (ECCV 2024).

Paper: https://arxiv.org/abs/2405.06228 (Ni, Chen, Zhai, Tang, Wang). Official code (mmseg 0.27):
https://github.com/nizhenliang/CGRSeg.

The model is a plain PyTorch module, usable without mmseg:

* **Backbone**: timm's ``EfficientFormerV2`` (S1 / S2 / L), built for the 512x512 attention-bias grid the
  official segmentation backbone uses. The official backbone differs from timm's in one place: it takes any
  input size by resizing each attention block's (queries x keys) bias matrix bicubically to the actual token
  counts, where timm's blocks only take the size they were built for. The attention modules here subclass
  timm's and add exactly that; every parameter, its shape and the rest of the arithmetic are timm's (and the
  ImageNet-pretrained timm ``efficientformerv2_*`` weights are the ones the official training starts from).
* **Head** (official parameter names): features at strides 8/16/32 are average-pooled to stride 64,
  concatenated and refined by a stack of Rectangular Self-Calibration Modules (RCM); each level is then
  refined top-down by its own RCM and fused with its slice of the global context through a hard-sigmoid
  gate. A first classification of the stride-8 features gives class prototypes (the features softly pooled
  by each class's spatial probabilities); the Dynamic Prototype Guided (DPG) step pools those prototypes
  into one context vector that re-weights the channels before the final classification.

``forward`` returns per-class logits at the input resolution (bilinear upsampling of the stride-8 logits,
as mmseg's ``EncoderDecoder`` does at test time); ``forward_head`` gives the stride-8 logits; ``predict``
returns the label map. Inputs must have height and width divisible by 32.

Official mmseg checkpoints (``{'state_dict': {'backbone.*', 'decode_head.*'}}``) load through
``checkpoint_filter_fn``, which maps the backbone's keys to timm's layout.
"""
from __future__ import annotations

import re
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import ConvMlp, ConvNormAct, register_notrace_function
from timm.models import build_model_with_cfg, generate_default_cfgs
from timm.models.efficientformer_v2 import (
    Attention2d, Attention2dDownsample, ConvNorm, EfficientFormerV2, EfficientFormer_depth,
    EfficientFormer_expansion_ratios, EfficientFormer_width,
)

from ..layers.input_checks import check_image_input
from ..layers.onednn import FoldingConvNorm, conv_mlp
from ..layers.rectangular_self_calibration import RectangularSelfCalibrationModule
from ..registry import register_model
from ..state_dicts import unwrap_state_dict

__all__ = ['CGRSeg', 'CGRSegHead', 'EfficientFormerV2Backbone']


@register_notrace_function  # an FX leaf: comparing sizes is Python control flow
def resize_attention_bias(bias: torch.Tensor, q_len: int, k_len: int) -> torch.Tensor:
    """A (heads, queries, keys) bias matrix bicubically resized, as an image, to (q_len, k_len)."""
    if bias.shape[-2:] == (q_len, k_len):
        return bias
    return F.interpolate(bias.unsqueeze(0), size=(q_len, k_len), mode='bicubic', align_corners=False).squeeze(0)


def _resized_attention_bias(module: Union[Attention2d, Attention2dDownsample], q_len: int, k_len: int) -> torch.Tensor:
    """The module's relative-position bias for (q_len, k_len) tokens.

    The bias table is defined on the grid the module was built for; other input sizes resize the whole bias
    matrix as an image, as the official CGRSeg backbone does. Cached per size in eval mode without autograd (a
    cached tensor would carry one forward pass's graph into the next) and outside tracing.
    """
    tracing = isinstance(q_len, torch.fx.Proxy) or torch.jit.is_tracing() or torch.compiler.is_compiling()
    if module.training or torch.is_grad_enabled() or tracing:
        return resize_attention_bias(module.attention_biases[:, module.attention_bias_idxs], q_len, k_len)
    table = module.attention_biases
    # keyed on the table's version and storage too: weights loaded or changed after a cached call are never
    # served stale
    prefix = f'{table.device}-{table._version}-{table.data_ptr()}-'
    key = f'{prefix}{q_len}x{k_len}'
    if key not in module.attention_bias_cache:  # (dropping the entries of older versions)
        module.attention_bias_cache = {k: v for k, v in module.attention_bias_cache.items() if k.startswith(prefix)}
        module.attention_bias_cache[key] = resize_attention_bias(table[:, module.attention_bias_idxs], q_len, k_len)
    return module.attention_bias_cache[key]


def _attend_channels_first(attn: torch.Tensor, v: torch.Tensor, v_local: torch.Tensor) -> torch.Tensor:
    """``(attn @ v_tokens)`` laid out channels first, plus ``v_local``: (B, heads * d, Nq) for attention weights
    ``attn`` (B, heads, Nq, Nk), values ``v`` (B, heads * d, ...) with Nk positions and ``v_local`` (B, heads * d,
    ...) with Nq. Computed as ``v_local + v @ attn^T`` in one batched product: the result comes out in the
    (channels, positions) layout the convolutions after it read, so the transposed copy of ``attn @ v`` and the
    separate addition are not needed. Same sums, up to float rounding."""
    B, heads, Nq, Nk = attn.shape
    return torch.baddbmm(v_local.reshape(B * heads, -1, Nq), v.reshape(B * heads, -1, Nk),
                         attn.reshape(B * heads, Nq, Nk).transpose(1, 2)).reshape(B, -1, Nq)


class SizeAdaptiveAttention2d(Attention2d):
    """timm's EfficientFormerV2 attention (talking heads, local value conv, optional stride 2) for any input
    size: token counts come from the input and the position bias is resized to them."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B = x.shape[0]
        if self.stride_conv is not None:
            x = self.stride_conv(x)
        H, W = x.shape[-2:]
        N = H * W
        q = self.q(x).reshape(B, self.num_heads, -1, N).transpose(-1, -2)
        k = self.k(x).reshape(B, self.num_heads, -1, N)
        v = self.v(x)
        v_local = self.v_local(v)

        attn = torch.add(_resized_attention_bias(self, N, N), q @ k, alpha=self.scale)  # one pass: scale, bias
        attn = self.talking_head2(self.talking_head1(attn).softmax(dim=-1))
        x = _attend_channels_first(attn, v, v_local).reshape(B, self.dh, H, W)
        if self.upsample is not None:
            x = self.upsample(x)
        return self.proj(self.act(x))


class SizeAdaptiveAttention2dDownsample(Attention2dDownsample):
    """timm's EfficientFormerV2 stride-2 attention (local-global queries) for any even input size."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, _, H, W = x.shape
        q = self.q(x)
        Hq, Wq = q.shape[-2:]
        q = q.reshape(B, self.num_heads, -1, Hq * Wq).transpose(-1, -2)
        k = self.k(x).reshape(B, self.num_heads, -1, H * W)
        v = self.v(x)
        v_local = self.v_local(v)

        attn = torch.add(_resized_attention_bias(self, Hq * Wq, H * W), q @ k, alpha=self.scale)
        x = _attend_channels_first(attn.softmax(dim=-1), v, v_local).reshape(B, self.dh, Hq, Wq)
        return self.proj(self.act(x))


_SIZE_ADAPTIVE = {Attention2d: SizeAdaptiveAttention2d, Attention2dDownsample: SizeAdaptiveAttention2dDownsample}


class _FoldingConvNorm(FoldingConvNorm, ConvNorm):
    """EfficientFormerV2's conv + BatchNorm; in eval mode the BatchNorm is folded into the conv at every call
    (``zoo.layers.onednn.FoldingConvNorm``)."""


class _FoldingConvNormAct(FoldingConvNorm, ConvNormAct):
    """timm's conv + BatchNorm + activation; in eval mode one fused call (``zoo.layers.onednn.FoldingConvNorm``)."""


class _FusedConvMlp(ConvMlp):
    """timm's ConvMlp (the RCM's MLP) with the activation fused into ``fc1`` in inference calls."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = conv_mlp(x, self)
        return super().forward(x) if y is None else y


#: timm classes run by faster subclasses: same parameters, module tree and arithmetic up to float rounding. In
#: eval mode BatchNorms fold into their convolutions and activations fuse into them (one pass over each output
#: instead of two or three; BatchNorm and GELU were ~15% of the time).
_FASTER = {ConvNorm: _FoldingConvNorm, ConvNormAct: _FoldingConvNormAct, ConvMlp: _FusedConvMlp}


def _use_faster_modules(module: nn.Module) -> None:
    for m in module.modules():
        if type(m) in _FASTER:
            m.__class__ = _FASTER[type(m)]


class EfficientFormerV2Backbone(EfficientFormerV2):
    """timm's EfficientFormerV2 as a dense-prediction backbone: returns the four stage outputs (strides 4-32),
    takes any input size divisible by 32, and has no final norm or classifier (as in the official
    segmentation backbone).

    Args:
        bias_resolution: input size whose token grid defines the attention-bias tables (512 in CGRSeg).
        norm_eval: keep every BatchNorm in eval mode (running statistics, not updated) while the rest trains,
            as the official backbone always does (its ``train()``); their affine parameters still learn.
        kwargs: ``EfficientFormerV2`` arguments (depths, embed_dims, mlp_ratios, num_vit, in_chans, ...).
    """

    def __init__(self, bias_resolution: int = 512, norm_eval: bool = True, **kwargs: Any) -> None:
        super().__init__(img_size=bias_resolution, num_classes=0, global_pool='', **kwargs)
        self.norm_eval = norm_eval
        self.norm = nn.Identity()
        self.head_dist = None
        for module in self.modules():
            # same parameters and buffers; only forward changes (token counts taken from the input)
            if type(module) in _SIZE_ADAPTIVE:
                module.__class__ = _SIZE_ADAPTIVE[type(module)]
        _use_faster_modules(self)

    def train(self, mode: bool = True) -> 'EfficientFormerV2Backbone':
        super().train(mode)
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        return self.forward_intermediates(x, intermediates_only=True)


class PrototypeGuidance(nn.Module):
    """Dynamic Prototype Guidance: attention-pool the class prototypes into one context vector and use it to
    re-weight the feature channels (``x * sigmoid(mlp(context))``)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv_mask = nn.Conv2d(dim, 1, kernel_size=1)
        self.channel_mul_conv = nn.Sequential(
            nn.Conv2d(dim, dim, kernel_size=1),
            nn.LayerNorm([dim, 1, 1]),
            nn.ReLU(inplace=True),
            nn.Conv2d(dim, dim, kernel_size=1),
        )
        nn.init.kaiming_normal_(self.conv_mask.weight, mode='fan_in', nonlinearity='relu')
        nn.init.zeros_(self.conv_mask.bias)
        nn.init.zeros_(self.channel_mul_conv[-1].weight)
        nn.init.zeros_(self.channel_mul_conv[-1].bias)

    def forward(self, x: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
        """x: (B, C, H, W) features; prototypes: (B, C, K, 1), one per class."""
        B, C = prototypes.shape[:2]
        weights = self.conv_mask(prototypes).flatten(2).softmax(dim=-1)  # (B, 1, K)
        context = (prototypes.flatten(2) @ weights.transpose(1, 2)).view(B, C, 1, 1)
        return x * torch.sigmoid(self.channel_mul_conv(context))


class ContextGate(nn.Module):
    """Fuse a local feature map with global context: ``bn(conv(local)) * hsigmoid(bn(conv(global)))``, the
    gate upsampled bilinearly to the local size."""

    def __init__(self, in_chs: int, out_chs: int) -> None:
        super().__init__()
        self.fuse1 = ConvNormAct(in_chs, out_chs, 1, apply_act=False)
        self.fuse2 = ConvNormAct(in_chs, out_chs, 1, apply_act=False)

    def forward(self, local: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        gate = F.interpolate(F.hardsigmoid(self.fuse2(context)), size=local.shape[-2:], mode='bilinear',
                             align_corners=False)
        return self.fuse1(local) * gate


class RCMStack(nn.Module):
    """A sequence of RCMs (the pyramid-context neck)."""

    def __init__(self, dim: int, depth: int, **kwargs: Any) -> None:
        super().__init__()
        self.transformer_blocks = nn.Sequential(*[RectangularSelfCalibrationModule(dim, **kwargs) for _ in range(depth)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.transformer_blocks(x)


def pyramid_pool_concat(features: Sequence[torch.Tensor], stride: int = 2) -> torch.Tensor:
    """Average-pool every feature map to the last one's size divided by ``stride`` (rounded up) and
    concatenate them along channels."""
    H, W = features[-1].shape[-2:]
    size = ((H - 1) // stride + 1, (W - 1) // stride + 1)
    return torch.cat([F.adaptive_avg_pool2d(f, size) for f in features], dim=1)


def gather_class_prototypes(features: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """(B, C, K, 1) class prototypes: the features averaged with each class's spatial softmax of ``logits``."""
    B, C = features.shape[:2]
    K = logits.shape[1]
    probs = logits.reshape(B, K, -1).softmax(dim=-1)  # (B, K, HW)
    prototypes = probs @ features.reshape(B, C, -1).transpose(1, 2)  # (B, K, C)
    return prototypes.transpose(1, 2).unsqueeze(-1)


class CGRSegHead(nn.Module):
    """The CGRSeg decode head (RCM pyramid context, top-down gated fusion, DPG classification).

    Args:
        in_channels: channels of the stride-8/16/32 features it reads.
        channels: width of the fused features and of the classifier input.
        num_classes: number of classes (0: ``forward`` returns the refined stride-8 features).
        band_kernel_size: band length of the per-level RCMs (``dw_size`` in the official configs).
        neck_band_kernel_size: band length of the pyramid-context RCMs (``neck_size``).
        neck_depth: number of pyramid-context RCMs (``next_repeat``).
        mlp_ratio: RCM MLP ratio.
        drop_rate: dropout (2-D, channel-wise) before the classifier.
    """

    def __init__(
            self,
            in_channels: Sequence[int],
            channels: int,
            num_classes: int = 150,
            band_kernel_size: int = 11,
            neck_band_kernel_size: int = 11,
            neck_depth: int = 5,
            mlp_ratio: float = 2.,
            square_kernel_size: int = 3,
            ratio: int = 1,
            drop_rate: float = 0.1,
    ) -> None:
        super().__init__()
        self.in_channels = list(in_channels)
        self.channels = channels
        self.num_classes = num_classes
        self.linear_fuse = ConvNormAct(channels, channels, 1, groups=channels, act_layer=nn.ReLU)
        self.trans = RCMStack(
            sum(self.in_channels), neck_depth, band_kernel_size=neck_band_kernel_size, mlp_ratio=mlp_ratio,
            square_kernel_size=square_kernel_size)
        self.SIM = nn.ModuleList([ContextGate(c, channels) for c in self.in_channels])
        self.meta = nn.ModuleList([
            RectangularSelfCalibrationModule(
                c, band_kernel_size=band_kernel_size, mlp_ratio=mlp_ratio, square_kernel_size=square_kernel_size,
                ratio=ratio)
            for c in self.in_channels])
        self.conv = nn.ModuleList([nn.Conv2d(channels, c, kernel_size=1) for c in self.in_channels[:-1]])
        self.lgc = PrototypeGuidance(channels)
        self.dropout = nn.Dropout2d(drop_rate) if drop_rate > 0 else nn.Identity()
        self.conv_seg = nn.Conv2d(channels, num_classes, kernel_size=1) if num_classes > 0 else None
        if self.conv_seg is not None:
            nn.init.normal_(self.conv_seg.weight, std=0.01)
            nn.init.zeros_(self.conv_seg.bias)
        _use_faster_modules(self)

    def reset_classifier(self, num_classes: int) -> None:
        ref = self.linear_fuse.conv.weight
        self.num_classes = num_classes
        self.conv_seg = None
        if num_classes > 0:
            self.conv_seg = nn.Conv2d(self.channels, num_classes, kernel_size=1, device=ref.device, dtype=ref.dtype)
            nn.init.normal_(self.conv_seg.weight, std=0.01)
            nn.init.zeros_(self.conv_seg.bias)

    def fuse_levels(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """Stride-8 features fused from the stride-8/16/32 inputs and the pyramid context."""
        context = self.trans(pyramid_pool_concat(features)).split(self.in_channels, dim=1)
        x = None
        for i in range(len(self.in_channels) - 1, -1, -1):
            local = features[i]
            if x is not None:
                local = local + self.conv[i](F.interpolate(x, size=local.shape[-2:], mode='bilinear',
                                                           align_corners=False))
            x = self.SIM[i](self.meta[i](local), context[i])
        return x

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_seg(self.dropout(x))

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        x = self.fuse_levels(features)
        if self.conv_seg is None:
            return x
        coarse = self.classify(self.linear_fuse(x))
        guided = self.lgc(x, gather_class_prototypes(x, coarse)) + x
        return self.classify(guided)


class CGRSeg(nn.Module):
    """CGRSeg semantic segmentation model: EfficientFormerV2 backbone + CGRSeg head.

    Args:
        depths, embed_dims, mlp_ratios, num_vit: EfficientFormerV2 configuration of the backbone.
        head_channels: width of the head.
        band_kernel_size, neck_band_kernel_size, neck_depth: RCM settings of the head.
        num_classes: number of classes (150 for ADE20K; 0 gives the head's stride-8 features).
        in_chans: input channels.
        drop_rate: dropout before the classifier.
        drop_path_rate: stochastic depth of the backbone.
        bias_resolution: input size whose token grid defines the backbone's attention-bias tables.
        in_index: the backbone stages the head reads.
        backbone_norm_eval: keep the backbone's BatchNorms in eval mode in training, as the official model does.
    """
    output_stride = 8

    def __init__(
            self,
            depths: Sequence[int],
            embed_dims: Sequence[int],
            mlp_ratios: Sequence[Any],
            num_vit: int,
            head_channels: int,
            band_kernel_size: int = 11,
            neck_band_kernel_size: int = 11,
            neck_depth: int = 5,
            num_classes: int = 150,
            in_chans: int = 3,
            drop_rate: float = 0.1,
            drop_path_rate: float = 0.,
            bias_resolution: int = 512,
            in_index: Sequence[int] = (1, 2, 3),
            backbone_norm_eval: bool = True,
    ) -> None:
        super().__init__()
        self.in_chans = in_chans
        self.num_classes = num_classes
        self.in_index = tuple(in_index)
        self.backbone = EfficientFormerV2Backbone(
            bias_resolution=bias_resolution, depths=depths, embed_dims=embed_dims, mlp_ratios=mlp_ratios,
            num_vit=num_vit, in_chans=in_chans, drop_path_rate=drop_path_rate, norm_eval=backbone_norm_eval)
        self.decode_head = CGRSegHead(
            [embed_dims[i] for i in self.in_index], head_channels, num_classes=num_classes,
            band_kernel_size=band_kernel_size, neck_band_kernel_size=neck_band_kernel_size, neck_depth=neck_depth,
            drop_rate=drop_rate)
        self.num_features = self.head_hidden_size = head_channels
        self.feature_info = [dict(info, module=f'backbone.{info["module"]}') for info in self.backbone.feature_info]

    @torch.jit.ignore
    def no_weight_decay(self) -> set:
        return {f'backbone.{k}' for k in self.backbone.no_weight_decay()}

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.backbone.set_grad_checkpointing(enable)

    @torch.jit.ignore
    def get_classifier(self) -> Optional[nn.Module]:
        return self.decode_head.conv_seg

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        """Replace the (shared) classifier; ``global_pool`` is accepted for timm compatibility and ignored."""
        self.num_classes = num_classes
        self.decode_head.reset_classifier(num_classes)

    def forward_features(self, x: torch.Tensor) -> List[torch.Tensor]:
        """The backbone's four stage outputs (strides 4, 8, 16, 32)."""
        check_image_input(x, self.in_chans, divisor=32, min_size=32, name=type(self).__name__)
        return self.backbone(x)

    def forward_head(self, features: Sequence[torch.Tensor], pre_logits: bool = False) -> torch.Tensor:
        """Per-class logits at stride 8 (``pre_logits``: the head's fused stride-8 features)."""
        selected = [features[i] for i in self.in_index]
        if pre_logits:
            return self.decode_head.fuse_levels(selected)
        return self.decode_head(selected)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Per-class logits at the input resolution (bilinear upsampling of the stride-8 logits); with
        ``num_classes=0`` the head's fused features at stride 8."""
        out = self.forward_head(self.forward_features(x))
        if self.num_classes == 0:
            return out
        if not torch.is_grad_enabled():
            # inference: channels-last, where PyTorch's bilinear kernel vectorizes over the channels (the classes),
            # ~1.5x faster on this largest tensor of the model (same interpolation weights; the logits come back
            # channels-last). Not with autograd: that layout's backward kernel is slower than NCHW's.
            out = out.contiguous(memory_format=torch.channels_last)
        return F.interpolate(out, size=x.shape[-2:], mode='bilinear', align_corners=False)

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """(B, H, W) class indices at the input resolution."""
        return self.forward(x).argmax(dim=1)

    def forward_intermediates(
            self,
            x: torch.Tensor,
            indices: Optional[Union[int, List[int]]] = None,
            norm: bool = False,
            stop_early: bool = False,
            output_fmt: str = 'NCHW',
            intermediates_only: bool = False,
    ) -> Union[List[torch.Tensor], Tuple[torch.Tensor, List[torch.Tensor]]]:
        """The backbone's stage outputs, with timm's semantics (``final`` is the last stage's output)."""
        check_image_input(x, self.in_chans, divisor=32, min_size=32, name=type(self).__name__)
        return self.backbone.forward_intermediates(
            x, indices=indices, stop_early=stop_early, output_fmt=output_fmt, intermediates_only=intermediates_only)

    def prune_intermediate_layers(
            self,
            indices: Union[int, List[int]] = 1,
            prune_norm: bool = False,
            prune_head: bool = True,
    ) -> List[int]:
        """Keep the backbone up to the last wanted stage; drops the decode head (features-only use)."""
        take_indices = self.backbone.prune_intermediate_layers(indices, prune_norm=prune_norm, prune_head=True)
        if prune_head:
            self.decode_head = None
        return take_indices


# official backbone (mmseg layout) -> timm's EfficientFormerV2 layout, applied to the key after the module
_BLOCK_RULES = [
    (r'^layer_scale_([12])$', r'ls\1.gamma'),
    (r'^mlp\.fc([12])\.', r'mlp.fc\1.conv.'),
    (r'^mlp\.norm([12])\.', r'mlp.fc\1.bn.'),
    (r'^mlp\.mid\.', 'mlp.mid.conv.'),
    (r'^mlp\.mid_norm\.', 'mlp.mid.bn.'),
    (r'^token_mixer\.(q|k|v|v_local|stride_conv)\.0\.', r'token_mixer.\1.conv.'),
    (r'^token_mixer\.(q|k|v|v_local|stride_conv)\.1\.', r'token_mixer.\1.bn.'),
    (r'^token_mixer\.proj\.1\.', 'token_mixer.proj.conv.'),
    (r'^token_mixer\.proj\.2\.', 'token_mixer.proj.bn.'),
    (r'^token_mixer\.attention_biases_seg$', 'token_mixer.attention_biases'),
]
_DOWNSAMPLE_RULES = [
    (r'^(proj|conv)\.', 'conv.conv.'),
    (r'^(norm|bn)\.', 'conv.bn.'),
    (r'^attn\.q\.local\.0\.', 'attn.q.local.'),
    (r'^attn\.q\.proj\.0\.', 'attn.q.proj.conv.'),
    (r'^attn\.q\.proj\.1\.', 'attn.q.proj.bn.'),
    (r'^attn\.(k|v|v_local)\.0\.', r'attn.\1.conv.'),
    (r'^attn\.(k|v|v_local)\.1\.', r'attn.\1.bn.'),
    (r'^attn\.proj\.1\.', 'attn.proj.conv.'),
    (r'^attn\.proj\.2\.', 'attn.proj.bn.'),
    (r'^attn\.attention_biases_seg$', 'attn.attention_biases'),
]
_STEM = {'0': 'conv1.conv', '1': 'conv1.bn', '3': 'conv2.conv', '4': 'conv2.bn'}
# the official backbone stores index tables and an unused 224-pixel bias table as state; timm recomputes them
_DROPPED = re.compile(r'\.attention_bias(es|_idxs|_idxs_seg)$')


def _map_backbone_key(key: str) -> str:
    m = re.match(r'patch_embed\.(\d)\.(.+)$', key)
    if m:
        return f'stem.{_STEM[m.group(1)]}.{m.group(2)}'
    m = re.match(r'network\.(\d+)\.(.+)$', key)
    if not m:
        raise KeyError(f'unexpected CGRSeg backbone key {key!r}')
    index, rest = int(m.group(1)), m.group(2)
    if index % 2 == 0:
        block, rest = rest.split('.', 1)
        prefix, rules = f'stages.{index // 2}.blocks.{block}.', _BLOCK_RULES
    else:
        prefix, rules = f'stages.{(index + 1) // 2}.downsample.', _DOWNSAMPLE_RULES
    for pattern, repl in rules:
        if re.match(pattern, rest):
            return prefix + re.sub(pattern, repl, rest)
    return prefix + rest


# ImageNet classification parts of an EfficientFormerV2 checkpoint, which segmentation does not use
_CLASSIFICATION_ONLY = re.compile(r'^(norm|head|head_dist|dist_head)\.')


def imagenet_backbone_state_dict(state_dict: Dict[str, torch.Tensor], model: CGRSeg) -> Dict[str, torch.Tensor]:
    """An ImageNet EfficientFormerV2 checkpoint (timm's or the official layout) as a full CGRSeg state dict: its
    backbone weights, with everything else at the model's own initial values.

    As in the official training's start (mmseg ``init_cfg=Pretrained`` with ``eformer_*_450.pth``, loaded
    non-strictly): the classifier is left out, and the attention biases start at zero, because the official
    segmentation backbone keeps its biases (for the 512-pixel grid) in parameters that the 224-pixel
    ImageNet checkpoint does not have.
    """
    official = any(k.startswith(('network.', 'patch_embed.')) for k in state_dict)
    out = {k: v.clone() for k, v in model.state_dict().items()}
    mismatched = []
    for k, v in state_dict.items():
        if _CLASSIFICATION_ONLY.match(k) or _DROPPED.search(k):
            continue
        key = 'backbone.' + (_map_backbone_key(k) if official else k)
        if key.endswith('.gamma'):
            v = v.reshape(-1)
        if key not in out or out[key].shape != v.shape:
            mismatched.append(key)
            continue
        out[key] = v
    if mismatched:
        raise ValueError(f'{len(mismatched)} ImageNet backbone weights do not fit {type(model).__name__}\'s backbone '
                         f'(e.g. {mismatched[:3]}); is the checkpoint for another EfficientFormerV2 width?')
    for key in out:
        if key.startswith('backbone.') and key.endswith('.attention_biases'):
            out[key] = torch.zeros_like(out[key])
    return out


def checkpoint_filter_fn(state_dict: Dict[str, torch.Tensor], model: CGRSeg) -> Dict[str, torch.Tensor]:
    """Official mmseg checkpoint (``backbone.*`` in the official EfficientFormerV2 layout, ``decode_head.*``)
    -> this model's layout; an ImageNet EfficientFormerV2 checkpoint -> backbone weights
    (:func:`imagenet_backbone_state_dict`). Checkpoints already in this layout pass through."""
    state_dict = unwrap_state_dict(state_dict)
    if 'backbone.stem.conv1.conv.weight' in state_dict:
        return state_dict
    if 'stem.conv1.conv.weight' in state_dict or 'patch_embed.0.weight' in state_dict:
        return imagenet_backbone_state_dict(state_dict, model)
    out = {}
    for k, v in state_dict.items():
        if k.startswith('backbone.'):
            if _DROPPED.search(k):
                continue
            k = 'backbone.' + _map_backbone_key(k[len('backbone.'):])
            if k.endswith('.gamma'):
                v = v.reshape(-1)
        elif not k.startswith('decode_head.'):
            continue  # e.g. an auxiliary head, which CGRSeg configs do not use
        out[k] = v
    return out


def _create_cgrseg(variant: str, pretrained: bool = False, **kwargs: Any) -> CGRSeg:
    out_indices = kwargs.pop('out_indices', (0, 1, 2, 3))
    return build_model_with_cfg(
        CGRSeg, variant, pretrained,
        pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(out_indices=out_indices, feature_cls='getter'),
        **kwargs)


def _cfg(url: str = '', **kwargs: Any) -> Dict[str, Any]:
    return {
        'url': url,
        'num_classes': 150, 'input_size': (3, 512, 512), 'pool_size': None, 'fixed_input_size': False,
        'crop_pct': 1.0, 'interpolation': 'bilinear',
        'mean': IMAGENET_DEFAULT_MEAN, 'std': IMAGENET_DEFAULT_STD,
        'first_conv': 'backbone.stem.conv1.conv', 'classifier': 'decode_head.conv_seg',
        'paper_ids': 'arXiv:2405.06228', 'paper_name': 'Context-Guided Spatial Feature Reconstruction for '
                                                      'Efficient Semantic Segmentation',
        'origin_url': 'https://github.com/nizhenliang/CGRSeg',
        **kwargs,
    }


# The authors have not released trained weights (nizhenliang/CGRSeg issue #2); load a checkpoint of your own
# training with the official code, or of zoo's, with pretrained=True, pretrained_cfg_overlay=dict(file=PATH).
# The ``snap_dist_in1k`` tags start the backbone from timm's copies of the ImageNet EfficientFormerV2 weights the
# official training starts from (eformer_s1 / s2 / l _450.pth), the head from scratch.
default_cfgs = generate_default_cfgs({
    'cgrseg_t.snap_dist_in1k': _cfg(hf_hub_id='timm/efficientformerv2_s1.snap_dist_in1k'),
    'cgrseg_b.snap_dist_in1k': _cfg(hf_hub_id='timm/efficientformerv2_s2.snap_dist_in1k'),
    'cgrseg_l.snap_dist_in1k': _cfg(hf_hub_id='timm/efficientformerv2_l.snap_dist_in1k'),
    # the default ('*'; listed after the tags with weights, which timm would otherwise put first): no trained
    # segmentation weights are released
    'cgrseg_t.untrained*': _cfg(),
    'cgrseg_b.untrained*': _cfg(),
    'cgrseg_l.untrained*': _cfg(),
})


def _backbone_args(name: str) -> Dict[str, Any]:
    return dict(depths=EfficientFormer_depth[name], embed_dims=EfficientFormer_width[name],
                mlp_ratios=EfficientFormer_expansion_ratios[name])


_CONTRACT = dict(task='segmentation', contract_input_size=(3, 64, 64), input_divisor=32)
_LARGER = dict(_CONTRACT, contract_slow=True)  # the contract runs the larger variants with the slow tests


@register_model(**_CONTRACT)
def cgrseg_t(pretrained: bool = False, **kwargs: Any) -> CGRSeg:
    """CGRSeg-T: EfficientFormerV2-S1 backbone, 128-wide head (ADE20K 43.6 mIoU, 4.0 GFLOPs at 512x512)."""
    model_args = dict(**_backbone_args('S1'), num_vit=2, drop_path_rate=0., head_channels=128,
                      band_kernel_size=11, neck_band_kernel_size=11, neck_depth=5)
    return _create_cgrseg('cgrseg_t', pretrained=pretrained, **dict(model_args, **kwargs))


@register_model(**_LARGER)
def cgrseg_b(pretrained: bool = False, **kwargs: Any) -> CGRSeg:
    """CGRSeg-B: EfficientFormerV2-S2 backbone, 256-wide head."""
    model_args = dict(**_backbone_args('S2'), num_vit=4, drop_path_rate=0.02, head_channels=256,
                      band_kernel_size=11, neck_band_kernel_size=11, neck_depth=6)
    return _create_cgrseg('cgrseg_b', pretrained=pretrained, **dict(model_args, **kwargs))


@register_model(**_LARGER)
def cgrseg_l(pretrained: bool = False, **kwargs: Any) -> CGRSeg:
    """CGRSeg-L: EfficientFormerV2-L backbone, 256-wide head, band length 9."""
    model_args = dict(**_backbone_args('L'), num_vit=6, drop_path_rate=0.1, head_channels=256,
                      band_kernel_size=9, neck_band_kernel_size=9, neck_depth=5)
    return _create_cgrseg('cgrseg_l', pretrained=pretrained, **dict(model_args, **kwargs))
