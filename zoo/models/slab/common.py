"""What the four SLAB backbones share: the PRepBN wiring and deploy form, the simplified linear attention
block, the patch embedding, the classifier plumbing and the official-checkpoint filter helpers."""
import math
import re
from functools import partial
from typing import Any, Callable, Optional, Union

import torch
from torch import nn

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import register_notrace_module, trunc_normal_
from timm.models._features import feature_take_indices
from timm.models._manipulate import reparameterize_model

from ...layers.linear_attention import resize_token_grid, simplified_linear_attention
from ...layers.prepbn import PRepBN, RepBN, convert_norm_layout, fold_affine_after_conv, \
    fold_affine_into_linear, rep_bn_affine, set_norm_progress
from ...state_dicts import unwrap_state_dict

NormFactory = Callable[[int], nn.Module]
RELEASES = 'https://github.com/xinghaochen/SLAB/releases/download/ckpts'


def prepbn(blend_steps: int, eps: float = 1e-5) -> NormFactory:
    """Factory of the official progressive norm (LayerNorm -> RepBN over ``blend_steps``)."""
    return partial(PRepBN, blend_steps=blend_steps, eps=eps)


def slab_cfg(url: str = '', first_conv: str = 'patch_embed.proj', **kwargs: Any) -> dict[str, Any]:
    """Default pretrained cfg of a SLAB variant (official release ``url``, ImageNet-1k at 224)."""
    return {
        'url': url, 'num_classes': 1000, 'input_size': (3, 224, 224), 'pool_size': (7, 7), 'crop_pct': 0.875,
        'interpolation': 'bicubic', 'mean': IMAGENET_DEFAULT_MEAN, 'std': IMAGENET_DEFAULT_STD,
        'first_conv': first_conv, 'classifier': 'head', 'license': 'apache-2.0', **kwargs,
    }


def check_attn_types(attn_types: str, num_stages: int) -> None:
    """``attn_types`` has one letter per stage: ``'S'`` softmax / window attention, ``'L'`` SLA."""
    if len(attn_types) != num_stages or set(attn_types) - {'S', 'L'}:
        raise ValueError(f"attn_types must hold one of 'S' (softmax) or 'L' (linear) per stage ({num_stages}), "
                         f'got {attn_types!r}')


def check_pool(global_pool: str, allowed: tuple[str, ...]) -> str:
    if global_pool not in allowed:
        raise ValueError(f'global_pool must be one of {allowed}, got {global_pool!r}')
    return global_pool


def check_output_fmt(output_fmt: str, allowed: tuple[str, ...]) -> None:
    if output_fmt not in allowed:
        raise ValueError(f'output_fmt must be one of {allowed} for this model, got {output_fmt!r}')


def new_head(model: nn.Module, num_features: int, num_classes: int) -> nn.Module:
    """A fresh classifier (Identity for 0 classes) on the model's device and dtype, in its train / eval mode."""
    ref = next(model.parameters())
    head = nn.Linear(num_features, num_classes, device=ref.device, dtype=ref.dtype) if num_classes > 0 \
        else nn.Identity()
    return head.train(model.training)


def tokens_to_map(x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """(B, H*W, C) tokens -> (B, C, H, W)."""
    return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], hw[0], hw[1])


def is_rep(norm: nn.Module) -> bool:
    return isinstance(norm, (RepBN, PRepBN))


def fold_into_linears(norm: nn.Module, owner: nn.Module, names: tuple[str, ...]) -> bool:
    """Fold ``norm`` into the input side of the linears ``owner.<name>``; True if folded."""
    if not is_rep(norm):
        return False
    scale, shift = rep_bn_affine(norm)
    for name in names:
        setattr(owner, name, fold_affine_into_linear(getattr(owner, name), scale, shift))
    return True


