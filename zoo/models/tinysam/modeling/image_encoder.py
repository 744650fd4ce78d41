"""TinySAM's image encoder: a TinyViT-5M trunk whose last stage keeps stride 16, plus SAM's neck.

The trunk reuses timm's TinyViT blocks (``MBConv``, ``TinyVitBlock``, ``PatchEmbed``, ``ConvNorm``), which
compute exactly what the official blocks compute. What differs from timm's ``TinyVit`` is the layout
(downsampling at the end of a stage, as in the official state dict), the last patch merging (stride 1,
so the 1024 x 1024 input gives a 64 x 64 embedding) and the neck (1x1 conv, LayerNorm2d, 3x3 conv,
LayerNorm2d) that maps the 320 trunk channels to SAM's 256-channel image embedding.

``forward`` returns the image embedding (B, 256, H/16, W/16), what SAM's mask decoder consumes.
``forward_features`` returns the trunk's last stage (B, 320, H/16, W/16) and ``forward_head`` applies
TinyViT's classifier (average pool, LayerNorm, Linear): the official checkpoint carries that head, so it
is kept (it counts in the official 6.07M parameters), though SAM never uses it.
"""
from __future__ import annotations

from typing import Any, List, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from timm.layers import LayerNorm2d
from timm.models import build_model_with_cfg, generate_default_cfgs
from timm.models._features import feature_take_indices
from timm.models._manipulate import checkpoint_seq
from timm.models.tiny_vit import Attention, ConvNorm, MBConv, NormMlp, PatchEmbed, TinyVitBlock

from ....layers import check_image_input
from ....layers.hooks import observed
from ....layers.onednn import conv2d_act, folded_conv_bn, fusable_activation, linear_act
from ....registry import register_model
from ....state_dicts import unwrap_state_dict
from ..utils.layout import rename_encoder_key

__all__ = ['TinySamImageEncoder', 'checkpoint_filter_fn']

RELEASE_URL = 'https://github.com/xinghaochen/TinySAM/releases/download/3.0/tinysam_42.3.pth'
SAM_PIXEL_MEAN = (123.675 / 255, 116.28 / 255, 103.53 / 255)
SAM_PIXEL_STD = (58.395 / 255, 57.12 / 255, 57.375 / 255)


def _check_global_pool(global_pool: str) -> None:
    if global_pool not in ('avg', ''):
        raise ValueError(f"global_pool must be 'avg' or '' (no pooling), got {global_pool!r}")


