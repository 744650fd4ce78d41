"""SLAB family: facts from the official code (xinghaochen/SLAB), the progressive norm schedule, the deploy form.

Fixtures ``tests/fixtures/slab_*.json`` hold, per variant, the official state-dict manifest, parameter count
and MACs at 224; for the smallest variant of each backbone also the official outputs (train mode at the end
of the blend, then eval mode) for deterministic weights. See each fixture's ``source``.
"""
from __future__ import annotations

import copy
import math
import sys

import pytest
import timm
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

import zoo
from fidelity import (deterministic_state_dict, load_fixture, make_input, max_abs_diff, tensor_from_record)
from zoo.benchmark import count_macs
from zoo.layers.prepbn import PRepBN, RepBN, convert_norm_layout, set_norm_progress

FAST = ['deit_t_prepbn', 'slab_deit_t', 'pvt_t_prepbn', 'slab_pvt_t', 'slab_pvt_v2_b0', 'slab_pvt_v2_b1',
        'swin_t_prepbn', 'slab_swin_t', 'slab_cswin_t']
SLOW = ['deit_s_prepbn', 'slab_deit_s', 'pvt_s_prepbn', 'pvt_m_prepbn', 'slab_pvt_s', 'slab_pvt_m',
        'slab_pvt_v2_b2', 'slab_pvt_v2_b3', 'slab_pvt_v2_b4', 'slab_pvt_v2_b5', 'slab_swin_s', 'slab_swin_b',
        'slab_cswin_s']
ALL = FAST + SLOW
WITH_OUTPUT_FAST = ['slab_deit_t', 'slab_pvt_v2_b0']
WITH_OUTPUT_SLOW = ['deit_t_prepbn', 'pvt_t_prepbn', 'slab_pvt_t', 'swin_t_prepbn', 'slab_swin_t', 'slab_cswin_t']


def _variants(fast, slow):
    return list(fast) + [pytest.param(n, marks=pytest.mark.slow) for n in slow]


def _fixture(name: str) -> dict:
    return load_fixture('slab_' + name.removeprefix('slab_'))


def _checkpoint_filter(model: nn.Module):
    """The model's architecture module's ``checkpoint_filter_fn`` (as timm and zoo.train look it up)."""
    return sys.modules[type(model).__module__].checkpoint_filter_fn


def test_every_variant_has_a_fixture_and_is_registered():
    assert sorted(zoo.list_models(family='slab')) == sorted(ALL)
    for name in ALL:
        assert _fixture(name)['param_count'] > 0


@pytest.mark.parametrize('name', _variants(FAST, SLOW))
@torch.no_grad()
def test_official_layout_and_param_count(name):
    fx = _fixture(name)
    model = timm.create_model(name)
    # the official count includes parameters the forward pass never uses (SLA DeiT's class token, CSWin SLA's
    # ``scale``); the zoo leaves them out and the checkpoint filter drops them
    own = model.state_dict()
    dead = sum(math.prod(shape) for key, shape, _ in fx['state_dict']
               if key not in own and key.rsplit('.', 1)[-1] in ('cls_token', 'scale'))
    assert fx['param_count'] - sum(p.numel() for p in model.parameters()) == dead
    assert (dead > 0) == name.startswith(('slab_deit', 'slab_cswin'))
    # the official key layout loads strictly (computed Swin buffers are recomputed, not loaded)
    sd = _checkpoint_filter(model)(deterministic_state_dict(fx['state_dict']), model)
    model.load_state_dict(sd, strict=True)


@pytest.mark.parametrize('name', _variants(['slab_deit_t', 'slab_pvt_v2_b0'],
                                           [n for n in ALL if n not in ('slab_deit_t', 'slab_pvt_v2_b0')]))
@torch.no_grad()
def test_macs_equal_official_count(name):
    # the paper's tables are not in the repository; the official code's own count at 224 is the reference
    fx = _fixture(name)
    macs = count_macs(timm.create_model(name).eval(), torch.randn(1, 3, 224, 224))
    assert abs(macs - fx['macs_224']) <= 0.02 * fx['macs_224'], (macs, fx['macs_224'])


