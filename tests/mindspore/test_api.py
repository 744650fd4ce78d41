"""The MindSpore API: weights both ways, strict loading, .ckpt round trips, MindIR export."""
import mindspore as ms
import numpy as np
import pytest
import torch

import zoo
from helpers import o1_torch_model
from zoo.mindspore import api, checkpoints

NAME = 'ghostnet_050'


@pytest.fixture(scope='module')
def torch_model():
    return o1_torch_model(NAME, img_size=64)


def _same_state_dicts(a, b):
    assert set(a) == set(b)
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_state_dict_round_trip(torch_model):
    state_dict = torch_model.state_dict()
    params = api.convert_state_dict(state_dict, NAME)
    assert all(isinstance(p, ms.Parameter) for p in params.values())
    assert 'bn1.gamma' in params and 'bn1.moving_variance' in params and 'bn1.weight' not in params
    back = api.to_torch_state_dict(params, NAME)
    _same_state_dicts({k: v for k, v in state_dict.items() if not k.endswith('num_batches_tracked')},
                      {k: v for k, v in back.items() if not k.endswith('num_batches_tracked')})


def test_ckpt_round_trip_both_ways(torch_model, tmp_path):
    """torch -> .ckpt -> twin gives the same parameters; twin -> .ckpt -> torch gives the same state dict."""
    cell = api.from_torch(torch_model)
    path = tmp_path / 'w.ckpt'
    checkpoints.write_mindspore_checkpoint(api.parameter_arrays(cell), path)
    fresh = api.create_model(NAME)
    ms.load_param_into_net(fresh, ms.load_checkpoint(str(path)), strict_load=True)
    for (n, a), (m, b) in zip(cell.parameters_and_names(), fresh.parameters_and_names()):
        assert n == m and np.array_equal(a.asnumpy(), b.asnumpy()), n
    back = api.to_torch_state_dict(checkpoints.read_mindspore_checkpoint(path), NAME)
    reloaded = zoo.create_model(NAME)
    reloaded.load_state_dict(back, strict=True)
    _same_state_dicts(torch_model.state_dict(), {**reloaded.state_dict(), **{
        k: v for k, v in torch_model.state_dict().items() if k.endswith('num_batches_tracked')}})


def test_load_torch_weights_is_strict(torch_model):
    cell = api.create_model(NAME)
    before = cell.conv_stem.weight.asnumpy().copy()
    bad = dict(torch_model.state_dict())
    bad.pop('conv_stem.weight')
    bad['extra.weight'] = torch.zeros(1)
    bad['classifier.weight'] = torch.zeros(3, 1280)
    with pytest.raises(ValueError, match=r"1 missing keys \['conv_stem.weight'\].*1 unexpected.*extra.weight.*"
                                         r"classifier.weight \(3, 1280\) vs \(1000, 1280\)"):
        api.load_torch_weights(cell, bad)
    assert np.array_equal(cell.conv_stem.weight.asnumpy(), before)  # nothing loaded


def test_unknown_name_suggests():
    with pytest.raises(ValueError, match='ghostnet_100'):
        api.create_model('ghostnet_10')


def test_mindir_export(torch_model, tmp_path):
    cell = api.from_torch(torch_model)
    out = tmp_path / 'g.mindir'
    with checkpoints.atomic_path(out, suffix='.mindir') as tmp:
        ms.export(cell, ms.Tensor(np.zeros((1, 3, 64, 64), np.float32)), file_name=str(tmp), file_format='MINDIR')
    graph = ms.load(str(out))
    x = np.random.default_rng(0).standard_normal((1, 3, 64, 64)).astype(np.float32)
    got = ms.nn.GraphCell(graph)(ms.Tensor(x)).asnumpy()
    with torch.no_grad():
        expected = torch_model(torch.from_numpy(x)).numpy()
    assert np.abs(got - expected).max() / np.abs(expected).max() < 1e-4
    assert [p.name for p in tmp_path.iterdir()] == ['g.mindir']
