"""zoo.downstream.mmdet: the configs' backbones and whole detectors built through mmdet's registry.

Needs mmcv with its compiled ops (RoIAlign, NMS) and mmdet; .ci/install_openmmlab.sh installs them.
"""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

pytest.importorskip('mmcv.ops', reason='mmdet needs mmcv with compiled ops (.ci/install_openmmlab.sh builds it)',
                    exc_type=ImportError)
pytest.importorskip('mmdet', reason='mmdet is not installed (.ci/install_openmmlab.sh installs it)')
from mmengine.config import Config  # noqa: E402
from mmengine.registry import DefaultScope  # noqa: E402
from mmdet.registry import MODELS  # noqa: E402
from mmdet.testing import demo_mm_inputs  # noqa: E402
from mmdet.utils import register_all_modules  # noqa: E402

import zoo.downstream.mmdet  # noqa: E402,F401  (registers ZooBackbone)
from zoo.downstream import BackboneError  # noqa: E402

CONFIGS = sorted((Path(__file__).resolve().parents[2] / 'configs' / 'mmdet').glob('*.py'))
# one config per backbone (RetinaNet and Mask R-CNN share them; test_mm_configs.py checks every config's neck)
ONE_PER_BACKBONE = sorted({
    Config.fromfile(str(p), format_python_code=False).model.backbone.model_name: p for p in CONFIGS}.values())
register_all_modules(init_default_scope=False)


@pytest.fixture(autouse=True)
def _mmdet_scope():
    """Build through mmdet's registries, whatever default scope other test modules set."""
    with DefaultScope.overwrite_default_scope('mmdet'):
        yield


def _model_cfg(path: Path, **backbone) -> Config:
    """The config's model without downloads or local checkpoints (and with any backbone overrides)."""
    cfg = Config.fromfile(str(path), format_python_code=False).model
    cfg.backbone.update(pretrained=False, init_cfg=None, **backbone)
    return cfg


@pytest.mark.parametrize('path', ONE_PER_BACKBONE, ids=lambda p: p.name)
def test_registry_backbone_feeds_the_neck_at_a_detection_size(path):
    cfg = _model_cfg(path)
    backbone = MODELS.build(cfg.backbone).eval()
    h, w = 192, 256  # a padded detection input (multiple of 32), not square
    with torch.no_grad():
        maps = backbone(torch.randn(1, 3, h, w))
    assert [m.shape[1] for m in maps] == cfg.neck.in_channels
    assert [(h // m.shape[2], w // m.shape[3]) for m in maps] == [(s, s) for s in backbone.strides]


def _train_and_predict(cfg: Config, with_mask: bool):
    torch.manual_seed(0)
    detector = MODELS.build(cfg)
    detector.init_weights()
    batch = demo_mm_inputs(batch_size=2, image_shapes=(3, 128, 160), num_items=[3, 2], num_classes=80,
                           with_mask=with_mask)
    detector.train()
    losses = detector(**detector.data_preprocessor(copy.deepcopy(batch), True), mode='loss')
    total, _ = detector.parse_losses(losses)
    total.backward()
    backbone_grads = [p.grad for p in detector.backbone.parameters() if p.requires_grad]
    detector.eval()
    with torch.no_grad():
        results = detector(**detector.data_preprocessor(batch, False), mode='predict')
    return losses, total, backbone_grads, results


def test_retinanet_trains_and_predicts_with_a_small_zoo_backbone():
    # hire_mlp_tiny has Hire-MLP-Small's stage channels: the config's neck fits it as it is
    cfg = _model_cfg(next(p for p in CONFIGS if p.name.startswith('retinanet_hire_mlp_small')),
                     model_name='hire_mlp_tiny')
    cfg.test_cfg.score_thr = 0.  # an untrained detector's scores are below the usual threshold
    losses, total, grads, results = _train_and_predict(cfg, with_mask=False)
    assert set(losses) == {'loss_cls', 'loss_bbox'}
    assert torch.isfinite(total) and total > 0
    assert grads and all(g is not None for g in grads)
    assert len(results) == 2
    for result in results:
        boxes = result.pred_instances.bboxes
        assert boxes.shape[1] == 4 and 0 < len(boxes) == len(result.pred_instances.scores)


def test_mask_rcnn_trains_and_predicts_masks_with_a_small_zoo_backbone():
    cfg = _model_cfg(next(p for p in CONFIGS if p.name.startswith('mask-rcnn_wavemlp_s')), model_name='wavemlp_t')
    cfg.test_cfg.rpn.update(nms_pre=200, max_per_img=100)
    cfg.test_cfg.rcnn.update(score_thr=0., max_per_img=20)  # an untrained detector's scores are low
    losses, total, grads, results = _train_and_predict(cfg, with_mask=True)
    assert {'loss_rpn_cls', 'loss_rpn_bbox', 'loss_cls', 'loss_bbox', 'loss_mask'} <= set(losses)
    assert torch.isfinite(total) and total > 0
    assert grads and all(g is not None for g in grads)
    for result in results:
        instances = result.pred_instances
        assert instances.masks.shape[1:] == (128, 160) and 0 < len(instances.masks) == len(instances.bboxes)


def test_bad_backbone_requests_fail_when_the_detector_is_built():
    cfg = _model_cfg(CONFIGS[0])
    for backbone, message in ((dict(model_name='squeezetime_k400'), 'no image stages'),
                              (dict(model_name='wavemlp_t', out_indices=(0, 1, 2, 3, 4)), 'out of range')):
        bad = copy.deepcopy(cfg)
        bad.backbone.update(backbone)
        with pytest.raises(BackboneError, match=message):
            MODELS.build(bad)
