"""SqueezeTime: mobile video recognition by squeezing time into channels.

Paper: "No Time to Waste: Squeeze Time into Channel for Mobile Video Understanding" (arXiv:2405.08344).
Official code: https://github.com/xinghaochen/SqueezeTime (PyTorch, mmaction2).

A clip (B, C, T, H, W) is folded into a (B, C*T, H, W) image and processed by a 2D ResNet-50 whose 3x3
convolutions are Channel-Time Learning (CTL) modules: a temporal-importance gate (global context ->
per-channel sigmoid weights, which with time folded into channels weight frames) followed by a 1x1
mixing, plus an inter-temporal object interaction branch whose learned position embedding lets the
network recover where things are after time has been squeezed away. Stages reduce resolution with a
depthwise 2x2 stride-2 convolution instead of strided 3x3 convolutions.

Parameter names follow the official backbone, so official (mmaction2) checkpoints load after
``checkpoint_filter_fn`` strips the recognizer prefixes (``backbone.net.`` and ``cls_head.fc_cls.``).
Unlike the official constructor, nothing here assumes a GPU.
"""
from __future__ import annotations

from functools import partial
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import DropPath, create_classifier, register_notrace_function
from timm.models import build_model_with_cfg, checkpoint_seq, generate_default_cfgs
from timm.models._features import feature_take_indices
from timm.models._manipulate import adapt_input_conv

from ..layers import check_video_input
from ..registry import register_model
from ..state_dicts import unwrap_state_dict

__all__ = ['SqueezeTime', 'ChannelTimeLearning', 'InterTemporalInteraction', 'CtlBottleneck']

#: Smallest frame side that still leaves a 1x1 map after the stem and the three stage reductions.
MIN_FRAME_SIZE = 29


def _conv1x1(in_chs: int, out_chs: int) -> nn.Conv2d:
    return nn.Conv2d(in_chs, out_chs, kernel_size=1, bias=False)


