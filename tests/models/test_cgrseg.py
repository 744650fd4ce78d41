"""CGRSeg: the facts pinned by fixtures computed from the official code (nizhenliang/CGRSeg; manifests,
parameter counts and reference outputs in tests/fixtures/cgrseg_*.json) and the family's own behaviour.

The model contract (forward / backward, features, classifier, checkpoints, bad input) is tests/test_contract.py's.
"""
from __future__ import annotations

import pytest
import timm
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

import zoo
from fidelity import deterministic_state_dict, load_fixture, make_input, max_abs_diff, tensor_from_record
from zoo.benchmark import count_macs
from zoo.models.cgrseg import EfficientFormer_expansion_ratios, EfficientFormerV2Backbone

MODELS = zoo.list_models(family='cgrseg')


def _slow_unless(name: str, fast: tuple[str, ...] = ('cgrseg_t',)):
    return pytest.param(name, marks=() if name in fast else pytest.mark.slow)


def _input(name: str, size: tuple[int, int] | None = None) -> torch.Tensor:
    """One image at the contract's size (or ``size``)."""
    c, h, w = zoo.model_info(name).contract_input_size
    h, w = size or (h, w)
    return torch.randn(1, c, h, w)


def _official_checkpoint(name: str, tmp_path):
    """An official-layout mmseg checkpoint (the fixture's deterministic weights) on disk, and the fixture."""
    fixture = load_fixture(name)
    state_dict = deterministic_state_dict(fixture['state_dict'], fixture.get('weights_seed', 0))
    path = tmp_path / f'{name}_official.pth'
    torch.save({'meta': {'CLASSES': None}, 'state_dict': state_dict}, path)
    return path, fixture


def test_registered_as_segmentation_models():
    """The model contract (tests/test_contract.py) runs them as segmentation models; no trained weights are
    released, so the default tag says so."""
    assert MODELS == ['cgrseg_b', 'cgrseg_l', 'cgrseg_t']
    for name in MODELS:
        info = zoo.model_info(name)
        assert timm.is_model(name) and info.task == 'segmentation' and info.input_divisor == 32
        cfg = timm.get_pretrained_cfg(name)
        assert cfg.num_classes == 150 and cfg.tag == 'untrained' and not cfg.url


@pytest.fixture(scope='module', params=[_slow_unless(n) for n in MODELS])
def name(request) -> str:
    return request.param


@pytest.fixture(scope='module')
def built(name) -> torch.nn.Module:
    return timm.create_model(name)


