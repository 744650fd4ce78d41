"""MindSpore twin of the CGRSeg decode head (:class:`zoo.models.cgrseg.CGRSegHead`): RCM pyramid context,
top-down gated fusion (``SIM``), and the Dynamic Prototype Guidance (``lgc``) before the classifier.
Cell names follow the torch head, which keeps the official parameter names. Inference only (dropout is the
identity)."""
from __future__ import annotations

from typing import Sequence

from mindspore import Tensor, nn, ops

from ..layers import Conv2d, HardSigmoid
from ..layers.adaptive_pool import adaptive_avg_pool2d
from ..layers.rectangular_self_calibration import RectangularSelfCalibrationModule
from .efficientformer_v2 import ConvNorm

__all__ = ['CGRSegHead']


def _bilinear(x: Tensor, size: tuple[int, int]) -> Tensor:
    return ops.interpolate(x, size=size, mode='bilinear', align_corners=False)


def _channel_layer_norm(dim: int) -> nn.LayerNorm:
    """torch's ``LayerNorm([dim, 1, 1])`` on (B, dim, 1, 1) (axes given from the front: MindSpore's LayerNorm
    refuses a negative ``begin_norm_axis`` below -1)."""
    return nn.LayerNorm((dim, 1, 1), begin_norm_axis=1, begin_params_axis=1, epsilon=1e-5)


class PrototypeGuidance(nn.Cell):
    """Attention-pool the class prototypes into one context vector; re-weight the channels by
    ``sigmoid(channel_mul_conv(context))``."""

    def __init__(self, dim: int):
        super().__init__()
        self.conv_mask = Conv2d(dim, 1, 1)
        self.channel_mul_conv = nn.SequentialCell([
            Conv2d(dim, dim, 1), _channel_layer_norm(dim), nn.ReLU(), Conv2d(dim, dim, 1)])

    def construct(self, x: Tensor, prototypes: Tensor) -> Tensor:
        B, C, K = prototypes.shape[0], prototypes.shape[1], prototypes.shape[2]
        weights = ops.softmax(self.conv_mask(prototypes).reshape(B, 1, K), -1)
        context = ops.matmul(prototypes.reshape(B, C, K), ops.transpose(weights, (0, 2, 1))).reshape(B, C, 1, 1)
        return x * ops.sigmoid(self.channel_mul_conv(context))


class ContextGate(nn.Cell):
    """``bn(conv(local)) * upsample(hsigmoid(bn(conv(global))))``."""

    def __init__(self, in_chs: int, out_chs: int):
        super().__init__()
        self.fuse1 = ConvNorm(in_chs, out_chs, bias=False)
        self.fuse2 = ConvNorm(in_chs, out_chs, bias=False)
        self.gate = HardSigmoid()

    def construct(self, local: Tensor, context: Tensor) -> Tensor:
        gate = _bilinear(self.gate(self.fuse2(context)), (local.shape[2], local.shape[3]))
        return self.fuse1(local) * gate


class RCMStack(nn.Cell):
    def __init__(self, dim: int, depth: int, band_kernel_size: int, mlp_ratio: float, square_kernel_size: int):
        super().__init__()
        self.transformer_blocks = nn.SequentialCell([
            RectangularSelfCalibrationModule(dim, band_kernel_size, square_kernel_size, mlp_ratio=mlp_ratio)
            for _ in range(depth)])

    def construct(self, x: Tensor) -> Tensor:
        return self.transformer_blocks(x)


def gather_class_prototypes(features: Tensor, logits: Tensor) -> Tensor:
    """(B, C, K, 1): the features averaged with each class's spatial softmax of ``logits``."""
    B, C, K = features.shape[0], features.shape[1], logits.shape[1]
    probs = ops.softmax(logits.reshape(B, K, -1), -1)
    prototypes = ops.matmul(probs, ops.transpose(features.reshape(B, C, -1), (0, 2, 1)))  # (B, K, C)
    return ops.expand_dims(ops.transpose(prototypes, (0, 2, 1)), -1)


class CGRSegHead(nn.Cell):
    """Stride-8 logits (or, with ``num_classes=0``, the fused stride-8 features) from stride-8/16/32 features."""

    def __init__(self, in_channels: Sequence[int], channels: int, num_classes: int = 150, band_kernel_size: int = 11,
                 neck_band_kernel_size: int = 11, neck_depth: int = 5, mlp_ratio: float = 2.0,
                 square_kernel_size: int = 3, ratio: int = 1):
        super().__init__()
        self.in_channels = tuple(in_channels)
        self.num_classes = num_classes
        self.linear_fuse = ConvNorm(channels, channels, groups=channels, bias=False, act=nn.ReLU())
        self.trans = RCMStack(sum(self.in_channels), neck_depth, neck_band_kernel_size, mlp_ratio, square_kernel_size)
        self.SIM = nn.CellList([ContextGate(c, channels) for c in self.in_channels])
        self.meta = nn.CellList([
            RectangularSelfCalibrationModule(c, band_kernel_size, square_kernel_size, ratio, mlp_ratio)
            for c in self.in_channels])
        self.conv = nn.CellList([Conv2d(channels, c, 1) for c in self.in_channels[:-1]])
        self.lgc = PrototypeGuidance(channels)
        if num_classes > 0:
            self.conv_seg = Conv2d(channels, num_classes, 1)

    def fuse_levels(self, features: Sequence[Tensor]) -> Tensor:
        last = features[-1]
        size = ((last.shape[2] - 1) // 2 + 1, (last.shape[3] - 1) // 2 + 1)
        pooled = ops.cat([adaptive_avg_pool2d(f, size) for f in features], 1)
        context = ops.split(self.trans(pooled), self.in_channels, 1)
        top = len(self.in_channels) - 1
        x = self.SIM[top](self.meta[top](features[top]), context[top])
        for i in range(top - 1, -1, -1):  # top-down: each level adds the upsampled result of the one above
            local = features[i] + self.conv[i](_bilinear(x, (features[i].shape[2], features[i].shape[3])))
            x = self.SIM[i](self.meta[i](local), context[i])
        return x

    def construct(self, features: Sequence[Tensor]) -> Tensor:
        x = self.fuse_levels(features)
        if self.num_classes == 0:
            return x
        coarse = self.conv_seg(self.linear_fuse(x))
        guided = self.lgc(x, gather_class_prototypes(x, coarse)) + x
        return self.conv_seg(guided)
