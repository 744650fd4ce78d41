"""GhostNet V1/V2/V3 are adopted from timm: pin their equivalence with the official code.

Fixtures (tests/fixtures/ghostnet_*.json) hold the official state-dict manifest and parameter count of
every variant, and the official eval output on deterministic weights for some of them.
"""
import pytest
import timm
import torch
from timm.models import reparameterize_model

import zoo
from fidelity import fixture_state_dict, load_fixture, make_input, max_abs_diff, tensor_from_record
from zoo.benchmark import count_macs

VARIANTS = zoo.list_models(family='ghostnet')
WITH_OUTPUT = [n for n in VARIANTS if 'output' in load_fixture(f'ghostnet_{n}')]

# Published MACs (G) at 224x224 (GhostNet, GhostNetV2 papers; GhostNetV3 1.3x in its deploy form).
PAPER_MACS = {'ghostnet_100': 0.141, 'ghostnetv2_100': 0.167, 'ghostnetv2_130': 0.269, 'ghostnetv2_160': 0.399}
PAPER_DEPLOY_MACS = {'ghostnetv3_130': 0.269}


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_every_variant_has_a_fixture():
    assert len(VARIANTS) == 10
    assert {'ghostnet_100', 'ghostnetv2_100', 'ghostnetv3_100'} <= set(WITH_OUTPUT)


@pytest.mark.parametrize('name', VARIANTS)
def test_param_count_and_layout_equal_official(name, tmp_path):
    fixture = load_fixture(f'ghostnet_{name}')
    model = timm.create_model(name)
    assert _params(model) == fixture['param_count']
    # The official layout loads strictly through the real loading path (timm's filter maps the keys).
    path = tmp_path / 'official.pth.tar'
    torch.save({'state_dict': fixture_state_dict(fixture)}, path)
    timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))


@pytest.mark.parametrize('wrapper', ['plain', 'state_dict', 'model'])
@pytest.mark.parametrize('name', WITH_OUTPUT)
@torch.no_grad()
def test_outputs_equal_official(name, wrapper, tmp_path):
    fixture = load_fixture(f'ghostnet_{name}')
    state_dict = fixture_state_dict(fixture)
    path = tmp_path / 'official.pth'
    torch.save(state_dict if wrapper == 'plain' else {wrapper: state_dict}, path)
    model = timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=str(path))).eval()
    out = model(make_input(fixture['input']['shape'], fixture['input']['seed']))
    assert max_abs_diff(out, tensor_from_record(fixture['output'])) < 1e-4


@pytest.mark.parametrize('name', ['ghostnetv3_050', 'ghostnetv3_100'])
@torch.no_grad()
def test_ghostnetv3_reparameterize_keeps_outputs(name):
    fixture = load_fixture(f'ghostnet_{name}')
    model = timm.create_model(name)
    model.load_state_dict(timm.models.ghostnet.checkpoint_filter_fn(fixture_state_dict(fixture), model))
    model.eval()
    x = torch.randn(2, 3, 96, 80)
    train_form = model(x)
    train_params = _params(model)
    reparameterize_model(model, inplace=True)
    assert _params(model) < train_params
    assert max_abs_diff(model(x), train_form) < 1e-4


@pytest.mark.parametrize('name', sorted(PAPER_MACS))
def test_macs_match_paper(name):
    macs = count_macs(timm.create_model(name), torch.randn(1, 3, 224, 224)) / 1e9
    assert macs == pytest.approx(PAPER_MACS[name], rel=0.02)


@pytest.mark.parametrize('name', sorted(PAPER_DEPLOY_MACS))
def test_ghostnetv3_deploy_macs_match_paper(name):
    model = reparameterize_model(timm.create_model(name).eval())
    macs = count_macs(model, torch.randn(1, 3, 224, 224)) / 1e9
    assert macs == pytest.approx(PAPER_DEPLOY_MACS[name], rel=0.02)


def test_released_variants_name_their_official_release():
    for name in ('ghostnet_100', 'ghostnetv2_100', 'ghostnetv2_130', 'ghostnetv2_160', 'ghostnetv3_100'):
        url = zoo.model_info(name).official_url
        assert url.startswith('https://github.com/huawei-noah/Efficient-AI-Backbones/'), name
