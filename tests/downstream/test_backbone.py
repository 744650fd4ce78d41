"""The generic staged backbone: stages at detection sizes, freezing, checkpoints, and its errors."""
from __future__ import annotations

import pytest
import timm
import torch
from torch.nn.modules.batchnorm import _BatchNorm

import zoo
from fidelity import fixture_state_dict, load_fixture
from zoo.downstream.backbone import BackboneError, StagedBackbone, build_backbone

DETECTION_SIZE = (512, 640)

# name -> (channels, strides) of every stage at a detection-sized input: what an FPN over it expects.
# One small variant per staged family (default run) ...
SMALL = {
    'pvig_ti_224_gelu': ([48, 96, 240, 384], [4, 8, 16, 32]),
    'wavemlp_t': ([64, 128, 320, 512], [4, 8, 16, 32]),
    'hire_mlp_tiny': ([64, 128, 320, 512], [4, 8, 16, 32]),
    'ptnt_ti_patch16_192': ([80, 160, 320, 320], [8, 16, 32, 64]),
    'slab_swin_t': ([96, 192, 384, 768], [4, 8, 16, 32]),
    'slab_pvt_v2_b0': ([32, 64, 160, 256], [4, 8, 16, 32]),
    'ghostnet_100': ([16, 24, 40, 80, 160], [2, 4, 8, 16, 32]),
}
# ... and the backbones of the official detection configs (slow: larger models).
DETECTION_CONFIGS = {
    'pvig_s_224_gelu': ([80, 160, 400, 640], [4, 8, 16, 32]),
    'wavemlp_s': ([64, 128, 320, 512], [4, 8, 16, 32]),
    'hire_mlp_small': ([64, 128, 320, 512], [4, 8, 16, 32]),
    'ptnt_s_patch16_256': ([128, 256, 512, 512], [8, 16, 32, 64]),
}