@register_notrace_function  # an FX leaf: comparing sizes is Python control flow
def resize_pos_embed_to(pos_embed: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A (1, C, h, w) position embedding resized bilinearly (corners aligned) to the spatial size of ``x``."""
    if pos_embed.shape[-2:] == x.shape[-2:]:
        return pos_embed
    return F.interpolate(pos_embed, size=x.shape[-2:], mode='bilinear', align_corners=True)


class InterTemporalInteraction(nn.Module):
    """Inter-temporal object interaction branch of the CTL module.

    A 3x3 convolution of the input, modulated by a sigmoid map computed from a narrow context path
    (3x3 -> 7x7 -> 3x3 convolutions) that sees the temporally re-weighted input plus a learned position
    embedding. The embedding is defined at the training resolution and resized bilinearly to other sizes.
    """
    pos_embed_index = 3  # the embedding is added to the input of the 7x7 convolution (glo_conv[3])

    def __init__(self, in_chs: int, out_chs: int, pos_dim: int = 7, context_chs: int = 16):
        super().__init__()
        self.short_conv = nn.Conv2d(in_chs, out_chs, kernel_size=3, padding=1)
        self.glo_conv = nn.Sequential(
            nn.Conv2d(in_chs, context_chs, kernel_size=3, padding=1),
            nn.BatchNorm2d(context_chs),
            nn.ReLU(inplace=True),
            nn.Conv2d(context_chs, context_chs, kernel_size=7, padding=3),
            nn.BatchNorm2d(context_chs),
            nn.ReLU(inplace=True),
            nn.Conv2d(context_chs, out_chs, kernel_size=3, padding=1),
            nn.Sigmoid(),
        )
        self.pos_embed = nn.Parameter(torch.zeros(1, context_chs, pos_dim, pos_dim))

    def forward(self, x: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        context = x * gate
        for i, layer in enumerate(self.glo_conv):
            if i == self.pos_embed_index:
                context = context + resize_pos_embed_to(self.pos_embed, context)
            context = layer(context)
        return self.short_conv(x) * context


class ChannelTimeLearning(nn.Module):
    """Channel-Time Learning (CTL) module, the replacement for a ResNet bottleneck's 3x3 convolution.

    ``param_conv`` turns global context into per-channel importance weights (channels are frames x
    features here); the weighted input goes through a 1x1 ``temporal_conv`` and, in parallel, the
    inter-temporal interaction branch; the two are summed.
    """

    def __init__(self, in_chs: int, out_chs: int, pos_dim: int = 7, context_chs: int = 16):
        super().__init__()
        self.param_conv = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            _conv1x1(in_chs, in_chs),
            nn.BatchNorm2d(in_chs),
            nn.ReLU(inplace=True),
            _conv1x1(in_chs, in_chs),
            nn.Sigmoid(),
        )
        self.temporal_conv = _conv1x1(in_chs, out_chs)
        self.spatial_conv = InterTemporalInteraction(in_chs, out_chs, pos_dim=pos_dim, context_chs=context_chs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.param_conv(x)
        return self.temporal_conv(x * gate) + self.spatial_conv(x, gate)


class CtlBottleneck(nn.Module):
    """ResNet bottleneck (1x1 -> CTL -> 1x1, expansion 4) with a depthwise 2x2 stride-2 reduction in front.

    ``downsample`` reduces the input (and with it the shortcut) when ``stride == 2``; ``shortcut_conv``
    projects the shortcut when the width changes.
    """
    expansion = 4

    def __init__(
            self,
            in_chs: int,
            planes: int,
            stride: int = 1,
            pos_dim: int = 7,
            context_chs: int = 16,
            drop_path: float = 0.,
    ):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f'CtlBottleneck supports stride 1 or 2, got {stride}')
        out_chs = planes * self.expansion
        self.downsample = nn.Sequential(
            nn.Conv2d(in_chs, in_chs, kernel_size=2, stride=2, groups=in_chs),
            nn.BatchNorm2d(in_chs),
        ) if stride == 2 else None
        self.shortcut_conv = nn.Sequential(
            _conv1x1(in_chs, out_chs),
            nn.BatchNorm2d(out_chs),
        ) if in_chs != out_chs else None

        self.conv1 = _conv1x1(in_chs, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = ChannelTimeLearning(planes, planes, pos_dim=pos_dim, context_chs=context_chs)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, out_chs)
        self.bn3 = nn.BatchNorm2d(out_chs)
        self.act = nn.ReLU(inplace=True)
        self.drop_path = DropPath(drop_path) if drop_path > 0. else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.downsample is not None:
            x = self.downsample(x)
        shortcut = x if self.shortcut_conv is None else self.shortcut_conv(x)
        out = self.act(self.bn1(self.conv1(x)))
        out = self.act(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.act(self.drop_path(out) + shortcut)


class SqueezeTime(nn.Module):
    """SqueezeTime video classifier: (B, in_chans, num_frames, H, W) clips -> (B, num_classes) logits.

    Args:
        layers: blocks per stage.
        widths: bottleneck widths per stage (stage outputs are 4x these); widths[0] is also the stem width.
        pos_dims: side of each stage's position embedding; the training resolution of the stage
            (224 / 4, 8, 16, 32 for 224-pixel frames). Other sizes resize the embeddings.
        num_frames: frames per clip; folded into the channels, so fixed at construction.
        in_chans: channels per frame.
        num_classes: classifier outputs (0: no classifier, pooled features).
        global_pool: 'avg' (official) or any timm pooling type.
        drop_rate: dropout before the classifier (the official I2D head uses 0.5).
        drop_path_rate: stochastic depth, linearly increasing over blocks (not used officially).
        context_chs: width of the interaction branch's context path.
    """

    def __init__(
            self,
            layers: Sequence[int] = (3, 4, 6, 3),
            widths: Sequence[int] = (64, 128, 256, 512),
            pos_dims: Sequence[int] = (56, 28, 14, 7),
            num_frames: int = 16,
            in_chans: int = 3,
            num_classes: int = 400,
            global_pool: str = 'avg',
            drop_rate: float = 0.5,
            drop_path_rate: float = 0.,
            context_chs: int = 16,
    ):
        super().__init__()
        if not len(layers) == len(widths) == len(pos_dims) == 4:
            raise ValueError('layers, widths and pos_dims need one entry for each of the 4 stages')
        self.num_classes = num_classes
        self.num_frames = num_frames
        self.in_chans = in_chans
        self.drop_rate = drop_rate
        self.grad_checkpointing = False

        stem_chs = widths[0]
        self.conv1 = nn.Conv2d(in_chans * num_frames, stem_chs, kernel_size=5, stride=2, padding=2, bias=False)
        self.bn1 = nn.BatchNorm2d(stem_chs)
        self.act1 = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.feature_info = [dict(num_chs=stem_chs, reduction=2, module='act1')]

        dpr = torch.linspace(0, drop_path_rate, sum(layers)).tolist()
        in_chs, reduction, block_idx = stem_chs, 4, 0
        for i, (depth, planes, pos_dim) in enumerate(zip(layers, widths, pos_dims)):
            stride = 1 if i == 0 else 2
            reduction *= stride
            blocks = []
            for j in range(depth):
                blocks.append(CtlBottleneck(
                    in_chs, planes, stride=stride if j == 0 else 1, pos_dim=pos_dim, context_chs=context_chs,
                    drop_path=dpr[block_idx]))
                in_chs = planes * CtlBottleneck.expansion
                block_idx += 1
            self.add_module(f'layer{i + 1}', nn.Sequential(*blocks))
            self.feature_info.append(dict(num_chs=in_chs, reduction=reduction, module=f'layer{i + 1}'))

        self.num_features = self.head_hidden_size = in_chs
        self.global_pool, self.fc = create_classifier(self.num_features, num_classes, pool_type=global_pool)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, InterTemporalInteraction):
                nn.init.kaiming_normal_(m.pos_embed, mode='fan_out', nonlinearity='relu')
        if isinstance(self.fc, nn.Linear):
            nn.init.normal_(self.fc.weight, std=0.01)
            nn.init.zeros_(self.fc.bias)

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> Dict[str, Any]:
        return dict(stem=r'^conv1|bn1|maxpool', blocks=r'^layer(\d+)' if coarse else r'^layer(\d+)\.(\d+)')

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        self.num_classes = num_classes
        if global_pool is None:
            global_pool = self.global_pool.pool_type
        self.global_pool, self.fc = create_classifier(self.num_features, num_classes, pool_type=global_pool)
        self.head_hidden_size = self.num_features * self.global_pool.feat_mult()

    def fold_time(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T, H, W) clips -> (B, C*T, H, W) images, channel index c*T + t (the official order)."""
        check_video_input(x, self.in_chans, self.num_frames, MIN_FRAME_SIZE, type(self).__name__)
        return x.flatten(1, 2)

    def _stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.act1(self.bn1(self.conv1(self.fold_time(x))))

    def _stages(self) -> List[nn.Module]:
        return [self.layer1, self.layer2, self.layer3, self.layer4]

    def _run_stage(self, stage: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if self.grad_checkpointing and not torch.jit.is_scripting():
            return checkpoint_seq(stage, x)
        return stage(x)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self._stem(x))
        for stage in self._stages():
            x = self._run_stage(stage, x)
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.global_pool(x)
        if self.drop_rate:
            x = F.dropout(x, p=float(self.drop_rate), training=self.training)
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_intermediates(
            self,
            x: torch.Tensor,
            indices: Optional[Union[int, List[int]]] = None,
            norm: bool = False,
            stop_early: bool = False,
            output_fmt: str = 'NCHW',
            intermediates_only: bool = False,
    ) -> Union[List[torch.Tensor], Tuple[torch.Tensor, List[torch.Tensor]]]:
        """Stem and stage outputs (NCHW maps: time is folded into channels from the first layer on).

        Args:
            x: (B, C, T, H, W) clips.
            indices: take these feature indices (0: stem, 1-4: stages), or the last n if an int.
            norm: unused (no final norm), kept for the timm interface.
            stop_early: stop after the last stage taken.
            output_fmt: only 'NCHW'.
            intermediates_only: return only the intermediates.
        """
        if output_fmt != 'NCHW':
            raise ValueError(f"output_fmt must be 'NCHW', got {output_fmt!r}")
        intermediates = []
        take_indices, max_index = feature_take_indices(len(self.feature_info), indices)
        x = self._stem(x)
        if 0 in take_indices:
            intermediates.append(x)
        x = self.maxpool(x)
        stages = self._stages()
        if stop_early:
            stages = stages[:max_index]
        for i, stage in enumerate(stages, start=1):
            x = self._run_stage(stage, x)
            if i in take_indices:
                intermediates.append(x)
        if intermediates_only:
            return intermediates
        return x, intermediates

    def prune_intermediate_layers(
            self,
            indices: Union[int, List[int]] = 1,
            prune_norm: bool = False,
            prune_head: bool = True,
    ) -> List[int]:
        """Drop the stages (and optionally the head) after the last index taken."""
        take_indices, max_index = feature_take_indices(len(self.feature_info), indices)
        for i in range(max_index + 1, 5):
            setattr(self, f'layer{i}', nn.Identity())
        if prune_head:
            self.reset_classifier(0, '')
        return take_indices


_RECOGNIZER_PREFIXES = (('backbone.net.', ''), ('cls_head.fc_cls.', 'fc.'))


def _adapt_stem(weight: torch.Tensor, model: SqueezeTime) -> torch.Tensor:
    """Adapt the folded stem weight (O, C*T, k, k) of a C-channel checkpoint to the model's in_chans.

    Each frame's C input channels are adapted as timm adapts an image stem (sum for one channel, repeat
    and rescale for more). Any other mismatch (e.g. another clip length) is left to the strict load.
    """
    out_chs, folded, kh, kw = weight.shape
    src_chans = (getattr(model, 'pretrained_cfg', None) or {}).get('input_size', (3,))[0]
    t = model.num_frames
    if model.in_chans == src_chans or folded != src_chans * t:
        return weight
    per_frame = weight.reshape(out_chs, src_chans, t, kh, kw).transpose(1, 2).reshape(-1, src_chans, kh, kw)
    per_frame = adapt_input_conv(model.in_chans, per_frame, base_chans=src_chans)
    return per_frame.reshape(out_chs, t, model.in_chans, kh, kw).transpose(1, 2).reshape(out_chs, -1, kh, kw)


def checkpoint_filter_fn(state_dict: Dict[str, torch.Tensor], model: SqueezeTime) -> Dict[str, torch.Tensor]:
    """Official mmaction2 recognizer checkpoint -> zoo layout.

    Strips ``backbone.net.``, maps the I2D head's ``cls_head.fc_cls.*`` to ``fc.*`` and adapts the stem
    to ``in_chans`` != 3 frame by frame. A zoo-layout dict passes unchanged.
    """
    state_dict = unwrap_state_dict(state_dict)
    out = {}
    for k, v in state_dict.items():
        for old, new in _RECOGNIZER_PREFIXES:
            if k.startswith(old):
                k = new + k[len(old):]
                break
        out[k] = v
    if 'conv1.weight' in out:
        out['conv1.weight'] = _adapt_stem(out['conv1.weight'], model)
    return out


def _create_squeezetime(variant: str, pretrained: bool = False, **kwargs: Any) -> SqueezeTime:
    out_indices = kwargs.pop('out_indices', (0, 1, 2, 3, 4))
    return build_model_with_cfg(
        SqueezeTime, variant, pretrained,
        pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(out_indices=out_indices, feature_cls='getter'),
        **kwargs,
    )


_RELEASES = 'https://github.com/xinghaochen/SqueezeTime/releases/download/ckpts'


def _cfg(url: str = '', **kwargs: Any) -> Dict[str, Any]:
    return {
        # timm's input_size is per frame; clips are (B, 3, 16, H, W) (model.num_frames)
        'url': url, 'num_classes': 400, 'input_size': (3, 224, 224), 'min_input_size': (3, 29, 29),
        'pool_size': (7, 7), 'crop_pct': 0.875, 'interpolation': 'bilinear',
        'mean': IMAGENET_DEFAULT_MEAN, 'std': IMAGENET_DEFAULT_STD,
        'first_conv': 'conv1', 'classifier': 'fc', 'license': 'apache-2.0',
        'paper_ids': 'arXiv:2405.08344', 'paper_name': 'No Time to Waste: Squeeze Time into Channel for '
                                                      'Mobile Video Understanding',
        'origin_url': 'https://github.com/xinghaochen/SqueezeTime',
        'notes': ('video model: input clips (B, 3, 16, H, W), 16 frames sampled at interval 4',),
        **kwargs,
    }


default_cfgs = generate_default_cfgs({
    # Kinetics-400, 16 frames (interval 4) at 224x224: 71.64 top-1 (official README).
    'squeezetime_k400': _cfg(url=f'{_RELEASES}/SqueezeTime_K400_71.64.pth'),
    # Kinetics-600 head on the same backbone: 76.06 top-1 (official README).
    'squeezetime_k600': _cfg(url=f'{_RELEASES}/SqueezeTime_K600_76.06.pth', num_classes=600),
    # HMDB51 split 1, fine-tuned from Kinetics-400 (tested on 286-pixel crops): 65.56 top-1 (official README).
    'squeezetime_hmdb51': _cfg(url=f'{_RELEASES}/SqueezeTime_HMDB51_65.56.pth', num_classes=51,
                               test_input_size=(3, 286, 286), test_crop_pct=1.0),
})

_CONTRACT_CLIP = (3, 16, 32, 32)
_register_video = partial(register_model, task='video', contract_input_size=_CONTRACT_CLIP)
# the other heads on the same network: the contract runs them with the slow tests
_register_other_head = partial(_register_video, contract_slow=True)

_R50 = dict(layers=(3, 4, 6, 3), widths=(64, 128, 256, 512), pos_dims=(56, 28, 14, 7), num_frames=16)


@_register_video
def squeezetime_k400(pretrained: bool = False, **kwargs: Any) -> SqueezeTime:
    """SqueezeTime (ResNet-50 depth) for Kinetics-400, 16-frame 224x224 clips."""
    return _create_squeezetime('squeezetime_k400', pretrained, **dict(_R50, **kwargs))


@_register_other_head
def squeezetime_k600(pretrained: bool = False, **kwargs: Any) -> SqueezeTime:
    """SqueezeTime (ResNet-50 depth) for Kinetics-600, 16-frame 224x224 clips."""
    return _create_squeezetime('squeezetime_k600', pretrained, **dict(_R50, **kwargs))


@_register_other_head
def squeezetime_hmdb51(pretrained: bool = False, **kwargs: Any) -> SqueezeTime:
    """SqueezeTime (ResNet-50 depth) for HMDB51, 16-frame clips, fine-tuned from Kinetics-400."""
    return _create_squeezetime('squeezetime_hmdb51', pretrained, **dict(_R50, **kwargs))