def _load_official(name: str, fx: dict, tmp_path) -> nn.Module:
    """The fixture's deterministic weights, saved as the official release wraps them, loaded by timm."""
    path = tmp_path / 'official.pth'
    torch.save({'model': deterministic_state_dict(fx['state_dict'], fx['weights_seed'])}, path)
    return timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=str(path)), drop_path_rate=0.)


@pytest.mark.parametrize('name', _variants(WITH_OUTPUT_FAST, WITH_OUTPUT_SLOW))
@torch.no_grad()
def test_outputs_equal_official_train_eval_and_deploy(name, tmp_path):
    fx = _fixture(name)
    model = _load_official(name, fx, tmp_path)
    x = make_input(fx['input']['shape'], fx['input']['seed'])
    # the fixture's calibration: end of the blend, BatchNorm momentum 1, one train-mode pass
    model.set_norm_progress(10 ** 9)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm1d):
            m.momentum = 1.0
    assert max_abs_diff(model.train()(x), tensor_from_record(fx['train_output'])) < 1e-4
    out = model.eval()(x)
    assert max_abs_diff(out, tensor_from_record(fx['output'])) < 1e-4
    model.fuse()
    assert not any(isinstance(m, (RepBN, PRepBN)) for m in model.modules())
    assert max_abs_diff(model(x), out) < 1e-4


# ----------------------------------------------------------------------------------------------------
# the progressive schedule
# ----------------------------------------------------------------------------------------------------

def _official_blend(step: int, warm: int, total: int, r0: float = 1.0):
    """LayerNorm weight of the official counters at the ``step``-th training forward (None: warm-up)."""
    if step < warm:
        return None
    return r0 * max(total - (step - warm), 0) / total


@pytest.mark.parametrize('warm,total', [(0, 10), (3, 5), (2, 1)])
def test_blend_follows_the_official_schedule(warm, total):
    norm = PRepBN(8, blend_steps=total, warmup_steps=warm)
    for step in range(warm + total + 3):
        norm.set_progress(step)
        assert norm.ln_weight == _official_blend(step, warm, total)


def test_forward_does_not_advance_the_schedule_and_state_resumes():
    torch.manual_seed(0)
    norm = PRepBN(8, blend_steps=100, warmup_steps=0).train()
    norm.set_progress(40)
    buffers = {k: v.clone() for k, v in norm.named_buffers() if k in ('warm', 'iter', 'total_step')}
    x = torch.randn(4, 5, 8)
    for _ in range(3):  # gradient accumulation / several passes per step: same blend
        norm(x)
    assert all(torch.equal(getattr(norm, k), v) for k, v in buffers.items())
    assert norm.ln_weight == pytest.approx(0.6)
    resumed = PRepBN(8, blend_steps=100)
    resumed.load_state_dict(norm.state_dict())
    assert resumed.ln_weight == pytest.approx(0.6)
    resumed.train()
    norm.eval(), resumed.eval()
    torch.testing.assert_close(resumed(x), norm(x))


def test_train_blend_warmup_and_eval_forms():
    torch.manual_seed(0)
    norm = PRepBN(8, blend_steps=10, warmup_steps=2)
    with torch.no_grad():
        norm.norm1.weight.uniform_(0.5, 1.5)
        norm.norm2.alpha.fill_(0.3)
    x = torch.randn(4, 6, 8) * 3 + 1
    norm.train()
    norm.set_progress(0)  # warm-up: LayerNorm alone, BatchNorm statistics untouched
    torch.testing.assert_close(norm(x), norm.norm1(x))
    assert int(norm.norm2.bn.num_batches_tracked) == 0
    norm.set_progress(2 + 4)  # 4 steps into a blend of 10
    ln, bn = norm.norm1(x), copy.deepcopy(norm.norm2)(x)
    torch.testing.assert_close(norm(x), 0.6 * ln + 0.4 * bn)
    norm.eval()  # eval: RepBN alone, whatever the schedule
    expected = nn.functional.batch_norm(
        x.reshape(-1, 8), norm.norm2.bn.running_mean, norm.norm2.bn.running_var, norm.norm2.bn.weight,
        norm.norm2.bn.bias, False, 0., norm.norm2.bn.eps).reshape(x.shape) + 0.3 * x
    torch.testing.assert_close(norm(x), expected)