def _check_stages(name: str, channels: list[int], strides: list[int]) -> None:
    backbone = build_backbone(name).eval()
    assert (backbone.channels, backbone.strides) == (channels, strides)
    assert backbone.out_indices == tuple(range(len(channels)))
    h, w = DETECTION_SIZE
    with torch.no_grad():
        maps = backbone(torch.randn(1, 3, h, w))
    assert [tuple(m.shape) for m in maps] == [(1, c, h // s, w // s) for c, s in zip(channels, strides)]
    assert all(torch.isfinite(m).all() for m in maps)


@pytest.mark.parametrize('name', sorted(SMALL))
def test_stages_at_detection_size(name):
    _check_stages(name, *SMALL[name])


@pytest.mark.slow
@pytest.mark.parametrize('name', sorted(DETECTION_CONFIGS))
def test_detection_config_backbones_at_detection_size(name):
    _check_stages(name, *DETECTION_CONFIGS[name])


def test_every_image_family_is_checked_at_detection_size():
    families = {zoo.model_info(n).family for n in zoo.list_models(task='classification')}
    assert families - {zoo.model_info(n).family for n in SMALL} == {'tnt'}


def test_tnt_takes_only_its_fixed_input_size():
    """timm's TNT (adopted) asserts its 224 input: the one family that cannot run at detection sizes."""
    backbone = build_backbone('tnt_s_patch16_224').eval()
    with pytest.raises(AssertionError, match="doesn't match model"):
        backbone(torch.randn(1, 3, *DETECTION_SIZE))


def test_out_indices_select_and_normalise():
    backbone = build_backbone('pvig_ti_224_gelu', out_indices=(1, -1))
    assert backbone.out_indices == (1, 3)
    assert (backbone.channels, backbone.strides, backbone.size_divisor) == ([96, 384], [8, 32], 32)
    maps = backbone(torch.randn(1, 3, 64, 96))
    assert [tuple(m.shape) for m in maps] == [(1, 96, 8, 12), (1, 384, 2, 3)]


def test_isotropic_model_defaults_to_its_last_block():
    backbone = build_backbone('test_vit')  # timm's tiny ViT: every block at stride 16
    n = len(timm.create_model('test_vit').feature_info)
    assert backbone.out_indices == (n - 1,) and backbone.strides == [16]


def test_nhwc_features_are_returned_as_nchw():
    kwargs = dict(embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 1, 1, 1), window_size=2, img_size=64)
    assert timm.create_model('swin_tiny_patch4_window7_224', features_only=True, **kwargs).output_fmt == 'NHWC'
    backbone = build_backbone('swin_tiny_patch4_window7_224', **kwargs)
    maps = backbone(torch.randn(2, 3, 64, 64))
    assert [tuple(m.shape) for m in maps] == [(2, c, 64 // s, 64 // s) for c, s in
                                             zip(backbone.channels, backbone.strides)]
    assert backbone.channels == [16, 32, 64, 128]


def test_input_size_must_be_a_multiple_of_the_divisor():
    backbone = build_backbone('ptnt_ti_patch16_192', out_indices=(0, 1, 2, 3))
    assert backbone.size_divisor == 64  # the deepest stage's stride, above the model's own divisor (8)
    with pytest.raises(ValueError, match='multiple of 64'):
        backbone(torch.randn(1, 3, 64, 96))


def test_select_shares_the_body():
    backbone = build_backbone('ghostnet_050')
    coarse = backbone.select([2, 3, 4])
    assert coarse.body is backbone.body and coarse.strides == [8, 16, 32]
    x = torch.randn(1, 3, 64, 64)
    backbone.eval(), coarse.eval()
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(coarse(x), backbone(x)[2:]))
    with pytest.raises(BackboneError, match=r'\[0\]'):
        coarse.select([0, 2])


# ---------------------------------------------------------------- freezing


def _registered_up_to(model: torch.nn.Module, module: str) -> set[str]:
    """Parameter names registered before the end of ``module``: stem + stages where registration order
    is execution order (an oracle independent of the adapter's dependency trace)."""
    names, seen = set(), False
    for n, _ in model.named_parameters():
        inside = n.startswith(f'{module}.')
        if seen and not inside:
            break
        seen |= inside
        names.add(n)
    return names


def _train_step(backbone: StagedBackbone, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """One train-mode forward/backward; returns the buffers before it."""
    buffers = {n: b.clone() for n, b in backbone.named_buffers()}
    backbone.train()
    sum(m.float().mean() for m in backbone(x)).backward()
    return buffers


@pytest.mark.parametrize('name, frozen_stages, module', [
    ('pvig_ti_224_gelu', 1, 'backbone.1'),  # stages end inside one flat Sequential; pos_embed on the root
    ('ghostnet_050', 3, 'blocks.3'),  # timm's FeatureListNet (flattened module names)
])
def test_frozen_stages_freeze_the_stem_and_first_stages(name, frozen_stages, module):
    backbone = build_backbone(name, frozen_stages=frozen_stages)
    full = timm.create_model(name)
    expected = _registered_up_to(full, module)
    frozen = {n for n, p in full.named_parameters() if p.requires_grad} & expected
    got = {n for n, p in backbone.body.named_parameters() if not p.requires_grad}
    # the body names parameters like the full model, up to the wrapper's prefix / flattening
    normalise = (lambda n: n.removeprefix('model.')) if name.startswith('pvig') else \
        (lambda n: n.replace('blocks_', 'blocks.'))
    assert {normalise(n) for n in got} - {n for n, p in full.named_parameters() if not p.requires_grad} == frozen

    before = _train_step(backbone, torch.randn(2, 3, 64, 64))
    for n, p in backbone.body.named_parameters():
        if normalise(n) in frozen:
            assert p.grad is None, f'{n} is frozen but got a gradient'
        elif p.requires_grad:
            assert p.grad is not None, f'{n} is trainable but got no gradient'
    running = [n for n in before if n.endswith('running_mean')]
    assert running, 'the test needs batch norms'
    for n in running:
        changed = not torch.equal(before[n], backbone.get_buffer(n))
        assert changed != (normalise(n.removeprefix('body.').rsplit('.', 1)[0] + '.weight') in frozen), n


def test_frozen_modules_stay_in_eval_mode_through_train():
    backbone = build_backbone('ghostnet_050', frozen_stages=2).train()  # stage 1 ends with blocks.1
    body = backbone.body
    assert backbone.training and body.blocks_2.training
    assert not any(m.training for part in (body.conv_stem, body.bn1, body.blocks_0, body.blocks_1)
                   for m in part.modules())


def test_frozen_stages_zero_freezes_only_the_stem():
    backbone = build_backbone('pvig_ti_224_gelu', frozen_stages=0)
    frozen = {n for n, p in backbone.body.named_parameters() if not p.requires_grad and 'relative_pos' not in n}
    assert frozen == {n for n, _ in backbone.body.named_parameters() if n.startswith('model.stem.')}


def test_frozen_stages_beyond_the_outputs_freeze_everything():
    backbone = build_backbone('ghostnet_050', out_indices=(0, 1), frozen_stages=5)
    assert not any(p.requires_grad for p in backbone.parameters())
    assert not any(m.training for m in backbone.body.modules())


def test_norm_eval_keeps_every_batch_norm_frozen_in_train_mode():
    backbone = build_backbone('ghostnet_050', norm_eval=True)
    before = _train_step(backbone, torch.randn(2, 3, 64, 64))
    norms = [m for m in backbone.modules() if isinstance(m, _BatchNorm)]
    assert norms and not any(m.training for m in norms) and backbone.training
    assert all(torch.equal(before[n], b) for n, b in backbone.named_buffers())
    assert all(p.grad is not None for p in backbone.parameters())  # still trained, only statistics frozen


# ---------------------------------------------------------------- checkpoints


@torch.no_grad()
def test_classification_checkpoint_loads_through_the_zoo_path(tmp_path):
    """The official SLAB layout (RepBN norms) converts through slab's checkpoint_filter_fn."""
    name = 'slab_pvt_v2_b0'
    path = tmp_path / 'official.pth'
    torch.save({'model': fixture_state_dict(load_fixture(name))}, path)
    reference = timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=str(path))).eval()
    backbone = build_backbone(name, checkpoint=str(path)).eval()
    x = torch.randn(1, 3, 64, 64)
    expected = reference.forward_intermediates(x, intermediates_only=True)
    assert all(torch.equal(a, b) for a, b in zip(backbone(x), expected))
    assert not torch.equal(backbone(x)[0], build_backbone(name).eval()(x)[0])  # weights did load


