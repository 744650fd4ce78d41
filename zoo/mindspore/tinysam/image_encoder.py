"""MindSpore twin of TinySAM's image encoder (``tinysam_vit_t``): TinyViT-5M trunk with stride 16, SAM's neck.

Mirrors :mod:`zoo.models.tinysam.modeling.image_encoder` (and the timm TinyViT blocks it reuses) attribute for
attribute. Windowed attention adds a learned bias per head and relative offset; the (N, N) offset index is a
constant of the window size, computed here as timm computes its ``attention_bias_idxs`` buffer.
"""
from __future__ import annotations

import itertools
from typing import Any, Optional, Tuple

import numpy as np
from mindspore import Parameter, Tensor, nn, ops

from ..layers import GELU, BatchNorm2d, Conv2d, LayerNorm, Linear
from ..layers.input_checks import check_image_shape
from ..layers.layer_norm_2d import LayerNorm2d
from ..registry import register_twin

__all__ = ['TinySamImageEncoder', 'attention_bias_index']


class ConvNorm(nn.Cell):
    """Conv (no bias) then BatchNorm, timm's ``ConvNorm``."""

    def __init__(self, in_chs: int, out_chs: int, ks: int = 1, stride: int = 1, pad: int = 0, groups: int = 1):
        super().__init__()
        self.conv = Conv2d(in_chs, out_chs, ks, stride, pad, groups=groups, bias=False)
        self.bn = BatchNorm2d(out_chs)

    def construct(self, x: Tensor) -> Tensor:
        return self.bn(self.conv(x))


