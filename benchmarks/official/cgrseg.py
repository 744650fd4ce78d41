"""Official CGRSeg (nizhenliang/CGRSeg, mmseg 0.27) for ``zoo.benchmark``, without mmseg or mmcv.

Builds the official EfficientFormerV2 segmentation backbone (``models/backbones/efficientformer_v2.py``) and the
official CGRSeg head (``models/decode_heads/``) with the settings of ``local_configs/cgrseg/*``, joined the way
mmseg's ``EncoderDecoder`` runs them at test time (head logits resized bilinearly to the input), which is what
the zoo's ``cgrseg_*`` return. The OpenMMLab pieces the files import are replaced, only while they load, by plain
``nn.Module`` stand-ins of the same arithmetic (``ConvModule`` = conv, BatchNorm, optional ReLU; SyncBN =
BatchNorm2d; the decode head base class's ``cls_seg`` = Dropout2d then a 1x1 conv). Point ``ZOO_OFFICIAL_SRC`` at
a folder holding the checkout as ``nizhenliang+CGRSeg`` (default ``/work/official-src``)::

    python -m zoo.benchmark --model cgrseg_t --compare python:benchmarks/official/cgrseg.py:cgrseg_t --rounds 3
"""
import importlib.util
import os
import sys
import types
from typing import List, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import DropPath, to_2tuple, trunc_normal_

_ROOT = os.path.join(os.environ.get('ZOO_OFFICIAL_SRC', '/work/official-src'), 'nizhenliang+CGRSeg', 'models')
_PKG = '_official_cgrseg'


class _Registry:
    """Stands in for an OpenMMLab registry: ``register_module()`` returns the class unchanged."""

    def register_module(self, *args, **kwargs):
        return (lambda cls: cls) if not args else args[0]


class _ConvModule(nn.Sequential):
    """mmcv's ConvModule as the head uses it: conv (no bias when normalized), BatchNorm, optional ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 groups: int = 1, norm_cfg: Optional[dict] = None, act_cfg: Optional[dict] = dict(type='ReLU'),
                 **kwargs):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, groups=groups,
                              bias=norm_cfg is None)
        if norm_cfg is not None:
            self.bn = nn.BatchNorm2d(out_channels)
        if act_cfg is not None:
            assert act_cfg['type'] == 'ReLU', act_cfg
            self.activate = nn.ReLU(inplace=True)


def _kaiming_init(module: nn.Module, mode: str = 'fan_out', nonlinearity: str = 'relu', bias: float = 0., **kw):
    nn.init.kaiming_normal_(module.weight, mode=mode, nonlinearity=nonlinearity)
    if getattr(module, 'bias', None) is not None:
        nn.init.constant_(module.bias, bias)


def _constant_init(module: nn.Module, val: float, bias: float = 0.):
    nn.init.constant_(module.weight, val)
    if getattr(module, 'bias', None) is not None:
        nn.init.constant_(module.bias, bias)


class _BaseDecodeHead(nn.Module):
    """The parts of mmseg's BaseDecodeHead that inference uses: input selection and ``cls_seg``."""

    def __init__(self, in_channels: Sequence[int], channels: int, *, num_classes: int, dropout_ratio: float = 0.1,
                 norm_cfg: Optional[dict] = None, act_cfg: dict = dict(type='ReLU'), in_index=-1,
                 input_transform: Optional[str] = None, align_corners: bool = False, **kwargs):
        super().__init__()
        assert input_transform == 'multiple_select'
        self.in_channels, self.channels, self.num_classes = list(in_channels), channels, num_classes
        self.in_index, self.input_transform, self.align_corners = list(in_index), input_transform, align_corners
        self.norm_cfg, self.act_cfg = norm_cfg, act_cfg
        self.conv_seg = nn.Conv2d(channels, num_classes, kernel_size=1)
        self.dropout = nn.Dropout2d(dropout_ratio) if dropout_ratio > 0 else None

    def _transform_inputs(self, inputs: List[torch.Tensor]) -> List[torch.Tensor]:
        return [inputs[i] for i in self.in_index]

    def cls_seg(self, feat: torch.Tensor) -> torch.Tensor:
        if self.dropout is not None:
            feat = self.dropout(feat)
        return self.conv_seg(feat)


def _module(name: str, **attrs) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__path__ = []  # a package, so that submodules and relative imports resolve
    module.__dict__.update(attrs)
    return module


