r"""Official SqueezeTime (xinghaochen/SqueezeTime, mmaction2) for ``zoo.benchmark``: backbone + I2D head.

    python -m zoo.benchmark --model squeezetime_k400 --batch-size 2 \
        --compare python:benchmarks/official/squeezetime.py:squeezetime_k400

The files are ``mmaction/models/backbones/SqueezeTime.py`` and ``mmaction/models/heads/i2d_head.py``, read from
``$ZOO_OFFICIAL_SRC/xinghaochen+SqueezeTime`` (``ZOO_OFFICIAL_SRC`` defaults to ``/work/official-src``) or, when
that checkout lacks them, from the git mirror ``$ZOO_OFFICIAL_MIRROR/xinghaochen+SqueezeTime/repo`` (default
``/work/.mirror``) at HEAD. They load with stand-ins for what they import from mmaction2 / mmengine (the model
registry, ``ConfigType``, the head's base class, which only stores ``num_classes`` and ``in_channels``, and
``normal_init``), and with the backbone constructor's ``.cuda()`` dropped; nothing that computes is replaced.
The model is the K400 recognizer of ``configs/recognition/SqueezeTime/SqueezeTime_K400.py`` (ResNet-50 width,
16 frames squeezed into 48 input channels, 400 classes), in eval mode: the zoo's ``squeezetime_k400`` combines
the same backbone and head, with the same parameter count.
"""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from types import ModuleType

from torch import nn

_REPO = 'xinghaochen+SqueezeTime'
_BACKBONE = 'mmaction/models/backbones/SqueezeTime.py'
_HEAD = 'mmaction/models/heads/i2d_head.py'


def _source(relpath: str) -> tuple[str, str]:
    """(text, where) of an official file: the checkout's copy, else the mirror's HEAD."""
    path = os.path.join(os.environ.get('ZOO_OFFICIAL_SRC', '/work/official-src'), _REPO, relpath)
    if os.path.isfile(path):
        with open(path, encoding='utf-8') as f:
            return f.read(), path
    mirror = os.path.join(os.environ.get('ZOO_OFFICIAL_MIRROR', '/work/.mirror'), _REPO, 'repo')
    try:
        text = subprocess.run(['git', '-C', mirror, 'show', f'HEAD:{relpath}'], check=True, capture_output=True,
                              text=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        raise FileNotFoundError(f'no official SqueezeTime code at {path} nor in {mirror}; set ZOO_OFFICIAL_SRC '
                                f'or ZOO_OFFICIAL_MIRROR') from e
    return text, f'{mirror}:{relpath}'


class _Registry:
    def register_module(self, *args, **kwargs):
        return lambda cls: cls


class _BaseHead(nn.Module):
    """mmaction's BaseHead as far as I2DHead uses it at inference: it stores the sizes."""

    def __init__(self, num_classes: int, in_channels: int, loss_cls=None, **kwargs):
        super().__init__()
        self.num_classes = num_classes
        self.in_channels = in_channels


def _stub_modules() -> dict[str, ModuleType]:
    def module(name: str, **attrs) -> ModuleType:
        m = ModuleType(name)
        m.__dict__.update(attrs)
        m.__path__ = []  # a package, so that relative imports resolve
        return m

    return {
        'mmaction': module('mmaction'), 'mmaction.registry': module('mmaction.registry', MODELS=_Registry()),
        'mmaction.utils': module('mmaction.utils', ConfigType=dict),
        'mmaction.models': module('mmaction.models'), 'mmaction.models.heads': module('mmaction.models.heads'),
        'mmaction.models.heads.base': module('mmaction.models.heads.base', BaseHead=_BaseHead),
        'mmengine': module('mmengine'), 'mmengine.model': module('mmengine.model'),
        'mmengine.model.weight_init': module('mmengine.model.weight_init',
                                             normal_init=lambda m, std=1.0, **kw: nn.init.normal_(m.weight, 0, std)),
    }


@contextlib.contextmanager
def _stubbed():
    """The stand-ins in sys.modules while the official files load; whatever was there before, after."""
    stubs = _stub_modules()
    saved = {name: sys.modules.get(name) for name in stubs}
    sys.modules.update(stubs)
    try:
        yield
    finally:
        for name, old in saved.items():
            if old is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = old


def _load(relpath: str, name: str, package: str, edits: tuple[tuple[str, str], ...] = ()) -> ModuleType:
    text, where = _source(relpath)
    for old, new in edits:
        if text.count(old) != 1:
            raise RuntimeError(f'{where}: expected one {old!r} to edit, found {text.count(old)}')
        text = text.replace(old, new)
    module = ModuleType(name)
    module.__file__, module.__package__ = where, package
    exec(compile(text, where, 'exec'), module.__dict__)
    return module


class _Recognizer(nn.Module):
    """backbone -> cls_head, as mmaction's Recognizer3D runs them (without its test-time softmax)."""

    def __init__(self, backbone: nn.Module, cls_head: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.cls_head = cls_head

    def forward(self, x):
        return self.cls_head(self.backbone(x))


def squeezetime_k400() -> nn.Module:
    with _stubbed():
        backbone = _load(_BACKBONE, '_official_squeezetime_backbone', 'mmaction.models.backbones',
                         edits=(('pos_dim=pos_dim).cuda()', 'pos_dim=pos_dim)'),))
        head = _load(_HEAD, '_official_squeezetime_head', 'mmaction.models.heads')
        model = _Recognizer(
            backbone.SqueezeTime(depth=50, widen_factor=1.0, dropout=0.5, input_channels=48, n_classes=400,
                                 pos_dim=[56, 28, 14, 7]),
            head.I2DHead(num_classes=400, in_channels=2048, spatial_type='avg', dropout_ratio=0.5),
        )
    return model.eval()
