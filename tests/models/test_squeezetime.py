"""SqueezeTime: facts from the official code (xinghaochen/SqueezeTime) and the family's own behaviour.

The model contract runs on its (B, 3, T, H, W) clips in tests/test_contract.py (the video task's adapter).
"""
from __future__ import annotations

import pytest
import timm
import torch

import zoo
from fidelity import deterministic_state_dict, load_fixture, make_input, max_abs_diff, tensor_from_record
from zoo.benchmark import count_macs
from zoo.models.squeezetime import MIN_FRAME_SIZE, checkpoint_filter_fn

VARIANTS = ('squeezetime_k400', 'squeezetime_k600', 'squeezetime_hmdb51')
# fixture -> variant; squeezetime_k400_224 runs the official 224x224 resolution (position embeddings used
# as stored), the others smaller frames (embeddings resized)
FIXTURES = {'squeezetime_k400': 'squeezetime_k400', 'squeezetime_k400_224': 'squeezetime_k400',
            'squeezetime_k600': 'squeezetime_k600', 'squeezetime_hmdb51': 'squeezetime_hmdb51'}
# torch.utils.flop_counter on the official code (same commit as the fixtures) for one 16x224x224 clip.
# The paper's table is not in REFERENCES.md, so the count is pinned to the official implementation's.
OFFICIAL_MACS_224 = {'squeezetime_k400': 5_482_892_032, 'squeezetime_k600': 5_483_301_632,
                     'squeezetime_hmdb51': 5_482_177_280}
BATCH = 2
CLIP = zoo.model_info('squeezetime_k400').contract_input_size  # (3, 16, 32, 32)
# a shallow, narrow configuration for tests of mechanics that do not depend on size
SMALL = dict(layers=(1, 1, 1, 1), widths=(8, 8, 16, 16))


@pytest.fixture(scope='module')
def model() -> torch.nn.Module:
    return timm.create_model('squeezetime_k400')


@pytest.fixture(scope='module')
def k400_checkpoint(tmp_path_factory) -> str:
    return _official_checkpoint(load_fixture('squeezetime_k400'), tmp_path_factory.mktemp('k400') / 'k400.pth')


def _clip(batch: int = BATCH, chans: int = 3, frames: int = 16, size: int = CLIP[-1]) -> torch.Tensor:
    return torch.randn(batch, chans, frames, size, size)


def _official_checkpoint(fixture: dict, path) -> str:
    """The fixture's official-layout weights saved as mmaction2 saves them ({'state_dict': ...})."""
    torch.save({'state_dict': deterministic_state_dict(fixture['state_dict'], fixture['weights_seed'])}, path)
    return str(path)


def _load(name: str, file: str, **kwargs) -> torch.nn.Module:
    return timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=file), **kwargs).eval()


# ----------------------------------------------------------------------------------------------- facts

def test_registered_as_video_models():
    assert zoo.list_models(family='squeezetime') == sorted(VARIANTS)
    for name in VARIANTS:
        info = zoo.model_info(name)
        assert info.task == 'video' and info.contract_input_size == CLIP
        cfg = timm.get_pretrained_cfg(name)
        assert cfg.url.startswith('https://github.com/xinghaochen/SqueezeTime/releases/download/ckpts/')
        assert (cfg.first_conv, cfg.classifier) == ('conv1', 'fc')


@pytest.mark.parametrize('name', VARIANTS)
def test_param_count_and_layout_equal_official(name):
    fixture = load_fixture(name)
    model = timm.create_model(name)
    assert sum(p.numel() for p in model.parameters()) == fixture['param_count']
    official = {k: torch.empty(shape, device='meta') for k, shape, _ in fixture['state_dict']}
    mapped = {k: tuple(v.shape) for k, v in checkpoint_filter_fn(official, model).items()}
    assert mapped == {k: tuple(v.shape) for k, v in model.state_dict().items()}


@pytest.mark.parametrize('fixture_name', sorted(FIXTURES))
@torch.no_grad()
def test_official_checkpoint_loads_and_outputs_match(fixture_name, tmp_path):
    fixture = load_fixture(fixture_name)
    model = _load(FIXTURES[fixture_name], _official_checkpoint(fixture, tmp_path / 'official.pth'))
    out = model(make_input(fixture['input']['shape'], fixture['input']['seed']))
    assert max_abs_diff(out, tensor_from_record(fixture['output'])) < 1e-4


