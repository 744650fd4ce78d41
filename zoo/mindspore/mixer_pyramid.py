"""MindSpore twin of the skeleton Wave-MLP and Hire-MLP share (:mod:`zoo.models.mixer_pyramid`): stem, four
stages of residual token-mixing blocks joined by stride-2 convs, norm, pool, head; same attribute names."""
from __future__ import annotations

from typing import Callable, Optional, Sequence

from mindspore import nn, ops

from .layers import GELU, Conv2d, DropPath, Linear
from .layers.mlp import ConvMlp

#: make_mixer(stage_index, block_index_in_stage, dim) -> token mixer cell
MixerFactory = Callable[[int, int, int], nn.Cell]
NormFactory = Callable[[int], nn.Cell]


class BranchReweight(nn.Cell):
    """Split attention over parallel branches: per-channel softmax weights from the pooled sum
    (:class:`zoo.layers.branch_reweight.BranchReweight`)."""

    def __init__(self, dim: int, num_branches: int = 3, hidden_ratio: float = 0.25):
        super().__init__()
        self.num_branches = num_branches
        self.fc1 = Conv2d(dim, int(dim * hidden_ratio), 1)
        self.act = GELU()
        self.fc2 = Conv2d(int(dim * hidden_ratio), dim * num_branches, 1)
        self.softmax = nn.Softmax(axis=-1)

    def construct(self, branches):
        total = branches[0]
        for k in range(1, self.num_branches):
            total = total + branches[k]
        b, c = total.shape[0], total.shape[1]
        weights = self.fc2(self.act(self.fc1(ops.mean(total, (2, 3), keep_dims=True))))
        weights = self.softmax(weights.reshape(b, c, self.num_branches))
        out = branches[0] * weights[:, :, 0].reshape(b, c, 1, 1)
        for k in range(1, self.num_branches):
            out = out + branches[k] * weights[:, :, k].reshape(b, c, 1, 1)
        return out


class ConvPatchEmbed(nn.Cell):
    """``act(norm(proj(x)))`` with a strided conv ``proj``; norm and act optional."""

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int, stride: int, padding: int,
                 norm_layer: Optional[NormFactory] = None, act_layer: Optional[Callable[[], nn.Cell]] = None):
        super().__init__()
        self.proj = Conv2d(in_chs, out_chs, kernel_size, stride, padding)
        self.norm = norm_layer(out_chs) if norm_layer is not None else nn.Identity()
        self.act = act_layer() if act_layer is not None else nn.Identity()

    def construct(self, x):
        return self.act(self.norm(self.proj(x)))


class MixerBlock(nn.Cell):
    """``x + attn(norm1(x))``, then ``x + mlp(norm2(x))`` (with stochastic depth in training)."""

    def __init__(self, dim: int, token_mixer: nn.Cell, mlp_ratio: float, norm_layer: NormFactory,
                 drop_path: float = 0.0):
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.attn = token_mixer
        self.norm2 = norm_layer(dim)
        self.mlp = ConvMlp(dim, int(dim * mlp_ratio))
        self.drop_path = DropPath(drop_path)

    def construct(self, x):
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class MixerPyramid(nn.Cell):
    """``patch_embed``, ``network`` = [stage0, down0, stage1, down1, stage2, down2, stage3], ``norm``, ``head``;
    ``forward_intermediates`` gives the four stage outputs (reductions 4, 8, 16, 32)."""

    def __init__(self, make_mixer: MixerFactory, depths: Sequence[int], embed_dims: Sequence[int],
                 mlp_ratios: Sequence[float], norm_layer: NormFactory, embed_norm_layer: Optional[NormFactory],
                 embed_act_layer: Optional[Callable[[], nn.Cell]] = None, in_chans: int = 3,
                 num_classes: int = 1000, global_pool: str = 'avg', drop_rate: float = 0.0,
                 drop_path_rate: float = 0.0):
        super().__init__()
        if global_pool not in ('avg', ''):
            raise ValueError(f"global_pool must be 'avg' or '', got {global_pool!r}")
        self.num_classes = num_classes
        self.pool = global_pool == 'avg'
        self.num_features = embed_dims[-1]
        self.patch_embed = ConvPatchEmbed(in_chans, embed_dims[0], 7, 4, 2, embed_norm_layer, embed_act_layer)
        total, network = sum(depths), []
        for i, depth in enumerate(depths):
            first = sum(depths[:i])
            network.append(nn.SequentialCell([
                MixerBlock(embed_dims[i], make_mixer(i, j, embed_dims[i]), mlp_ratios[i], norm_layer,
                           drop_path_rate * (first + j) / max(total - 1, 1)) for j in range(depth)]))
            if i < len(depths) - 1:
                network.append(ConvPatchEmbed(embed_dims[i], embed_dims[i + 1], 3, 2, 1, embed_norm_layer,
                                              embed_act_layer))
        self.network = nn.CellList(network)
        self.norm = norm_layer(self.num_features)
        self.head_drop = nn.Dropout(p=drop_rate) if drop_rate > 0 else nn.Identity()
        self.head = Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward_features(self, x):
        x = self.patch_embed(x)
        for module in self.network:
            x = module(x)
        return self.norm(x)

    def forward_head(self, x, pre_logits: bool = False):
        if self.pool:
            x = ops.mean(x, (2, 3))
        x = self.head_drop(x)
        return x if pre_logits else self.head(x)

    def forward_intermediates(self, x):
        x = self.patch_embed(x)
        outputs = []
        for idx, module in enumerate(self.network):
            x = module(x)
            if idx % 2 == 0:
                outputs.append(x)
        return outputs

    def construct(self, x):
        return self.forward_head(self.forward_features(x))


def mixer_kwargs_from_torch(model) -> dict:
    """Builder kwargs read off a torch MixerPyramid model."""
    return {'num_classes': model.num_classes, 'in_chans': model.in_chans, 'global_pool': model.global_pool,
            'drop_rate': float(model.head_drop.p)}