def test_set_norm_progress_reaches_every_norm_of_a_model():
    model = timm.create_model('slab_pvt_v2_b0')
    n = sum(isinstance(m, PRepBN) for m in model.modules())
    assert n > 0 and set_norm_progress(model, 7) == n
    model.set_norm_progress(300000 - 1)
    assert all(m.ln_weight == pytest.approx(1 / 300000) for m in model.modules() if isinstance(m, PRepBN))


def test_norm_layout_conversion_between_repbn_and_progressive_checkpoints():
    prog = nn.Sequential(PRepBN(4, blend_steps=10))
    rep = nn.Sequential(RepBN(4))
    with torch.no_grad():
        prog[0].norm2.bn.running_mean.fill_(0.5)
    into_rep = convert_norm_layout(prog.state_dict(), rep.state_dict())
    rep.load_state_dict(into_rep)
    assert torch.equal(rep[0].bn.running_mean, prog[0].norm2.bn.running_mean)
    into_prog = convert_norm_layout(rep.state_dict(), prog.state_dict())
    fresh = nn.Sequential(PRepBN(4, blend_steps=10))
    fresh.load_state_dict(into_prog)
    assert fresh[0].ln_weight == 0.0  # a RepBN checkpoint is a finished blend


# ----------------------------------------------------------------------------------------------------
# deploy form and input sizes
# ----------------------------------------------------------------------------------------------------

def _calibrated(name: str, x: torch.Tensor) -> nn.Module:
    """A model with random weights whose BatchNorm statistics come from ``x`` (well-scaled activations)."""
    torch.manual_seed(0)
    model = timm.create_model(name, drop_path_rate=0.)
    model.set_norm_progress(10 ** 9)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm1d):
            m.momentum = 1.0
        if isinstance(m, RepBN):
            with torch.no_grad():
                m.alpha.uniform_(0.5, 1.5)
    with torch.no_grad():
        model.train()(x)
    return model.eval()


@pytest.mark.parametrize('name', _variants(['slab_swin_t'], ['slab_cswin_t', 'pvt_t_prepbn', 'swin_t_prepbn']))
@torch.no_grad()
def test_deploy_form_equals_train_form_with_padding(name):
    # 64x160 pads the windows / stripes of the softmax stages and resizes the learned position tables; the
    # padded keys hold different values in the two forms (norm folded into qkv or not), so a leak would show
    x = torch.randn(1, 3, 64, 160)
    model = _calibrated(name, x)
    out = model(x)
    feats = model.forward_intermediates(x, intermediates_only=True)
    model.fuse()
    assert max_abs_diff(model(x), out) < 1e-4
    for a, b in zip(model.forward_intermediates(x, intermediates_only=True), feats):
        assert max_abs_diff(a, b) < 1e-4


