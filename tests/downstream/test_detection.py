"""torchvision detection over zoo backbones: pyramid levels, anchors, training on synthetic boxes, and
predictions on a real image in its own pixel coordinates."""
from __future__ import annotations

import pytest
import torch
from sklearn.datasets import load_sample_image

from zoo.downstream.detection import DETECTORS, build_detector

TINY = 'ghostnet_050'
SMALL = dict(fpn_channels=64, min_size=96, max_size=96)
# fewer proposals and sampled RoIs: the R-CNN heads dominate the cost of a step on CPU
FEW_ROIS = dict(rpn_pre_nms_top_n_train=200, rpn_post_nms_top_n_train=100, box_batch_size_per_image=64)


def _synthetic_batch(n: int, size: int, seed: int) -> tuple[list[torch.Tensor], list[dict]]:
    """Dark noisy images with a bright red (class 1) and a bright green (class 2) rectangle each."""
    g = torch.Generator().manual_seed(seed)
    images, targets = [], []
    for _ in range(n):
        image = torch.rand(3, size, size, generator=g) * 0.2
        boxes, masks = [], torch.zeros(2, size, size, dtype=torch.uint8)
        for label in (1, 2):
            w, h = torch.randint(size // 5, size // 3, (2,), generator=g).tolist()
            x = torch.randint(0, size - w, (1,), generator=g).item()
            y = torch.randint(0, size - h, (1,), generator=g).item()
            image[label - 1, y:y + h, x:x + w] = 1.0
            masks[label - 1, y:y + h, x:x + w] = 1
            boxes.append([x, y, x + w, y + h])
        images.append(image)
        targets.append(dict(boxes=torch.tensor(boxes, dtype=torch.float32), labels=torch.tensor([1, 2]), masks=masks))
    return images, targets


def _train(model: torch.nn.Module, steps: int, lr: float) -> list[float]:
    """AdamW on one fixed synthetic batch; the per-step total losses."""
    images, targets = _synthetic_batch(2, SMALL['min_size'], seed=0)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr)
    model.train()
    losses = []
    for _ in range(steps):
        loss = sum(model(images, targets).values())
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        losses.append(loss.item())
    return losses


def _falls(losses: list[float]) -> bool:
    first, last = sum(losses[:3]) / 3, sum(losses[-5:]) / 5
    return last < 0.6 * first


def test_retinanet_loss_falls_on_synthetic_boxes():
    losses = _train(build_detector('retinanet', TINY, num_classes=3, **SMALL), steps=25, lr=3e-4)
    assert all(torch.isfinite(torch.tensor(losses)))
    assert _falls(losses), f'loss did not fall: {[round(v, 3) for v in losses]}'


@pytest.mark.slow
@pytest.mark.parametrize('kind', ['fasterrcnn', 'maskrcnn'])
def test_rcnn_loss_falls_on_synthetic_boxes(kind):
    rois = dict(FEW_ROIS, box_batch_size_per_image=32) if kind == 'maskrcnn' else FEW_ROIS  # mask head: 256 ch
    losses = _train(build_detector(kind, TINY, num_classes=3, **SMALL, **rois), steps=25, lr=1e-3)
    assert _falls(losses), f'loss did not fall: {[round(v, 3) for v in losses]}'


@pytest.mark.parametrize('kind', ['fasterrcnn', 'maskrcnn'])
def test_rcnn_training_step_reaches_the_backbone(kind):
    model = build_detector(kind, TINY, num_classes=3, frozen_stages=1, **SMALL, **FEW_ROIS).train()
    images, targets = _synthetic_batch(2, SMALL['min_size'], seed=1)
    losses = model(images, targets)
    expected = {'loss_classifier', 'loss_box_reg', 'loss_objectness', 'loss_rpn_box_reg'}
    assert set(losses) == expected | ({'loss_mask'} if kind == 'maskrcnn' else set())
    sum(losses.values()).backward()
    body = model.backbone.body
    trainable = [p for p in body.parameters() if p.requires_grad]
    assert trainable and all(p.grad is not None for p in trainable)
    assert all(p.grad is None for p in body.body.conv_stem.parameters())  # frozen_stages reached the backbone


