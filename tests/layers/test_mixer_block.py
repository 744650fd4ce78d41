"""The Wave-MLP / Hire-MLP residual block and branch re-weighting compute what their plain definitions compute:
``x + attn(norm1(x))``, then ``+ mlp(norm2(x))`` (the eval path adds the residuals in place and runs the channel
MLP with its BatchNorm folded into fc1 and GELU fused), and the split-attention mix of the branches (pooled as a
sum of means, accumulated in place), forward and backward, in train and eval mode."""
from __future__ import annotations

import pytest
import torch
from timm.layers import ConvMlp
from torch import nn

from fidelity import assert_same_as_reference
from zoo.layers.branch_reweight import BranchReweight
from zoo.layers.mixer_block import MixerBlock


def _reference_reweight(rw: BranchReweight, branches):
    B, C = branches[0].shape[:2]
    pooled = sum(branches[1:], branches[0]).mean((2, 3), keepdim=True)
    weights = rw.fc2(rw.act(rw.fc1(pooled))).reshape(B, C, rw.num_branches).softmax(-1)
    return sum(b * weights[:, :, k, None, None] for k, b in enumerate(branches))


class _Mixer(nn.Module):
    """A token mixer with a BatchNorm and a conv, so that the block's gradients reach both."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(dim, dim, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def _randomise_batchnorms(module: nn.Module) -> None:
    with torch.no_grad():
        for bn in module.modules():
            if isinstance(bn, nn.BatchNorm2d):
                bn.running_mean.uniform_(-1, 1)
                bn.running_var.uniform_(0.5, 2)
                bn.weight.uniform_(0.5, 1.5)
                bn.bias.uniform_(-0.5, 0.5)


@pytest.mark.parametrize('mode', ['train', 'eval'])
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_branch_reweight_equals_its_definition(mode, dtype):
    torch.manual_seed(0)
    rw = BranchReweight(16, num_branches=3).train(mode == 'train').to(dtype)
    extra = [torch.randn(2, 16, 5, 7, dtype=dtype) for _ in range(2)]
    assert_same_as_reference(lambda x: rw([x] + extra), lambda x: _reference_reweight(rw, [x] + extra),
                             torch.randn(2, 16, 5, 7, dtype=dtype), parameters=rw.parameters())


@pytest.mark.parametrize('norm', ['batchnorm', 'groupnorm'])
@pytest.mark.parametrize('mode', ['train', 'eval'])
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_block_equals_its_definition(norm, mode, dtype):
    torch.manual_seed(0)
    norm_layer = nn.BatchNorm2d if norm == 'batchnorm' else (lambda d: nn.GroupNorm(1, d))
    block = MixerBlock(16, _Mixer(16), mlp_ratio=2, norm_layer=norm_layer)
    _randomise_batchnorms(block)
    block.train(mode == 'train').to(dtype)
    assert isinstance(block.mlp, ConvMlp)

    def reference(x):
        x = x + block.attn(block.norm1(x))
        return x + block.mlp(block.norm2(x))

    x = torch.randn(2, 16, 6, 5, dtype=dtype).contiguous(memory_format=torch.channels_last)
    assert_same_as_reference(block, reference, x)
    with torch.no_grad():  # plain inference: oneDNN's fused convolution where it applies
        out, ref = block(x), reference(x)
    assert ((out - ref).norm() / ref.norm()).item() < (1e-6 if dtype == torch.float32 else 1e-10)


@torch.no_grad()
@pytest.mark.parametrize('layer', ['attn', 'attn.conv', 'mlp.fc2'])
def test_block_with_hooks_runs_the_modules(layer):
    """A hook that keeps a branch's output, or an inner layer's, sees it as that layer returned it (never added
    to in place)."""
    torch.manual_seed(0)
    block = MixerBlock(8, _Mixer(8)).eval()
    kept = []
    block.get_submodule(layer).register_forward_hook(lambda m, args, out: kept.append((out, out.clone())))
    block(torch.randn(1, 8, 4, 4))
    out, copy = kept[0]
    assert torch.equal(out, copy)


@torch.no_grad()
def test_fx_feature_extraction_of_an_inner_node_is_not_changed_in_place():
    """torchvision's feature extraction returns inner nodes of a traced graph: the mixer's output comes back as
    the mixer computed it."""
    from torchvision.models.feature_extraction import create_feature_extractor
    torch.manual_seed(0)
    block = MixerBlock(8, _Mixer(8)).eval()
    x = torch.randn(1, 8, 4, 4)
    got = create_feature_extractor(block, return_nodes=['attn.conv', 'mlp.fc2'])(x)
    assert torch.equal(got['attn.conv'], block.attn(block.norm1(x)))