@torch.no_grad()
@pytest.mark.parametrize('size', [(64, 96), (128, 64)])
def test_any_size_divisible_by_32(name, built, size):
    model = built.eval()
    x = _input(name, size=size)
    feats = model.forward_features(x)
    assert [f.shape[-2:] for f in feats] == [(size[0] // s, size[1] // s) for s in (4, 8, 16, 32)]
    logits = model.forward_head(feats)
    assert logits.shape == (1, 150, size[0] // 8, size[1] // 8)
    out = model(x)
    assert out.shape == (1, 150, *size)
    torch.testing.assert_close(out, F.interpolate(logits, size=size, mode='bilinear', align_corners=False))
    assert torch.equal(model.predict(x), out.argmax(1))


@torch.no_grad()
def test_too_small_input_is_a_clear_error(built):
    with pytest.raises(ValueError, match='at least 32'):
        built.eval()(torch.randn(1, 3, 16, 16))


# --- facts from the official code ------------------------------------------------------------------------------

def test_param_count_equals_official(name, built):
    assert sum(p.numel() for p in built.parameters()) == load_fixture(name)['param_count']


@pytest.mark.parametrize('variant', [_slow_unless(n) for n in MODELS])
def test_official_checkpoint_loads(variant, tmp_path):
    path, fixture = _official_checkpoint(variant, tmp_path)
    model = timm.create_model(variant, pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))
    official = deterministic_state_dict(fixture['state_dict'], fixture.get('weights_seed', 0))
    state = model.state_dict()
    # spot-check the mapping: stem, a block, an attention bias table, a layer scale, the head
    pairs = {
        'backbone.patch_embed.0.weight': 'backbone.stem.conv1.conv.weight',
        'backbone.network.6.0.mlp.norm2.running_var': 'backbone.stages.3.blocks.0.mlp.fc2.bn.running_var',
        'backbone.network.5.attn.attention_biases_seg': 'backbone.stages.3.downsample.attn.attention_biases',
        'backbone.network.0.0.layer_scale_2': 'backbone.stages.0.blocks.0.ls2.gamma',
        'decode_head.lgc.channel_mul_conv.1.weight': 'decode_head.lgc.channel_mul_conv.1.weight',
    }
    for official_key, zoo_key in pairs.items():
        assert torch.equal(state[zoo_key], official[official_key].reshape(state[zoo_key].shape)), official_key


@torch.no_grad()
def test_output_parity_with_official(tmp_path, one_thread):
    """cgrseg_t only: the b / l fixtures pin layout and size (their synthetic-weight outputs are chaotic:
    thread-count rounding alone moves them by more than 1e-3).

    One thread (``one_thread``), as the reference: with the fixtures' synthetic weights the deep attention
    stages amplify reduction-order rounding ~10x, so a different thread count alone moves the official
    model's own output by ~3e-5."""
    path, fixture = _official_checkpoint('cgrseg_t', tmp_path)
    model = timm.create_model('cgrseg_t', pretrained=True, pretrained_cfg_overlay=dict(file=str(path))).eval()
    x = make_input(fixture['input']['shape'], fixture['input']['seed'])
    expected = tensor_from_record(fixture['output'])  # the official head's stride-8 logits
    logits = model.forward_head(model.forward_features(x))
    assert max_abs_diff(logits, expected) < 1e-4
    full = model(x)
    assert full.shape[-2:] == x.shape[-2:]
    torch.testing.assert_close(
        full, F.interpolate(expected, size=x.shape[-2:], mode='bilinear', align_corners=False), rtol=0, atol=1e-4)


def test_macs_at_512():
    """flop_counter counts convolutions and the attention matmuls: 4.53 GMACs, the same as the official code
    under the same counter. The paper's "4.0 GFLOPs" is mmcv's count, which sees layers (convolutions) but not
    the functional attention matmuls: the convolution MACs alone are within 2% of it. (Counted on the meta
    device: shapes only, no arithmetic.)"""
    model = timm.create_model('cgrseg_t').to('meta')
    x = torch.empty(1, 3, 512, 512, device='meta')
    assert count_macs(model, x) == 4_527_215_616  # official code, same counter
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    conv_macs = counter.get_flop_counts()['Global'][torch.ops.aten.convolution] / 2
    assert abs(conv_macs / 4.0e9 - 1) < 0.02


# --- family-specific ----------------------------------------------------------------------------------------------

@torch.no_grad()
def test_backbone_is_timms_efficientformerv2_at_its_grid():
    """At the size its bias tables are built for, the backbone is timm's EfficientFormerV2 (same weights, same
    stage outputs); other sizes, which timm's model refuses, resize the bias instead."""
    timm_model = timm.create_model('efficientformerv2_s1', img_size=64, num_classes=0).eval()
    for p in timm_model.parameters():  # non-zero attention biases so the bias path is exercised
        p.add_(0.02 * torch.randn_like(p))
    backbone = EfficientFormerV2Backbone(
        bias_resolution=64, depths=(3, 3, 9, 6), embed_dims=(32, 48, 120, 224),
        mlp_ratios=EfficientFormer_expansion_ratios['S1'], num_vit=2).eval()
    state = {k: v for k, v in timm_model.state_dict().items() if not k.startswith(('norm.', 'head'))}
    backbone.load_state_dict(state, strict=True)
    x = torch.randn(1, 3, 64, 64)
    expected = timm_model.forward_intermediates(x, intermediates_only=True)
    for a, b in zip(backbone(x), expected):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    assert [f.shape[-1] for f in backbone(torch.randn(1, 3, 96, 128))] == [32, 16, 8, 4]


def test_attention_bias_cache_follows_weights():
    """Eval mode caches the resized attention bias; train()/eval() must drop it when the weights change."""
    model = timm.create_model('cgrseg_t').eval()
    attn = model.backbone.stages[3].downsample.attn
    x = _input('cgrseg_t')
    with torch.no_grad():
        before = model.forward_features(x)[-1]
        model.train()
        attn.attention_biases.add_(torch.randn_like(attn.attention_biases))
        model.eval()
        after = model.forward_features(x)[-1]
    assert not torch.allclose(before, after)


def test_imagenet_backbone_checkpoint_starts_the_backbone(tmp_path):
    """ImageNet EfficientFormerV2-S1 weights (timm's layout, as the ``snap_dist_in1k`` tag downloads, and the
    official ``eformer_s1_450.pth`` layout) fill cgrseg_t's backbone; the head keeps its initial weights and
    the attention biases start at zero, as in the official training's non-strict start."""
    torch.manual_seed(0)
    imagenet = timm.create_model('efficientformerv2_s1').state_dict()
    for v in imagenet.values():
        if v.is_floating_point():
            v.normal_()
    path = tmp_path / 'eformer_s1_timm.pth'
    torch.save(imagenet, path)
    torch.manual_seed(1)
    model = timm.create_model('cgrseg_t', pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))
    torch.manual_seed(1)
    fresh = timm.create_model('cgrseg_t').state_dict()
    state = model.state_dict()
    biases = [k for k in state if k.endswith('attention_biases')]
    assert biases and all(not state[k].any() for k in biases)
    loaded = [k for k in imagenet if 'backbone.' + k in state and not k.endswith(('attention_biases', '_idxs'))]
    assert len(loaded) > 600 and all(torch.equal(state['backbone.' + k], imagenet[k]) for k in loaded)
    assert all(torch.equal(state[k], fresh[k]) for k in state if k.startswith('decode_head.'))
    # the same file as a downstream (mmseg init_cfg) backbone checkpoint
    from zoo.downstream import build_backbone
    staged = build_backbone('cgrseg_t', checkpoint=str(path)).state_dict()
    stem = [k for k in staged if k.endswith('stem.conv1.conv.weight')]
    assert len(stem) == 1 and torch.equal(staged[stem[0]], imagenet['stem.conv1.conv.weight'])

    # the official classification layout: the fixture's official backbone keys without the segmentation-only ones
    fixture = load_fixture('cgrseg_t')
    official = deterministic_state_dict(fixture['state_dict'], fixture.get('weights_seed', 0))
    backbone = {k[len('backbone.'):]: v for k, v in official.items()
                if k.startswith('backbone.') and not k.endswith(('_seg', 'idxs_seg'))}
    backbone.update({'norm.weight': torch.ones(224), 'head.weight': torch.zeros(1000, 224),
                     'dist_head.weight': torch.zeros(1000, 224)})
    torch.save({'model': backbone}, tmp_path / 'eformer_s1_450.pth')
    model = timm.create_model('cgrseg_t', pretrained=True,
                              pretrained_cfg_overlay=dict(file=str(tmp_path / 'eformer_s1_450.pth')))
    state = model.state_dict()
    assert torch.equal(state['backbone.stem.conv1.conv.weight'], backbone['patch_embed.0.weight'])
    assert torch.equal(state['backbone.stages.3.blocks.0.mlp.fc2.bn.running_var'],
                       backbone['network.6.0.mlp.norm2.running_var'])
    assert not state['backbone.stages.3.downsample.attn.attention_biases'].any()

    torch.save(timm.create_model('efficientformerv2_s2').state_dict(), tmp_path / 'eformer_s2.pth')
    with pytest.raises(Exception, match='another EfficientFormerV2 width'):
        timm.create_model('cgrseg_t', pretrained=True,
                          pretrained_cfg_overlay=dict(file=str(tmp_path / 'eformer_s2.pth')))
    assert timm.create_model('cgrseg_t.snap_dist_in1k').pretrained_cfg['hf_hub_id'] == \
        'timm/efficientformerv2_s1.snap_dist_in1k'


@pytest.mark.parametrize('norm_eval', [True, False])
def test_backbone_batchnorms_stay_in_eval_mode_in_training(norm_eval):
    """The official backbone's train() keeps every BatchNorm in eval mode (running statistics, never updated)
    while the head's train; ``backbone_norm_eval=False`` trains them all."""
    model = timm.create_model('cgrseg_t', backbone_norm_eval=norm_eval).train()
    backbone_bns = [m for m in model.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    head_bns = [m for m in model.decode_head.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert backbone_bns and head_bns
    before = [bn.running_mean.clone() for bn in backbone_bns]
    model(torch.randn(2, 3, 64, 64)).mean().backward()
    moved = [not torch.equal(b, bn.running_mean) for b, bn in zip(before, backbone_bns)]
    assert all(bn.training != norm_eval for bn in backbone_bns) and all(bn.training for bn in head_bns)
    assert not any(moved) if norm_eval else all(moved)
    assert all(bn.weight.grad is not None for bn in backbone_bns)  # the affine parameters still learn
    model.eval()
    assert not any(m.training for m in model.modules())
