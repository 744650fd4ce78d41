"""MindSpore twins of ViG and Pyramid ViG (:mod:`zoo.models.vig`), for inference on Ascend.

The cell tree mirrors the torch model attribute for attribute (``stem.convs.*``, ``pos_embed``,
``backbone.{i}.{0,1}.*``, ``prediction.*``), so torch weights load by leaf renames alone. The graph follows
the official PyTorch code, which the MindSpore port in ``mindspore-ai/models`` does not: features are
L2-normalised before the k-NN, the ``k x dilation`` nearest are taken and every dilation-th kept, and the
grouped conv sees the channels interleaved as (x_0, rel_0, x_1, rel_1, ...). Pyramid ViG's frozen
``relative_pos`` tables are non-trainable parameters. Inputs of another size than ``img_size`` resize the
position tables bicubically, as torch does, and cap ``k`` / the dilation to the number of candidates.

Inference only: drop path, dropout and the stochastic dilated aggregation (all off in eval mode) are left out.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from mindspore import Parameter, Tensor, nn, ops

from .layers import GELU, BatchNorm2d, Conv2d
from .layers.bicubic_resize import resize_bicubic
from .layers.input_checks import check_image_shape
from .registry import register_twin

__all__ = ['VisionGNN', 'VIG_CONFIGS']


class Stem(nn.Cell):
    """``num_down`` stride-2 3x3 conv + BN + GELU layers, then a 3x3 conv + BN (``convs.*`` as in torch)."""

    def __init__(self, in_chs: int, out_chs: int, num_down: int):
        super().__init__()
        layers = []
        prev = in_chs
        for i in range(num_down):
            chs = out_chs // 2 ** (num_down - 1 - i)
            layers += [Conv2d(prev, chs, 3, stride=2, padding=1), BatchNorm2d(chs), GELU()]
            prev = chs
        layers += [Conv2d(out_chs, out_chs, 3, padding=1), BatchNorm2d(out_chs)]
        self.convs = nn.SequentialCell(layers)

    def construct(self, x: Tensor) -> Tensor:
        return self.convs(x)


class Downsample(nn.Cell):
    """Stride-2 3x3 conv + BN between Pyramid ViG stages."""

    def __init__(self, in_chs: int, out_chs: int):
        super().__init__()
        self.conv = nn.SequentialCell([Conv2d(in_chs, out_chs, 3, stride=2, padding=1), BatchNorm2d(out_chs)])

    def construct(self, x: Tensor) -> Tensor:
        return self.conv(x)


class ConvFFN(nn.Cell):
    """``x + fc2(gelu(fc1(x)))``, ``fc1`` / ``fc2`` = (1x1 conv, BN)."""

    def __init__(self, dim: int, hidden_dim: int):
        super().__init__()
        self.fc1 = nn.SequentialCell([Conv2d(dim, hidden_dim, 1), BatchNorm2d(hidden_dim)])
        self.act = GELU()
        self.fc2 = nn.SequentialCell([Conv2d(hidden_dim, dim, 1), BatchNorm2d(dim)])

    def construct(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x))) + x


def _l2_normalise(x: Tensor) -> Tensor:
    """``F.normalize(x, dim=1)``: divide by the L2 norm over channels, floored at 1e-12."""
    norm = ops.sqrt(ops.sum(x * x, 1, keepdim=True))
    return x / ops.maximum(norm, ops.full_like(norm, 1e-12))


def knn_indices(x: Tensor, y: Tensor, k: int, bias: Tensor | None = None) -> Tensor:
    """(B, N, k) indices of the ``k`` candidates ``y`` (B, C, M) nearest to each query of ``x`` (B, C, N),
    nearest first; squared distances summed in torch's order (``-2 x.y + |x|^2 + |y|^2 + bias``)."""
    xt = ops.transpose(x, (0, 2, 1))
    x_sq = ops.sum(xt * xt, -1, keepdim=True)
    y_sq = ops.sum(y * y, 1, keepdim=True)
    dist = ops.bmm(xt, y) * -2 + x_sq + y_sq
    if bias is not None:
        dist = dist + bias
    _, idx = ops.topk(-dist, k)
    return idx


def gather_max_neighbours(y: Tensor, idx: Tensor) -> Tensor:
    """(B, C, N) element-wise maximum of the candidates ``y`` (B, C, M) over each query's neighbours ``idx``."""
    B, C, M = y.shape
    _, N, k = idx.shape
    flat = ops.transpose(y, (0, 2, 1)).reshape(B * M, C)
    offsets = (ops.arange(B, dtype=idx.dtype) * M).reshape(B, 1, 1)
    rows = ops.gather(flat, (idx + offsets).reshape(-1), 0).reshape(B, N, k, C)
    return ops.transpose(ops.amax(rows, 2), (0, 2, 1))


