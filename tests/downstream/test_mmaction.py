"""zoo.downstream.mmaction: SqueezeTime recognizers in mmaction2 (official layout and output, training, testing).

Needs mmcv with its compiled ops and mmaction2; .ci/install_openmmlab.sh installs them.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch

pytest.importorskip('mmcv.ops', reason='mmaction2 needs mmcv with compiled ops (.ci/install_openmmlab.sh builds it)',
                    exc_type=ImportError)
pytest.importorskip('mmaction', reason='mmaction2 is not installed (.ci/install_openmmlab.sh installs it)')
from mmaction.registry import MODELS  # noqa: E402
from mmaction.structures import ActionDataSample  # noqa: E402
from mmaction.utils import register_all_modules  # noqa: E402
from mmengine.config import Config  # noqa: E402
from mmengine.registry import DefaultScope  # noqa: E402
from mmengine.runner import load_checkpoint  # noqa: E402

import zoo.downstream.mmaction  # noqa: E402,F401  (registers SqueezeTimeBackbone and SqueezeTimeHead)
from fidelity import deterministic_state_dict, load_fixture, make_input, max_abs_diff, tensor_from_record  # noqa: E402
from zoo.downstream import BackboneError  # noqa: E402

CONFIGS = Path(__file__).resolve().parents[2] / 'configs' / 'mmaction'
K400 = CONFIGS / 'squeezetime_16x4x1_100e_kinetics400-rgb.py'
register_all_modules(init_default_scope=False)


@pytest.fixture(autouse=True)
def _mmaction_scope():
    """Build through mmaction's registries, whatever default scope other test modules set."""
    with DefaultScope.overwrite_default_scope('mmaction'):
        yield


def _model_cfg(path: Path) -> Config:
    cfg = Config.fromfile(str(path), format_python_code=False).model
    cfg.backbone.update(pretrained=False, init_cfg=None)
    return cfg


@torch.no_grad()
def test_official_recognizer_checkpoint_loads_with_mmengine_and_gives_the_official_output(tmp_path):
    """The official mmaction2 layout (backbone.net.*, cls_head.fc_cls.*) loads strictly with mmengine's loader
    (what ``load_from`` does) and the recognizer reproduces the official class scores."""
    fixture = load_fixture('squeezetime_k400')
    path = tmp_path / 'official.pth'
    torch.save({'state_dict': deterministic_state_dict(fixture['state_dict'], fixture['weights_seed'])}, path)
    recognizer = MODELS.build(_model_cfg(K400))
    load_checkpoint(recognizer, str(path), map_location='cpu', strict=True)
    recognizer.eval()
    x = make_input(fixture['input']['shape'], fixture['input']['seed'])
    scores = recognizer.cls_head(recognizer.backbone(x))
    assert max_abs_diff(scores, tensor_from_record(fixture['output'])) < 1e-4


def _clips(n: int, size: int, num_clips: int = 1) -> dict:
    g = torch.Generator().manual_seed(0)
    inputs = [torch.randint(0, 256, (num_clips, 3, 16, size, size), generator=g).to(torch.uint8) for _ in range(n)]
    samples = [ActionDataSample().set_gt_label(i % 51) for i in range(n)]
    return dict(inputs=inputs, data_samples=samples)


def test_recognizer_trains_and_predicts_from_kinetics_weights(tmp_path):
    """HMDB51 recipe: the backbone starts from a Kinetics-400 checkpoint (here one of random weights, in the
    official layout, through init_cfg), a new 51-class head is trained; testing averages several views."""
    torch.manual_seed(0)
    kinetics = MODELS.build(_model_cfg(K400))
    path = tmp_path / 'k400.pth'
    torch.save({'state_dict': kinetics.state_dict()}, path)
    cfg = _model_cfg(CONFIGS / 'squeezetime_16x4x1_50e_hmdb51-split1-rgb.py')
    cfg.backbone.init_cfg = dict(type='Pretrained', checkpoint=str(path))
    recognizer = MODELS.build(cfg)
    recognizer.init_weights()
    for key, value in recognizer.backbone.state_dict().items():
        assert torch.equal(value, kinetics.backbone.state_dict()[key]), key
    recognizer.train()
    losses = recognizer(**recognizer.data_preprocessor(_clips(2, 32), True), mode='loss')
    total, _ = recognizer.parse_losses(losses)
    total.backward()
    assert torch.isfinite(total) and total > 0
    assert all(p.grad is not None for p in recognizer.parameters() if p.requires_grad)
    recognizer.eval()
    with torch.no_grad():  # 2 clips x 3 crops per video, as in the HMDB51 test pipeline
        results = recognizer(**recognizer.data_preprocessor(_clips(2, 32, num_clips=6), False), mode='predict')
    assert len(results) == 2
    for result in results:
        scores = result.pred_score
        assert scores.shape == (51,) and torch.isclose(scores.sum(), torch.tensor(1.))


@pytest.mark.parametrize('backbone, message', [
    (dict(model_name='hire_mlp_tiny'), 'needs a zoo video model'),
    (dict(model_name='squeezetime_k401'), 'unknown zoo model'),
    (dict(init_cfg=dict(type='Pretrained', checkpoint='x.pth', prefix='backbone.')), 'init_cfg=dict'),
])
def test_bad_backbone_requests_are_refused(backbone, message):
    cfg = _model_cfg(K400)
    cfg.backbone.update(backbone)
    with pytest.raises(BackboneError, match=message):
        MODELS.build(cfg)


def test_checkpoint_of_another_model_is_refused(tmp_path):
    path = tmp_path / 'wavemlp_t.pth'
    torch.save(timm.create_model('wavemlp_t').state_dict(), path)
    cfg = _model_cfg(K400)
    cfg.backbone.init_cfg = dict(type='Pretrained', checkpoint=str(path))
    with pytest.raises(BackboneError, match='does not fit squeezetime_k400'):
        MODELS.build(cfg)
