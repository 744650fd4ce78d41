"""Q-TinySAM calibration: what the float model is sampled on, the scale search, the command line."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_sample_image
from torch import nn

from fidelity import deterministic_state_dict, load_fixture
from zoo.models.tinysam import build_tinysam, create_sam, default_quant_layers, load_quantized, load_sam_checkpoint
from zoo.models.tinysam.quant.agreement import mask_agreement
from zoo.models.tinysam.quant.calibration import (LayerSamples, SearchConfig, _outputs, calibrate_sam,
                                                  collect_samples, search_scales)
from zoo.models.tinysam.quant.layers import QuantLinear
from zoo.models.tinysam.quant.quantize import QuantLayer
from zoo.sam import main as sam_main, read_images

FAST = SearchConfig(candidates=8, rounds=1, rows_per_image=64, window=4)


@pytest.fixture(scope='module')
def small_sam():
    """TinySAM's architecture at a 128-pixel input with the fixture's deterministic weights."""
    base = load_fixture('tinysam_vit_t')
    state_dict = deterministic_state_dict(base['state_dict'], base['weights_seed'])
    return load_sam_checkpoint(build_tinysam(img_size=128), state_dict).eval()


@pytest.fixture(scope='module')
def photos():
    return [load_sample_image('flower.jpg'), load_sample_image('china.jpg')]


def test_samples_are_what_each_layer_computed(small_sam, photos):
    """Every layer's sampled inputs (rows, or padded windows with their mask) recompute its sampled outputs, and
    the task loss reaches every layer."""
    layers = default_quant_layers(small_sam)
    samples = collect_samples(small_sam, photos[:1], layers, FAST, points_per_side=2)
    assert samples.keys() == layers.keys()
    for name, s in samples.items():
        layer = small_sam.get_submodule(name)
        with torch.no_grad():
            again = _outputs(layer, s, s.inputs, layer.weight)
        assert again.shape == s.outputs.shape and torch.allclose(again, s.outputs, atol=1e-4), name
        assert s.grads.shape == s.outputs.shape and s.grads.abs().max() > 0, name
        assert s.input_min <= s.inputs.min() and s.inputs.max() <= s.input_max, name
    assert all(p.requires_grad for p in small_sam.parameters())  # restored after the pass


def _cost(layer: nn.Linear, s: LayerSamples, x_scale: float, w_q: torch.Tensor) -> float:
    x_q = (s.inputs / x_scale).round().clamp(-128, 127) * x_scale
    return float(((s.grads * (x_q @ w_q.T + layer.bias - s.outputs)) ** 2).sum())


def test_search_returns_the_best_candidates():
    """Input scale: the candidate of least Hessian-weighted cost; weight scales: the best per q / k / v block."""
    torch.manual_seed(0)
    layer = nn.Linear(16, 6).requires_grad_(False)
    x = torch.randn(200, 16)
    x[0, 0] = 40.0  # an outlier in a row whose outputs do not matter (zero gradient): clipping it pays off
    y = layer(x)
    grads = torch.rand(200, 6)
    grads[0] = 0
    samples = LayerSamples(x, y, grads, x.min(), x.max())
    config = SearchConfig(candidates=25, rounds=1)  # one round: weights are searched with the initial input scale
    found = search_scales(layer, 'blocks.0.attn.qkv', QuantLayer('linear'), samples, config)
    assert found['weight_scale'].shape == (3, 1, 1, 1)
    q = QuantLinear.from_float(layer, scales=found)
    w_q = q.quantized_weight().detach()
    init = float(x.abs().max()) / 127.5
    costs = [_cost(layer, samples, init * m, w_q) for m in config.multipliers().tolist()]
    chosen = _cost(layer, samples, float(found['input_scale']), w_q)
    assert chosen == pytest.approx(min(costs), rel=1e-6)
    assert float(found['input_scale']) < 0.3 * init  # the outlier is clipped
    # each q / k / v block's weight scale is its best candidate for the initial input scale
    x_q = (x / init).round().clamp(-128, 127) * init
    w_init = layer.weight.detach().view(3, -1).abs().amax(1) / 127.5
    for block in range(3):
        rows = slice(2 * block, 2 * block + 2)

        def block_cost(scale: float) -> float:
            w = (layer.weight[rows] / scale).round().clamp(-128, 127) * scale
            return float(((grads[:, rows] * (x_q @ w.T + layer.bias[rows] - y[:, rows])) ** 2).sum())
        best = min(block_cost(float(w_init[block]) * m) for m in config.multipliers().tolist())
        assert block_cost(float(found['weight_scale'][block])) == pytest.approx(best, rel=1e-6)


def test_calibrated_model_follows_the_float_one(small_sam, photos, tmp_path):
    quantized = calibrate_sam(small_sam, photos[:1], config=FAST, points_per_side=2)
    layers = default_quant_layers(small_sam)
    assert not any(isinstance(m, QuantLinear) for m in small_sam.modules())  # the float model is left as it was
    assert all(type(quantized.get_submodule(n)).__name__.startswith(('Quant', 'PostGelu')) for n in layers)
    good = mask_agreement(small_sam, quantized, photos[1], points_per_side=2)
    with torch.no_grad():  # the same quantizers with scales 20 x too small clip nearly everything
        for m in quantized.modules():
            if hasattr(m, 'input_scale'):
                m.input_scale /= 20
    bad = mask_agreement(small_sam, quantized, photos[1], points_per_side=2)
    assert good['mask_iou_mean'] > 0.6 and good['mask_iou_mean'] > bad['mask_iou_mean'] + 0.1, (good, bad)


def test_mask_agreement(small_sam, photos):
    same = mask_agreement(small_sam, small_sam, photos[1], points_per_side=2)
    assert same == {'mask_iou_mean': 1.0, 'mask_iou_min': 1.0, 'same_best_mask': 1.0,
                    'iou_pred_max_abs_diff': 0.0, 'prompts': 4}


def test_read_images(tmp_path):
    with pytest.raises(ValueError, match='not a folder'):
        read_images(str(tmp_path / 'nope'), 8)
    with pytest.raises(ValueError, match='no images'):
        read_images(str(tmp_path), 8)
    for i in range(3):
        Image.fromarray(np.full((8, 10), 40 * i, np.uint8)).save(tmp_path / f'{i}.png')  # grayscale: read as RGB
    images = read_images(str(tmp_path), 2)
    assert len(images) == 2 and images[1].shape == (8, 10, 3) and images[1][0, 0, 0] == 40


@pytest.mark.slow
def test_calibrate_command(tmp_path, photos, capsys):
    """The command on a float checkpoint (1024 x 1024 model) writes a file that create_sam loads."""
    base = load_fixture('tinysam_vit_t')
    ckpt = tmp_path / 'tinysam.pth'
    torch.save(deterministic_state_dict(base['state_dict'], base['weights_seed']), ckpt)
    folder = tmp_path / 'images'
    folder.mkdir()
    Image.fromarray(photos[0][:200, :300]).save(folder / 'a.jpg')
    Image.fromarray(photos[1][:200, :300]).save(tmp_path / 'check.png')
    out = tmp_path / 'q.safetensors'
    assert sam_main(['calibrate', '--checkpoint', str(ckpt), '--images', str(folder), '--out', str(out),
                     '--candidates', '2', '--rounds', '1', '--points-per-side', '2',
                     '--check', str(tmp_path / 'check.png')]) == 0
    printed = capsys.readouterr().out
    assert 'calibrating 118 layers (W8A8) on 1 images' in printed and 'mask_iou_mean' in printed
    state_dict, layers = load_quantized(out)
    model = create_sam('tinysam_w8a8', checkpoint=out)
    assert layers == default_quant_layers(create_sam('tinysam'))
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state_dict.items())
