"""Vision GNN: isotropic ViG and Pyramid ViG.

Paper: "Vision GNN: An Image is Worth Graph of Nodes", Han et al., NeurIPS 2022 (arXiv 2206.00272).
Official code and weights: https://github.com/huawei-noah/Efficient-AI-Backbones (vig_pytorch).

Patches of a convolutional stem are graph nodes; every block links each node to its k nearest
neighbours in feature space (dilated KNN; Pyramid ViG adds a relative-position bias to the distances
and takes the candidates from an average-pooled map) and mixes features with a max-relative graph
convolution (:class:`~zoo.layers.grapher.Grapher`) followed by an FFN.

The state-dict layout is the official one (``stem.convs.*``, ``pos_embed``, ``backbone.{i}.{0,1}.*``,
``prediction.*``), so the official checkpoints load directly. Beyond the official code the models take
any input size that is a multiple of the total stride: the position embedding and the relative-position
tables are resized to the actual grid, and ``k`` / the dilation are capped to the number of nodes.
Pyramid models serve as detection / segmentation backbones through ``features_only=True`` or
``forward_intermediates`` (reductions 4, 8, 16, 32).
"""

from functools import partial
from typing import Any, Dict, List, Optional, Sequence, Tuple, Type, Union

import torch
import torch.nn.functional as F
from torch import nn
from timm.layers import SelectAdaptivePool2d, register_notrace_function
from timm.models import build_model_with_cfg, generate_default_cfgs
from timm.models._features import feature_take_indices
from timm.models._manipulate import checkpoint_seq

from ..layers.attention_bias import resample_attention_bias
from ..layers.conv_ffn import ConvFFN
from ..layers.factory_kwargs import with_factory_kwargs
from ..layers.grapher import Grapher
from ..layers.input_checks import check_image_input, square_size
from ..registry import register_model
from ..state_dicts import unwrap_state_dict

__all__ = ['VisionGNN']


class Stem(nn.Module):
    """``num_down`` stride-2 3x3 conv + BN + act layers (widths ending at ``out_chs``), then a 3x3 conv + BN."""

    def __init__(self, in_chs: int, out_chs: int, num_down: int, act_layer: Type[nn.Module] = nn.GELU):
        super().__init__()
        layers: List[nn.Module] = []
        prev = in_chs
        for i in range(num_down):
            chs = out_chs // 2 ** (num_down - 1 - i)
            layers += [nn.Conv2d(prev, chs, 3, stride=2, padding=1), nn.BatchNorm2d(chs), act_layer()]
            prev = chs
        layers += [nn.Conv2d(out_chs, out_chs, 3, stride=1, padding=1), nn.BatchNorm2d(out_chs)]
        self.convs = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.convs(x)


