"""Wave-MLP: equal to the official code (huawei-noah/Efficient-AI-Backbones, wavemlp_pytorch), any input size.

Fixtures (tests/fixtures/wavemlp_*.json) hold the official state-dict manifest, parameter count and MACs of
every variant, and the official eval output on deterministic weights for some of them.
"""
import pytest
import timm
import torch
from torch import nn

import zoo
from fidelity import (assert_same_as_reference, fixture_state_dict, load_fixture, make_input, manifest_of, max_abs_diff,
                      tensor_from_record)
from zoo.benchmark import count_macs
from zoo.models.wavemlp import PhaseAwareTokenMixing, unfold_wave

VARIANTS = ['wavemlp_t_dw', 'wavemlp_t', 'wavemlp_s', 'wavemlp_m', 'wavemlp_b']
SMALL = ['wavemlp_t_dw', 'wavemlp_t']
# Published MACs (G) at 224x224 (paper Table / official README).
PAPER_MACS = {'wavemlp_t_dw': 2.1, 'wavemlp_t': 2.4, 'wavemlp_s': 4.5, 'wavemlp_m': 7.9}
# The official code itself counts 2.16 G and 2.46 G for these two (3.0% and 2.6% above the table, which
# rounds them down); there the zoo is held to the official code's count instead.
PAPER_BELOW_OFFICIAL = {'wavemlp_t_dw', 'wavemlp_t'}


def _marked(names):
    return [n if n in SMALL else pytest.param(n, marks=pytest.mark.slow) for n in names]


def _fixture(name):
    return load_fixture(name)


@pytest.fixture(scope='module')
def t_dw():
    """The smallest variant, built once for the shape and input checks."""
    return timm.create_model('wavemlp_t_dw').eval()


def test_registered_variants():
    assert zoo.list_models(family='wavemlp') == sorted(VARIANTS)


@pytest.mark.parametrize('name', _marked(VARIANTS))
def test_param_count_and_layout_equal_official(name):
    fixture = _fixture(name)
    with torch.device('meta'):
        model = timm.create_model(name)
    assert sum(p.numel() for p in model.parameters()) == fixture['param_count']
    assert manifest_of(model.state_dict()) == fixture['state_dict']


@pytest.mark.parametrize('name', _marked(VARIANTS))
def test_macs_equal_official_and_paper(name):
    with torch.device('meta'):
        macs = count_macs(timm.create_model(name), torch.empty(1, 3, 224, 224))
    assert macs == _fixture(name)['macs_224']
    if name in PAPER_MACS and name not in PAPER_BELOW_OFFICIAL:
        assert macs / 1e9 == pytest.approx(PAPER_MACS[name], rel=0.02)
    if name in PAPER_BELOW_OFFICIAL:
        assert macs / 1e9 == pytest.approx(PAPER_MACS[name], rel=0.035)


@pytest.mark.parametrize('wrapper', ['state_dict', 'state_dict_ema'])
@pytest.mark.parametrize('name', ['wavemlp_t_dw', 'wavemlp_s', pytest.param('wavemlp_m', marks=pytest.mark.slow)])
@torch.no_grad()
def test_official_checkpoint_outputs_equal_official(name, wrapper, tmp_path):
    """The official release layout (timm train script: {'state_dict', 'state_dict_ema', ...}) loads
    through timm's pretrained path, and the outputs equal the official model's."""
    fixture = _fixture(name)
    state_dict = fixture_state_dict(fixture)
    path = tmp_path / 'official.pth.tar'
    ckpt = {'epoch': 299, 'arch': name, 'state_dict': state_dict}
    if wrapper == 'state_dict_ema':  # timm prefers the EMA weights when the checkpoint has them
        ckpt = dict(ckpt, state_dict={k: torch.zeros_like(v) for k, v in state_dict.items()},
                    state_dict_ema=state_dict)
    torch.save(ckpt, path)
    model = timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=str(path))).eval()
    out = model(make_input(fixture['input']['shape'], fixture['input']['seed']))
    assert max_abs_diff(out, tensor_from_record(fixture['output'])) < 1e-4


def _expected_size(n: int, stage: int) -> int:
    n = (n - 3) // 4 + 1  # 7x7 stride-4 stem, padding 2
    for _ in range(stage):
        n = (n + 1) // 2  # 3x3 stride-2, padding 1
    return n


@pytest.mark.parametrize('size', [(224, 224), (256, 256), (320, 480),
                                  pytest.param((512, 768), marks=pytest.mark.slow)])