class MaxRelativeConv(nn.Cell):
    """``[x_i, max_j x_j - x_i]`` interleaved per channel, then a 4-group 1x1 conv, BN and GELU (``nn.*``)."""

    def __init__(self, in_chs: int, out_chs: int, groups: int = 4):
        super().__init__()
        self.nn = nn.SequentialCell([Conv2d(in_chs * 2, out_chs, 1, groups=groups), BatchNorm2d(out_chs), GELU()])

    def construct(self, x: Tensor, y: Tensor, idx: Tensor) -> Tensor:
        B, C, N = x.shape
        rel = gather_max_neighbours(y, idx) - x
        return self.nn(ops.stack([x, rel], 2).reshape(B, 2 * C, N, 1))


class DynamicGraphConv(nn.Cell):
    """Dilated k-NN graph over the current features (candidates pooled by ``reduction``) and a max-relative
    graph conv; ``k`` and the dilation are capped to the number of candidates, as in torch."""

    def __init__(self, in_chs: int, out_chs: int, k: int = 9, dilation: int = 1, reduction: int = 1):
        super().__init__()
        self.k = k
        self.dilation = dilation
        self.reduction = reduction
        self.pool = nn.AvgPool2d(reduction, reduction, pad_mode='valid') if reduction > 1 else None
        self.gconv = MaxRelativeConv(in_chs, out_chs)

    def construct(self, x: Tensor, bias: Tensor | None = None) -> Tensor:
        B, C, H, W = x.shape
        y = self.pool(x) if self.pool is not None else x
        x = x.reshape(B, C, H * W)
        y = y.reshape(B, C, -1)
        m = y.shape[-1]
        k = min(self.k, m)
        dilation = max(1, min(self.dilation, m // k))
        idx = knn_indices(_l2_normalise(x), _l2_normalise(y), k * dilation, bias)
        if dilation > 1:
            idx = idx[:, :, ::dilation]
        return self.gconv(x, y, idx).reshape(B, -1, H, W)


class Grapher(nn.Cell):
    """``x + fc2(graph_conv(fc1(x)))``; Pyramid ViG adds the frozen ``relative_pos`` table (1, grid**2,
    (grid // reduction)**2) to the k-NN distances, resized to the actual grid."""

    def __init__(self, dim: int, k: int, dilation: int, reduction: int, grid: int, relative_pos: bool):
        super().__init__()
        self.grid = grid
        self.reduction = reduction
        self.fc1 = nn.SequentialCell([Conv2d(dim, dim, 1), BatchNorm2d(dim)])
        self.graph_conv = DynamicGraphConv(dim, dim * 2, k=k, dilation=dilation, reduction=reduction)
        self.fc2 = nn.SequentialCell([Conv2d(dim * 2, dim, 1), BatchNorm2d(dim)])
        keys = (grid // reduction) ** 2
        self.relative_pos = Parameter(Tensor(np.zeros((1, grid * grid, keys), np.float32)),
                                      requires_grad=False) if relative_pos else None

    def position_bias(self, h: int, w: int) -> Tensor | None:
        """The bias for an (h, w) node grid: candidates resized first, then queries, as in torch."""
        table = self.relative_pos
        if table is None:
            return None
        g, r = self.grid, self.reduction
        kh, kw = h // r, w // r
        if g == h and g == w and g // r == kh and g // r == kw:
            return table
        t = resize_bicubic(table.reshape(g * g, g // r, g // r), (kh, kw))
        t = ops.transpose(t.reshape(g, g, kh * kw), (2, 0, 1))
        t = resize_bicubic(t, (h, w))
        return ops.transpose(t.reshape(kh * kw, h * w), (1, 0)).reshape(1, h * w, kh * kw)

    def construct(self, x: Tensor) -> Tensor:
        shortcut = x
        x = self.fc1(x)
        x = self.graph_conv(x, self.position_bias(x.shape[2], x.shape[3]))
        return self.fc2(x) + shortcut


class VisionGNN(nn.Cell):
    """ViG (one stage, ``stem_down=4``) or Pyramid ViG (four stages, ``stem_down=2``); arguments as in torch."""

    def __init__(
            self,
            depths: Sequence[int] = (12,),
            embed_dims: Sequence[int] = (192,),
            num_knn: tuple[int, int] = (9, 18),
            reductions: Sequence[int] = (1,),
            relative_pos: bool = False,
            stem_down: int = 4,
            img_size: int = 224,
            in_chans: int = 3,
            num_classes: int = 1000,
            head_hidden_size: int = 1024,
            name: str = 'VisionGNN',
    ):
        super().__init__()
        self.model_name = name
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.stem_stride = 2 ** stem_down
        self.stride = self.stem_stride * 2 ** (len(depths) - 1)
        self.num_features = embed_dims[-1]
        self.stem = Stem(in_chans, embed_dims[0], stem_down)
        grid = img_size // self.stem_stride
        self.pos_embed = Parameter(Tensor(np.zeros((1, embed_dims[0], grid, grid), np.float32)))

        n_blocks = sum(depths)
        knn = [int(v) for v in np.linspace(num_knn[0], num_knn[1], n_blocks, dtype=np.float32)]
        max_dilation = max(1, (img_size // self.stride) ** 2 // max(knn))
        layers = []
        self.feature_layers = []
        idx = 0
        for stage, (depth, dim) in enumerate(zip(depths, embed_dims)):
            if stage > 0:
                layers.append(Downsample(embed_dims[stage - 1], dim))
                grid //= 2
            for _ in range(depth):
                layers.append(nn.SequentialCell([
                    Grapher(dim, knn[idx], min(idx // 4 + 1, max_dilation), reductions[stage], grid, relative_pos),
                    ConvFFN(dim, dim * 4),
                ]))
                idx += 1
                if len(depths) == 1:
                    self.feature_layers.append(len(layers) - 1)
            if len(depths) > 1:
                self.feature_layers.append(len(layers) - 1)
        self.backbone = nn.CellList(layers)
        self.prediction = nn.SequentialCell([
            Conv2d(self.num_features, head_hidden_size, 1), BatchNorm2d(head_hidden_size), GELU(), nn.Identity(),
            Conv2d(head_hidden_size, num_classes, 1) if num_classes > 0 else nn.Identity(),
        ])

    def _embed(self, x: Tensor) -> Tensor:
        check_image_shape(x.shape, self.in_chans, self.stride, self.stride, self.model_name)
        x = self.stem(x)
        return x + resize_bicubic(self.pos_embed, (x.shape[2], x.shape[3]))

    def forward_features(self, x: Tensor) -> Tensor:
        x = self._embed(x)
        for layer in self.backbone:
            x = layer(x)
        return x

    def forward_intermediates(self, x: Tensor) -> list:
        """The torch model's ``forward_intermediates(x, intermediates_only=True)``: every block (ViG) or the
        end of every stage (Pyramid ViG)."""
        x = self._embed(x)
        out = []
        for i, layer in enumerate(self.backbone):
            x = layer(x)
            if i in self.feature_layers:
                out.append(x)
        return out

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = ops.mean(x, (2, 3), keep_dims=True)
        head = self.prediction
        x = head[2](head[1](head[0](x)))
        if not pre_logits:
            x = head[4](x)
        return x.reshape(x.shape[0], -1)

    def construct(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


_PYRAMID = dict(num_knn=(9, 9), reductions=(4, 2, 1, 1), relative_pos=True, stem_down=2)

#: Architecture of each registered variant (the torch entrypoints' arguments).
VIG_CONFIGS: dict[str, dict[str, Any]] = {
    'vig_ti_224_gelu': dict(depths=(12,), embed_dims=(192,)),
    'vig_s_224_gelu': dict(depths=(16,), embed_dims=(320,)),
    'vig_b_224_gelu': dict(depths=(16,), embed_dims=(640,)),
    'pvig_ti_224_gelu': dict(depths=(2, 2, 6, 2), embed_dims=(48, 96, 240, 384), **_PYRAMID),
    'pvig_s_224_gelu': dict(depths=(2, 2, 6, 2), embed_dims=(80, 160, 400, 640), **_PYRAMID),
    'pvig_m_224_gelu': dict(depths=(2, 2, 16, 2), embed_dims=(96, 192, 384, 768), **_PYRAMID),
    'pvig_b_224_gelu': dict(depths=(2, 2, 18, 2), embed_dims=(128, 256, 512, 1024), **_PYRAMID),
}


def _vig_kwargs(model: Any) -> dict:
    """Builder kwargs of a torch VisionGNN: classes, input channels and the native size (from ``pos_embed``)."""
    return dict(num_classes=model.num_classes, in_chans=model.in_chans,
                img_size=model.pos_embed.shape[-1] * model.stem_stride)


@register_twin(*VIG_CONFIGS, kwargs_from_torch=_vig_kwargs)
def create_vig(variant: str, img_size: int = 224, in_chans: int = 3, num_classes: int = 1000) -> VisionGNN:
    """The MindSpore twin of ViG / Pyramid ViG ``variant``."""
    return VisionGNN(img_size=img_size, in_chans=in_chans, num_classes=num_classes, name=variant,
                     **VIG_CONFIGS[variant])
