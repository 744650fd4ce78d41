"""The OpenMMLab configs in configs/mm{det,seg,action}/ against the zoo models they name (needs mmengine only).

A config inherits OpenMMLab's own configs (``mmdet::...``), so the framework package must be installed,
but nothing is imported from it (no mmcv needed): the adapters are not imported and nothing is built
through a registry here; tests/downstream/test_mmdet.py, test_mmseg.py and test_mmaction.py do that.
"""
from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import pytest
import timm

pytest.importorskip('mmengine', reason='OpenMMLab configs need mmengine (.ci/install_openmmlab.sh installs it)')
from mmengine.config import Config  # noqa: E402

import zoo  # noqa: E402,F401  (registers the zoo's models with timm)
from zoo.downstream import build_backbone  # noqa: E402

CONFIGS = Path(__file__).resolve().parents[2] / 'configs'
PACKAGES = {'mmdet': 'mmdet', 'mmseg': 'mmseg', 'mmaction': 'mmaction'}


def _configs(framework: str) -> list:
    """The runnable configs of a framework (``_base_`` holds shared pieces only), skipped without its package."""
    skip = importlib.util.find_spec(PACKAGES[framework]) is None
    marks = [pytest.mark.skipif(skip, reason=f'{framework} configs inherit {PACKAGES[framework]}\'s configs; '
                                             f'.ci/install_openmmlab.sh installs it')]
    return [pytest.param(p, id=p.name, marks=marks) for p in sorted((CONFIGS / framework).glob('*.py'))]


@functools.lru_cache(maxsize=None)
def _load(path: Path) -> Config:
    return Config.fromfile(str(path), import_custom_modules=False, format_python_code=False)


@functools.lru_cache(maxsize=None)
def _staged(model_name: str, out_indices: tuple):
    return build_backbone(model_name, out_indices=out_indices)


def _zoo_backbone(cfg: Config):
    """The config's backbone (stages and channels), built by the zoo alone without weights."""
    return _staged(cfg.model.backbone.model_name, tuple(cfg.model.backbone.out_indices))


def _weights_source(backbone_cfg) -> str:
    """'checkpoint' (a local file in init_cfg), 'release' (pretrained=True) or 'none'."""
    if backbone_cfg.get('init_cfg'):
        return 'checkpoint'
    return 'release' if backbone_cfg.get('pretrained') else 'none'


@pytest.mark.parametrize('framework', sorted(PACKAGES))
def test_every_framework_has_configs(framework):
    assert _configs(framework), f'no configs in {CONFIGS / framework}'


@pytest.mark.parametrize('path', _configs('mmdet') + _configs('mmseg') + _configs('mmaction'))
def test_config_imports_its_adapter_and_sets_a_weight_source_that_exists(path):
    cfg = _load(path)
    framework = path.parent.name
    assert cfg.custom_imports == dict(imports=[f'zoo.downstream.{framework}'], allow_failed_imports=False)
    backbone = cfg.model.backbone
    name = backbone.model_name
    source = _weights_source(backbone)
    url = timm.models.get_pretrained_cfg(name).url
    if source == 'release':  # the zoo downloads it: the model has a direct download
        assert url and 'pan.baidu.com' not in url, f'{name} has no downloadable release; use init_cfg'
    if source == 'checkpoint':
        assert set(backbone.init_cfg) == {'type', 'checkpoint'} and backbone.init_cfg.type == 'Pretrained'


@pytest.mark.parametrize('path', _configs('mmdet') + _configs('mmseg'))
def test_normalisation_is_the_backbones(path):
    """Images are normalised with the statistics the backbone was trained with (0-255 scale)."""
    cfg = _load(path)
    pretrained_cfg = timm.models.get_pretrained_cfg(cfg.model.backbone.model_name)
    preprocessor = cfg.model.data_preprocessor
    assert preprocessor.mean == pytest.approx([255 * m for m in pretrained_cfg.mean])
    assert preprocessor.std == pytest.approx([255 * s for s in pretrained_cfg.std])


@pytest.mark.parametrize('path', _configs('mmdet'))
def test_detector_levels_match_the_backbone(path):
    """The neck reads the backbone's channels; anchors and RoI extractors sit on the FPN's actual strides."""
    cfg = _load(path)
    backbone = _zoo_backbone(cfg)
    neck = cfg.model.neck
    assert neck.in_channels == backbone.channels
    assert cfg.model.data_preprocessor.pad_size_divisor % backbone.size_divisor == 0
    start = neck.get('start_level', 0)
    fpn_strides = backbone.strides[start:]
    fpn_strides += [fpn_strides[-1] * 2 ** i for i in range(1, neck.num_outs - len(fpn_strides) + 1)]
    head = cfg.model.get('rpn_head', cfg.model.get('bbox_head'))
    assert head.anchor_generator.strides == fpn_strides
    if 'roi_head' in cfg.model:
        for extractor in ('bbox_roi_extractor', 'mask_roi_extractor'):
            assert cfg.model.roi_head[extractor].featmap_strides == fpn_strides[:len(backbone.strides) - start]


@pytest.mark.parametrize('path', _configs('mmseg'))
def test_segmenter_levels_match_the_backbone(path):
    cfg = _load(path)
    backbone = _zoo_backbone(cfg)
    model = cfg.model
    if 'neck' in model:  # Semantic FPN: the neck reads every stage, the head every FPN level
        assert model.neck.in_channels == backbone.channels
        assert model.decode_head.feature_strides == backbone.strides
    else:  # CGRSeg: the head reads the stride 8/16/32 stages
        assert model.decode_head.in_channels == [backbone.channels[i] for i in model.decode_head.in_index]
        assert [backbone.strides[i] for i in model.decode_head.in_index] == [8, 16, 32]
    assert model.data_preprocessor.size == (512, 512)  # training crops, padded to the crop size
    assert model.data_preprocessor.test_cfg.size_divisor % backbone.size_divisor == 0  # whole-image testing


@pytest.mark.parametrize('path', _configs('mmaction'))
def test_recognizer_head_matches_the_backbone(path):
    cfg = _load(path)
    model = timm.create_model(cfg.model.backbone.model_name, num_classes=0, global_pool='')
    assert cfg.model.cls_head.in_channels == model.num_features
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        sampling = next(t for t in cfg[loader].dataset.pipeline if t.type == 'SampleFrames')
        assert sampling.clip_len == model.num_frames
