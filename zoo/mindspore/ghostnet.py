"""MindSpore twins of GhostNet V1 / V2 / V3 (timm's ``GhostNet``, which the zoo adopts), module for module.

V3 comes in its train form (re-parameterisable branches) and, with ``deploy=True``, in the fused form that
``timm.models.reparameterize_model`` gives. Attribute names follow timm's so that weights convert by leaf renames.
"""
from __future__ import annotations

import math
from typing import Any, Optional

from mindspore import nn, ops
from timm.layers import make_divisible

from .layers import BatchNorm2d, Conv2d, GlobalAvgPool, Linear, activation
from .registry import register_twin

__all__ = ['GhostNet', 'GHOSTNET_CFGS']

#: Per stage, the blocks as (kernel, expansion, out channels, SE ratio, stride): GhostNet's table.
GHOSTNET_CFGS = (
    ((3, 16, 16, 0, 1),),
    ((3, 48, 24, 0, 2),),
    ((3, 72, 24, 0, 1),),
    ((5, 72, 40, 0.25, 2),),
    ((5, 120, 40, 0.25, 1),),
    ((3, 240, 80, 0, 2),),
    ((3, 200, 80, 0, 1), (3, 184, 80, 0, 1), (3, 184, 80, 0, 1), (3, 480, 112, 0.25, 1), (3, 672, 112, 0.25, 1)),
    ((5, 672, 160, 0.25, 2),),
    ((5, 960, 160, 0, 1), (5, 960, 160, 0.25, 1), (5, 960, 160, 0, 1), (5, 960, 160, 0.25, 1)),
)

#: Registered name -> (width, version).
VARIANTS = {
    'ghostnet_050': (0.5, 'v1'), 'ghostnet_100': (1.0, 'v1'), 'ghostnet_130': (1.3, 'v1'),
    'ghostnetv2_100': (1.0, 'v2'), 'ghostnetv2_130': (1.3, 'v2'), 'ghostnetv2_160': (1.6, 'v2'),
    'ghostnetv3_050': (0.5, 'v3'), 'ghostnetv3_100': (1.0, 'v3'), 'ghostnetv3_130': (1.3, 'v3'),
    'ghostnetv3_160': (1.6, 'v3'),
}


def _conv_bn_act(in_chs: int, out_chs: int, kernel_size: int, act: str = 'relu', stride: int = 1,
                 padding: int = 0, groups: int = 1) -> nn.SequentialCell:
    """Conv (no bias), BatchNorm, activation as a ``SequentialCell`` (children ``0``, ``1``, ``2``)."""
    return nn.SequentialCell([Conv2d(in_chs, out_chs, kernel_size, stride, padding, groups=groups, bias=False),
                              BatchNorm2d(out_chs), activation(act)])


class ConvBnAct(nn.Cell):
    """timm's ``ConvBnAct``: ``conv`` (no bias), then ``bn1`` (BatchNorm with an optional activation)."""

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 groups: int = 1, act: str = 'identity'):
        super().__init__()
        self.conv = Conv2d(in_chs, out_chs, kernel_size, stride, padding, groups=groups, bias=False)
        self.bn1 = BatchNorm2d(out_chs)
        self.act = activation(act)

    def construct(self, x):
        return self.act(self.bn1(self.conv(x)))


class SqueezeExcite(nn.Cell):
    """GhostNet's squeeze-excite: mean, 1x1 reduce, ReLU, 1x1 expand, hard-sigmoid gate."""

    def __init__(self, in_chs: int, rd_ratio: float):
        super().__init__()
        rd_chs = make_divisible(in_chs * rd_ratio, 4)
        self.conv_reduce = Conv2d(in_chs, rd_chs, 1)
        self.act1 = nn.ReLU()
        self.conv_expand = Conv2d(rd_chs, in_chs, 1)
        self.gate = activation('hard_sigmoid')

    def construct(self, x):
        x_se = self.conv_expand(self.act1(self.conv_reduce(ops.mean(x, (2, 3), keep_dims=True))))
        return x * self.gate(x_se)