def test_pyramid_levels_and_anchors_follow_the_backbone():
    retinanet = build_detector('retinanet', TINY, num_classes=3, **SMALL)
    assert retinanet.backbone.body.strides == [8, 16, 32]  # default: from stride 8, P6 and P7 added
    assert retinanet.anchor_generator.sizes[0] == (32, 40, 50)  # torchvision's sizes on stride 8
    assert len(retinanet.anchor_generator.sizes) == 5
    rcnn = build_detector('fasterrcnn', TINY, num_classes=3, **SMALL)
    assert rcnn.backbone.body.strides == [4, 8, 16, 32]  # default: from stride 4, a pooled level added
    assert rcnn.rpn.anchor_generator.sizes == ((32,), (64,), (128,), (256,), (512,))
    for model in (retinanet, rcnn):
        with torch.no_grad():
            levels = model.backbone.eval()(torch.randn(1, 3, 64, 64))
        assert len(levels) == len(model.backbone.body.strides) + (2 if model is retinanet else 1)
        assert all(f.shape[1] == 64 for f in levels.values())


def test_explicit_out_indices_and_the_backbone_normalisation():
    model = build_detector('fasterrcnn', 'ptnt_ti_patch16_192', num_classes=2, out_indices=(1, 2, 3), **SMALL)
    body = model.backbone.body
    assert body.out_indices == (1, 2, 3) and body.strides == [16, 32, 64]
    assert model.transform.size_divisible == body.size_divisor == 64
    assert model.transform.image_mean == list(body.pretrained_cfg['mean']) == [0.5, 0.5, 0.5]


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="unknown detector kind 'yolo'.*retinanet"):
        build_detector('yolo', TINY, num_classes=2)


@pytest.fixture(scope='module')
def china() -> torch.Tensor:
    return torch.from_numpy(load_sample_image('china.jpg').copy()).permute(2, 0, 1).float() / 255


@torch.no_grad()
@pytest.mark.parametrize('kind, backbone', [('retinanet', TINY), ('fasterrcnn', 'ptnt_ti_patch16_192'),
                                            ('maskrcnn', TINY)])
def test_prediction_on_a_real_image_is_in_its_pixel_coordinates(kind, backbone, china):
    assert kind in DETECTORS
    limits = dict(score_thresh=0.0, detections_per_img=20) if kind == 'retinanet' else \
        dict(box_score_thresh=0.0, box_detections_per_img=20)
    model = build_detector(kind, backbone, num_classes=3, fpn_channels=64, min_size=160, max_size=320,
                           **limits).eval()
    h, w = china.shape[-2:]  # 427 x 640, resized to 160 x 240 inside the model
    (out,) = model([china])
    boxes, labels, scores = out['boxes'], out['labels'], out['scores']
    n = len(boxes)
    assert n > 0 and boxes.shape == (n, 4) and labels.shape == scores.shape == (n,)
    assert boxes.dtype == scores.dtype == torch.float32 and labels.dtype == torch.int64
    assert (boxes[:, 2:] >= boxes[:, :2]).all()
    assert (boxes >= 0).all() and (boxes[:, 0::2] <= w).all() and (boxes[:, 1::2] <= h).all()
    assert boxes[:, 2].max() > 240 or boxes[:, 3].max() > 160, 'boxes were not mapped back to the image size'
    assert ((labels >= 0) & (labels < 3)).all() and ((scores >= 0) & (scores <= 1)).all()
    if kind == 'maskrcnn':
        masks = out['masks']
        assert masks.shape == (n, 1, h, w) and masks.dtype == torch.float32
        assert ((masks >= 0) & (masks <= 1)).all()
