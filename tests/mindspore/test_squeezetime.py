"""SqueezeTime twins: parity with the torch models on short small clips (every variant, another clip length at an
odd size, GRAPH mode), the same errors for bad clips, a .ckpt round trip and a MindIR export.

Weights: position embeddings drawn with std 1 (so that the position term visibly moves the logits), BatchNorm
statistics gathered on random clips, then every running variance floored at 0.1. With the gathered statistics
alone, the CTL gates (products of activations) and near-zero variances amplify float32 rounding about 5x a
stage: torch float32 itself then differs from torch float64 by ~2e-4 at the last stage, and a 1e-4 check could
not tell a wrong graph from rounding. With the floor, the twin agrees to ~1e-6 while dropping the position
term, or resizing it with align_corners=False, moves the logits by ~0.25 (relative).
"""
import mindspore as ms
import numpy as np
import pytest
import torch

import zoo
from helpers import _log
from zoo.mindspore import api, checkpoints
from zoo.mindspore.parity import TOLERANCE, compare, execution_mode
from zoo.mindspore.squeezetime import SQUEEZETIME_VARIANTS
from zoo.random_statistics import gather_batchnorm_statistics

FRAMES = 4
SIZE = (32, 32)


def o1_squeezetime(name: str, num_frames: int = FRAMES) -> torch.nn.Module:
    """Torch ``name`` for ``num_frames``-frame clips, seeded, with O(1), well-conditioned outputs (see above)."""
    torch.manual_seed(0)
    model = zoo.create_model(name, num_frames=num_frames)
    for param_name, param in model.named_parameters():
        if param_name.endswith('pos_embed'):
            torch.nn.init.normal_(param, std=1.0)
    generator = torch.Generator().manual_seed(0)
    return gather_batchnorm_statistics(model, lambda: torch.randn(8, 3, num_frames, *SIZE, generator=generator), 2,
                                       min_variance=0.1)


def clip(batch: int, num_frames: int = FRAMES, size=SIZE, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, 3, num_frames, *size)).astype(np.float32)


@pytest.fixture(scope='module')
def k400():
    """The torch squeezetime_k400 and its twin, built once for the module."""
    model = o1_squeezetime('squeezetime_k400')
    return model, api.from_torch(model)


def _check(name, model, cell, x, mode='pynative', intermediates=True):
    with execution_mode(mode):
        report = compare(model, cell, x, intermediates=intermediates)
    _log(name, mode, x.shape, report)
    scale = report.differences[0].scale
    assert report.worst_rel < TOLERANCE, f'{name} ({mode}, {x.shape}):\n{report.format()}'
    assert report.top5_agree, f'{name} ({mode}): top-5 differ\n{report.format()}'
    assert 1e-2 < scale < 1e2, f'{name}: logits of scale {scale:.3g} are not O(1); the check would hide errors'


def test_parity_k400_every_stage(k400):
    _check('squeezetime_k400', *k400, clip(2))


@pytest.mark.parametrize('name', sorted(set(SQUEEZETIME_VARIANTS) - {'squeezetime_k400'}))
def test_parity_other_heads(name):
    """The same network under another head: the logits only."""
    model = o1_squeezetime(name)
    cell = api.from_torch(model)
    assert cell.fc.weight.shape[0] == SQUEEZETIME_VARIANTS[name]
    _check(name, model, cell, clip(1), intermediates=False)


def test_parity_other_length_odd_size():
    """Six frames at 45x37: odd maps on the way down and position embeddings resized to non-square maps."""
    model = o1_squeezetime('squeezetime_k400', num_frames=6)
    _check('squeezetime_k400', model, api.from_torch(model), clip(1, 6, (45, 37)), intermediates=False)


def test_parity_graph(k400):
    _check('squeezetime_k400', *k400, clip(1), mode='graph', intermediates=False)


@pytest.mark.parametrize('shape', [
    (1, 3, 3, 32, 32),  # too few frames
    (1, 1, 4, 32, 32),  # wrong channel count
    (1, 4, 3, 32, 32),  # (B, T, C, H, W) order
    (1, 3, 4, 28, 32),  # frames too small
    (3, 4, 32, 32),  # an image batch, not clips
])
def test_same_errors_as_torch(k400, shape):
    model, cell = k400
    with pytest.raises(ValueError) as torch_error:
        model(torch.zeros(shape))
    with pytest.raises(ValueError) as ms_error:
        cell(ms.Tensor(np.zeros(shape, np.float32)))
    assert str(ms_error.value) == str(torch_error.value)


def test_ckpt_round_trip(k400, tmp_path):
    """twin -> .ckpt -> fresh twin gives the same parameters; the .ckpt -> torch gives the same state dict."""
    model, cell = k400
    path = tmp_path / 'st.ckpt'
    checkpoints.write_mindspore_checkpoint(api.parameter_arrays(cell), path)
    fresh = api.create_model('squeezetime_k400', num_frames=FRAMES)
    ms.load_param_into_net(fresh, checkpoints.read_mindspore_checkpoint(path), strict_load=True)
    for (n, a), (m, b) in zip(cell.parameters_and_names(), fresh.parameters_and_names()):
        assert n == m and np.array_equal(a.asnumpy(), b.asnumpy()), n
    back = api.to_torch_state_dict(checkpoints.read_mindspore_checkpoint(path), 'squeezetime_k400')
    for k, v in model.state_dict().items():
        if not k.endswith('num_batches_tracked'):
            assert torch.equal(back[k], v), k
    assert [p.name for p in tmp_path.iterdir()] == ['st.ckpt']


def test_mindir_export(k400, tmp_path):
    model, cell = k400
    out = tmp_path / 'st.mindir'
    with checkpoints.atomic_path(out, suffix='.mindir') as tmp:
        ms.export(cell, ms.Tensor(np.zeros((1, 3, FRAMES, *SIZE), np.float32)), file_name=str(tmp),
                  file_format='MINDIR')
    x = clip(1, seed=2)
    got = ms.nn.GraphCell(ms.load(str(out)))(ms.Tensor(x)).asnumpy()
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    assert np.abs(got - expected).max() / np.abs(expected).max() < TOLERANCE
    assert [p.name for p in tmp_path.iterdir()] == ['st.mindir']