def _short_conv(in_chs: int, out_chs: int, kernel_size: int, stride: int) -> nn.SequentialCell:
    """V2's attention branch: conv, BN, horizontal 1x5 and vertical 5x1 depthwise convs with BNs."""
    return nn.SequentialCell([
        Conv2d(in_chs, out_chs, kernel_size, stride, kernel_size // 2, bias=False), BatchNorm2d(out_chs),
        Conv2d(out_chs, out_chs, (1, 5), 1, (0, 2), groups=out_chs, bias=False), BatchNorm2d(out_chs),
        Conv2d(out_chs, out_chs, (5, 1), 1, (2, 0), groups=out_chs, bias=False), BatchNorm2d(out_chs),
    ])


class _GatedModule(nn.Cell):
    """Base of the ghost modules: V2's decoupled attention, ``features * nearest-upsampled
    sigmoid(short_conv(avg_pool_2x2(x)))``, when the subclass set ``short_conv``."""

    def _init_gate(self, in_chs: int, out_chs: int, enabled: bool) -> None:
        self.short_conv = _short_conv(in_chs, out_chs, 1, 1) if enabled else None
        self.pool = nn.AvgPool2d(kernel_size=2, stride=2)
        self.gate_fn = nn.Sigmoid()

    def _gate(self, x, out):
        res = self.gate_fn(self.short_conv(self.pool(x)))
        return out * ops.interpolate(res, size=(out.shape[2], out.shape[3]), mode='nearest')


class GhostModule(_GatedModule):
    """Primary 1x1 conv, cheap depthwise conv on its output, both concatenated (V2: times the attention gate)."""

    def __init__(self, in_chs: int, out_chs: int, act: str = 'relu', attention: bool = False):
        super().__init__()
        self.out_chs = out_chs
        init_chs = math.ceil(out_chs / 2)
        self.primary_conv = _conv_bn_act(in_chs, init_chs, 1, act)
        self.cheap_operation = _conv_bn_act(init_chs, init_chs, 3, act, padding=1, groups=init_chs)
        self._init_gate(in_chs, out_chs, attention)

    def construct(self, x):
        x1 = self.primary_conv(x)
        out = ops.cat((x1, self.cheap_operation(x1)), 1)[:, :self.out_chs]
        if self.short_conv is not None:
            out = self._gate(x, out)
        return out


class GhostModuleV3(_GatedModule):
    """V3's ghost module: three re-parameterisable conv branches for each of the primary and cheap convs (plus a
    1x1 scale branch and a BN skip for the cheap one), or in deploy form one fused conv each."""

    def __init__(self, in_chs: int, out_chs: int, act: str = 'relu', mode: str = 'original',
                 deploy: bool = False):
        super().__init__()
        self.out_chs = out_chs
        self.deploy = deploy
        init_chs = math.ceil(out_chs / 2)
        if deploy:
            self.primary_conv = nn.SequentialCell([Conv2d(in_chs, init_chs, 1), activation(act)])
            self.cheap_operation = nn.SequentialCell([Conv2d(init_chs, init_chs, 3, 1, 1, groups=init_chs),
                                                      activation(act)])
        else:
            self.primary_rpr_conv = nn.CellList([ConvBnAct(in_chs, init_chs, 1) for _ in range(3)])
            self.primary_activation = activation(act)
            self.cheap_rpr_skip = BatchNorm2d(init_chs)
            self.cheap_rpr_conv = nn.CellList([ConvBnAct(init_chs, init_chs, 3, 1, 1, groups=init_chs)
                                               for _ in range(3)])
            self.cheap_rpr_scale = ConvBnAct(init_chs, init_chs, 1, groups=init_chs)
            self.cheap_activation = activation(act)
        self._init_gate(in_chs, out_chs, mode == 'shortcut')

    def construct(self, x):
        if self.deploy:
            x1 = self.primary_conv(x)
            x2 = self.cheap_operation(x1)
        else:
            x1 = self.primary_rpr_conv[0](x)
            for branch in self.primary_rpr_conv[1:]:
                x1 = x1 + branch(x)
            x1 = self.primary_activation(x1)
            x2 = self.cheap_rpr_scale(x1) + self.cheap_rpr_skip(x1)
            for branch in self.cheap_rpr_conv:
                x2 = x2 + branch(x1)
            x2 = self.cheap_activation(x2)
        out = ops.cat((x1, x2), 1)
        if self.short_conv is not None:  # only the gated (shortcut) mode trims to out_chs, as in timm
            out = self._gate(x, out[:, :self.out_chs])
        return out


def _shortcut(in_chs: int, out_chs: int, kernel_size: int, stride: int) -> Optional[nn.SequentialCell]:
    if in_chs == out_chs and stride == 1:
        return None
    return nn.SequentialCell([
        Conv2d(in_chs, in_chs, kernel_size, stride, (kernel_size - 1) // 2, groups=in_chs, bias=False),
        BatchNorm2d(in_chs), Conv2d(in_chs, out_chs, 1, bias=False), BatchNorm2d(out_chs)])


class GhostBottleneck(nn.Cell):
    """V1 / V2 bottleneck: ghost module, strided depthwise conv, optional SE, linear ghost module, residual."""

    def __init__(self, in_chs: int, mid_chs: int, out_chs: int, kernel_size: int, stride: int, se_ratio: float,
                 attention: bool):
        super().__init__()
        self.ghost1 = GhostModule(in_chs, mid_chs, attention=attention)
        if stride > 1:
            self.conv_dw = Conv2d(mid_chs, mid_chs, kernel_size, stride, (kernel_size - 1) // 2, groups=mid_chs,
                                  bias=False)
            self.bn_dw = BatchNorm2d(mid_chs)
        else:
            self.conv_dw = self.bn_dw = None
        self.se = SqueezeExcite(mid_chs, se_ratio) if se_ratio else None
        self.ghost2 = GhostModule(mid_chs, out_chs, act='identity')
        self.shortcut = _shortcut(in_chs, out_chs, kernel_size, stride)

    def construct(self, x):
        y = self.ghost1(x)
        if self.conv_dw is not None:
            y = self.bn_dw(self.conv_dw(y))
        if self.se is not None:
            y = self.se(y)
        y = self.ghost2(y)
        return y + (x if self.shortcut is None else self.shortcut(x))


class GhostBottleneckV3(nn.Cell):
    """V3 bottleneck: as V1's, with re-parameterisable depthwise branches (fused into ``conv_dw`` in deploy)."""

    def __init__(self, in_chs: int, mid_chs: int, out_chs: int, kernel_size: int, stride: int, se_ratio: float,
                 mode: str, deploy: bool):
        super().__init__()
        self.strided = stride > 1
        self.deploy = deploy
        self.ghost1 = GhostModuleV3(in_chs, mid_chs, mode=mode, deploy=deploy)
        pad = (kernel_size - 1) // 2
        if self.strided and deploy:
            self.conv_dw = Conv2d(mid_chs, mid_chs, kernel_size, stride, pad, groups=mid_chs)
        elif self.strided:
            self.dw_rpr_conv = nn.CellList([ConvBnAct(mid_chs, mid_chs, kernel_size, stride, pad, groups=mid_chs)
                                            for _ in range(3)])
            self.dw_rpr_scale = ConvBnAct(mid_chs, mid_chs, 1, 2, groups=mid_chs)
        self.se = SqueezeExcite(mid_chs, se_ratio) if se_ratio else None
        self.ghost2 = GhostModuleV3(mid_chs, out_chs, act='identity', deploy=deploy)
        self.shortcut = _shortcut(in_chs, out_chs, kernel_size, stride)

    def construct(self, x):
        y = self.ghost1(x)
        if self.strided:
            if self.deploy:
                y = self.conv_dw(y)
            else:
                z = self.dw_rpr_scale(y)
                for branch in self.dw_rpr_conv:
                    z = z + branch(y)
                y = z
        if self.se is not None:
            y = self.se(y)
        y = self.ghost2(y)
        return y + (x if self.shortcut is None else self.shortcut(x))


class GhostNet(nn.Cell):
    """GhostNet V1 / V2 / V3 classifier with timm's attribute names and ``forward_intermediates`` taps (the stem
    conv's output, then the output of each stage that ends in a stride-2 block)."""

    def __init__(self, width: float = 1.0, version: str = 'v1', num_classes: int = 1000, in_chans: int = 3,
                 drop_rate: float = 0.2, deploy: bool = False, global_pool: str = 'avg'):
        super().__init__()
        if global_pool != 'avg':
            raise ValueError(f"the MindSpore GhostNet supports global_pool='avg' only, not {global_pool!r}")
        if deploy and version != 'v3':
            raise ValueError(f'GhostNet {version} has no deploy form (only V3 is re-parameterisable)')
        self.num_classes = num_classes
        stem_chs = make_divisible(16 * width, 4)
        self.conv_stem = Conv2d(in_chans, stem_chs, 3, 2, 1, bias=False)
        self.bn1 = BatchNorm2d(stem_chs)
        self.act1 = nn.ReLU()
        stages, prev_chs, layer_idx, taps = [], stem_chs, 0, []
        for stage_idx, cfg in enumerate(GHOSTNET_CFGS):
            layers = []
            for k, exp_size, c, se_ratio, s in cfg:
                out_chs, mid_chs = make_divisible(c * width, 4), make_divisible(exp_size * width, 4)
                if version == 'v3':
                    mode = 'shortcut' if layer_idx > 1 else 'original'
                    layers.append(GhostBottleneckV3(prev_chs, mid_chs, out_chs, k, s, se_ratio, mode, deploy))
                else:
                    attention = version == 'v2' and layer_idx > 1
                    layers.append(GhostBottleneck(prev_chs, mid_chs, out_chs, k, s, se_ratio, attention))
                prev_chs, layer_idx = out_chs, layer_idx + 1
            if cfg[-1][4] > 1:
                taps.append(stage_idx)
            stages.append(nn.SequentialCell(layers))
        out_chs = make_divisible(GHOSTNET_CFGS[-1][-1][1] * width, 4)
        stages.append(nn.SequentialCell([ConvBnAct(prev_chs, out_chs, 1, act='relu')]))
        self.blocks = nn.SequentialCell(stages)
        self.taps = tuple(taps)
        self.num_features = out_chs
        self.head_hidden_size = 1280
        self.global_pool = GlobalAvgPool()
        self.conv_head = Conv2d(out_chs, self.head_hidden_size, 1)
        self.act2 = nn.ReLU()
        self.flatten = nn.Flatten()
        self.dropout = nn.Dropout(p=drop_rate) if drop_rate > 0 else nn.Identity()
        self.classifier = Linear(self.head_hidden_size, num_classes) if num_classes > 0 else nn.Identity()

    def forward_features(self, x):
        return self.blocks(self.act1(self.bn1(self.conv_stem(x))))

    def forward_head(self, x, pre_logits: bool = False):
        x = self.flatten(self.act2(self.conv_head(self.global_pool(x))))
        x = self.dropout(x)
        return x if pre_logits else self.classifier(x)

    def forward_intermediates(self, x):
        x = self.conv_stem(x)
        outputs = [x]
        x = self.act1(self.bn1(x))
        for i, stage in enumerate(self.blocks):
            x = stage(x)
            if i in self.taps:
                outputs.append(x)
        return outputs

    def construct(self, x):
        return self.forward_head(self.forward_features(x))


def _kwargs_from_torch(model: Any) -> dict:
    return {'num_classes': model.num_classes, 'in_chans': model.in_chans, 'drop_rate': model.drop_rate,
            'deploy': any(getattr(m, 'infer_mode', False) for m in model.modules())}


@register_twin(*VARIANTS, kwargs_from_torch=_kwargs_from_torch)
def ghostnet(variant: str, **kwargs: Any) -> GhostNet:
    """The twin of a registered GhostNet variant (``num_classes``, ``in_chans``, ``drop_rate``, ``deploy``)."""
    width, version = VARIANTS[variant]
    return GhostNet(width=width, version=version, **kwargs)
