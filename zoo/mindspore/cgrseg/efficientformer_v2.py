"""MindSpore twin of CGRSeg's backbone: timm's EfficientFormerV2 for any input size divisible by 32
(:class:`zoo.models.cgrseg.EfficientFormerV2Backbone`).

Cell names mirror timm's module tree (``stem.conv1.conv``, ``stages.{i}.downsample.attn.q.local``,
``stages.{i}.blocks.{j}.token_mixer.talking_head1``, ``ls1.gamma``, ...). The attention-bias tables are
defined on the grid of ``bias_resolution`` (512 in CGRSeg); at any other size each (heads, queries, keys) bias
matrix is resized bicubically to the actual token counts, with torch's interpolation weights
(:func:`zoo.mindspore.layers.bicubic_resize.resize_bicubic`), exactly as the torch backbone does. The bias
index tables (non-persistent buffers in torch) are constants here, not parameters.
"""
from __future__ import annotations

import math
from typing import Sequence, Union

import numpy as np
from mindspore import Parameter, Tensor, nn, ops
import mindspore as ms

from ..layers import GELU, BatchNorm2d, Conv2d
from ..layers.bicubic_resize import resize_bicubic

__all__ = ['EfficientFormerV2Backbone', 'ConvNorm']

Size2 = tuple[int, int]


class ConvNorm(nn.Cell):
    """timm's ``ConvNorm`` / ``ConvNormAct``: conv (torch's symmetric padding), BatchNorm, optional activation."""

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int = 1, stride: int = 1,
                 padding: Union[int, None] = None, groups: int = 1, bias: bool = True, act: nn.Cell | None = None):
        super().__init__()
        if padding is None:  # timm's default ('') padding
            padding = ((stride - 1) + (kernel_size - 1)) // 2
        self.conv = Conv2d(in_chs, out_chs, kernel_size, stride=stride, padding=padding, groups=groups, bias=bias)
        self.bn = BatchNorm2d(out_chs)
        self.act = act if act is not None else nn.Identity()

    def construct(self, x: Tensor) -> Tensor:
        return self.act(self.bn(self.conv(x)))


def _grid(h: int, w: int, step: int = 1) -> np.ndarray:
    rows, cols = np.meshgrid(np.arange(0, h, step), np.arange(0, w, step), indexing='ij')
    return np.stack([rows.reshape(-1), cols.reshape(-1)])


def relative_bias_index(resolution: Size2, query_step: int = 1) -> np.ndarray:
    """timm's (queries, keys) index into the bias table: ``|dy| * width + |dx|`` between each query (every
    ``query_step``-th grid point) and each key of the ``resolution`` grid."""
    keys = _grid(*resolution)
    queries = _grid(*resolution, step=query_step)
    rel = np.abs(queries[:, :, None] - keys[:, None, :])
    return (rel[0] * resolution[1] + rel[1]).astype(np.int32)


class _BiasedAttention(nn.Cell):
    """Shared part of both attentions: the bias table gathered and resized to (queries, keys)."""

    def _init_bias(self, num_heads: int, resolution: Size2, query_step: int) -> None:
        self.attention_biases = Parameter(Tensor(np.zeros((num_heads, resolution[0] * resolution[1]), np.float32)))
        self.attention_bias_idxs = Tensor(relative_bias_index(resolution, query_step), ms.int32)

    def resized_bias(self, q_len: int, k_len: int) -> Tensor:
        table = ops.gather(self.attention_biases, self.attention_bias_idxs, 1)  # (heads, queries, keys)
        return resize_bicubic(table, (q_len, k_len))