class Downsample(nn.Module):
    """Stride-2 3x3 conv + BN between Pyramid ViG stages."""

    def __init__(self, in_chs: int, out_chs: int):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(in_chs, out_chs, 3, stride=2, padding=1), nn.BatchNorm2d(out_chs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class VisionGNN(nn.Module):
    """ViG (one stage, ``stem_down=4``) or Pyramid ViG (four stages, ``stem_down=2``).

    Args:
        depths: blocks per stage.
        embed_dims: channels per stage.
        num_knn: (first, last) neighbour count; blocks get ``int(linspace(first, last))`` (ViG grows k
            from 9 to 18, Pyramid ViG keeps 9).
        reductions: per stage, the pooling factor of the KNN candidates (Pyramid ViG: 4, 2, 1, 1).
        relative_pos: add the relative-position bias to the KNN distances (Pyramid ViG).
        stem_down: stride-2 convs in the stem (4 for ViG, 2 for Pyramid ViG).
        img_size: the native resolution, which sizes the position embedding, the relative-position
            tables and the dilation cap (as the official code does at 224); other sizes resize them.
        stochastic / epsilon: stochastic dilated aggregation during training (off in the official
            configs; epsilon 0.2).
        head_hidden_size: width of the 1x1 conv before the classifier.
        drop_rate: dropout before the classifier. drop_path_rate: stochastic depth, linear over blocks.
    """

    def __init__(
            self,
            depths: Sequence[int] = (12,),
            embed_dims: Sequence[int] = (192,),
            num_knn: Tuple[int, int] = (9, 18),
            reductions: Sequence[int] = (1,),
            relative_pos: bool = False,
            stem_down: int = 4,
            img_size: Union[int, Tuple[int, int]] = 224,
            in_chans: int = 3,
            num_classes: int = 1000,
            global_pool: str = 'avg',
            stochastic: bool = False,
            epsilon: float = 0.2,
            head_hidden_size: int = 1024,
            act_layer: Type[nn.Module] = nn.GELU,
            drop_rate: float = 0.0,
            drop_path_rate: float = 0.0,
    ):
        super().__init__()
        img_size = square_size(img_size, type(self).__name__)
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.drop_rate = drop_rate
        self.grad_checkpointing = False
        self.stem_stride = 2 ** stem_down
        self.stride = self.stem_stride * 2 ** (len(depths) - 1)
        self.num_features = embed_dims[-1]
        self.head_hidden_size = head_hidden_size

        self.stem = Stem(in_chans, embed_dims[0], stem_down, act_layer=act_layer)
        grid = img_size // self.stem_stride
        self.pos_embed = nn.Parameter(torch.zeros(1, embed_dims[0], grid, grid))

        n_blocks = sum(depths)
        # schedules computed on the CPU whatever the default device (a model may be built on 'meta')
        dpr = torch.linspace(0, drop_path_rate, n_blocks, device='cpu').tolist()
        knn = [int(v) for v in torch.linspace(num_knn[0], num_knn[1], n_blocks, device='cpu').tolist()]
        max_dilation = max(1, (img_size // self.stride) ** 2 // max(knn))  # official: nodes at 224 // max k
        layers: List[nn.Module] = []
        self.feature_info: List[Dict[str, Any]] = []
        self._feature_layers: List[int] = []  # backbone index whose output each feature_info entry is
        idx = 0
        for stage, (depth, dim) in enumerate(zip(depths, embed_dims)):
            if stage > 0:
                layers.append(Downsample(embed_dims[stage - 1], dim))
                grid //= 2
            for _ in range(depth):
                layers.append(nn.Sequential(
                    Grapher(dim, k=knn[idx], dilation=min(idx // 4 + 1, max_dilation), reduction=reductions[stage],
                            stochastic=stochastic, epsilon=epsilon, grid=grid, relative_pos=relative_pos,
                            drop_path=dpr[idx], act_layer=act_layer),
                    ConvFFN(dim, dim * 4, act_layer=act_layer, drop_path=dpr[idx]),
                ))
                idx += 1
                if len(depths) == 1:  # isotropic: every block is a feature point
                    self._add_feature(len(layers) - 1, dim, self.stem_stride)
            if len(depths) > 1:
                self._add_feature(len(layers) - 1, dim, self.stem_stride * 2 ** stage)
        self.backbone = nn.Sequential(*layers)

        self.global_pool = SelectAdaptivePool2d(pool_type=global_pool)
        self.prediction = nn.Sequential(
            nn.Conv2d(self.num_features, head_hidden_size, 1),
            nn.BatchNorm2d(head_hidden_size),
            act_layer(),
            nn.Dropout(drop_rate),
            nn.Conv2d(head_hidden_size, num_classes, 1) if num_classes > 0 else nn.Identity(),
        )
        self._init_weights()

    def _add_feature(self, layer: int, chs: int, reduction: int) -> None:
        self._feature_layers.append(layer)
        self.feature_info.append(dict(num_chs=chs, reduction=reduction, module=f'backbone.{layer}'))

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    @torch.jit.ignore
    def no_weight_decay(self) -> set:
        return {'pos_embed'}

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> Dict[str, Any]:
        return dict(stem=r'^stem|^pos_embed', blocks=r'^backbone\.(\d+)')

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.prediction[4]

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        self.num_classes = num_classes
        if global_pool is not None:
            self.global_pool = SelectAdaptivePool2d(pool_type=global_pool)
        weight = self.prediction[0].weight
        head = nn.Conv2d(self.head_hidden_size, num_classes, 1, device=weight.device, dtype=weight.dtype) \
            if num_classes > 0 else nn.Identity()
        self.prediction[4] = head.train(self.prediction.training)

    @torch.jit.unused
    def _check(self, x: torch.Tensor) -> None:
        name = getattr(self, 'pretrained_cfg', {}).get('architecture') or type(self).__name__
        check_image_input(x, self.in_chans, self.stride, self.stride, name)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_scripting():
            self._check(x)
        x = add_pos_embed(self.stem(x), self.pos_embed)
        if self.grad_checkpointing and not torch.jit.is_scripting():
            return checkpoint_seq(self.backbone, x)
        return self.backbone(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.global_pool(x)
        head = self.prediction  # conv, norm, act, dropout, classifier (indexed: fx and TorchScript need named calls)
        x = head[3](head[2](head[1](head[0](x))))
        if not pre_logits:
            x = self.prediction[4](x)
        return x if self.global_pool.is_identity() else x.flatten(1)

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
        """Features of the ``feature_info`` points (Pyramid ViG: the four stages; ViG: every block).

        ``norm`` is accepted for API compatibility; the model has no final norm.
        """
        if output_fmt != 'NCHW':
            raise ValueError(f'{type(self).__name__} returns NCHW intermediates, got output_fmt={output_fmt!r}')
        if not torch.jit.is_scripting():
            self._check(x)
        take_indices, max_index = feature_take_indices(len(self._feature_layers), indices)
        take_layers = {self._feature_layers[i] for i in take_indices}
        last = self._feature_layers[max_index] if stop_early else len(self.backbone) - 1
        x = add_pos_embed(self.stem(x), self.pos_embed)
        intermediates = []
        for i, layer in enumerate(self.backbone):
            if i > last:
                break
            x = layer(x)
            if i in take_layers:
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
        """Drop the layers after the last wanted feature point (and the head); returns the kept indices."""
        take_indices, max_index = feature_take_indices(len(self._feature_layers), indices)
        self.backbone = self.backbone[:self._feature_layers[max_index] + 1]
        if prune_head:
            self.prediction = nn.Sequential(*[nn.Identity() for _ in range(5)])
            self.num_classes = 0
            self.head_hidden_size = self.num_features
        return take_indices


@register_notrace_function  # size-dependent resampling: a leaf for torch.fx
def add_pos_embed(x: torch.Tensor, pos_embed: torch.Tensor) -> torch.Tensor:
    """``x + pos_embed``, the (1, C, h, w) embedding resized bicubically to x's grid when it differs."""
    if pos_embed.shape[-2:] != x.shape[-2:]:
        pos_embed = F.interpolate(pos_embed, size=x.shape[-2:], mode='bicubic', align_corners=False)
    return x + pos_embed


def checkpoint_filter_fn(state_dict: Dict[str, torch.Tensor], model: VisionGNN) -> Dict[str, torch.Tensor]:
    """Official checkpoint -> this model: strip wrappers and resize the position tables if the model's
    native size differs from the checkpoint's."""
    # EMA weights before the raw ones when a checkpoint holds both, as timm's load_state_dict does
    state_dict = unwrap_state_dict(state_dict, ('state_dict_ema', 'model_ema', 'state_dict', 'model'))
    target = model.state_dict()
    out = {}
    for k, v in state_dict.items():
        if k in target and v.shape != target[k].shape:
            if k == 'pos_embed':
                v = F.interpolate(v.float(), size=target[k].shape[-2:], mode='bicubic', align_corners=False)
            elif k.endswith('relative_pos'):
                grapher = model.get_submodule(k[:-len('.relative_pos')])
                r, src, dst = grapher.reduction, round(v.shape[1] ** 0.5), grapher.grid
                v = resample_attention_bias(v.float(), (src, src), (src // r, src // r), (dst, dst),
                                            (dst // r, dst // r), antialias=False)
        out[k] = v
    return out


def _create_vig(variant: str, pretrained: bool = False, **kwargs: Any) -> VisionGNN:
    # Pyramid ViG: the four stages; ViG: the last four blocks (all at stride 16)
    out_indices = (0, 1, 2, 3) if len(kwargs.get('depths', ())) > 1 else 4
    return build_model_with_cfg(
        with_factory_kwargs(VisionGNN), variant, pretrained,
        pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(out_indices=out_indices, feature_cls='getter'),
        **kwargs,
    )


def _cfg(url: str = '', **kwargs: Any) -> Dict[str, Any]:
    return {
        'url': url, 'num_classes': 1000, 'input_size': (3, 224, 224), 'pool_size': (7, 7),
        'crop_pct': 0.9, 'interpolation': 'bicubic', 'mean': (0.5, 0.5, 0.5), 'std': (0.5, 0.5, 0.5),
        'first_conv': 'stem.convs.0', 'classifier': 'prediction.4', 'license': 'apache-2.0',
        'paper_ids': 'arXiv:2206.00272', 'paper_name': 'Vision GNN: An Image is Worth Graph of Nodes',
        'origin_url': 'https://github.com/huawei-noah/Efficient-AI-Backbones', **kwargs,
    }


_RELEASES = 'https://github.com/huawei-noah/Efficient-AI-Backbones/releases/download'

default_cfgs = generate_default_cfgs({
    'vig_ti_224_gelu.in1k': _cfg(url=f'{_RELEASES}/vig/vig_ti_74.5.pth', pool_size=(14, 14)),
    'vig_s_224_gelu.in1k': _cfg(url=f'{_RELEASES}/vig/vig_s_80.6.pth', pool_size=(14, 14)),
    'vig_b_224_gelu.in1k': _cfg(url=f'{_RELEASES}/vig/vig_b_82.6.pth', pool_size=(14, 14)),
    'pvig_ti_224_gelu.in1k': _cfg(url=f'{_RELEASES}/pyramid-vig/pvig_ti_78.5.pth.tar'),
    'pvig_s_224_gelu.in1k': _cfg(url=f'{_RELEASES}/pyramid-vig/pvig_s_82.1.pth.tar'),
    'pvig_m_224_gelu.in1k': _cfg(url=f'{_RELEASES}/pyramid-vig/pvig_m_83.1.pth.tar'),
    'pvig_b_224_gelu.in1k': _cfg(url=f'{_RELEASES}/pyramid-vig/pvig_b_83.66.pth.tar', crop_pct=0.95),
})

_isotropic = partial(register_model, input_divisor=16)
_pyramid = partial(register_model, input_divisor=32)
_PYRAMID = dict(num_knn=(9, 9), reductions=(4, 2, 1, 1), relative_pos=True, stem_down=2)


@_isotropic
def vig_ti_224_gelu(pretrained: bool = False, **kwargs: Any) -> VisionGNN:
    """ViG-Ti: 12 blocks of 192 channels, k 9 -> 18."""
    args = dict(depths=(12,), embed_dims=(192,))
    return _create_vig('vig_ti_224_gelu', pretrained, **dict(args, **kwargs))


@_isotropic
def vig_s_224_gelu(pretrained: bool = False, **kwargs: Any) -> VisionGNN:
    """ViG-S: 16 blocks of 320 channels, k 9 -> 18."""
    args = dict(depths=(16,), embed_dims=(320,))
    return _create_vig('vig_s_224_gelu', pretrained, **dict(args, **kwargs))


@_isotropic
def vig_b_224_gelu(pretrained: bool = False, **kwargs: Any) -> VisionGNN:
    """ViG-B: 16 blocks of 640 channels, k 9 -> 18."""
    args = dict(depths=(16,), embed_dims=(640,))
    return _create_vig('vig_b_224_gelu', pretrained, **dict(args, **kwargs))


@_pyramid
def pvig_ti_224_gelu(pretrained: bool = False, **kwargs: Any) -> VisionGNN:
    """Pyramid ViG-Ti: depths 2-2-6-2, widths 48-96-240-384."""
    args = dict(depths=(2, 2, 6, 2), embed_dims=(48, 96, 240, 384), **_PYRAMID)
    return _create_vig('pvig_ti_224_gelu', pretrained, **dict(args, **kwargs))


@_pyramid
def pvig_s_224_gelu(pretrained: bool = False, **kwargs: Any) -> VisionGNN:
    """Pyramid ViG-S: depths 2-2-6-2, widths 80-160-400-640."""
    args = dict(depths=(2, 2, 6, 2), embed_dims=(80, 160, 400, 640), **_PYRAMID)
    return _create_vig('pvig_s_224_gelu', pretrained, **dict(args, **kwargs))


@_pyramid
def pvig_m_224_gelu(pretrained: bool = False, **kwargs: Any) -> VisionGNN:
    """Pyramid ViG-M: depths 2-2-16-2, widths 96-192-384-768."""
    args = dict(depths=(2, 2, 16, 2), embed_dims=(96, 192, 384, 768), **_PYRAMID)
    return _create_vig('pvig_m_224_gelu', pretrained, **dict(args, **kwargs))


@_pyramid
def pvig_b_224_gelu(pretrained: bool = False, **kwargs: Any) -> VisionGNN:
    """Pyramid ViG-B: depths 2-2-18-2, widths 128-256-512-1024."""
    args = dict(depths=(2, 2, 18, 2), embed_dims=(128, 256, 512, 1024), **_PYRAMID)
    return _create_vig('pvig_b_224_gelu', pretrained, **dict(args, **kwargs))
