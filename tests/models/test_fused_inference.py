"""The faster modules of PyramidTNT, CGRSeg and the TinySAM encoder compute what the timm modules they stand in for
compute (zoo.layers.onednn: BatchNorm folded into convolutions in eval mode, activations fused through oneDNN in
inference calls, 1x1 convolutions as matmuls): a twin of each model whose modules are given back their timm
classes gives the same outputs (inference calls), and the same outputs and gradients with autograd on, in eval
and train mode. The state dicts and module trees are the same by construction (only classes change)."""
from __future__ import annotations

import copy
import warnings

import pytest
import timm
import torch
from torch import nn

import zoo  # noqa: F401  (registers the models)
import zoo.layers.onednn as onednn
from zoo.models import cgrseg
from zoo.models.tinysam.modeling import image_encoder

# model: (its faster classes, keyed by the timm class they stand in for; input size)
MODELS = {
    'ptnt_ti_patch16_192': ({nn.Linear: onednn.OneDnnLinear, timm.layers.Mlp: onednn.OneDnnMlp}, 64),
    'cgrseg_t': (cgrseg._FASTER, 64),
    'tinysam_vit_t': (image_encoder._FASTER, 64),
}


def _plain_twin(model: nn.Module, faster: dict) -> nn.Module:
    twin = copy.deepcopy(model)
    plain = {fast: slow for slow, fast in faster.items()}
    swapped = 0
    for m in twin.modules():
        if type(m) in plain:
            m.__class__ = plain[type(m)]
            swapped += 1
    assert swapped, 'the model has none of the faster modules'
    return twin


