"""Four-stage pyramid of token-mixing MLP blocks on NCHW maps, the skeleton Wave-MLP and Hire-MLP share.

Layout (it is the official checkpoints' layout, so they load unchanged)::

    patch_embed                      7x7 stride-4 conv embedding
    network = [stage0, down0, stage1, down1, stage2, down2, stage3]
                                     stages: nn.Sequential of MixerBlock; downs: 3x3 stride-2 convs
    norm, head                       final norm, global average pool, linear classifier

A family subclass supplies the token mixer of each block (``make_mixer``) and its norm / activation
choices, and calls :meth:`init_weights` the way its official code initialises. The maps live in
channels-last memory (see :func:`to_channels_last`); the mixers are written for it. The skeleton provides
the timm model API: forward_features, forward_head, forward_intermediates, prune_intermediate_layers,
feature_info, reset_classifier, set_grad_checkpointing and group_matcher.
"""
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Type, Union

import torch
from timm.layers import trunc_normal_
from timm.models import checkpoint_seq
from timm.models._features import feature_take_indices
from torch import nn

from ..layers.conv_patch_embed import ConvPatchEmbed
from ..layers.input_checks import check_image_input
from ..layers.mixer_block import MixerBlock

#: make_mixer(stage_index, block_index_in_stage, dim) -> token mixer module
MixerFactory = Callable[[int, int, int], nn.Module]


def to_channels_last(x: torch.Tensor) -> torch.Tensor:
    """The same values in channels-last memory (NHWC), where the whole network then runs: oneDNN's
    convolutions take NHWC directly, while NCHW maps are reordered to and from its blocked layout at every
    convolution (with two or more threads even each 1x1 conv, PyTorch's single-thread path excepted);
    Wave-MLP-T measured 1.4x faster at two threads. Outputs and feature maps keep their (B, C, H, W) shape."""
    return x.contiguous(memory_format=torch.channels_last)


