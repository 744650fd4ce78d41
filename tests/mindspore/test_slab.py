"""SLAB's MindSpore twins give the torch models' answers (issue #25): every registered variant in its train
form (eval mode) and its fused deploy form, other input sizes than the build size, and GRAPH mode per
architecture; plus the deploy detection and bad keyword arguments.

Test models: PRepBN blends are set to their end (RepBN alone, as in eval) before BatchNorm statistics are
gathered on random inputs, so the statistics match what each layer sees in eval and the outputs stay O(1).
"""
import copy

import pytest
import torch
from helpers import assert_parity, gather_batchnorm_statistics

import zoo
from zoo.mindspore import api
from zoo.mindspore.registry import kwargs_reader

SIZE = 64  # the smallest size every variant builds and runs at (32 px per stage-4 token)

# one cheap variant per architecture and attention type: in the default run
FAST = ['deit_t_prepbn', 'slab_deit_t', 'pvt_t_prepbn', 'slab_pvt_t', 'slab_pvt_v2_b0', 'swin_t_prepbn',
        'slab_swin_t', 'slab_cswin_t']
# wider or deeper configurations of the same code: the slow run
SLOW = ['deit_s_prepbn', 'slab_deit_s', 'pvt_s_prepbn', 'pvt_m_prepbn', 'slab_pvt_s', 'slab_pvt_m',
        'slab_pvt_v2_b1', 'slab_pvt_v2_b2', 'slab_pvt_v2_b3', 'slab_pvt_v2_b4', 'slab_pvt_v2_b5', 'slab_swin_s',
        'slab_swin_b', 'slab_cswin_s']
GRAPH = ['slab_deit_t', 'pvt_t_prepbn', 'slab_swin_t', 'slab_cswin_t']


def o1_slab_model(name: str, img_size: int = SIZE, run_size: int = SIZE) -> torch.nn.Module:
    """Torch ``name`` built for ``img_size``, blend finished, BatchNorm statistics gathered at ``run_size``."""
    torch.manual_seed(0)
    model = zoo.create_model(name, img_size=img_size)
    model.set_norm_progress(10 ** 9)
    return gather_batchnorm_statistics(model, (run_size, run_size))


def test_every_variant_has_a_twin():
    registered = {n for n in zoo.list_models() if 'slab' in n or 'prepbn' in n}
    assert registered == set(FAST + SLOW)
    assert registered <= set(api.list_models())


@pytest.mark.parametrize('name', FAST + [pytest.param(n, marks=pytest.mark.slow) for n in SLOW])
def test_parity_train_and_deploy_form(name):
    model = o1_slab_model(name)
    assert_parity(name, SIZE, batch=1, torch_model=model)
    assert_parity(name, SIZE, batch=1, torch_model=copy.deepcopy(model).fuse())


@pytest.mark.parametrize('name', ['slab_deit_t', 'deit_t_prepbn', 'slab_pvt_t', 'swin_t_prepbn', 'slab_swin_t'] + [
    pytest.param(n, marks=pytest.mark.slow) for n in ('slab_pvt_v2_b0', 'slab_cswin_t')])
def test_parity_at_other_input_size(name):
    """Built for 224 (the official position tables, windows and stripes), run at 96: tables resized, windows
    and stripes padded and masked (CSWin's stripes are padded at the build size already, in the fast run)."""
    assert_parity(name, 96, batch=1, torch_model=o1_slab_model(name, 224, 96))


@pytest.mark.slow
@pytest.mark.parametrize('name', GRAPH)
def test_parity_graph_mode(name):
    assert_parity(name, SIZE, mode='graph', batch=1, torch_model=o1_slab_model(name))


def test_deploy_form_is_read_off_the_torch_model():
    model = zoo.create_model('slab_swin_t', img_size=128, num_classes=10)
    reader = kwargs_reader('slab_swin_t')
    assert reader(model) == dict(num_classes=10, in_chans=3, global_pool='avg', deploy=False, img_size=128)
    assert reader(model.fuse())['deploy'] is True


def test_bad_global_pool_is_one_clear_error():
    with pytest.raises(ValueError, match='global_pool'):
        api.create_model('slab_deit_t', global_pool='token')
