"""MindSpore twins of SqueezeTime (K400 / K600 / HMDB51 heads on the ResNet-50-depth network), module for module.

A clip (B, C, T, H, W) is folded into a (B, C*T, H, W) image (channel index c*T + t, as in torch) and run
through the 2D network of Channel-Time Learning bottlenecks; the output is the clip logits. Attribute names
follow ``zoo.models.squeezetime`` so that weights convert by leaf renames alone. The clip length is fixed at
construction (``num_frames``), as in torch; the frame size is free down to ``MIN_FRAME_SIZE``, the position
embeddings being resized bilinearly (corners aligned) to each stage's map.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from mindspore import Parameter, Tensor, nn, ops

from ..models.squeezetime import MIN_FRAME_SIZE
from .layers import BatchNorm2d, Conv2d, DropPath, GlobalAvgPool, Linear
from .layers.video_checks import check_clip_shape
from .registry import register_twin

__all__ = ['SqueezeTime', 'SQUEEZETIME_VARIANTS']

#: Registered name -> classes of its head; all three share the ResNet-50-depth network.
SQUEEZETIME_VARIANTS = {'squeezetime_k400': 400, 'squeezetime_k600': 600, 'squeezetime_hmdb51': 51}

_LAYERS = (3, 4, 6, 3)
_WIDTHS = (64, 128, 256, 512)
_EXPANSION = 4


def _conv1x1(in_chs: int, out_chs: int) -> nn.Conv2d:
    return Conv2d(in_chs, out_chs, 1, bias=False)


def resize_pos_embed_to(pos_embed: Tensor, x: Tensor) -> Tensor:
    """A (1, C, h, w) position embedding resized bilinearly (corners aligned) to the spatial size of ``x``."""
    if pos_embed.shape[2] == x.shape[2] and pos_embed.shape[3] == x.shape[3]:
        return pos_embed
    return ops.interpolate(pos_embed, size=(x.shape[2], x.shape[3]), mode='bilinear', align_corners=True)


class _ContextPath(nn.SequentialCell):
    """The interaction branch's ``glo_conv`` (children ``0`` .. ``7``), with the position embedding added to the
    input of child ``pos_embed_index`` (the 7x7 convolution)."""
    pos_embed_index = 3

    def construct(self, x, pos_embed):
        for i, layer in enumerate(self.cell_list):
            if i == self.pos_embed_index:
                x = x + resize_pos_embed_to(pos_embed, x)
            x = layer(x)
        return x


class InterTemporalInteraction(nn.Cell):
    """CTL's inter-temporal object interaction branch: ``short_conv(x)`` times a sigmoid map from a narrow
    context path on the gated input plus a learned position embedding."""

    def __init__(self, in_chs: int, out_chs: int, pos_dim: int = 7, context_chs: int = 16):
        super().__init__()
        self.short_conv = Conv2d(in_chs, out_chs, 3, padding=1)
        self.glo_conv = _ContextPath([
            Conv2d(in_chs, context_chs, 3, padding=1), BatchNorm2d(context_chs), nn.ReLU(),
            Conv2d(context_chs, context_chs, 7, padding=3), BatchNorm2d(context_chs), nn.ReLU(),
            Conv2d(context_chs, out_chs, 3, padding=1), nn.Sigmoid(),
        ])
        self.pos_embed = Parameter(Tensor(np.zeros((1, context_chs, pos_dim, pos_dim), np.float32)))

    def construct(self, x, gate):
        return self.short_conv(x) * self.glo_conv(x * gate, self.pos_embed)


class ChannelTimeLearning(nn.Cell):
    """CTL module: a per-channel (frame x feature) sigmoid gate from global context, then a 1x1 ``temporal_conv``
    of the gated input plus the interaction branch."""

    def __init__(self, in_chs: int, out_chs: int, pos_dim: int = 7, context_chs: int = 16):
        super().__init__()
        self.param_conv = nn.SequentialCell([
            GlobalAvgPool(), _conv1x1(in_chs, in_chs), BatchNorm2d(in_chs), nn.ReLU(), _conv1x1(in_chs, in_chs),
            nn.Sigmoid(),
        ])
        self.temporal_conv = _conv1x1(in_chs, out_chs)
        self.spatial_conv = InterTemporalInteraction(in_chs, out_chs, pos_dim=pos_dim, context_chs=context_chs)

    def construct(self, x):
        gate = self.param_conv(x)
        return self.temporal_conv(x * gate) + self.spatial_conv(x, gate)


def _conv_bn(conv: nn.Cell, chs: int) -> nn.SequentialCell:
    return nn.SequentialCell([conv, BatchNorm2d(chs)])


class CtlBottleneck(nn.Cell):
    """1x1 -> CTL -> 1x1 bottleneck (expansion 4), after a depthwise 2x2 stride-2 ``downsample`` when
    ``stride == 2``; ``shortcut_conv`` projects the shortcut when the width changes."""

    def __init__(self, in_chs: int, planes: int, stride: int = 1, pos_dim: int = 7, context_chs: int = 16,
                 drop_path: float = 0.):
        super().__init__()
        out_chs = planes * _EXPANSION
        self.downsample = _conv_bn(Conv2d(in_chs, in_chs, 2, stride=2, groups=in_chs), in_chs) \
            if stride == 2 else None
        self.shortcut_conv = _conv_bn(_conv1x1(in_chs, out_chs), out_chs) if in_chs != out_chs else None
        self.conv1 = _conv1x1(in_chs, planes)
        self.bn1 = BatchNorm2d(planes)
        self.conv2 = ChannelTimeLearning(planes, planes, pos_dim=pos_dim, context_chs=context_chs)
        self.bn2 = BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, out_chs)
        self.bn3 = BatchNorm2d(out_chs)
        self.act = nn.ReLU()
        self.drop_path = DropPath(drop_path) if drop_path > 0. else nn.Identity()

    def construct(self, x):
        if self.downsample is not None:
            x = self.downsample(x)
        shortcut = x if self.shortcut_conv is None else self.shortcut_conv(x)
        out = self.act(self.bn1(self.conv1(x)))
        out = self.act(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.act(self.drop_path(out) + shortcut)


class SqueezeTime(nn.Cell):
    """SqueezeTime video classifier: (B, in_chans, num_frames, H, W) clips -> (B, num_classes) logits
    (pooled features when ``num_classes`` is 0). Arguments as for the torch model."""

    def __init__(self, layers: Sequence[int] = _LAYERS, widths: Sequence[int] = _WIDTHS,
                 pos_dims: Sequence[int] = (56, 28, 14, 7), num_frames: int = 16, in_chans: int = 3,
                 num_classes: int = 400, drop_path_rate: float = 0., context_chs: int = 16):
        super().__init__()
        if not len(layers) == len(widths) == len(pos_dims) == 4:
            raise ValueError('layers, widths and pos_dims need one entry for each of the 4 stages')
        self.num_classes = num_classes
        self.num_frames = num_frames
        self.in_chans = in_chans
        stem_chs = widths[0]
        self.conv1 = Conv2d(in_chans * num_frames, stem_chs, 5, stride=2, padding=2, bias=False)
        self.bn1 = BatchNorm2d(stem_chs)
        self.act1 = nn.ReLU()
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, pad_mode='pad', padding=1)

        dpr = np.linspace(0, drop_path_rate, sum(layers)).tolist()
        in_chs, block_idx = stem_chs, 0
        for i, (depth, planes, pos_dim) in enumerate(zip(layers, widths, pos_dims)):
            blocks = []
            for j in range(depth):
                stride = 2 if i > 0 and j == 0 else 1
                blocks.append(CtlBottleneck(in_chs, planes, stride=stride, pos_dim=pos_dim, context_chs=context_chs,
                                            drop_path=dpr[block_idx]))
                in_chs = planes * _EXPANSION
                block_idx += 1
            setattr(self, f'layer{i + 1}', nn.SequentialCell(blocks))
        self.num_features = in_chs
        self.fc = Linear(in_chs, num_classes) if num_classes > 0 else nn.Identity()

    def _stem(self, x: Tensor) -> Tensor:
        """Check the clip, fold time into channels (c*T + t), then conv, BN, ReLU."""
        check_clip_shape(x.shape, self.in_chans, self.num_frames, MIN_FRAME_SIZE, 'SqueezeTime')
        x = x.reshape(x.shape[0], x.shape[1] * x.shape[2], x.shape[3], x.shape[4])
        return self.act1(self.bn1(self.conv1(x)))

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.maxpool(self._stem(x))
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        return self.layer4(x)

    def forward_intermediates(self, x: Tensor) -> list:
        """The torch model's ``forward_intermediates(x, intermediates_only=True)``: the stem, then each stage."""
        x = self._stem(x)
        out = [x]
        x = self.layer1(self.maxpool(x))
        out.append(x)
        x = self.layer2(x)
        out.append(x)
        x = self.layer3(x)
        out.append(x)
        x = self.layer4(x)
        out.append(x)
        return out

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """Global average pool, then the classifier (inference: the head's dropout is the identity)."""
        x = ops.mean(x, (2, 3))
        return x if pre_logits else self.fc(x)

    def construct(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


def _squeezetime_kwargs(model: Any) -> dict:
    """Builder kwargs of a torch SqueezeTime: classes, channels, clip length and the position-embedding sides."""
    pos_dims = tuple(getattr(model, f'layer{i}')[0].conv2.spatial_conv.pos_embed.shape[-1] for i in range(1, 5))
    return dict(num_classes=model.num_classes, in_chans=model.in_chans, num_frames=model.num_frames,
                pos_dims=pos_dims)


@register_twin(*SQUEEZETIME_VARIANTS, kwargs_from_torch=_squeezetime_kwargs)
def create_squeezetime(variant: str, num_classes: int | None = None, in_chans: int = 3, num_frames: int = 16,
                       pos_dims: Sequence[int] = (56, 28, 14, 7), drop_path_rate: float = 0.) -> SqueezeTime:
    """The MindSpore twin of SqueezeTime ``variant`` (its own head size unless ``num_classes`` is given)."""
    if num_classes is None:
        num_classes = SQUEEZETIME_VARIANTS[variant]
    return SqueezeTime(pos_dims=pos_dims, num_frames=num_frames, in_chans=in_chans, num_classes=num_classes,
                       drop_path_rate=drop_path_rate)