@torch.no_grad()
@pytest.mark.parametrize('layout', ['staged', 'features_only'])
def test_own_checkpoints_load(layout, tmp_path):
    source = build_backbone('pvig_ti_224_gelu', out_indices=(1, 2)).eval()
    state = source.state_dict() if layout == 'staged' else source.body.state_dict()
    torch.save({'state_dict': state}, tmp_path / 'own.pth')
    loaded = build_backbone('pvig_ti_224_gelu', out_indices=(1, 2), checkpoint=str(tmp_path / 'own.pth')).eval()
    x = torch.randn(1, 3, 64, 64)
    assert all(torch.equal(a, b) for a, b in zip(loaded(x), source(x)))


def test_checkpoint_for_another_model_is_refused(tmp_path):
    torch.save(timm.create_model('ghostnet_050').state_dict(), tmp_path / 'ghostnet.pth')
    with pytest.raises(BackboneError, match=r'does not fit wavemlp_t: \d+ missing keys \[.*\], \d+ unexpected keys'):
        build_backbone('wavemlp_t', checkpoint=str(tmp_path / 'ghostnet.pth'))


def test_checkpoint_of_another_width_names_the_shape_mismatches(tmp_path):
    torch.save(timm.create_model('ghostnet_050').state_dict(), tmp_path / 'ghostnet_050.pth')
    with pytest.raises(BackboneError, match=r"ghostnet_100: .*\d+ of another shape \['conv_stem\.weight"):
        build_backbone('ghostnet_100', checkpoint=str(tmp_path / 'ghostnet_050.pth'))


def test_missing_checkpoint_file_is_a_clear_error(tmp_path):
    with pytest.raises(BackboneError, match='not a file'):
        build_backbone('ghostnet_050', checkpoint=str(tmp_path / 'nothing.pth'))


# ---------------------------------------------------------------- bad names and indices


def test_unknown_name_suggests_zoo_models():
    with pytest.raises(BackboneError, match='did you mean pvig_ti_224_gelu'):
        build_backbone('pvig_ti_224')


def test_model_without_image_stages_is_refused():
    with pytest.raises(BackboneError, match='squeezetime_k400 is a video model'):
        build_backbone('squeezetime_k400')


def test_out_of_range_out_indices_list_the_stages():
    with pytest.raises(BackboneError, match=r'4 stages, valid indices are 0\.\.3.*3: 384 ch / stride 32'):
        build_backbone('pvig_ti_224_gelu', out_indices=(1, 4))


def test_out_indices_must_be_increasing_stage_indices():
    with pytest.raises(BackboneError, match='distinct and increasing'):
        build_backbone('ghostnet_050', out_indices=(3, -1, 3))
    with pytest.raises(BackboneError, match='sequence of stage indices'):
        build_backbone('ghostnet_050', out_indices=2)  # timm would read "the last 2"


def test_out_of_range_frozen_stages_is_refused():
    with pytest.raises(BackboneError, match=r'frozen_stages=6 .* \.\. 5 \(all stages\)'):
        build_backbone('ghostnet_050', frozen_stages=6)