class PatchMerging(nn.Module):
    """1x1 conv, depthwise 3x3 conv with ``stride``, 1x1 conv (BN after each, GELU between). NCHW in/out."""

    def __init__(self, dim: int, out_dim: int, stride: int = 2, act_layer: type[nn.Module] = nn.GELU):
        super().__init__()
        self.conv1 = ConvNorm(dim, out_dim, 1, 1, 0)
        self.act = act_layer()
        self.conv2 = ConvNorm(out_dim, out_dim, 3, stride, 1, groups=out_dim)
        self.conv3 = ConvNorm(out_dim, out_dim, 1, 1, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _conv_norm_act(self.conv1, x, self.act)
        x = _conv_norm_act(self.conv2, x, self.act)
        return self.conv3(x)


def _conv_norm_act(conv_norm: ConvNorm, x: torch.Tensor, act: nn.Module) -> torch.Tensor:
    """``act(conv_norm(x))``, fused where ``conv_norm`` runs as a ``_FoldingConvNorm`` (the encoder makes its
    ConvNorms so; timm's ``reparameterize_model`` replaces them by their fused ``nn.Conv2d``)."""
    if isinstance(conv_norm, _FoldingConvNorm):
        return conv_norm.forward_act(x, act)
    return act(conv_norm(x))


class _FoldingConvNorm(ConvNorm):
    """timm's ConvNorm (conv, then BatchNorm), same parameters, run faster.

    In eval mode the BatchNorm's affine map is folded into the convolution's weight and bias inside every call
    (a few hundred numbers, recomputed each time, so never stale; differentiable): one pass over the feature map
    instead of two (BatchNorm was ~9% of the encoder's time). A 1x1 convolution runs as a matmul over the
    channels-last tokens (on the NHWC view, no copy): with one thread and a batch under 16, PyTorch sends 1x1
    convolutions to its slow reference kernel, which copies channels-last maps to NCHW and back (~5x slower).
    ``forward_act`` also applies the following activation, fused into the product in inference calls
    (``zoo.layers.onednn``). Same arithmetic up to float rounding. A quantized or otherwise replaced conv
    (Q-TinySAM) runs module by module, exactly as before.
    """

    def _plain(self) -> bool:
        return (type(self.conv) is nn.Conv2d and type(self.bn) is nn.BatchNorm2d and self.bn.running_var is not None
                and not observed(self.conv, self.bn))  # hooked modules (calibration) run as modules

    def _run(self, x: torch.Tensor, act: str) -> torch.Tensor:
        conv, bn = self.conv, self.bn
        if bn.training:
            weight, bias, act = conv.weight, conv.bias, 'none'  # the BatchNorm comes between
        else:
            weight, bias = folded_conv_bn(conv, bn)
        if conv.kernel_size == (1, 1) and conv.stride == (1, 1) and conv.padding == (0, 0) and conv.groups == 1:
            x = linear_act(x.permute(0, 2, 3, 1), weight.flatten(1), bias, act).permute(0, 3, 1, 2)
        else:
            x = conv2d_act(x, weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups, act)
        return bn(x) if bn.training else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self._plain():
            return self.bn(self.conv(x))
        return self._run(x, 'none')

    def forward_act(self, x: torch.Tensor, act: nn.Module) -> torch.Tensor:
        """``act(self(x))``, the activation fused where it can be."""
        name = fusable_activation(act)
        if name is None or not self._plain() or self.bn.training:
            return act(self(x))
        return self._run(x, name)


class _FusedMBConv(MBConv):
    """timm's MBConv with each ConvNorm's activation fused (see ``_FoldingConvNorm.forward_act``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = _conv_norm_act(self.conv1, x, self.act1)
        x = _conv_norm_act(self.conv2, x, self.act2)
        x = self.drop_path(self.conv3(x))
        x += shortcut
        return self.act3(x)


class _FusedPatchEmbed(PatchEmbed):
    """timm's TinyViT patch embedding with the first ConvNorm's activation fused."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(_conv_norm_act(self.conv1, x, self.act))


class _FusedNormMlp(NormMlp):
    """timm's TinyViT MLP (norm, fc1, GELU, fc2) with the GELU fused into ``fc1`` in inference calls; a
    quantized ``fc1`` (Q-TinySAM) runs module by module, exactly as before."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x)
        act = fusable_activation(self.act)
        if type(self.fc1) is nn.Linear and act is not None and not observed(self.fc1, self.act):
            x = linear_act(x, self.fc1.weight, self.fc1.bias, act)
        else:
            x = self.act(self.fc1(x))
        return self.drop2(self.fc2(self.drop1(x)))


#: timm classes run by their faster subclasses (same parameters, module tree and arithmetic up to rounding)
_FASTER = {ConvNorm: _FoldingConvNorm, MBConv: _FusedMBConv, PatchEmbed: _FusedPatchEmbed, NormMlp: _FusedNormMlp}


class _UncachedGradAttention(Attention):
    """timm's TinyViT attention, with its eval-mode bias cache used only where autograd is off (a bias cached
    with autograd on keeps the graph the first backward frees, so a second eval-mode backward failed), and
    keyed on the bias table's version and storage as well as the device, so that weights loaded or changed
    after a forward in eval mode are never served from a stale cache."""

    def get_attention_biases(self, device: torch.device) -> torch.Tensor:
        if self.training or torch.is_grad_enabled() or torch.jit.is_tracing() or torch.compiler.is_compiling():
            return self.attention_biases[:, self.attention_bias_idxs]
        table = self.attention_biases
        key = f'{device}-{table._version}-{table.data_ptr()}-{self.attention_bias_idxs._version}'
        if key not in self.attention_bias_cache:
            self.attention_bias_cache = {key: table[:, self.attention_bias_idxs]}
        return self.attention_bias_cache[key]


class TinySamStage(nn.Module):
    """One stage: MBConv blocks (``num_heads=0``) or windowed-attention blocks, then an optional merge."""

    def __init__(
            self,
            dim: int,
            depth: int,
            num_heads: int = 0,
            window_size: int = 7,
            mlp_ratio: float = 4.,
            conv_expand_ratio: float = 4.,
            local_conv_size: int = 3,
            drop: float = 0.,
            drop_path: Sequence[float] = (),
            out_dim: Optional[int] = None,
            merge_stride: int = 2,
    ):
        super().__init__()
        drop_path = list(drop_path) or [0.] * depth
        self.is_conv = num_heads == 0
        if self.is_conv:
            blocks = [MBConv(dim, dim, conv_expand_ratio, nn.GELU, drop_path[i]) for i in range(depth)]
        else:
            blocks = [
                TinyVitBlock(
                    dim, num_heads, window_size=window_size, mlp_ratio=mlp_ratio, drop=drop,
                    drop_path=drop_path[i], local_conv_size=local_conv_size)
                for i in range(depth)]
            for block in blocks:
                block.attn.__class__ = _UncachedGradAttention  # same parameters and arithmetic, see the class
                # explicit softmax(q k^T + bias) v, as the official code: with this additive bias, SDPA's CPU
                # kernel spends extra passes checking for fully masked rows (~5% of the encoder's time)
                block.attn.fused_attn = False
        self.blocks = nn.Sequential(*blocks)
        self.out = nn.Identity()  # names the stage output (before the merge) for FX feature extraction
        self.downsample = PatchMerging(dim, out_dim, merge_stride) if out_dim is not None else None
        self.grad_checkpointing = False

    def forward_blocks(self, x: torch.Tensor) -> torch.Tensor:
        """NCHW in, NCHW out (attention blocks work channels-last inside)."""
        if not self.is_conv:
            x = x.permute(0, 2, 3, 1)
        if self.grad_checkpointing and not torch.jit.is_scripting():
            x = checkpoint_seq(self.blocks, x)
        else:
            x = self.blocks(x)
        if not self.is_conv:
            x = x.permute(0, 3, 1, 2)
        return self.out(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_blocks(x)
        return self.downsample(x) if self.downsample is not None else x


class TinySamImageEncoder(nn.Module):
    """TinySAM / MobileSAM image encoder (TinyViT-5M trunk + SAM neck)."""

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
            drop_rate: float = 0.,
            drop_path_rate: float = 0.,
            global_pool: str = 'avg',
    ):
        super().__init__()
        _check_global_pool(global_pool)
        self.img_size = img_size
        self.in_chans = in_chans
        self.num_classes = num_classes
        self.global_pool = global_pool
        self.num_features = self.head_hidden_size = embed_dims[-1]
        self.out_chans = out_chans
        self.grad_checkpointing = False

        self.patch_embed = PatchEmbed(in_chans, embed_dims[0], nn.GELU)
        dpr = [x.item() for x in torch.linspace(0, drop_path_rate, sum(depths))]
        self.layers = nn.ModuleList()
        self.feature_info = []
        reduction = 4
        for i, depth in enumerate(depths):
            last = i == len(depths) - 1
            self.layers.append(TinySamStage(
                embed_dims[i], depth,
                num_heads=0 if i == 0 else num_heads[i],
                window_size=window_sizes[i],
                mlp_ratio=mlp_ratio,
                conv_expand_ratio=mbconv_expand_ratio,
                local_conv_size=local_conv_size,
                drop=drop_rate,
                drop_path=dpr[sum(depths[:i]):sum(depths[:i + 1])],
                out_dim=None if last else embed_dims[i + 1],
                merge_stride=1 if last else merge_strides[i],
            ))
            self.feature_info.append(dict(num_chs=embed_dims[i], reduction=reduction, module=f'layers.{i}.out'))
            if not last:
                reduction *= merge_strides[i]

        self.norm_head = nn.LayerNorm(embed_dims[-1])
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(embed_dims[-1], num_classes) if num_classes > 0 else nn.Identity()
        self.neck = nn.Sequential(
            nn.Conv2d(embed_dims[-1], out_chans, kernel_size=1, bias=False),
            LayerNorm2d(out_chans),
            nn.Conv2d(out_chans, out_chans, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(out_chans),
        )
        self.apply(self._init_weights)
        for m in self.modules():
            if type(m) in _FASTER:
                m.__class__ = _FASTER[type(m)]  # same parameters and module tree; see the classes

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    @torch.jit.ignore
    def no_weight_decay_keywords(self) -> set[str]:
        return {'attention_biases'}

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        return dict(stem=r'^patch_embed', blocks=r'^layers\.(\d+)' if coarse else [
            (r'^layers\.(\d+)\.downsample', (0,)), (r'^layers\.(\d+)\.blocks\.(\d+)', None)])

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable
        for stage in self.layers:
            stage.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        if global_pool is not None:
            _check_global_pool(global_pool)
            self.global_pool = global_pool
        self.num_classes = num_classes
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward_intermediates(
            self,
            x: torch.Tensor,
            indices: Optional[Union[int, List[int]]] = None,
            norm: bool = False,
            stop_early: bool = False,
            output_fmt: str = 'NCHW',
            intermediates_only: bool = False,
    ) -> Union[List[torch.Tensor], Tuple[torch.Tensor, List[torch.Tensor]]]:
        """Stage outputs (before each stage's merge), as timm's ``forward_intermediates``."""
        if output_fmt != 'NCHW':
            raise ValueError(f"output_fmt must be 'NCHW', got {output_fmt!r}")
        check_image_input(x, self.in_chans, name=type(self).__name__)
        take_indices, max_index = feature_take_indices(len(self.layers), indices)
        intermediates = []
        x = self._embed(x)
        stages = self.layers[:max_index + 1] if stop_early else self.layers
        for i, stage in enumerate(stages):
            x = stage.forward_blocks(x)
            if i in take_indices:
                intermediates.append(x.contiguous())
            if stage.downsample is not None:
                x = stage.downsample(x)
        if intermediates_only:
            return intermediates
        return x, intermediates

    def prune_intermediate_layers(
            self,
            indices: Union[int, List[int]] = 1,
            prune_norm: bool = False,
            prune_head: bool = True,
    ) -> List[int]:
        """Keep the stages up to the last of ``indices`` (without its merge); ``prune_head`` drops the SAM neck and
        the classifier with its norm. The trunk has no final norm of its own, so ``prune_norm`` changes nothing."""
        take_indices, max_index = feature_take_indices(len(self.layers), indices)
        self.layers = self.layers[:max_index + 1]
        self.layers[-1].downsample = None
        if prune_head:
            self.neck = nn.Identity()
            self.norm_head = nn.Identity()
            self.reset_classifier(0, '')
        return take_indices

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        """Patch embedding of a channels-last copy of the input: the convolutions then keep that layout (oneDNN's
        depthwise kernels are ~3x faster in it on CPU, ~1.2x for the whole encoder) and the attention stages'
        NHWC tokens are plain views. Same arithmetic; outputs are returned contiguous."""
        check_image_input(x, self.in_chans, name=type(self).__name__)
        return self.patch_embed(x.contiguous(memory_format=torch.channels_last))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Trunk features (B, 320, H/16, W/16)."""
        x = self._embed(x)
        for stage in self.layers:
            x = stage(x)
        return x.contiguous()

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """TinyViT's classifier on trunk features (kept for the checkpoint layout; SAM does not use it).
        Without pooling (``global_pool=''``) the norm and head act on every position: (B, C, H, W) stays NCHW."""
        if self.global_pool == 'avg':
            x = self.norm_head(x.mean(dim=(2, 3)))
        else:
            x = self.norm_head(x.permute(0, 2, 3, 1))
        x = self.head_drop(x)
        x = x if pre_logits else self.head(x)
        return x if self.global_pool == 'avg' else x.permute(0, 3, 1, 2)

    def forward_neck(self, x: torch.Tensor) -> torch.Tensor:
        """Trunk features -> SAM image embedding (B, 256, H/16, W/16)."""
        return self.neck(x).contiguous()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Image embedding for SAM's mask decoder: (B, 256, H/16, W/16)."""
        return self.forward_neck(self.forward_features(x))


def checkpoint_filter_fn(state_dict: dict[str, torch.Tensor], model: TinySamImageEncoder) -> dict[str, torch.Tensor]:
    """Official TinySAM checkpoint (whole SAM or encoder only) -> encoder state dict in the zoo layout."""
    state_dict = unwrap_state_dict(state_dict)
    if any(k.startswith('image_encoder.') for k in state_dict):
        state_dict = {k[len('image_encoder.'):]: v for k, v in state_dict.items() if k.startswith('image_encoder.')}
    out = {}
    for k, v in state_dict.items():
        if k.endswith('attention_bias_idxs'):
            continue
        out[rename_encoder_key(k)] = v
    if isinstance(model.head, nn.Identity):
        out = {k: v for k, v in out.items() if not k.startswith('head.')}
    return out


def _cfg(url: str = '', **kwargs: Any) -> dict[str, Any]:
    return {
        'url': url, 'num_classes': 1000, 'input_size': (3, 1024, 1024), 'pool_size': None,
        'crop_pct': 1.0, 'interpolation': 'bilinear', 'mean': SAM_PIXEL_MEAN, 'std': SAM_PIXEL_STD,
        'first_conv': 'patch_embed.conv1.conv', 'classifier': 'head', 'license': 'apache-2.0',
        **kwargs,
    }


default_cfgs = generate_default_cfgs({
    'tinysam_vit_t.sa1b': _cfg(
        url=RELEASE_URL,
        paper_ids='arXiv:2312.13789',
        notes=('image encoder of TinySAM; the classifier head is untrained (SAM does not use it)',
               'mean/std are SAM pixel statistics for inputs in [0, 1]')),
})


def _create_tinysam_encoder(variant: str, pretrained: bool = False, **kwargs: Any) -> TinySamImageEncoder:
    out_indices = kwargs.pop('out_indices', (0, 1, 2, 3))
    return build_model_with_cfg(
        TinySamImageEncoder, variant, pretrained,
        pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(out_indices=out_indices, feature_cls='getter'),
        **kwargs)


@register_model(task='sam', contract_input_size=(3, 64, 64))
def tinysam_vit_t(pretrained: bool = False, **kwargs: Any) -> TinySamImageEncoder:
    """TinySAM image encoder (TinyViT-5M trunk, stride 16, SAM neck); 6.07M parameters."""
    model_args = dict(embed_dims=(64, 128, 160, 320), depths=(2, 2, 6, 2), num_heads=(2, 4, 5, 10),
                      window_sizes=(7, 7, 14, 7), merge_strides=(2, 2, 1))
    return _create_tinysam_encoder('tinysam_vit_t', pretrained=pretrained, **dict(model_args, **kwargs))