def test_incomplete_official_checkpoint_is_refused(tmp_path):
    fixture = load_fixture('squeezetime_k600')
    sd = deterministic_state_dict(fixture['state_dict'])
    del sd['backbone.net.layer3.2.conv2.spatial_conv.pos_embed']
    torch.save({'state_dict': sd}, tmp_path / 'broken.pth')
    with pytest.raises(RuntimeError, match='layer3.2.conv2.spatial_conv.pos_embed'):
        _load('squeezetime_k600', str(tmp_path / 'broken.pth'))


@pytest.mark.parametrize('name', [VARIANTS[0]] + [pytest.param(n, marks=pytest.mark.slow) for n in VARIANTS[1:]])
def test_macs_equal_official(name):
    assert count_macs(timm.create_model(name), torch.randn(1, 3, 16, 224, 224)) == OFFICIAL_MACS_224[name]


@torch.no_grad()
def test_kinetics_weights_fine_tune_to_another_head(k400_checkpoint):
    """The HMDB51 recipe: Kinetics-400 weights, new 51-class classifier."""
    k400 = _load('squeezetime_k400', k400_checkpoint)
    model = _load('squeezetime_k400', k400_checkpoint, num_classes=51)
    assert model.fc.out_features == 51
    torch.testing.assert_close(model.layer4[2].conv3.weight, k400.layer4[2].conv3.weight, rtol=0, atol=0)
    x = _clip(1)
    torch.testing.assert_close(model.forward_head(model.forward_features(x), pre_logits=True),
                               k400.forward_head(k400.forward_features(x), pre_logits=True), rtol=0, atol=0)


@torch.no_grad()
def test_official_weights_adapt_to_grey_clips(k400_checkpoint):
    """in_chans=1 sums each frame's RGB stem weights: a grey clip gives what the RGB model gives on it."""
    rgb, grey = _load('squeezetime_k400', k400_checkpoint), _load('squeezetime_k400', k400_checkpoint, in_chans=1)
    x = _clip(1, chans=1)
    torch.testing.assert_close(grey(x), rgb(x.expand(-1, 3, -1, -1, -1)), rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------------------ the family's behaviour
# (the model contract itself, for every video model, is tests/test_contract.py's)

def test_stage_widths(model):
    assert [fi['num_chs'] for fi in model.feature_info] == [64, 256, 512, 1024, 2048]


@torch.no_grad()
def test_any_frame_size():
    model = timm.create_model('squeezetime_k400', num_classes=0, **SMALL).eval()
    for h, w in ((MIN_FRAME_SIZE, MIN_FRAME_SIZE), (80, 112), (97, 65)):
        assert model(torch.randn(1, 3, 16, h, w)).shape == (1, 64)


@torch.no_grad()
def test_frames_fold_into_the_stem():
    model = timm.create_model('squeezetime_k400', in_chans=1, num_frames=8, num_classes=5, **SMALL).eval()
    assert model.conv1.in_channels == 8
    assert model(_clip(chans=1, frames=8)).shape == (BATCH, 5)


def test_drop_path_is_active_in_training():
    model = timm.create_model('squeezetime_k400', drop_path_rate=0.5, drop_rate=0., num_classes=3, **SMALL).train()
    x = _clip()  # batch 2: the importance gates' batch norm sees one value per clip in training
    with torch.no_grad():
        assert not torch.equal(model(x), model(x))


@pytest.mark.parametrize('shape, match', [
    ((BATCH, 16, 64, 64), '5-D clip batch'),                        # an image batch
    ((BATCH, 16, 3, 64, 64), r'\(B, T, C, H, W\).*permute'),        # time before channels
    ((BATCH, 3, 8, 64, 64), 'built for clips of 16 frames, got 8'),
    ((BATCH, 3, 16, MIN_FRAME_SIZE - 1, 64), f'at least {MIN_FRAME_SIZE}x{MIN_FRAME_SIZE}'),
])
@torch.no_grad()
def test_bad_clips_are_clear_errors(model, shape, match):
    with pytest.raises(ValueError, match=match):
        model.eval()(torch.randn(shape))