@torch.no_grad()
def test_any_input_size(t_dw, size):
    model = t_dw
    x = torch.randn(1, 3, *size)
    final, feats = model.forward_intermediates(x)
    assert [f.shape[1] for f in feats] == [64, 128, 320, 512]
    for i, f in enumerate(feats):
        assert f.shape[-2:] == (_expected_size(size[0], i), _expected_size(size[1], i))
        assert (size[0] // f.shape[-2], size[1] // f.shape[-1]) == (4 * 2 ** i, 4 * 2 ** i)
    logits = model.forward_head(final)
    assert logits.shape == (1, 1000) and torch.isfinite(logits).all()


@torch.no_grad()
def test_features_only_four_stages():
    model = timm.create_model('wavemlp_t_dw', features_only=True).eval()
    assert model.feature_info.channels() == [64, 128, 320, 512]
    assert model.feature_info.reduction() == [4, 8, 16, 32]
    outs = model(torch.randn(1, 3, 96, 160))
    assert [tuple(o.shape) for o in outs] == [(1, 64, 24, 40), (1, 128, 12, 20), (1, 320, 6, 10), (1, 512, 3, 5)]


@torch.no_grad()
def test_phase_aware_mixing_is_a_complex_wave():
    """PATM unfolds the wave z*exp(i*theta) into its real and imaginary parts, stacked as the first and
    second half of the channels (the grouped width / height convs depend on that order)."""
    torch.manual_seed(0)
    mixer = PhaseAwareTokenMixing(4, phase_mode='fc').eval()
    x = torch.randn(1, 4, 5, 6)
    amp, theta = mixer.fc_h(x), mixer.theta_h_conv(x)
    wave = amp * torch.exp(1j * theta)
    unfolded = torch.cat([wave.real, wave.imag], dim=1)
    assert max_abs_diff(unfold_wave(amp, theta), unfolded) < 1e-6


@pytest.mark.parametrize('size', [(3, 3), (5, 11)])
@torch.no_grad()
def test_tiny_inputs_work(t_dw, size):
    assert t_dw(torch.randn(1, 3, *size)).shape == (1, 1000)


@torch.no_grad()
def test_bad_input_is_a_clear_error(t_dw):
    model = t_dw
    with pytest.raises(ValueError, match='channels'):
        model(torch.randn(1, 4, 64, 64))
    with pytest.raises(ValueError, match='at least 3x3'):
        model(torch.randn(1, 3, 2, 64))
    with pytest.raises(ValueError, match='phase_mode'):
        timm.create_model('wavemlp_t', phase_mode='conv')


def test_grad_checkpointing_keeps_outputs():
    model = timm.create_model('wavemlp_t_dw', num_classes=10).eval()
    x = torch.randn(1, 3, 64, 64, requires_grad=True)
    ref = model(x)
    model.set_grad_checkpointing(True)
    out = model(x)
    out.sum().backward()
    assert max_abs_diff(out, ref) == 0 and x.grad is not None


def _reference_patm(mixer, x):
    """PATM as the official code computes it: five separate 1x1 / depth-wise convs, BatchNorm after the
    phase convs, the grouped token fc over the unfolded wave."""
    theta_h, theta_w = mixer.theta_h_conv(x), mixer.theta_w_conv(x)
    h = mixer.tfc_h(unfold_wave(mixer.fc_h(x), theta_h))
    w = mixer.tfc_w(unfold_wave(mixer.fc_w(x), theta_w))
    return mixer.proj(mixer.reweight([h, w, mixer.fc_c(x)]))



@pytest.mark.parametrize('phase_mode', ['fc', 'depthwise'])
@pytest.mark.parametrize('mode', ['train', 'eval'])
@pytest.mark.parametrize('channels_last', [False, True])
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_fast_mixing_equals_reference_arithmetic(dtype, phase_mode, mode, channels_last):
    """The fast PATM (eval: the five projections as one conv of concatenated weights with the phase
    BatchNorms folded in; always: the grouped token fc as a depth-wise conv and a pair sum) computes what
    the separate modules compute, forward and backward, in either memory layout: to 1e-6 relative in float32
    (gradients through a train-mode BatchNorm 1e-5), to 1e-10 in float64 (the same arithmetic)."""
    torch.manual_seed(0)
    mixer = PhaseAwareTokenMixing(16, qkv_bias=True, phase_mode=phase_mode)
    for bn in (mixer.theta_h_conv[1], mixer.theta_w_conv[1]):  # statistics that make the folding matter
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        nn.init.uniform_(bn.weight, 0.5, 1.5)
        nn.init.uniform_(bn.bias, -0.5, 0.5)
    mixer.train(mode == 'train').to(dtype)
    x = torch.randn(2, 16, 9, 11, dtype=dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    assert_same_as_reference(mixer, lambda t: _reference_patm(mixer, t), x)
