"""The model contract, applied to every registered zoo model of every task.

New families get it by being registered: nothing here names a family or a task. What differs between tasks
(the input, what the output is, how to check it) comes from the task's adapter in ``contract_tasks.py``.
Each test builds what it needs at the model's small ``contract_input_size`` with batch 2.
"""
from __future__ import annotations

import copy

import pytest
import timm
import torch

import zoo
from contract_tasks import BATCH, TASKS, Task, task_of

# variants registered with contract_slow=True (larger ones, other heads on a network already run) are slow tests
MODELS = [pytest.param(n, marks=pytest.mark.slow) if zoo.model_info(n).extra.get('contract_slow') else n
          for n in zoo.list_models()]


@pytest.fixture(scope='module', params=MODELS)
def name(request) -> str:
    """Module-scoped, so pytest runs all tests of one model before building the next."""
    return request.param


@pytest.fixture(scope='module')
def built(name) -> torch.nn.Module:
    """The default model, built once per name; tests that change it work on a deep copy (a copy costs a
    tenth of a build, whose weight initialisation dominates the contract's time for the large variants)."""
    return timm.create_model(name)


@pytest.fixture
def task(name, request) -> Task:
    """The adapter of the model's task; skips the test where the task says it cannot honour it."""
    adapter = task_of(name)
    reason = adapter.skips.get(request.node.originalname)
    if reason:
        pytest.skip(f'{zoo.model_info(name).task}: {reason}')
    return adapter


def _assert_shapes(task: Task, model: torch.nn.Module, x: torch.Tensor, outs: list[torch.Tensor], name: str) -> None:
    got = [tuple(o.shape) for o in outs]
    expected = [tuple(s) for s in task.output_shapes(model, x)]
    assert got == expected, f'{name}: outputs of shapes {got}, expected {expected} (num_classes={model.num_classes})'


def _loss(outs: list[torch.Tensor]) -> torch.Tensor:
    return sum(o.float().square().mean() for o in outs)


def test_every_task_has_an_adapter():
    assert set(TASKS) == set(zoo.registry.TASKS)


def test_registered_with_timm(name, task):
    assert timm.is_model(name)
    assert task.make_input(name).ndim in (4, 5)


def test_pretrained_cfg(name, built, task):
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


def test_forward_backward_reaches_every_parameter(name, built, task):
    model = built.train()
    model.zero_grad(set_to_none=True)
    x = task.make_input(name)
    outs = task.outputs(model, x)
    _assert_shapes(task, model, x, outs, name)
    assert all(torch.isfinite(o).all() for o in outs)
    _loss(outs).backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f'{name}: no gradient reached {missing[:10]}'
    bad = [n for n, p in model.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
    assert not bad, f'{name}: non-finite gradients in {bad[:10]}'
    model.zero_grad(set_to_none=True)


@torch.no_grad()
def test_forward_features_and_head(name, built, task):
    model = built.eval()
    x = task.make_input(name)
    feats = model.forward_features(x)
    torch.testing.assert_close(task.forward_from_features(model, x, feats), model(x), rtol=1e-4, atol=1e-5)
    pre = model.forward_head(feats, pre_logits=True)
    assert tuple(pre.shape) == tuple(task.pre_logits_shape(model, x))


@torch.no_grad()
def test_reset_classifier(name, built, task):
    model = copy.deepcopy(built).eval()
    x = task.make_input(name)
    for num_classes in (7, 0):
        model.reset_classifier(num_classes)
        assert model.num_classes == num_classes
        _assert_shapes(task, model, x, task.outputs(model, x), name)


@torch.no_grad()
def test_num_classes_zero(name, task):
    model = timm.create_model(name, num_classes=0).eval()
    assert model.num_classes == 0
    x = task.make_input(name)
    _assert_shapes(task, model, x, task.outputs(model, x), name)


@torch.no_grad()
def test_in_chans_one(name, task):
    model = timm.create_model(name, in_chans=1, num_classes=5).eval()
    x = task.make_input(name, chans=1)
    _assert_shapes(task, model, x, task.outputs(model, x), name)


@torch.no_grad()
def test_features_only(name, task):
    model = timm.create_model(name, features_only=True).eval()
    x = task.make_input(name)
    outs = model(x)
    channels, reductions = model.feature_info.channels(), model.feature_info.reduction()
    assert len(outs) == len(channels) > 0
    for i, out in enumerate(outs):
        assert out.ndim == 4 and out.shape[0] == BATCH, f'{name}: feature {i} is not an NCHW map'
        assert out.shape[1] == channels[i], \
            f'{name}: feature {i} has {out.shape[1]} channels, feature_info says {channels[i]}'
        assert x.shape[-2] // out.shape[-2] == reductions[i], \
            f'{name}: feature {i} has stride {x.shape[-2] / out.shape[-2]}, feature_info says {reductions[i]}'


@torch.no_grad()
def test_forward_intermediates(name, built, task):
    model = built.eval()
    if not hasattr(model, 'forward_intermediates'):
        pytest.fail(f'{name} has no forward_intermediates')
    x = task.make_input(name)
    final, intermediates = model.forward_intermediates(x)
    torch.testing.assert_close(final, task.final_features(model.forward_features(x)), rtol=1e-4, atol=1e-5)
    info = model.feature_info
    assert len(intermediates) == len(info)
    for i, (t, fi) in enumerate(zip(intermediates, info)):
        assert t.shape[1] == fi['num_chs'], f'{name}: intermediate {i} channels {t.shape[1]} != {fi["num_chs"]}'
        assert x.shape[-2] // t.shape[-2] == fi['reduction']
    only = model.forward_intermediates(x, indices=1, intermediates_only=True)
    assert len(only) == 1
    torch.testing.assert_close(only[0], intermediates[-1])


@torch.no_grad()
def test_prune_to_early_stages(name, built, task):
    """Keeping the first two stages (what ``features_only`` with early ``out_indices`` does) removes the
    later ones and leaves the kept stages' outputs unchanged."""
    model = built.eval()
    assert hasattr(model, 'prune_intermediate_layers'), f'{name} has no prune_intermediate_layers'
    x = task.make_input(name)
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
def test_fx_feature_extraction(name, task):
    """torchvision-style FX feature extraction (timm's ``feature_cls='fx'``, what detection users reach for)
    traces the model and returns the maps ``forward_intermediates`` returns."""
    torch.manual_seed(0)
    model = timm.create_model(name).eval()
    torch.manual_seed(0)  # the same construction order: the same weights
    traced = timm.create_model(name, features_only=True, feature_cls='fx').eval()
    x = task.make_input(name)
    expected = model.forward_intermediates(x, intermediates_only=True)
    got = traced(x)
    assert len(got) == len(expected) == len(model.feature_info)
    for i, (g, e) in enumerate(zip(got, expected)):
        assert g.shape == e.shape, f'{name}: traced feature {i} has shape {tuple(g.shape)}, expected {tuple(e.shape)}'
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-5)


