"""zoo.downstream.mmseg: CGRSeg's decode head in mmseg (official layout and output) and whole segmenters.

Needs mmcv with its compiled ops and mmsegmentation; .ci/install_openmmlab.sh installs them.
"""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

pytest.importorskip('mmcv.ops', reason='mmseg needs mmcv with compiled ops (.ci/install_openmmlab.sh builds it)',
                    exc_type=ImportError)
pytest.importorskip('mmseg', reason='mmsegmentation is not installed (.ci/install_openmmlab.sh installs it)')
from mmengine.config import Config  # noqa: E402
from mmengine.registry import DefaultScope  # noqa: E402
from mmengine.structures import PixelData  # noqa: E402
from mmseg.registry import MODELS  # noqa: E402
from mmseg.structures import SegDataSample  # noqa: E402
from mmseg.utils import register_all_modules  # noqa: E402

import zoo.downstream.mmseg  # noqa: E402,F401  (registers ZooBackbone and CGRSegHead)
from fidelity import deterministic_state_dict, load_fixture, make_input, max_abs_diff, tensor_from_record  # noqa: E402

CONFIGS = Path(__file__).resolve().parents[2] / 'configs' / 'mmseg'
CGRSEG_T = CONFIGS / 'cgrseg-t_ade20k-512x512_160k.py'
register_all_modules(init_default_scope=False)


@pytest.fixture(autouse=True)
def _mmseg_scope():
    """Build through mmseg's registries, whatever default scope other test modules set."""
    with DefaultScope.overwrite_default_scope('mmseg'):
        yield


def _model_cfg(path: Path, **backbone) -> Config:
    cfg = Config.fromfile(str(path), format_python_code=False).model
    cfg.backbone.update(pretrained=False, init_cfg=None, **backbone)
    return cfg


def test_decode_head_has_the_official_layout():
    head = MODELS.build(_model_cfg(CGRSEG_T).decode_head)
    official = {k[len('decode_head.'):]: tuple(shape) for k, shape, _ in load_fixture('cgrseg_t')['state_dict']
                if k.startswith('decode_head.')}
    assert {k: tuple(v.shape) for k, v in head.state_dict().items()} == official


@torch.no_grad()
def test_official_checkpoint_gives_the_official_output(tmp_path):
    """An official CGRSeg-T checkpoint: the backbone through the zoo (init_cfg), the head as mmseg loads it.
    (The reference was computed on one CPU thread, as conftest.py runs these tests.)"""
    fixture = load_fixture('cgrseg_t')
    state = deterministic_state_dict(fixture['state_dict'], fixture['weights_seed'])
    path = tmp_path / 'cgrseg_t_official.pth'
    torch.save({'state_dict': state}, path)
    cfg = _model_cfg(CGRSEG_T)
    cfg.backbone.init_cfg = dict(type='Pretrained', checkpoint=str(path))
    segmentor = MODELS.build(cfg).eval()
    segmentor.decode_head.load_state_dict(
        {k[len('decode_head.'):]: v for k, v in state.items() if k.startswith('decode_head.')}, strict=True)
    x = make_input(fixture['input']['shape'], fixture['input']['seed'])
    logits = segmentor.decode_head(segmentor.extract_feat(x))
    assert max_abs_diff(logits, tensor_from_record(fixture['output'])) < 1e-4


def _batch(n: int, size: tuple, num_classes: int) -> dict:
    g = torch.Generator().manual_seed(0)
    samples = []
    for _ in range(n):
        sample = SegDataSample(metainfo=dict(img_shape=size, ori_shape=size))
        sample.gt_sem_seg = PixelData(data=torch.randint(0, num_classes, (1, *size), generator=g))
        samples.append(sample)
    images = [torch.randint(0, 256, (3, *size), dtype=torch.uint8, generator=g) for _ in range(n)]
    return dict(inputs=images, data_samples=samples)


@pytest.mark.parametrize('config, backbone', [
    ('cgrseg-t_ade20k-512x512_160k.py', 'cgrseg_t'),
    ('fpn_hire_mlp_small_ade20k-512x512_40k.py', 'hire_mlp_tiny'),  # Hire-MLP-Small's channels, smaller
])
def test_segmenter_trains_and_predicts(config, backbone):
    torch.manual_seed(0)
    cfg = _model_cfg(CONFIGS / config, model_name=backbone)
    cfg.data_preprocessor.size = (64, 64)
    segmentor = MODELS.build(cfg)
    segmentor.init_weights()
    segmentor.train()
    losses = segmentor(**segmentor.data_preprocessor(_batch(2, (64, 64), 150), True), mode='loss')
    total, _ = segmentor.parse_losses(losses)
    total.backward()
    assert torch.isfinite(total) and total > 0
    # every trainable parameter takes part (no find_unused_parameters needed in distributed training)
    assert [n for n, p in segmentor.named_parameters() if p.requires_grad and p.grad is None] == []
    segmentor.eval()
    with torch.no_grad():  # 60x70 is padded to a multiple of 32 for the model and cropped back
        results = segmentor(**segmentor.data_preprocessor(_batch(1, (60, 70), 150), False), mode='predict')
    assert results[0].pred_sem_seg.data.shape == (1, 60, 70)
    assert results[0].seg_logits.data.shape == (150, 60, 70)


@pytest.mark.parametrize('option, message', [
    (dict(input_transform='resize_concat'), 'multiple_select'),
    (dict(norm_cfg=dict(type='SyncBN', requires_grad=True)), "sync_bn='torch'"),
])
def test_head_options_it_cannot_honour_are_refused(option, message):
    cfg = copy.deepcopy(_model_cfg(CGRSEG_T).decode_head)
    cfg.update(option)
    with pytest.raises(ValueError, match=message):
        MODELS.build(cfg)