def _stand_ins() -> dict:
    """Modules the official files import, by name; OpenMMLab ones only where they are not installed."""
    registry = _Registry()
    mods = {
        _PKG: _module(_PKG),
        f'{_PKG}.layers': _module(f'{_PKG}.layers', DropPath=DropPath, trunc_normal_=trunc_normal_),
        f'{_PKG}.layers.helpers': _module(f'{_PKG}.layers.helpers', to_2tuple=to_2tuple),
        f'{_PKG}.builder': _module(f'{_PKG}.builder', HEADS=registry, BACKBONES=registry),
        f'{_PKG}.backbones': _module(f'{_PKG}.backbones'),
        f'{_PKG}.decode_heads': _module(f'{_PKG}.decode_heads'),
        f'{_PKG}.decode_heads.decode_head': _module(f'{_PKG}.decode_heads.decode_head', BaseDecodeHead=_BaseDecodeHead),
    }
    openmmlab = {
        'mmcv': _module('mmcv'),
        'mmcv.cnn': _module('mmcv.cnn', ConvModule=_ConvModule, kaiming_init=_kaiming_init,
                            constant_init=_constant_init),
        'mmcv.runner': _module('mmcv.runner', _load_checkpoint=None),
        'mmseg': _module('mmseg'),
        'mmseg.ops': _module('mmseg.ops', resize=F.interpolate),
        'mmseg.utils': _module('mmseg.utils', get_root_logger=None),
        'mmseg.models': _module('mmseg.models'),
        'mmseg.models.utils': _module('mmseg.models.utils', __all__=[]),
        'mmseg.models.builder': _module('mmseg.models.builder', BACKBONES=registry, HEADS=registry),
    }
    mods.update({k: v for k, v in openmmlab.items() if k not in sys.modules})
    return mods


def _load_official() -> types.ModuleType:
    """Load the official backbone and head files into a private package; the stand-ins for OpenMMLab are removed
    from ``sys.modules`` again afterwards."""
    if f'{_PKG}.decode_heads.cgr_head' in sys.modules:
        return sys.modules[_PKG]
    stand_ins = _stand_ins()
    temporary = [k for k in stand_ins if not k.startswith(_PKG)]
    sys.modules.update(stand_ins)
    try:
        for rel in ('backbones/efficientformer_v2.py', 'decode_heads/rcm.py', 'decode_heads/dpg_head.py',
                    'decode_heads/cgr_head.py'):
            name = f'{_PKG}.' + rel[:-3].replace('/', '.')
            spec = importlib.util.spec_from_file_location(name, os.path.join(_ROOT, rel))
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
    finally:
        for k in temporary:
            sys.modules.pop(k, None)
    return sys.modules[_PKG]


class OfficialCGRSeg(nn.Module):
    """Backbone -> decode head -> logits resized bilinearly to the input (mmseg's test-time ``encode_decode``)."""

    def __init__(self, backbone: nn.Module, decode_head: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.decode_head = decode_head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.decode_head(self.backbone(x))
        return F.interpolate(out, size=x.shape[2:], mode='bilinear', align_corners=False)


def _build(backbone: str, in_channels: Sequence[int], channels: int, next_repeat: int, band: int) -> nn.Module:
    _load_official()
    backbones = sys.modules[f'{_PKG}.backbones.efficientformer_v2']
    heads = sys.modules[f'{_PKG}.decode_heads.cgr_head']
    norm_cfg = dict(type='SyncBN', requires_grad=True)
    head = heads.CGRSeg(
        in_channels=list(in_channels), in_index=[1, 2, 3], channels=channels, dropout_ratio=0.1, num_classes=150,
        is_dw=True, dw_size=band, neck_size=band, next_repeat=next_repeat, square_kernel_size=3, ratio=1,
        module='RCA', norm_cfg=norm_cfg, align_corners=False)
    return OfficialCGRSeg(getattr(backbones, backbone)(), head).eval()


def cgrseg_t() -> nn.Module:
    return _build('efficientformerv2_s1_feat', (48, 120, 224), 128, 5, 11)


def cgrseg_b() -> nn.Module:
    return _build('efficientformerv2_s2_feat', (64, 144, 288), 256, 6, 11)


def cgrseg_l() -> nn.Module:
    return _build('efficientformerv2_l_feat', (80, 192, 384), 256, 5, 9)