def _with_statistics(model: nn.Module) -> nn.Module:
    """Non-trivial BatchNorm statistics and affine parameters, so that folding them is exercised."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            elif isinstance(getattr(m, 'gamma', None), nn.Parameter):
                m.gamma.fill_(0.5)  # the initial 1e-5 / 1e-6 layer scales would hide whole branches
    return model


@pytest.fixture(scope='module', params=list(MODELS))
def pair(request):
    name = request.param
    faster, size = MODELS[name]
    torch.manual_seed(0)
    model = _with_statistics(timm.create_model(name))
    x = torch.randn(2, 3, size, size)
    return name, model, _plain_twin(model, faster), x


def _assert_close(a: torch.Tensor, b: torch.Tensor, what: str, tol: float = 1e-5) -> None:
    scale = b.abs().max().item() or 1.
    assert (a - b).abs().max().item() <= tol * (scale + 0.1), f'{what}: max abs diff {(a - b).abs().max().item()}'


def test_inference_calls_equal_timms_modules(pair):
    name, fast, plain, x = pair
    fast.eval(), plain.eval()
    with torch.inference_mode():
        _assert_close(fast(x), plain(x), f'{name} inference')


@pytest.mark.parametrize('train', [False, True])
def test_outputs_and_gradients_equal_timms_modules(pair, train):
    """With autograd on, the folded BatchNorms (eval mode; CGRSeg's backbone keeps them so in training too) are
    the same arithmetic: in float64, where rounding cannot hide a wrong fold, to 1e-10. (Float32 rounding
    alone reaches 1e-4 on CGRSeg's train-mode output: its head normalises a batch of two 2x2 maps.)"""
    name, fast, plain, x = pair
    fast, plain = copy.deepcopy(fast).double().train(train), copy.deepcopy(plain).double().train(train)
    x = x.double()
    torch.manual_seed(0)  # dropout / drop path draw the same masks in both
    out_fast = fast(x)
    torch.manual_seed(0)
    out_plain = plain(x)
    _assert_close(out_fast, out_plain, f'{name} output (train={train})', tol=1e-10)
    out_fast.square().mean().backward()
    out_plain.square().mean().backward()
    for (key, p), q in zip(fast.named_parameters(), plain.parameters()):
        if q.grad is not None:
            assert p.grad is not None, f'{name}: {key} got no gradient'
            _assert_close(p.grad, q.grad, f'{name} gradient of {key} (train={train})', tol=1e-10)


def test_modules_keep_timms_classes_as_bases():
    """isinstance checks (timm's weight init, Q-TinySAM's layer search, converters) still see timm's classes."""
    for faster, _ in MODELS.values():
        for slow, fast in faster.items():
            assert issubclass(fast, slow)


@torch.no_grad()
@pytest.mark.parametrize('name, layer', [
    ('tinysam_vit_t', 'patch_embed.conv1.conv'), ('wavemlp_t', 'network.0.0.attn.fc_h'),
    ('wavemlp_t', 'network.0.0.attn.tfc_h'), ('wavemlp_t', 'network.0.0.norm2'), ('wavemlp_t', 'network.0.0.mlp.act'),
    ('hire_mlp_tiny', 'network.0.0.attn.mlp_h1'), ('hire_mlp_tiny', 'network.0.0.mlp.fc1'),
    ('pvig_ti_224_gelu', 'backbone.0.0.fc1.0'), ('vig_ti_224_gelu', 'backbone.0.0.graph_conv.gconv.nn.0'),
    ('vig_ti_224_gelu', 'backbone.0.0.graph_conv.gconv.nn.2'), ('cgrseg_t', None)])
def test_hooked_layers_run_as_modules(name, layer):
    """A fast path never bypasses a module someone hooks (Q-TinySAM's calibration records conv inputs)."""
    model = timm.create_model(name).eval()
    if layer is None:  # the first conv of a folding conv + BatchNorm pair
        layer = next(n for n, m in model.named_modules() if isinstance(m, onednn.FoldingConvNorm)) + '.conv'
    seen = []
    model.get_submodule(layer).register_forward_hook(lambda m, args, out: seen.append(out.shape))
    model(torch.randn(1, 3, 64, 64))
    assert seen, f'{layer} of {name} did not run'


@torch.no_grad()
@pytest.mark.parametrize('name', ['vig_ti_224_gelu', 'pvig_ti_224_gelu', 'wavemlp_t_dw', 'hire_mlp_tiny',
                                  'ptnt_ti_patch16_192', 'slab_deit_t'])
def test_torchscript_runs_the_modules_and_agrees(name):
    """TorchScript compiles none of the fast paths (timm's test_models.py scripts every classification model):
    the scripted model runs the modules one by one, and gives what the eager fast path gives."""
    torch.manual_seed(0)
    model = _with_statistics(timm.create_model(name)).eval()
    x = torch.randn(2, 3, 64, 64)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', FutureWarning)  # torch.jit.script is deprecated, still what timm tests
        scripted = torch.jit.script(model)
    _assert_close(scripted(x), model(x), f'{name} scripted vs eager')


@pytest.mark.parametrize('name', ['vig_ti_224_gelu', 'pvig_ti_224_gelu'])
def test_fx_graph_takes_the_eager_fast_paths(name):
    """A torch.fx graph of the model (timm's test_model_forward_fx: traced, then run in inference mode) decides
    between the fast path and the autograd path when it runs, as eager code does, so the two agree at timm's
    tolerance. At random initialisation ViG's KNN graph turns any rounding difference between the two paths into
    different neighbours (outputs near 1e7), so this fails for a graph that bakes in the traced path; scripted,
    the graph runs too (timm's test_model_forward_fx_torchscript)."""
    from timm.layers._fx import create_feature_extractor, get_graph_node_names
    torch.manual_seed(0)
    model = timm.create_model(name).eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.inference_mode():
        expected = model(x)
        traced = create_feature_extractor(model, [get_graph_node_names(model)[1][-1]])
        got, = traced(x).values()
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', FutureWarning)  # torch.jit.script is deprecated, still what timm tests
        scripted = torch.jit.script(traced)
    with torch.inference_mode():
        out, = scripted(x).values()
    assert out.shape == expected.shape