class PatchEmbed(nn.Cell):
    """Two stride-2 3x3 ConvNorms with GELU between: stride 4."""

    def __init__(self, in_chs: int, out_chs: int):
        super().__init__()
        self.conv1 = ConvNorm(in_chs, out_chs // 2, 3, 2, 1)
        self.act = GELU()
        self.conv2 = ConvNorm(out_chs // 2, out_chs, 3, 2, 1)

    def construct(self, x: Tensor) -> Tensor:
        return self.conv2(self.act(self.conv1(x)))


class MBConv(nn.Cell):
    """Inverted residual: 1x1 expand, depthwise 3x3, 1x1 project, residual, GELU."""

    def __init__(self, dim: int, expand_ratio: float):
        super().__init__()
        mid = int(dim * expand_ratio)
        self.conv1 = ConvNorm(dim, mid)
        self.act1 = GELU()
        self.conv2 = ConvNorm(mid, mid, 3, 1, 1, groups=mid)
        self.act2 = GELU()
        self.conv3 = ConvNorm(mid, dim)
        self.act3 = GELU()

    def construct(self, x: Tensor) -> Tensor:
        y = self.act2(self.conv2(self.act1(self.conv1(x))))
        return self.act3(self.conv3(y) + x)


class PatchMerging(nn.Cell):
    """1x1 ConvNorm, depthwise 3x3 ConvNorm with ``stride``, 1x1 ConvNorm (GELU between)."""

    def __init__(self, dim: int, out_dim: int, stride: int):
        super().__init__()
        self.conv1 = ConvNorm(dim, out_dim)
        self.act = GELU()
        self.conv2 = ConvNorm(out_dim, out_dim, 3, stride, 1, groups=out_dim)
        self.conv3 = ConvNorm(out_dim, out_dim)

    def construct(self, x: Tensor) -> Tensor:
        return self.conv3(self.act(self.conv2(self.act(self.conv1(x)))))


def attention_bias_index(window: int) -> np.ndarray:
    """(N, N) int32 index of each query/key pair's |dy|, |dx| offset in the order timm numbers them."""
    points = list(itertools.product(range(window), range(window)))
    offsets: dict[tuple[int, int], int] = {}
    idxs = []
    for p1 in points:
        for p2 in points:
            offset = (abs(p1[0] - p2[0]), abs(p1[1] - p2[1]))
            idxs.append(offsets.setdefault(offset, len(offsets)))
    return np.array(idxs, np.int32).reshape(len(points), len(points))


class Attention(nn.Cell):
    """timm TinyViT attention on (B, N, C) window tokens: LayerNorm, qkv, softmax(q k^T * scale + bias) v, proj."""

    def __init__(self, dim: int, key_dim: int, num_heads: int, resolution: int):
        super().__init__()
        self.num_heads = num_heads
        self.key_dim = key_dim
        self.scale = key_dim ** -0.5
        self.out_dim = key_dim * num_heads
        self.norm = LayerNorm(dim)
        self.qkv = Linear(dim, num_heads * 3 * key_dim)
        self.proj = Linear(self.out_dim, dim)
        self.attention_biases = Parameter(Tensor(np.zeros((num_heads, resolution * resolution), np.float32)),
                                          name='attention_biases')
        self.bias_index = Tensor(attention_bias_index(resolution))

    def construct(self, x: Tensor) -> Tensor:
        b, n, _ = x.shape
        qkv = self.qkv(self.norm(x)).reshape(b, n, self.num_heads, 3 * self.key_dim).transpose(0, 2, 1, 3)
        d = self.key_dim
        q, k, v = qkv[..., :d], qkv[..., d:2 * d], qkv[..., 2 * d:]
        attn = ops.matmul(q * self.scale, k.swapaxes(-2, -1)) + ops.gather(self.attention_biases, self.bias_index, 1)
        x = ops.matmul(ops.softmax(attn, -1), v)
        return self.proj(x.transpose(0, 2, 1, 3).reshape(b, n, self.out_dim))


class NormMlp(nn.Cell):
    """LayerNorm, Linear, GELU, Linear (timm TinyViT's ``NormMlp``)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.norm = LayerNorm(dim)
        self.fc1 = Linear(dim, hidden)
        self.act = GELU()
        self.fc2 = Linear(hidden, dim)

    def construct(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(self.norm(x))))


class TinyVitBlock(nn.Cell):
    """Windowed attention (inputs padded to whole windows), depthwise local conv, MLP; (B, H, W, C) in and out."""

    def __init__(self, dim: int, num_heads: int, window_size: int, mlp_ratio: float, local_conv_size: int):
        super().__init__()
        self.window_size = window_size
        self.attn = Attention(dim, dim // num_heads, num_heads, window_size)
        self.mlp = NormMlp(dim, int(dim * mlp_ratio))
        self.local_conv = ConvNorm(dim, dim, local_conv_size, 1, local_conv_size // 2, groups=dim)

    def _windowed_attention(self, x: Tensor) -> Tensor:
        b, h, w, c = x.shape
        ws = self.window_size
        if h == ws and w == ws:
            return self.attn(x.reshape(b, h * w, c)).reshape(b, h, w, c)
        pad_b, pad_r = (ws - h % ws) % ws, (ws - w % ws) % ws
        if pad_b > 0 or pad_r > 0:
            x = ops.pad(x, (0, 0, 0, pad_r, 0, pad_b))
        ph, pw = h + pad_b, w + pad_r
        nh, nw = ph // ws, pw // ws
        x = x.reshape(b, nh, ws, nw, ws, c).swapaxes(2, 3).reshape(b * nh * nw, ws * ws, c)
        x = self.attn(x)
        x = x.reshape(b, nh, nw, ws, ws, c).swapaxes(2, 3).reshape(b, ph, pw, c)
        return x[:, :h, :w]

    def construct(self, x: Tensor) -> Tensor:
        b, h, w, c = x.shape
        x = x + self._windowed_attention(x)
        x = self.local_conv(x.transpose(0, 3, 1, 2))
        x = x.reshape(b, c, h * w).swapaxes(1, 2)
        x = x + self.mlp(x)
        return x.reshape(b, h, w, c)


class TinySamStage(nn.Cell):
    """MBConv blocks (``num_heads=0``) or windowed-attention blocks, then an optional patch merging; NCHW."""

    def __init__(self, dim: int, depth: int, num_heads: int, window_size: int, mlp_ratio: float,
                 conv_expand_ratio: float, local_conv_size: int, out_dim: Optional[int], merge_stride: int):
        super().__init__()
        self.is_conv = num_heads == 0
        if self.is_conv:
            blocks = [MBConv(dim, conv_expand_ratio) for _ in range(depth)]
        else:
            blocks = [TinyVitBlock(dim, num_heads, window_size, mlp_ratio, local_conv_size) for _ in range(depth)]
        self.blocks = nn.SequentialCell(blocks)
        self.downsample = PatchMerging(dim, out_dim, merge_stride) if out_dim is not None else None

    def forward_blocks(self, x: Tensor) -> Tensor:
        if self.is_conv:
            return self.blocks(x)
        return self.blocks(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)

    def construct(self, x: Tensor) -> Tensor:
        x = self.forward_blocks(x)
        if self.downsample is not None:
            x = self.downsample(x)
        return x


class TinySamImageEncoder(nn.Cell):
    """TinySAM / MobileSAM image encoder: (B, 3, H, W) normalised image -> (B, 256, H/16, W/16) embedding."""

    def __init__(
            self,
            img_size: int = 1024,
            in_chans: int = 3,
            num_classes: int = 1000,
            embed_dims: Tuple[int, ...] = (64, 128, 160, 320),
            depths: Tuple[int, ...] = (2, 2, 6, 2),
            num_heads: Tuple[int, ...] = (2, 4, 5, 10),
            window_sizes: Tuple[int, ...] = (7, 7, 14, 7),
            merge_strides: Tuple[int, ...] = (2, 2, 1),
            mlp_ratio: float = 4.,
            mbconv_expand_ratio: float = 4.,
            local_conv_size: int = 3,
            out_chans: int = 256,
            global_pool: str = 'avg',
    ):
        super().__init__()
        if global_pool not in ('avg', ''):
            raise ValueError(f"global_pool must be 'avg' or '' (no pooling), got {global_pool!r}")
        self.img_size = img_size
        self.in_chans = in_chans
        self.num_classes = num_classes
        self.global_pool = global_pool
        self.patch_embed = PatchEmbed(in_chans, embed_dims[0])
        stages = []
        for i, depth in enumerate(depths):
            last = i == len(depths) - 1
            stages.append(TinySamStage(
                embed_dims[i], depth, 0 if i == 0 else num_heads[i], window_sizes[i], mlp_ratio,
                mbconv_expand_ratio, local_conv_size, None if last else embed_dims[i + 1],
                1 if last else merge_strides[i]))
        self.layers = nn.CellList(stages)
        self.norm_head = LayerNorm(embed_dims[-1])
        self.head = Linear(embed_dims[-1], num_classes) if num_classes > 0 else nn.Identity()
        self.neck = nn.SequentialCell([
            Conv2d(embed_dims[-1], out_chans, 1, bias=False),
            LayerNorm2d(out_chans),
            Conv2d(out_chans, out_chans, 3, padding=1, bias=False),
            LayerNorm2d(out_chans),
        ])

    def forward_features(self, x: Tensor) -> Tensor:
        """Trunk features (B, 320, H/16, W/16)."""
        check_image_shape(x.shape, self.in_chans, name=type(self).__name__)
        x = self.patch_embed(x)
        for stage in self.layers:
            x = stage(x)
        return x

    def forward_intermediates(self, x: Tensor) -> list:
        """Stage outputs before each stage's merge, as the torch ``forward_intermediates(x)[1]``."""
        check_image_shape(x.shape, self.in_chans, name=type(self).__name__)
        x = self.patch_embed(x)
        outputs = []
        for stage in self.layers:
            x = stage.forward_blocks(x)
            outputs.append(x)
            if stage.downsample is not None:
                x = stage.downsample(x)
        return outputs

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """TinyViT's classifier on trunk features (kept for the checkpoint layout; SAM does not use it)."""
        if self.global_pool == 'avg':
            x = self.norm_head(ops.mean(x, (2, 3)))
            return x if pre_logits else self.head(x)
        x = self.norm_head(x.transpose(0, 2, 3, 1))
        x = x if pre_logits else self.head(x)
        return x.transpose(0, 3, 1, 2)

    def forward_neck(self, x: Tensor) -> Tensor:
        """Trunk features -> SAM image embedding (B, 256, H/16, W/16)."""
        return self.neck(x)

    def construct(self, x: Tensor) -> Tensor:
        return self.forward_neck(self.forward_features(x))


def encoder_kwargs_from_torch(model: Any) -> dict:
    """The twin's constructor arguments read off a torch ``TinySamImageEncoder``."""
    return {'img_size': model.img_size, 'in_chans': model.in_chans, 'num_classes': model.num_classes,
            'global_pool': model.global_pool, 'out_chans': model.out_chans}


@register_twin('tinysam_vit_t', kwargs_from_torch=encoder_kwargs_from_torch)
def tinysam_vit_t(variant: str, **kwargs: Any) -> TinySamImageEncoder:
    """The twin of ``tinysam_vit_t`` (``img_size``, ``in_chans``, ``num_classes``, ``global_pool``, ``out_chans``)."""
    return TinySamImageEncoder(**kwargs)