class MixerPyramid(nn.Module):
    """Stem, four stages of :class:`MixerBlock` joined by stride-2 convolutions, norm, pool and head.

    Args:
        make_mixer: builds the token mixer of one block from (stage index, block index, dim).
        depths: blocks per stage.
        embed_dims: channels per stage.
        mlp_ratios: channel-MLP expansion per stage.
        norm_layer: norm of the blocks and of the final norm.
        embed_norm_layer: norm after the stem and down-sampling convolutions (None: no norm).
        embed_act_layer: activation after them (None: none).
        min_input_size: the smallest height / width the stem takes.
    """

    def __init__(
            self,
            make_mixer: MixerFactory,
            depths: Sequence[int],
            embed_dims: Sequence[int],
            mlp_ratios: Sequence[float],
            norm_layer: Callable[[int], nn.Module] = nn.BatchNorm2d,
            embed_norm_layer: Optional[Callable[[int], nn.Module]] = nn.BatchNorm2d,
            embed_act_layer: Optional[Type[nn.Module]] = None,
            in_chans: int = 3,
            num_classes: int = 1000,
            global_pool: str = 'avg',
            drop_rate: float = 0.,
            drop_path_rate: float = 0.,
            min_input_size: int = 3,
    ) -> None:
        super().__init__()
        if not (len(depths) == len(embed_dims) == len(mlp_ratios)):
            raise ValueError('depths, embed_dims and mlp_ratios need one entry per stage')
        if global_pool not in ('avg', ''):
            raise ValueError(f"global_pool must be 'avg' or '', got {global_pool!r}")
        self.num_classes = num_classes
        self.global_pool = global_pool
        self.in_chans = in_chans
        self.num_features = self.head_hidden_size = embed_dims[-1]
        self.min_input_size = min_input_size
        self.grad_checkpointing = False
        num_stages = len(depths)

        self.patch_embed = ConvPatchEmbed(
            in_chans, embed_dims[0], kernel_size=7, stride=4, padding=2,
            norm_layer=embed_norm_layer, act_layer=embed_act_layer)

        # drop-path rate rises linearly over all blocks of the network
        total = sum(depths)
        network: List[nn.Module] = []
        self.feature_info: List[Dict[str, Any]] = []
        for i in range(num_stages):
            first = sum(depths[:i])
            blocks = [
                MixerBlock(
                    embed_dims[i], make_mixer(i, j, embed_dims[i]), mlp_ratio=mlp_ratios[i],
                    norm_layer=norm_layer, drop_path=drop_path_rate * (first + j) / max(total - 1, 1))
                for j in range(depths[i])]
            network.append(nn.Sequential(*blocks))
            self.feature_info.append(dict(num_chs=embed_dims[i], reduction=4 * 2 ** i, module=f'network.{2 * i}'))
            if i < num_stages - 1:
                network.append(ConvPatchEmbed(
                    embed_dims[i], embed_dims[i + 1], kernel_size=3, stride=2, padding=1,
                    norm_layer=embed_norm_layer, act_layer=embed_act_layer))
        self.network = nn.ModuleList(network)

        self.norm = norm_layer(self.num_features)
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def init_weights(self, include_convs: bool = False) -> None:
        """Truncated-normal (std 0.02) weights and zero biases for the linear layers, and for the
        convolutions too when ``include_convs`` (else PyTorch's default); unit-scale, zero-shift norms."""
        weighted = (nn.Linear, nn.Conv2d) if include_convs else (nn.Linear,)
        for m in self.modules():
            if isinstance(m, weighted):
                trunc_normal_(m.weight, std=.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    @property
    def num_stages(self) -> int:
        return (len(self.network) + 1) // 2

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> Dict[str, Any]:
        return dict(
            stem=r'^patch_embed',
            blocks=r'^network\.(\d+)' if coarse else [
                (r'^network\.(\d+)\.(\d+)', None),
                (r'^network\.(\d+)', (0,)),
                (r'^norm', (99999,)),
            ],
        )

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        self.num_classes = num_classes
        if global_pool is not None:
            if global_pool not in ('avg', ''):
                raise ValueError(f"global_pool must be 'avg' or '', got {global_pool!r}")
            self.global_pool = global_pool
        weight = self.patch_embed.proj.weight
        head = nn.Linear(self.num_features, num_classes, device=weight.device, dtype=weight.dtype) \
            if num_classes > 0 else nn.Identity()
        self.head = head.train(self.training)

    @torch.jit.unused
    def _check(self, x: torch.Tensor) -> None:
        check_image_input(x, self.in_chans, 1, self.min_input_size, type(self).__name__)

    @torch.jit.unused
    def _run(self, module: nn.Module, x: torch.Tensor, is_stage: bool) -> torch.Tensor:
        if is_stage and self.grad_checkpointing:
            return checkpoint_seq(module, x)
        return module(x)

    def forward_intermediates(
            self,
            x: torch.Tensor,
            indices: Optional[Union[int, List[int]]] = None,
            norm: bool = False,
            stop_early: bool = False,
            output_fmt: str = 'NCHW',
            intermediates_only: bool = False,
    ) -> Union[List[torch.Tensor], Tuple[torch.Tensor, List[torch.Tensor]]]:
        """Stage outputs (reductions 4, 8, 16, 32), optionally with the final features.

        Args:
            x: input image batch.
            indices: take the last n stages if int, all if None, the listed stages if a sequence.
            norm: apply the final norm to the last stage's output when it is taken.
            stop_early: stop after the last stage asked for.
            output_fmt: only 'NCHW'.
            intermediates_only: return only the stage outputs.
        """
        if output_fmt != 'NCHW':
            raise ValueError(f"output_fmt must be 'NCHW', got {output_fmt!r}")
        self._check(x)
        take_indices, max_index = feature_take_indices(self.num_stages, indices)
        last_idx = self.num_stages - 1
        stop = 2 * max_index + 1 if stop_early and not torch.jit.is_scripting() else len(self.network)

        intermediates = []
        x = self.patch_embed(to_channels_last(x))
        for idx in range(stop):
            x = self._run(self.network[idx], x, idx % 2 == 0)
            stage_idx = idx // 2
            if idx % 2 == 0 and stage_idx in take_indices:
                intermediates.append(self.norm(x) if norm and stage_idx == last_idx else x)
        if intermediates_only:
            return intermediates
        if stop == len(self.network):
            x = self.norm(x)
        return x, intermediates

    def prune_intermediate_layers(
            self,
            indices: Union[int, List[int]] = 1,
            prune_norm: bool = False,
            prune_head: bool = True,
    ) -> List[int]:
        """Drop the stages after the last one in ``indices`` (and the norm / head if asked)."""
        take_indices, max_index = feature_take_indices(self.num_stages, indices)
        self.network = self.network[:2 * max_index + 1]
        if prune_norm:
            self.norm = nn.Identity()
        if prune_head:
            self.reset_classifier(0, '')
        return take_indices

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_scripting():
            self._check(x)
        x = self.patch_embed(to_channels_last(x))
        for idx, module in enumerate(self.network):
            if self.grad_checkpointing and idx % 2 == 0 and not torch.jit.is_scripting():
                x = checkpoint_seq(module, x)
            else:
                x = module(x)
        return self.norm(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if self.global_pool == 'avg':
            x = x.mean((2, 3))
        x = self.head_drop(x)
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))
