"""TNT, adopted from timm: timm's tnt_*_patch16_224 equal the official code
(huawei-noah/Efficient-AI-Backbones tnt_pytorch/tnt.py) for official-layout checkpoints.

The official state dict has other key names than timm's; timm's ``checkpoint_filter_fn`` maps them (and
drops the official ``outer_tokens``, a frozen parameter the forward pass never uses). Fixtures
``tests/fixtures/tnt_*.json`` hold the official manifests, parameter and MAC counts, and official eval
outputs for deterministic weights.
"""
from __future__ import annotations

import pytest
import timm
import torch

import zoo
from fidelity import deterministic_state_dict, load_fixture, make_input, max_abs_diff, tensor_from_record
from zoo.benchmark import count_macs

# name: (fixture, published params (M), published MACs (G))
VARIANTS = {
    'tnt_s_patch16_224': ('tnt_s', 23.8, 5.2),
    'tnt_b_patch16_224': ('tnt_b', 65.6, 14.1),
}


def _on_meta(name: str) -> torch.nn.Module:
    with torch.device('meta'):
        return timm.create_model(name)


def test_adopted_with_official_release_urls():
    assert zoo.list_models(family='tnt') == sorted(VARIANTS)
    for name in VARIANTS:
        info = zoo.model_info(name)
        assert info.adopted
        assert info.official_url.startswith('https://github.com/huawei-noah/Efficient-AI-Backbones/releases/')


@pytest.mark.parametrize('name', list(VARIANTS))
def test_official_layout_maps_onto_timm_and_param_count_equal(name):
    fixture_name, published_params, _ = VARIANTS[name]
    fixture = load_fixture(fixture_name)
    model = _on_meta(name)
    official = {k: torch.empty(shape, device='meta') for k, shape, _ in fixture['state_dict']}
    mapped = timm.models.tnt.checkpoint_filter_fn(official, model)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in mapped.items()} == expected
    # the official count includes the unused frozen outer_tokens (num_patches x embed_dim)
    params = sum(p.numel() for p in model.parameters())
    assert params == fixture['trainable_param_count']
    assert fixture['param_count'] - params == 196 * model.embed_dim
    assert abs(fixture['param_count'] / 1e6 - published_params) / published_params < 0.005


@pytest.mark.parametrize('name', list(VARIANTS))
def test_macs_match_official_code_and_paper(name):
    fixture_name, _, published_macs = VARIANTS[name]
    fixture = load_fixture(fixture_name)
    with torch.device('meta'):
        model = timm.create_model(name)
        x = torch.randn(fixture['macs_input'])
    macs = count_macs(model, x)
    assert macs == fixture['macs']
    assert abs(macs / 1e9 - published_macs) / published_macs < 0.02


@torch.no_grad()
@pytest.mark.parametrize('name,wrap', [
    ('tnt_s_patch16_224', False),
    pytest.param('tnt_b_patch16_224', True, marks=pytest.mark.slow),
])
def test_official_checkpoint_output_parity(name, wrap, tmp_path):
    """Official-layout weights (raw, as released, or wrapped) load strictly through timm's filter and
    give the official outputs."""
    fixture = load_fixture(VARIANTS[name][0])
    sd = deterministic_state_dict(fixture['state_dict'], fixture['weights_seed'])
    path = tmp_path / 'official.pth'
    torch.save({'state_dict': sd} if wrap else sd, path)
    model = timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=str(path))).eval()
    out = model(make_input(fixture['input']['shape'], fixture['input']['seed']))
    assert max_abs_diff(out, tensor_from_record(fixture['output'])) < 1e-4
