"""``--initial-checkpoint``: weights of the same architecture load strictly, except what a fine-tune must adapt
(position tables stored for another input size, a classifier for another class count)."""
from __future__ import annotations

import pytest
import timm
import torch
from timm.layers import resample_abs_pos_embed

import zoo  # noqa: F401
from zoo.train import ConfigError
from zoo.train.networks import load_initial_weights


def _save(model: torch.nn.Module, path) -> dict:
    state_dict = {k: v.clone() for k, v in model.state_dict().items()}
    torch.save(state_dict, path)
    return state_dict


def test_vit_pretrained_at_low_resolution_fine_tunes_at_another(tmp_path):
    """FastMIM's hand-off: an encoder pre-trained at 32 px loads into the same ViT at 48 px."""
    torch.manual_seed(0)
    source = _save(timm.create_model('test_vit', img_size=32, num_classes=10), tmp_path / 'pre.pth')
    model = timm.create_model('test_vit', img_size=48, num_classes=10)
    assert load_initial_weights(model, tmp_path / 'pre.pth') == []
    grid = model.patch_embed.grid_size
    expected = resample_abs_pos_embed(source['pos_embed'], new_size=grid, num_prefix_tokens=1)
    assert model.pos_embed.shape == expected.shape and torch.allclose(model.pos_embed, expected)
    assert torch.equal(model.pos_embed[:, :1], source['pos_embed'][:, :1])  # class-token position kept
    assert all(torch.equal(v, source[k]) for k, v in model.state_dict().items() if k != 'pos_embed')


def test_classifier_for_another_class_count_starts_fresh(tmp_path):
    torch.manual_seed(0)
    source = _save(timm.create_model('test_vit', img_size=32, num_classes=7), tmp_path / 'pre.pth')
    model = timm.create_model('test_vit', img_size=32, num_classes=10)
    fresh = model.head.weight.detach().clone()
    with pytest.warns(UserWarning, match='classifier head is for another class count'):
        assert load_initial_weights(model, tmp_path / 'pre.pth') == ['head.weight', 'head.bias']
    assert torch.equal(model.head.weight, fresh)
    assert all(torch.equal(v, source[k]) for k, v in model.state_dict().items() if not k.startswith('head.'))


@pytest.mark.parametrize('name, sizes', [('slab_deit_t', (64, 128)), ('slab_pvt_t', (64, 128)),
                                         ('slab_swin_t', (256, 320))])  # Swin: stages wider than windows
def test_slab_position_tables_are_resampled(tmp_path, name, sizes):
    """SLAB resizes its tables at run time for other inputs; a checkpoint resampled once for the new size
    computes the same outputs as the original model run at that size."""
    torch.manual_seed(0)
    small = timm.create_model(name, img_size=sizes[0], num_classes=5).eval()
    _save(small, tmp_path / 'pre.pth')
    large = timm.create_model(name, img_size=sizes[1], num_classes=5).eval()
    load_initial_weights(large, tmp_path / 'pre.pth')
    tables = [k for k, v in small.state_dict().items() if v.shape != large.state_dict()[k].shape]
    assert tables and all('pos' in k for k in tables), tables  # the only size-dependent weights
    x = torch.randn(1, 3, sizes[1], sizes[1])
    with torch.no_grad():
        assert torch.allclose(large(x), small(x), atol=1e-5)


def test_other_mismatches_are_refused(tmp_path):
    source = timm.create_model('test_vit', img_size=32, num_classes=10).state_dict()
    model = timm.create_model('test_vit', img_size=32, num_classes=10)
    wrong = dict(source, **{'blocks.0.mlp.fc1.weight': torch.zeros(3, 3)})
    torch.save(wrong, tmp_path / 'wrong.pth')
    with pytest.raises(ConfigError, match=r'1 of another shape .*blocks\.0\.mlp\.fc1\.weight'):
        load_initial_weights(model, tmp_path / 'wrong.pth')
    extra = dict(source, stray=torch.zeros(1))
    del extra['norm.weight']
    torch.save(extra, tmp_path / 'extra.pth')
    with pytest.raises(ConfigError, match=r"1 missing keys \['norm.weight'\], 1 unexpected keys \['stray'\]"):
        load_initial_weights(model, tmp_path / 'extra.pth')


@pytest.mark.parametrize('name', ['pvig_ti_224_gelu', 'ptnt_ti_patch16_192'])
def test_vig_and_pyramid_tnt_tables_follow_the_fine_tuning_size(tmp_path, name):
    """Their filters resample the position tables and relative-position biases stored for 128 px."""
    small = timm.create_model(name, img_size=128, num_classes=5)
    _save(small, tmp_path / 'pre.pth')
    model = timm.create_model(name, num_classes=5).eval()
    resized = [k for k, v in small.state_dict().items() if v.shape != model.state_dict()[k].shape]
    load_initial_weights(model, tmp_path / 'pre.pth')
    assert len(resized) >= 3 and all(torch.equal(v, small.state_dict()[k])
                                      for k, v in model.state_dict().items() if k not in resized)
    with torch.no_grad():
        assert model(torch.randn(1, 3, *model.pretrained_cfg['input_size'][1:])).isfinite().all()