class Attention2d(_BiasedAttention):
    """EfficientFormerV2 attention with talking heads, a local value conv and an optional stride-2 path,
    for any input size."""

    def __init__(self, dim: int, key_dim: int = 32, num_heads: int = 8, attn_ratio: int = 4,
                 resolution: Size2 = (7, 7), stride: int | None = None):
        super().__init__()
        self.num_heads = num_heads
        self.scale = key_dim ** -0.5
        if stride is not None:
            resolution = tuple(math.ceil(r / stride) for r in resolution)
            self.stride_conv = ConvNorm(dim, dim, 3, stride=stride, groups=dim)
        self.has_stride = stride is not None
        self.upscale = stride or 1
        self.dh = attn_ratio * key_dim * num_heads
        kh = key_dim * num_heads
        self.q = ConvNorm(dim, kh)
        self.k = ConvNorm(dim, kh)
        self.v = ConvNorm(dim, self.dh)
        self.v_local = ConvNorm(self.dh, self.dh, 3, groups=self.dh)
        self.talking_head1 = Conv2d(num_heads, num_heads, 1)
        self.talking_head2 = Conv2d(num_heads, num_heads, 1)
        self.act = GELU()
        self.proj = ConvNorm(self.dh, dim)
        self._init_bias(num_heads, resolution, 1)

    def construct(self, x: Tensor) -> Tensor:
        B = x.shape[0]
        if self.has_stride:
            x = self.stride_conv(x)
        H, W = x.shape[2], x.shape[3]
        N = H * W
        q = ops.transpose(self.q(x).reshape(B, self.num_heads, -1, N), (0, 1, 3, 2))
        k = self.k(x).reshape(B, self.num_heads, -1, N)
        v = self.v(x)
        v_local = self.v_local(v)
        v = ops.transpose(v.reshape(B, self.num_heads, -1, N), (0, 1, 3, 2))
        attn = ops.matmul(q, k) * self.scale + self.resized_bias(N, N)
        attn = self.talking_head2(ops.softmax(self.talking_head1(attn), -1))
        x = ops.transpose(ops.matmul(attn, v), (0, 1, 3, 2)).reshape(B, self.dh, H, W) + v_local
        if self.has_stride:
            x = ops.interpolate(x, size=(H * self.upscale, W * self.upscale), mode='bilinear', align_corners=False)
        return self.proj(self.act(x))


class LocalGlobalQuery(nn.Cell):
    """Stride-2 queries: a strided depthwise conv plus 2x subsampling (torch's ``AvgPool2d(1, 2)``), projected."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.local = Conv2d(in_dim, in_dim, 3, stride=2, padding=1, groups=in_dim)
        self.proj = ConvNorm(in_dim, out_dim)

    def construct(self, x: Tensor) -> Tensor:
        return self.proj(self.local(x) + x[:, :, ::2, ::2])


class Attention2dDownsample(_BiasedAttention):
    """EfficientFormerV2 stride-2 attention (local-global queries) for any even input size."""

    def __init__(self, dim: int, out_dim: int, key_dim: int = 16, num_heads: int = 8, attn_ratio: int = 4,
                 resolution: Size2 = (7, 7)):
        super().__init__()
        self.num_heads = num_heads
        self.scale = key_dim ** -0.5
        self.dh = attn_ratio * key_dim * num_heads
        kh = key_dim * num_heads
        self.q = LocalGlobalQuery(dim, kh)
        self.k = ConvNorm(dim, kh)
        self.v = ConvNorm(dim, self.dh)
        self.v_local = ConvNorm(self.dh, self.dh, 3, stride=2, groups=self.dh)
        self.act = GELU()
        self.proj = ConvNorm(self.dh, out_dim)
        self._init_bias(num_heads, resolution, 2)

    def construct(self, x: Tensor) -> Tensor:
        B, H, W = x.shape[0], x.shape[2], x.shape[3]
        q = self.q(x)
        Hq, Wq = q.shape[2], q.shape[3]
        q = ops.transpose(q.reshape(B, self.num_heads, -1, Hq * Wq), (0, 1, 3, 2))
        k = self.k(x).reshape(B, self.num_heads, -1, H * W)
        v = self.v(x)
        v_local = self.v_local(v)
        v = ops.transpose(v.reshape(B, self.num_heads, -1, H * W), (0, 1, 3, 2))
        attn = ops.softmax(ops.matmul(q, k) * self.scale + self.resized_bias(Hq * Wq, H * W), -1)
        x = ops.transpose(ops.matmul(attn, v), (0, 1, 3, 2)).reshape(B, self.dh, Hq, Wq) + v_local
        return self.proj(self.act(x))


class Downsample(nn.Cell):
    """Stride-2 3x3 ConvNorm, plus the downsampling attention in the last stage."""

    def __init__(self, in_chs: int, out_chs: int, resolution: Size2, use_attn: bool):
        super().__init__()
        self.conv = ConvNorm(in_chs, out_chs, 3, stride=2, padding=1)
        self.use_attn = use_attn
        if use_attn:
            self.attn = Attention2dDownsample(in_chs, out_chs, resolution=resolution)

    def construct(self, x: Tensor) -> Tensor:
        out = self.conv(x)
        if self.use_attn:
            return self.attn(x) + out
        return out


class ConvMlpWithNorm(nn.Cell):
    """1x1 ConvNorm + GELU, depthwise 3x3 ConvNorm + GELU, 1x1 ConvNorm (``fc1``, ``mid``, ``fc2``)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = ConvNorm(dim, hidden, act=GELU())
        self.mid = ConvNorm(hidden, hidden, 3, groups=hidden, act=GELU())
        self.fc2 = ConvNorm(hidden, dim)

    def construct(self, x: Tensor) -> Tensor:
        return self.fc2(self.mid(self.fc1(x)))


