"""``--layout official``: the renames into the official MindSpore ports' layout, checked against fixtures of the
ports' parameter names and shapes (extracted from mindspore-ai/models by building each port outside the project)."""
import json
from pathlib import Path

import pytest
import torch

import zoo
from zoo.mindspore import api
from zoo.mindspore.command_line import main
from zoo.mindspore.layouts import from_layout, official_models, to_layout

FIXTURES = sorted((Path(__file__).parents[1] / 'fixtures').glob('mindspore_*.json'))


def test_fixtures_present():
    assert {json.loads(f.read_text())['zoo_model'] for f in FIXTURES} == {
        'ghostnet_100', 'ghostnetv2_100', 'wavemlp_t_dw', 'wavemlp_m', 'hire_mlp_tiny'}


@pytest.mark.parametrize('fixture', FIXTURES, ids=lambda f: f.stem)
def test_official_names_and_shapes(fixture):
    doc = json.loads(fixture.read_text())
    name = doc['zoo_model']
    twin = {n: list(p.shape) for n, p in api.create_model(name).parameters_and_names()}
    official = to_layout(twin, name, 'official')
    assert official == doc['parameters']  # same names, same shapes, nothing missing or extra
    assert from_layout(official, name, 'official') == twin


def test_models_with_a_port():
    names = official_models()
    assert 'ghostnet_100' in names and 'hire_mlp_large' in names and 'wavemlp_b' in names
    # the port's width multiplier builds other channel counts than GhostNet's other widths: no layout for those
    assert not {'ghostnet_050', 'ghostnetv2_130', 'ghostnetv3_100'} & set(names)


def test_official_export_import_round_trip(tmp_path):
    torch.manual_seed(0)
    pth, ckpt, back = tmp_path / 'g.pth', tmp_path / 'g.ckpt', tmp_path / 'back.pth'
    torch.save(zoo.create_model('ghostnet_100').state_dict(), pth)
    assert main(['export', '--model', 'ghostnet_100', '--checkpoint', str(pth), '--out', str(ckpt),
                 '--layout', 'official']) == 0
    assert main(['import', str(ckpt), '--model', 'ghostnet_100', '--out', str(back)]) == 2  # zoo layout: refused
    assert main(['import', str(ckpt), '--model', 'ghostnet_100', '--out', str(back), '--layout', 'official']) == 0
    original, restored = torch.load(pth, weights_only=True), torch.load(back, weights_only=True)
    assert set(original) == set(restored)
    assert all(k.endswith('num_batches_tracked') or torch.equal(v, restored[k]) for k, v in original.items())
