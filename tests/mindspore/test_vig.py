"""ViG and Pyramid ViG twins: the same weights give the same logits and stages as torch (issue #25)."""
import mindspore as ms
import numpy as np
import pytest
import torch

from helpers import assert_parity, o1_torch_model, random_input
from zoo.mindspore import api
from zoo.mindspore.parity import TOLERANCE
from zoo.mindspore.vig import VIG_CONFIGS

VARIANTS = sorted(VIG_CONFIGS)


@pytest.mark.parametrize('name', VARIANTS)
def test_parity_small_input(name):
    """At 64 x 64 the position tables are resized and k / the dilation capped, as torch does."""
    assert_parity(name, img_size=64)


def test_parity_other_classes_and_channels():
    assert_parity('pvig_ti_224_gelu', img_size=96, num_classes=10, in_chans=1)


@pytest.mark.parametrize('name', ['vig_ti_224_gelu', 'pvig_ti_224_gelu'])
def test_blocks_match_at_native_size(name):
    """At 224 the tables are used as stored and the dilated k-NN (every 2nd / 3rd of the k x dilation
    nearest) is exercised. Each block gets torch's input: along the whole chain, float drift of 1e-6 can flip
    a near-tie between two neighbours' distances (gaps of 1e-7 occur), which changes the graph in either
    framework and says nothing about the twin.

    Within one block too, a node whose candidate distances tie to float32 rounding at a cut of the dilated pick
    can take another neighbour under another summation order (one thread or two, torch or MindSpore). Everything
    after the graph is per node (1x1 convolutions, norms), so such a flip changes that node's row alone: each
    block must agree to the tolerance on all nodes but at most 1% of them (a wrong twin, say another dilation or
    k, moves nearly every node)."""
    model = o1_torch_model(name, 224)
    cell = api.from_torch(model)
    x = torch.from_numpy(random_input(name, 224, batch=1))
    with torch.no_grad():
        h = model.stem(x) + model.pos_embed
        for i, layer in enumerate(model.backbone):
            expected = layer(h).numpy()
            actual = cell.backbone[i](ms.Tensor(h.numpy())).asnumpy()
            per_node = np.abs(actual - expected).max(axis=1).reshape(-1) / np.abs(expected).max()
            off = int((per_node >= TOLERANCE).sum())
            assert off <= 0.01 * per_node.size, \
                f'{name} block {i}: {off} of {per_node.size} nodes differ (worst {per_node.max():.2e} relative)'
            h = torch.from_numpy(expected)


def test_parity_graph_mode():
    assert_parity('pvig_ti_224_gelu', img_size=64, mode='graph')


def test_relative_pos_is_a_frozen_parameter():
    cell = api.create_model('pvig_ti_224_gelu')
    params = dict(cell.parameters_and_names())
    tables = [p for name, p in params.items() if name.endswith('relative_pos')]
    assert len(tables) == sum(VIG_CONFIGS['pvig_ti_224_gelu']['depths'])
    assert not any(p.requires_grad for p in tables) and params['pos_embed'].requires_grad


def test_input_size_the_model_cannot_take_is_one_clear_error():
    cell = api.create_model('pvig_ti_224_gelu')
    with pytest.raises(ValueError, match='multiples of 32'):
        cell(ms.Tensor(np.zeros((1, 3, 48, 48), np.float32)))