@pytest.mark.parametrize('name', _variants(['slab_pvt_v2_b0'], ['slab_pvt_t', 'slab_swin_t', 'slab_cswin_t']))
@torch.no_grad()
def test_features_at_224_and_320x480(name):
    model = timm.create_model(name, features_only=True).eval()
    for h, w in ((224, 224), (320, 480)):
        outs = model(torch.randn(1, 3, h, w))
        for out, ch, red in zip(outs, model.feature_info.channels(), model.feature_info.reduction()):
            assert out.shape == (1, ch, h // red, w // red)


def test_unused_official_parameters_are_left_out():
    """Every parameter gets a gradient: the official SLA DeiT's class token and CSWin SLA's scale are not built."""
    assert timm.create_model('slab_deit_t').cls_token is None
    assert timm.create_model('deit_t_prepbn').cls_token.numel() == 192  # the softmax DeiT uses its class token
    cswin = timm.create_model('slab_cswin_t')
    assert not any(n.endswith('.scale') for n, _ in cswin.named_parameters())


def test_training_engine_hook_drives_the_norm_blend():
    """zoo.train calls on_train_step(step, total) every step; the PRepBN blend must follow that step."""
    from zoo.layers.prepbn import PRepBN
    from zoo.train.hooks import call_step_hooks, collect_step_hooks

    model = timm.create_model('slab_deit_t')
    hooks = collect_step_hooks(model)
    assert len(hooks) == 1  # the model's own hook, not one per norm layer
    norms = [m for m in model.modules() if isinstance(m, PRepBN)]
    blend = int(norms[0].total_step)
    start = norms[0].warmup_steps
    call_step_hooks(hooks, start + blend // 2, blend)
    assert all(m.ln_weight == pytest.approx(m.r0 / 2, rel=1e-3) for m in norms)  # half-way through the blend
    call_step_hooks(hooks, start + blend, blend)
    assert all(not m.ln_weight for m in norms)  # RepBN alone once the blend is over


class _CountAtenOps(TorchDispatchMode):
    """Counts the aten operators a forward pass runs, by name (``addmm``, ``native_batch_norm``, ...)."""

    def __init__(self):
        super().__init__()
        self.calls: dict[str, int] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        self.calls[name] = self.calls.get(name, 0) + 1
        return func(*args, **(kwargs or {}))


def _aten_counts(model: nn.Module, x: torch.Tensor) -> dict[str, int]:
    with torch.no_grad(), _CountAtenOps() as counter:
        model(x)
    return counter.calls


#: the aten operators of each kind of product (a linear without bias is ``mm``, with one ``addmm``: folding a
#: norm into a bias-free linear gives it a bias)
_PRODUCTS = {'linear': ('addmm', 'mm', '_linear_pointwise'), 'batched': ('bmm', 'baddbmm'),
             'conv': ('convolution',), 'attention': ('_scaled_dot_product_flash_attention_for_cpu',)}


def _products(counts: dict[str, int]) -> dict[str, int]:
    return {kind: sum(counts.get(op, 0) for op in ops) for kind, ops in _PRODUCTS.items()}


@pytest.mark.parametrize('name', ['slab_deit_t', 'slab_pvt_t', 'slab_pvt_v2_b0', 'slab_swin_t', 'slab_cswin_t',
                                  'swin_t_prepbn'])
def test_deploy_form_does_strictly_less_work(name):
    """The speed claim, checked without timing: the deploy form runs no norm at all (every RepBN is folded
    into a linear layer or convolution, the rest are per-channel affines), the same matrix products and
    convolutions, fewer aten operators in total, and gives the train form's eval outputs."""
    x = torch.randn(1, 3, 64, 64)
    model = _calibrated(name, x)
    before = _aten_counts(model, x)
    with torch.no_grad():
        out = model(x)
        model.fuse()
        fused_out = model(x)  # the plain inference call: the deploy linears' oneDNN path where it exists
    after = _aten_counts(model, x)
    assert not any(isinstance(m, (RepBN, PRepBN, nn.BatchNorm1d)) for m in model.modules())
    assert before.get('native_batch_norm', 0) + before.get('_native_batch_norm_legit_no_training', 0) > 0
    assert not any('batch_norm' in op or 'layer_norm' in op for op in after), after
    assert _products(after) == _products(before)
    assert sum(after.values()) < sum(before.values()), (before, after)
    assert count_macs(model, x) == count_macs(timm.create_model(name).eval(), x)
    assert max_abs_diff(fused_out, out) < 1e-4


@torch.no_grad()
def test_deploy_linear_equals_linear_and_gelu_in_every_mode():
    """The deploy form's linear layers: oneDNN in plain inference, ``F.linear`` (+ GELU) under autograd and
    autocast; the same numbers either way, gradients included, and the same parameters (state-dict keys)."""
    from zoo.layers.onednn import OneDnnLinear, OneDnnMlp, use_onednn_linears

    torch.manual_seed(0)
    mlp = timm.layers.Mlp(16, 64)
    x = torch.randn(2, 7, 16)
    ref = mlp(x)
    fused = copy.deepcopy(mlp)
    use_onednn_linears(fused)
    assert type(fused) is OneDnnMlp and type(fused.fc1) is type(fused.fc2) is OneDnnLinear
    assert list(fused.state_dict()) == list(mlp.state_dict())
    assert max_abs_diff(fused(x), ref) < 1e-6
    with torch.enable_grad():
        xg = x.clone().requires_grad_()
        fused(xg).square().sum().backward()
        xr = x.clone().requires_grad_()
        mlp(xr).square().sum().backward()
    assert max_abs_diff(xg.grad, xr.grad) < 1e-5
    assert max_abs_diff(fused.fc1.weight.grad, mlp.fc1.weight.grad) < 1e-5
    with torch.autocast('cpu', dtype=torch.bfloat16):
        assert fused(x).dtype == mlp(x).dtype == torch.bfloat16


# ----------------------------------------------------------------------------------------------------
# TorchScript, arguments, classifier, checkpoint wrappers
# ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('name', _variants(['slab_pvt_v2_b0'],
                                           ['deit_t_prepbn', 'slab_deit_t', 'pvt_t_prepbn', 'swin_t_prepbn',
                                            'slab_swin_t', 'slab_cswin_t']))