def _outputs_grads_and_recomputations(task: Task, model: torch.nn.Module, x: torch.Tensor):
    """The outputs, the parameters' gradients of a loss on them, and how many module forwards ran during the
    backward pass (activation checkpointing recomputes its segments there; plain autograd runs none)."""
    model.zero_grad(set_to_none=True)
    calls = []
    # hooked before the forward: a fast path that steps aside for hooked modules (zoo.layers.hooks) must take the
    # same path when checkpointing recomputes the forward as it took the first time
    hooks = [m.register_forward_hook(lambda *_: calls.append(1)) for m in model.modules()]
    try:
        outs = task.outputs(model, x)
        calls.clear()  # count the recomputations in the backward pass only
        _loss(outs).backward()
    finally:
        for hook in hooks:
            hook.remove()
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return [o.detach() for o in outs], grads, len(calls)


def test_grad_checkpointing_keeps_outputs_and_gradients(name, built, task):
    """``set_grad_checkpointing()`` recomputes activations in the backward pass and changes no number."""
    model = copy.deepcopy(built).eval()
    x = task.make_input(name)
    outs, grads, recomputed = _outputs_grads_and_recomputations(task, model, x)
    assert recomputed == 0
    model.set_grad_checkpointing(True)
    outs_ckpt, grads_ckpt, recomputed = _outputs_grads_and_recomputations(task, model, x)
    assert recomputed > 0, f'{name}: set_grad_checkpointing(True) checkpoints nothing'
    for a, b in zip(outs_ckpt, outs):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert grads_ckpt.keys() == grads.keys()
    for key in grads:
        torch.testing.assert_close(grads_ckpt[key], grads[key], rtol=1e-4, atol=1e-6, msg=lambda m: f'{key}: {m}')


@torch.no_grad()
def test_timm_reparameterize_model_runs(name, built, task):
    """timm's ``reparameterize_model`` (what its validate / benchmark scripts call) calls every ``fuse()`` /
    ``reparameterize()`` it finds: it must build the deploy form, where a model has one, and touch nothing else.
    The deploy forms' numbers are the family tests' (GhostNetV3, SLAB)."""
    model = copy.deepcopy(built).eval()
    x = task.make_input(name)
    fused = timm.models.reparameterize_model(model)
    _assert_shapes(task, fused, x, task.outputs(fused, x), name)


@torch.no_grad()
def test_checkpoint_round_trip_through_pretrained_loading(name, built, task, tmp_path):
    model = built.eval()
    path = tmp_path / 'checkpoint.pth'
    torch.save({'state_dict': model.state_dict()}, path)
    loaded = timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=str(path))).eval()
    path.unlink()  # 61 full checkpoints would otherwise stay in pytest's temp folders (about 15 GB per run)
    x = task.make_input(name)
    for a, b in zip(task.outputs(loaded, x), task.outputs(model, x)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@torch.no_grad()
def test_wrong_channel_count_is_a_clear_error(name, built, task):
    model = built.eval()
    x = task.make_input(name, chans=zoo.model_info(name).contract_input_size[0] + 1)
    with pytest.raises((ValueError, RuntimeError), match='channel'):
        model(x)


@torch.no_grad()
def test_indivisible_size_is_a_clear_error(name, built, task):
    info = zoo.model_info(name)
    if info.input_divisor == 1:
        pytest.skip(f'{name} takes any input size')
    h, w = info.contract_input_size[-2:]
    model = built.eval()
    with pytest.raises(ValueError, match=f'multiple.* {info.input_divisor}|{info.input_divisor}.*multiple'):
        model(task.make_input(name, batch=1, size=(h + info.input_divisor // 2, w)))
