"""CGRSeg T / B / L twins: parity of the logit map and the backbone stages with the torch models (any size the
torch model takes, attention biases resized), GRAPH mode, a .ckpt round trip, a MindIR graph, the command line
and the input errors.

The torch models get random attention biases and layer scales of 0.1-0.5 (instead of 0 and 1e-5), so that every
attention and MLP branch shows in the output, then BatchNorm statistics gathered on random images (O(1) outputs).
"""
import mindspore as ms
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mindspore import ops

import zoo
from helpers import _log
from helpers import command_error as _error
from zoo.mindspore import api, checkpoints
from zoo.mindspore.layers.adaptive_pool import adaptive_avg_pool2d
from zoo.mindspore.command_line import main
from zoo.mindspore.parity import TOLERANCE, compare, execution_mode, gather_batchnorm_statistics

SIZE = (64, 64)


def o1_cgrseg(name: str, hw=SIZE) -> torch.nn.Module:
    """Seeded torch ``name`` with every branch switched on and O(1) outputs (see the module docstring)."""
    torch.manual_seed(0)
    model = zoo.create_model(name)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for key, param in model.named_parameters():
            if key.endswith('attention_biases'):
                param.copy_(torch.randn(param.shape, generator=generator))
            elif key.endswith('gamma') and 'bn' not in key:
                param.uniform_(0.1, 0.5, generator=generator)
    return gather_batchnorm_statistics(model, hw, batches=2, batch_size=2)


def image(hw=SIZE, batch: int = 1, seed: int = 2) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, 3, *hw)).astype(np.float32)


def check(name, model, cell, x, mode='pynative', intermediates=True):
    with execution_mode(mode):
        report = compare(model, cell, x, intermediates=intermediates)
    _log(name, mode, x.shape, report)
    assert report.differences[0].label == 'logit map' and report.differences[0].shape == (x.shape[0], 150, *x.shape[2:])
    assert len(report.differences) == (5 if intermediates else 1)
    assert report.worst_rel < TOLERANCE, f'{name} ({mode}, {x.shape}):\n{report.format()}'
    assert report.argmax_agreement > 0.99, report.format()
    scale = report.differences[0].scale
    assert 1e-2 < scale < 1e2, f'{name}: a logit map of scale {scale:.3g} is not O(1); the check would hide errors'
    return report


@pytest.fixture(scope='module')
def tiny():
    """The torch cgrseg_t and its twin, built once for the module."""
    model = o1_cgrseg('cgrseg_t')
    return model, api.from_torch(model)


def test_parity_t(tiny):
    check('cgrseg_t', *tiny, image())


@pytest.mark.parametrize('name', ['cgrseg_b', 'cgrseg_l'])
def test_parity_b_l(name):
    model = o1_cgrseg(name)
    check(name, model, api.from_torch(model), image(), intermediates=False)


def test_parity_other_size(tiny):
    """96x64: a 3x2 stride-32 grid, every bias matrix resized to non-square token grids, overlapping pyramid
    pooling bins (3 -> 2) and odd bilinear upsampling factors."""
    check('cgrseg_t', *tiny, image((96, 64)), intermediates=False)


def test_parity_graph(tiny):
    check('cgrseg_t', *tiny, image(), mode='graph')


def test_checkpoint_round_trip(tiny, tmp_path):
    model, cell = tiny
    path = tmp_path / 't.ckpt'
    checkpoints.write_mindspore_checkpoint(api.parameter_arrays(cell), path)
    params = checkpoints.read_mindspore_checkpoint(path)
    fresh = api.load_arrays(api.create_model('cgrseg_t'), params)
    assert all(np.array_equal(a, params[k].asnumpy()) for k, a in api.parameter_arrays(fresh).items())
    restored = api.to_torch_state_dict(params, 'cgrseg_t')
    for key, value in model.state_dict().items():
        assert key.endswith('num_batches_tracked') or torch.equal(value, restored[key]), key
    assert [p.name for p in tmp_path.iterdir()] == ['t.ckpt']


def test_mindir_export(tiny, tmp_path):
    model, cell = tiny
    out = tmp_path / 't.mindir'
    with checkpoints.atomic_path(out, suffix='.mindir') as tmp:
        ms.export(cell, ms.Tensor(np.zeros((1, 3, *SIZE), np.float32)), file_name=str(tmp), file_format='MINDIR')
    x = image()
    got = ms.nn.GraphCell(ms.load(str(out)))(ms.Tensor(x)).asnumpy()
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    assert np.abs(got - expected).max() / np.abs(expected).max() < TOLERANCE
    assert [p.name for p in tmp_path.iterdir()] == ['t.mindir']


