"""ZooBackbone, the backbone the mmdet and mmseg adapters register (needs mmengine only, not mmcv)."""
from __future__ import annotations

import pytest
import timm
import torch

pytest.importorskip('mmengine', reason='the OpenMMLab adapters need mmengine (.ci/install_openmmlab.sh installs it)')
from mmengine.model import BaseModule  # noqa: E402

import zoo  # noqa: E402,F401  (registers the zoo's models with timm)
from zoo.downstream import BackboneError  # noqa: E402
from zoo.downstream._openmmlab import ZooBackbone  # noqa: E402


@pytest.fixture(scope='module')
def hire_checkpoint(tmp_path_factory):
    """A classification checkpoint of hire_mlp_tiny (random weights) and the model it came from."""
    model = timm.create_model('hire_mlp_tiny')
    path = tmp_path_factory.mktemp('ckpt') / 'hire_mlp_tiny.pth'
    torch.save(model.state_dict(), path)
    return path, model


def test_returns_a_tuple_of_maps_at_the_stage_strides():
    backbone = ZooBackbone('wavemlp_t').eval()
    x = torch.randn(1, 3, 160, 224)  # detection-like: not square, not the 224 training size
    with torch.no_grad():
        maps = backbone(x)
    assert isinstance(maps, tuple)
    assert [m.shape[1] for m in maps] == backbone.channels == [64, 128, 320, 512]
    assert [(160 // m.shape[2], 224 // m.shape[3]) for m in maps] == [(s, s) for s in backbone.strides]
    assert backbone.strides == [4, 8, 16, 32]


def test_init_cfg_checkpoint_loads_through_the_zoo_and_survives_init_weights(hire_checkpoint):
    """The checkpoint is loaded (strictly) at build time; mmengine's later init_weights() must not touch it."""
    path, source = hire_checkpoint

    class Detector(BaseModule):  # what mmdet / mmseg call init_weights() on
        def __init__(self):
            super().__init__()
            self.backbone = ZooBackbone('hire_mlp_tiny', init_cfg=dict(type='Pretrained', checkpoint=str(path)))

    detector = Detector()
    detector.init_weights()
    expected = source.state_dict()
    loaded = detector.backbone.state_dict()
    assert len(loaded) > 100
    for key, value in loaded.items():  # wrapper prefixes aside, every tensor is the checkpoint's
        parts = key.split('.')
        source_key = next('.'.join(parts[i:]) for i in range(len(parts)) if '.'.join(parts[i:]) in expected)
        assert torch.equal(value, expected[source_key]), key


def test_frozen_stages_and_norm_eval_reach_the_model():
    backbone = ZooBackbone('hire_mlp_tiny', frozen_stages=1, norm_eval=True).train()
    frozen = [n for n, p in backbone.named_parameters() if not p.requires_grad]
    assert frozen and any('patch_embed' in n for n in frozen)
    bns = [m for m in backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and not any(m.training for m in bns)


def test_model_without_image_stages_is_refused():
    with pytest.raises(BackboneError, match='no image stages'):
        ZooBackbone('squeezetime_k400')


def test_out_indices_beyond_the_stages_are_refused():
    with pytest.raises(BackboneError, match='out of range.*4 stages'):
        ZooBackbone('wavemlp_t', out_indices=(1, 2, 4))


def test_checkpoint_of_another_model_is_refused(hire_checkpoint):
    path, _ = hire_checkpoint
    with pytest.raises(BackboneError, match='does not fit wavemlp_t'):
        ZooBackbone('wavemlp_t', init_cfg=dict(type='Pretrained', checkpoint=str(path)))


@pytest.mark.parametrize('init_cfg', [
    dict(type='Pretrained', checkpoint='x.pth', prefix='backbone.'),
    dict(type='Kaiming'),
    [dict(type='Pretrained', checkpoint='x.pth'), dict(type='Normal')],
])
def test_init_cfg_other_than_a_plain_checkpoint_is_refused(init_cfg):
    """mmengine options the zoo's loader would not honour are refused rather than silently dropped."""
    with pytest.raises(BackboneError, match='init_cfg=dict'):
        ZooBackbone('wavemlp_t', init_cfg=init_cfg)