def init_weights(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        trunc_normal_(m.weight, std=.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


#: in a run shorter than the PRepBN schedule, the share of the run by which the LayerNorm -> RepBN blend ends
SHORT_RUN_BLEND_END = 0.8


def short_run_norm_step(model: nn.Module, step: int, total_steps: int) -> int:
    """The PRepBN schedule step for global step ``step`` of a ``total_steps`` run: ``step`` itself when the
    run covers the schedule (or its length is unknown), else ``step`` stretched so the schedule ends at
    :data:`SHORT_RUN_BLEND_END` of the run."""
    length = getattr(model, '_prepbn_schedule_steps', None)
    if length is None:  # constant: read the buffers once, not at every step (no host sync per step)
        length = max((m.warmup_steps + int(m.total_step) for m in model.modules() if isinstance(m, PRepBN)),
                     default=0)
        model._prepbn_schedule_steps = length
    if total_steps <= 0 or length <= total_steps:
        return step
    end = max(int(total_steps * SHORT_RUN_BLEND_END), 1)
    return min(step * length // end, length)


class SlabMixin:
    """Norm schedule and deploy form, shared by the four backbones."""

    def set_norm_progress(self, step: int) -> None:
        """Set the LayerNorm-to-RepBN blend of every PRepBN to global training step ``step``."""
        set_norm_progress(self, step)

    def on_train_step(self, step: int, total_steps: int) -> None:
        """Per-step hook of the training engine (``zoo.train.hooks``): the blend follows the global step.

        A run of at least the official schedule's length (warm-up plus blend, e.g. 300k steps) follows it step
        for step. A shorter run would train almost pure LayerNorm and then be scored with RepBN alone (eval
        mode), so there the schedule is compressed to end at :data:`SHORT_RUN_BLEND_END` of the run, the share
        the blend takes in the official PVT recipe (300k of about 375k steps: 300 epochs at batch 1024). Only
        training-mode outputs depend on this; eval mode is RepBN alone either way."""
        self.set_norm_progress(short_run_norm_step(self, step, total_steps))

    @torch.no_grad()
    def fuse(self) -> 'SlabMixin':
        """Deploy form, in place (eval mode): every RepBN folded into its neighbouring linear layer or
        convolution, the rest turned into per-channel affines; returns the model. The blocks implement
        ``reparameterize()``, so ``timm.models.reparameterize_model`` gives the same result."""
        reparameterize_model(self.eval(), inplace=True)
        return self

    def reparameterize(self) -> 'SlabMixin':
        return self.fuse()


class StagedHeadMixin(SlabMixin):
    """Classifier over the average of the last NCHW feature map, shared by the hierarchical backbones."""

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        """A new classifier for ``num_classes`` (0: none); ``global_pool`` ``'avg'`` or ``''`` (the feature map)."""
        self.num_classes = num_classes
        if global_pool is not None:
            self.global_pool = check_pool(global_pool, ('avg', ''))
        self.head = new_head(self, self.num_features, num_classes)

    def _keep_stages(self, n: int) -> None:
        """After pruning: the first ``n`` stages remain, and the head pools the last of them."""
        self.num_stages = n
        self.feature_info = self.feature_info[:n]
        self.num_features = self.head_hidden_size = self.feature_info[-1]['num_chs']

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if self.global_pool == 'avg':
            x = x.mean(dim=(2, 3))
        x = self.head_drop(x)
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


class NormedStagesMixin(StagedHeadMixin):
    """Stage loop ``_run`` (NHWC inside) with a final norm: Swin and CSWin."""

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        take: list[int] = []
        x, _ = self._run(x, take, self.num_stages - 1, False)
        return self.norm(x).permute(0, 3, 1, 2)

    def forward_intermediates(self, x: torch.Tensor, indices: Optional[Union[int, list[int]]] = None,
                              norm: bool = False, stop_early: bool = False, output_fmt: str = 'NCHW',
                              intermediates_only: bool = False):
        """Stage outputs (``indices``: how many of the last, or which) as NCHW maps."""
        check_output_fmt(output_fmt, ('NCHW',))
        take, max_index = feature_take_indices(self.num_stages, indices)
        last = max_index if (stop_early or intermediates_only) else self.num_stages - 1
        x, outs = self._run(x, list(take), last, norm)
        if intermediates_only:
            return outs
        return self.norm(x).permute(0, 3, 1, 2), outs


class PatchEmbed(nn.Module):
    """Convolutional patch embedding to tokens ``(B, H*W, C)``, with an optional norm."""

    def __init__(self, in_chans: int, embed_dim: int, kernel_size: int, stride: int, padding: int = 0,
                 norm_layer: Optional[NormFactory] = None):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size, stride, padding)
        self.norm = norm_layer(embed_dim) if norm_layer else nn.Identity()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        x = self.proj(x)
        hw = (x.shape[2], x.shape[3])
        # contiguous: a transposed view would make every later residual add and linear strided (slower)
        return self.norm(x.flatten(2).transpose(1, 2).contiguous()), hw

    def reparameterize(self) -> None:
        if is_rep(self.norm):
            self.proj = fold_affine_after_conv(self.proj, *rep_bn_affine(self.norm))
            self.norm = nn.Identity()


@register_notrace_module  # shape-dependent windows / grids: a leaf for torch.fx
class SimplifiedLinearAttention(nn.Module):
    """SLA over a ``(B, H*W, C)`` token map: ReLU linear attention + DWC on values + learned key positions.

    ``split_qkv`` selects the official PVT layout (``q`` and ``kv`` linears) over the fused ``qkv``.
    ``pos_size`` is the grid of the learned positional encoding, resized to the actual grid when they differ.
    """

    def __init__(self, dim: int, num_heads: int, pos_size: tuple[int, int], qkv_bias: bool = True,
                 kernel_size: int = 5, split_qkv: bool = False, proj_drop: float = 0.):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f'dim ({dim}) must be a multiple of num_heads ({num_heads})')
        self.num_heads = num_heads
        self.pos_size = (int(pos_size[0]), int(pos_size[1]))
        head_dim = dim // num_heads
        if split_qkv:
            self.q = nn.Linear(dim, dim, bias=qkv_bias)
            self.kv = nn.Linear(dim, dim * 2, bias=qkv_bias)
        else:
            self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        self.dwc = nn.Conv2d(head_dim, head_dim, kernel_size, padding=kernel_size // 2, groups=head_dim)
        self.positional_encoding = nn.Parameter(torch.zeros(1, self.pos_size[0] * self.pos_size[1], dim))

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        if hasattr(self, 'kv'):  # the split layout (a static branch for TorchScript)
            q = self.q(x)
            k, v = self.kv(x).chunk(2, dim=-1)
        else:
            q, k, v = self.qkv(x).chunk(3, dim=-1)
        k = k + resize_token_grid(self.positional_encoding, self.pos_size, hw)
        x = simplified_linear_attention(q, k, v, self.num_heads, hw, self.dwc.weight, self.dwc.bias)
        return self.proj_drop(self.proj(x))

    def input_linears(self) -> tuple[str, ...]:
        return ('q', 'kv') if hasattr(self, 'kv') else ('qkv',)


# ---------------------------------------------------------------------------------------------------
# official checkpoints
# ---------------------------------------------------------------------------------------------------

_POSITION_TABLE = re.compile(r'(^|\.)(pos_embed\d*|positional_encoding)$')


def _square_side(positions: int, key: str) -> int:
    side = math.isqrt(positions)
    if side * side != positions:
        raise ValueError(f'{key}: {positions} positions are not a square grid; cannot resample it')
    return side


def resample_position_tables(state_dict: dict[str, torch.Tensor],
                             target: dict[str, torch.Tensor], num_prefix_tokens: int = 0) -> dict[str, torch.Tensor]:
    """Learned position tables (``pos_embed*``, ``positional_encoding``) stored for another input size, resized
    (bilinear, as the models resize them at run time) to the shapes of ``target``; e.g. a checkpoint
    pre-trained at 128 px fine-tuned at 224. A ViT's class-token position is kept as it is."""
    out = dict(state_dict)
    for key, value in state_dict.items():
        want = target.get(key)
        if want is None or value.shape == want.shape or value.ndim != 3 or not _POSITION_TABLE.search(key):
            continue
        prefix = num_prefix_tokens if key.endswith('pos_embed') and '.' not in key else 0
        src = _square_side(value.shape[1] - prefix, key)
        dst = _square_side(want.shape[1] - prefix, key)
        grid = resize_token_grid(value[:, prefix:], (src, src), (dst, dst))
        out[key] = torch.cat([value[:, :prefix], grid], dim=1)
    return out


def filter_official_state_dict(state_dict: dict[str, Any], model: nn.Module, recomputed: tuple[str, ...] = (),
                               unused: tuple[str, ...] = (), num_prefix_tokens: int = 0) -> dict[str, torch.Tensor]:
    """An official SLAB checkpoint (bare or wrapped) made to fit ``model``.

    Drops the buffers the model recomputes (keys ending in a name of ``recomputed``) and the official parameters
    the forward pass never uses (``unused``, when the model has no such key), maps between the RepBN and
    progressive norm layouts, and resamples position tables stored for another input size.
    """
    target = model.state_dict()
    out = {k: v for k, v in unwrap_state_dict(state_dict).items() if k.rsplit('.', 1)[-1] not in recomputed}
    out = {k: v for k, v in out.items() if k in target or k.rsplit('.', 1)[-1] not in unused}
    out = resample_position_tables(out, target, num_prefix_tokens)
    return convert_norm_layout(out, target)