def test_command_line_export_and_parity(tiny, tmp_path, capsys):
    model, _ = tiny
    weights, ckpt, back = tmp_path / 't.pth', tmp_path / 't.ckpt', tmp_path / 'back.pth'
    torch.save(model.state_dict(), weights)
    assert main(['export', '--model', 'cgrseg_t', '--checkpoint', str(weights), '--out', str(ckpt)]) == 0
    assert main(['import', str(ckpt), '--model', 'cgrseg_t', '--out', str(back)]) == 0
    restored = torch.load(back, weights_only=True)
    assert all(k.endswith('num_batches_tracked') or torch.equal(v, restored[k]) for k, v in model.state_dict().items())
    assert main(['parity', '--model', 'cgrseg_t', '--img-size', '64', '64', '--checkpoint', str(weights)]) == 0
    out = capsys.readouterr().out
    assert 'logit map' in out and 'stage 3' in out and 'per-pixel arg-max agree' in out and '(pass' in out


def test_command_line_errors(tmp_path, capsys):
    err = _error(['parity', '--model', 'cgrseg_t', '--img-size', '48', '48'], capsys)
    assert 'cgrseg_t cannot take a 48x48 input' in err and 'multiples of 32' in err
    err = _error(['export', '--model', 'cgrseg_t', '--num-frames', '8', '--out', str(tmp_path / 'x.ckpt')], capsys)
    assert '--num-frames applies to video models only' in err
    assert not list(tmp_path.iterdir())


def test_input_errors(tiny):
    _, cell = tiny
    with pytest.raises(ValueError, match='CGRSeg expects 3 input channels, got 4'):
        cell(ms.Tensor(np.zeros((1, 4, *SIZE), np.float32)))
    with pytest.raises(ValueError, match='multiples of 32, got 48x64'):
        cell(ms.Tensor(np.zeros((1, 3, 48, 64), np.float32)))


def test_bias_resolution_is_read_off_the_torch_model():
    model = zoo.create_model('cgrseg_t', num_classes=7, bias_resolution=256)
    cell = api.from_torch(model)
    assert cell.decode_head.conv_seg.weight.shape[0] == 7
    assert cell.backbone.stages[3].downsample.attn.attention_biases.shape == (8, 16 * 16)


@pytest.mark.parametrize('align_corners', [False, True])
def test_bilinear_interpolate_matches_torch(align_corners):
    """The twins upsample with ``ops.interpolate``: it must equal torch's bilinear resize, up and down, at
    factors that are not whole numbers."""
    x = np.random.default_rng(0).standard_normal((1, 2, 5, 7)).astype(np.float32)
    for size in [(13, 9), (10, 14), (3, 4)]:
        expected = F.interpolate(torch.from_numpy(x), size=size, mode='bilinear', align_corners=align_corners)
        got = ops.interpolate(ms.Tensor(x), size=size, mode='bilinear', align_corners=align_corners)
        np.testing.assert_allclose(got.asnumpy(), expected.numpy(), atol=1e-5)


def test_adaptive_avg_pool_matches_torch():
    x = np.random.default_rng(0).standard_normal((1, 2, 12, 7)).astype(np.float32)
    for size in [(2, 2), (5, 3), (12, 7), (1, 1)]:
        expected = F.adaptive_avg_pool2d(torch.from_numpy(x), size).numpy()
        np.testing.assert_allclose(adaptive_avg_pool2d(ms.Tensor(x), size).asnumpy(), expected, atol=1e-6)


def test_backbone_batchnorms_stay_in_eval_mode_in_training(tiny):
    """As the torch model (and the official backbone): a training step leaves the backbone's BatchNorm statistics
    as they are and updates the head's."""
    _, cell = tiny
    bns = {name: c for name, c in cell.cells_and_names() if isinstance(c, ms.nn.BatchNorm2d)}
    before = {name: c.moving_mean.asnumpy().copy() for name, c in bns.items()}
    variances = {name: c.moving_variance.asnumpy().copy() for name, c in bns.items()}
    try:
        cell.set_train(True)
        cell(ms.Tensor(image(batch=2)))
    finally:
        cell.set_train(False)
        moved = {name: not np.array_equal(before[name], c.moving_mean.asnumpy()) for name, c in bns.items()}
        for name, c in bns.items():
            c.moving_mean.set_data(ms.Tensor(before[name]))  # the module's fixture is shared
            c.moving_variance.set_data(ms.Tensor(variances[name]))
    assert any(name.startswith('backbone.') for name in moved) and any(name.startswith('decode_head.') for name in moved)
    assert not any(m for name, m in moved.items() if name.startswith('backbone.'))
    assert all(m for name, m in moved.items() if name.startswith('decode_head.'))