class LayerScale2d(nn.Cell):
    """``x * gamma`` per channel (timm's ``LayerScale2d``)."""

    def __init__(self, dim: int, init_value: float = 1e-5):
        super().__init__()
        self.gamma = Parameter(Tensor(np.full((dim,), init_value, np.float32)))

    def construct(self, x: Tensor) -> Tensor:
        return x * self.gamma.reshape(1, -1, 1, 1)


class Block(nn.Cell):
    """Optional attention residual, then the conv-MLP residual, each layer-scaled."""

    def __init__(self, dim: int, mlp_ratio: float, resolution: Size2, stride: int | None, use_attn: bool):
        super().__init__()
        self.use_attn = use_attn
        if use_attn:
            self.token_mixer = Attention2d(dim, resolution=resolution, stride=stride)
            self.ls1 = LayerScale2d(dim)
        self.mlp = ConvMlpWithNorm(dim, int(dim * mlp_ratio))
        self.ls2 = LayerScale2d(dim)

    def construct(self, x: Tensor) -> Tensor:
        if self.use_attn:
            x = x + self.ls1(self.token_mixer(x))
        return x + self.ls2(self.mlp(x))


class Stage(nn.Cell):
    def __init__(self, dim: int, dim_out: int, depth: int, resolution: Size2, downsample: bool,
                 block_stride: int | None, downsample_use_attn: bool, block_use_attn: bool, num_vit: int,
                 mlp_ratios: Sequence[float]):
        super().__init__()
        if downsample:
            self.downsample = Downsample(dim, dim_out, resolution, downsample_use_attn)
            resolution = tuple(math.ceil(r / 2) for r in resolution)
        else:
            self.downsample = nn.Identity()
        first_attn = depth - num_vit  # timm: attention in blocks after index depth - num_vit - 1
        self.blocks = nn.SequentialCell([
            Block(dim_out, mlp_ratios[j], resolution, block_stride, block_use_attn and j >= first_attn)
            for j in range(depth)])

    def construct(self, x: Tensor) -> Tensor:
        return self.blocks(self.downsample(x))


class Stem4(nn.Cell):
    """Two stride-2 3x3 ConvNormAct (GELU) layers."""

    def __init__(self, in_chs: int, out_chs: int):
        super().__init__()
        self.conv1 = ConvNorm(in_chs, out_chs // 2, 3, stride=2, padding=1, act=GELU())
        self.conv2 = ConvNorm(out_chs // 2, out_chs, 3, stride=2, padding=1, act=GELU())

    def construct(self, x: Tensor) -> Tensor:
        return self.conv2(self.conv1(x))


class EfficientFormerV2Backbone(nn.Cell):
    """The four stage outputs (strides 4, 8, 16, 32) of EfficientFormerV2, biases on ``bias_resolution``'s grid.
    With ``norm_eval`` (the official backbone's behaviour) its BatchNorms stay in eval mode in training."""

    def __init__(self, depths: Sequence[int], embed_dims: Sequence[int], mlp_ratios: Sequence, num_vit: int,
                 in_chans: int = 3, bias_resolution: Union[int, Size2] = 512, norm_eval: bool = True):
        super().__init__()
        img = (bias_resolution, bias_resolution) if isinstance(bias_resolution, int) else tuple(bias_resolution)
        self.stem = Stem4(in_chans, embed_dims[0])
        stages, prev, stride = [], embed_dims[0], 4
        for i, depth in enumerate(depths):
            ratios = mlp_ratios[i] if isinstance(mlp_ratios[i], (tuple, list)) else (mlp_ratios[i],) * depth
            stages.append(Stage(
                prev, embed_dims[i], depth, tuple(math.ceil(s / stride) for s in img), downsample=i > 0,
                block_stride=2 if i == 2 else None, downsample_use_attn=i >= 3, block_use_attn=i >= 2,
                num_vit=num_vit, mlp_ratios=ratios))
            stride *= 2 if i > 0 else 1
            prev = embed_dims[i]
        self.stages = nn.CellList(stages)
        if norm_eval:  # running statistics in training too; set here because set_train flags cells directly
            for _, cell in self.cells_and_names():
                if isinstance(cell, nn.BatchNorm2d):
                    cell.use_batch_statistics = False

    def construct(self, x: Tensor) -> tuple:
        x = self.stem(x)
        outs = ()
        for stage in self.stages:
            x = stage(x)
            outs = outs + (x,)
        return outs