@torch.no_grad()
def test_torchscript_gives_the_eager_outputs(name):
    """Scripted as timm's tests script models; 64x96 pads the windows / stripes and resizes position tables."""
    from timm.layers import set_scriptable

    x = torch.randn(1, 3, 64, 96)
    with set_scriptable(True):
        model = _calibrated(name, x)
    scripted = torch.jit.script(model)
    assert max_abs_diff(scripted(x), model(x)) < 1e-5


def test_bad_arguments_raise_value_errors():
    with pytest.raises(ValueError, match='attn_types'):
        timm.create_model('slab_pvt_v2_b0', attn_types='LLX')
    with pytest.raises(ValueError, match='4 stages'):
        timm.create_model('slab_cswin_t', depths=(1, 1, 1))
    with pytest.raises(ValueError, match="attn_type must be 'S'"):
        timm.create_model('slab_deit_t', attn_type='X')
    with pytest.raises(ValueError, match='output_fmt'):
        timm.create_model('slab_pvt_v2_b0').forward_intermediates(torch.randn(1, 3, 64, 64), output_fmt='NHWC')


@torch.no_grad()
def test_reset_classifier_honours_global_pool():
    x = torch.randn(1, 3, 64, 64)
    model = timm.create_model('slab_pvt_v2_b0').eval()
    model.reset_classifier(0, global_pool='')
    assert model(x).shape == (1, 256, 2, 2)  # the unpooled last map
    model.reset_classifier(5, global_pool='avg')
    assert model(x).shape == (1, 5)
    deit = timm.create_model('deit_t_prepbn').eval()
    deit.reset_classifier(3, global_pool='avg')
    tokens = deit.forward_features(x)
    torch.testing.assert_close(deit.forward_head(tokens, pre_logits=True), tokens[:, 1:].mean(dim=1))
    with pytest.raises(ValueError, match='global_pool'):
        deit.reset_classifier(3, global_pool='max')


@torch.no_grad()
def test_checkpoint_filter_unwraps_training_checkpoints():
    """A DDP-trained checkpoint (``module.`` keys inside ``state_dict``) loads through the filter."""
    model = timm.create_model('slab_pvt_v2_b0')
    wrapped = {'epoch': 3, 'state_dict': {'module.' + k: v + 1 for k, v in model.state_dict().items()}}
    fresh = timm.create_model('slab_pvt_v2_b0')
    fresh.load_state_dict(_checkpoint_filter(fresh)(wrapped, fresh), strict=True)
    assert torch.equal(fresh.head.weight, model.head.weight + 1)
