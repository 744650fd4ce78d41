"""The model contract, applied to every registered zoo classification model.

New families get it by being registered: nothing here names a family. Each test builds what it needs
at the model's small ``contract_input_size`` with batch 2.
"""
from __future__ import annotations

import copy

import pytest
import timm
import torch

import zoo

MODELS = zoo.list_models(task='classification')
BATCH = 2


def _input(name: str, batch: int = BATCH, chans: int | None = None) -> torch.Tensor:
    c, h, w = zoo.model_info(name).contract_input_size
    return torch.randn(batch, chans or c, h, w)


def _pre_logits_dim(model: torch.nn.Module) -> int:
    return getattr(model, 'head_hidden_size', None) or model.num_features


@pytest.fixture(scope='module', params=MODELS)
def name(request) -> str:
    """Module-scoped, so pytest runs all tests of one model before building the next."""
    return request.param


@pytest.fixture(scope='module')
def built(name) -> torch.nn.Module:
    """The default model, built once per name; tests that change it build their own."""
    return timm.create_model(name)


def test_registered_with_timm(name):
    assert timm.is_model(name)
    info = zoo.model_info(name)
    assert len(info.contract_input_size) == 3


def test_pretrained_cfg(name, built):
    model = built
    cfg = model.pretrained_cfg
    for key in ('input_size', 'mean', 'std', 'crop_pct', 'num_classes', 'first_conv', 'classifier'):
        assert cfg.get(key) is not None, f'{name}: pretrained_cfg lacks {key}'
    for conv in (cfg['first_conv'],) if isinstance(cfg['first_conv'], str) else cfg['first_conv']:
        assert isinstance(model.get_submodule(conv), torch.nn.Module)
    assert model.get_submodule(cfg['classifier']) is model.get_classifier()
    if cfg.get('tag') != 'untrained':
        info = zoo.model_info(name)
        source = cfg.get('url') or cfg.get('hf_hub_id') or info.official_url  # official_url: by hand (BaiduDisk)
        assert source, f'{name}: a released variant must say where its weights are'
        assert (cfg.get('url') or info.official_url), f'{name}: the official release URL is missing'


def test_forward_backward_reaches_every_parameter(name, built):
    model = built.train()
    model.zero_grad(set_to_none=True)
    x = _input(name)
    out = model(x)
    assert out.shape == (BATCH, model.num_classes)
    assert torch.isfinite(out).all()
    out.float().square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f'{name}: no gradient reached {missing[:10]}'
    bad = [n for n, p in model.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
    assert not bad, f'{name}: non-finite gradients in {bad[:10]}'
    model.zero_grad(set_to_none=True)


@torch.no_grad()
def test_forward_features_and_head(name, built):
    model = built.eval()
    x = _input(name)
    feats = model.forward_features(x)
    logits = model.forward_head(feats)
    torch.testing.assert_close(logits, model(x), rtol=1e-4, atol=1e-5)
    pre = model.forward_head(feats, pre_logits=True)
    assert pre.shape == (BATCH, _pre_logits_dim(model))


@torch.no_grad()
def test_reset_classifier(name):
    model = timm.create_model(name).eval()
    x = _input(name)
    model.reset_classifier(7)
    assert model.num_classes == 7
    assert model(x).shape == (BATCH, 7)
    model.reset_classifier(0)
    assert model(x).shape == (BATCH, _pre_logits_dim(model))


@torch.no_grad()
def test_num_classes_zero(name):
    model = timm.create_model(name, num_classes=0).eval()
    out = model(_input(name))
    assert out.shape == (BATCH, _pre_logits_dim(model))


@torch.no_grad()
def test_in_chans_one(name):
    model = timm.create_model(name, in_chans=1, num_classes=5).eval()
    assert model(_input(name, chans=1)).shape == (BATCH, 5)


@torch.no_grad()
def test_features_only(name):
    model = timm.create_model(name, features_only=True).eval()
    x = _input(name)
    outs = model(x)
    channels, reductions = model.feature_info.channels(), model.feature_info.reduction()
    assert len(outs) == len(channels) > 0
    for i, out in enumerate(outs):
        assert out.ndim == 4 and out.shape[0] == BATCH, f'{name}: feature {i} is not an NCHW map'
        assert out.shape[1] == channels[i], f'{name}: feature {i} has {out.shape[1]} channels, feature_info says {channels[i]}'
        assert x.shape[-2] // out.shape[-2] == reductions[i], \
            f'{name}: feature {i} has stride {x.shape[-2] / out.shape[-2]}, feature_info says {reductions[i]}'


@torch.no_grad()
def test_forward_intermediates(name, built):
    model = built.eval()
    if not hasattr(model, 'forward_intermediates'):
        pytest.fail(f'{name} has no forward_intermediates')
    x = _input(name)
    final, intermediates = model.forward_intermediates(x)
    torch.testing.assert_close(final, model.forward_features(x), rtol=1e-4, atol=1e-5)
    info = model.feature_info
    assert len(intermediates) == len(info)
    for i, (t, fi) in enumerate(zip(intermediates, info)):
        assert t.shape[1] == fi['num_chs'], f'{name}: intermediate {i} channels {t.shape[1]} != {fi["num_chs"]}'
        assert x.shape[-2] // t.shape[-2] == fi['reduction']
    only = model.forward_intermediates(x, indices=1, intermediates_only=True)
    assert len(only) == 1
    torch.testing.assert_close(only[0], intermediates[-1])


@torch.no_grad()
def test_prune_to_early_stages(name, built):
    """Keeping the first two stages (what ``features_only`` with early ``out_indices`` does) removes the
    later ones and leaves the kept stages' outputs unchanged."""
    model = built.eval()
    assert hasattr(model, 'prune_intermediate_layers'), f'{name} has no prune_intermediate_layers'
    x = _input(name)
    expected = model.forward_intermediates(x, indices=[0, 1], intermediates_only=True)
    pruned = copy.deepcopy(model)
    kept = pruned.prune_intermediate_layers([0, 1], prune_norm=True)
    assert sum(p.numel() for p in pruned.parameters()) < sum(p.numel() for p in model.parameters()), \
        f'{name}: pruning to the first two stages removed no parameters'
    got = pruned.forward_intermediates(x, indices=kept, intermediates_only=True)
    assert len(got) == 2
    for e, g in zip(expected, got):
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-5)
    features = timm.create_model(name, features_only=True, out_indices=(0, 1)).eval()
    assert [o.shape[1] for o in features(x)] == [fi['num_chs'] for fi in model.feature_info[:2]]


@torch.no_grad()
def test_checkpoint_round_trip_through_pretrained_loading(name, built, tmp_path):
    model = built.eval()
    path = tmp_path / 'checkpoint.pth'
    torch.save({'state_dict': model.state_dict()}, path)
    loaded = timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=str(path))).eval()
    x = _input(name)
    torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)


@torch.no_grad()
def test_wrong_channel_count_is_a_clear_error(name, built):
    model = built.eval()
    c = zoo.model_info(name).contract_input_size[0]
    with pytest.raises((ValueError, RuntimeError), match='channel'):
        model(_input(name, chans=c + 1))


@torch.no_grad()
def test_indivisible_size_is_a_clear_error(name, built):
    info = zoo.model_info(name)
    if info.input_divisor == 1:
        pytest.skip(f'{name} takes any input size')
    c, h, w = info.contract_input_size
    model = built.eval()
    with pytest.raises(ValueError, match=f'multiple.* {info.input_divisor}|{info.input_divisor}.*multiple'):
        model(torch.randn(1, c, h + info.input_divisor // 2, w))
