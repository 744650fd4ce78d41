"""Vision GNN (ViG, Pyramid ViG): facts from the official code, any-size inputs, graph construction."""
from __future__ import annotations

import functools

import pytest
import timm
import torch

import zoo  # noqa: F401  (registers the models)
from fidelity import (
    deterministic_state_dict, load_fixture, make_input, manifest_of, max_abs_diff, tensor_from_record,
)
from zoo.benchmark import count_macs
from zoo.layers.conv_ffn import ConvFFN
from zoo.layers.grapher import Grapher
from zoo.layers.knn_graph import (
    dilate_neighbours, gather_max_neighbours, knn_graph, resize_relative_position_bias,
)

SMALL = ['vig_ti_224_gelu', 'vig_s_224_gelu', 'pvig_ti_224_gelu', 'pvig_s_224_gelu']
LARGE = ['vig_b_224_gelu', 'pvig_m_224_gelu', 'pvig_b_224_gelu']
VARIANTS = SMALL + [pytest.param(n, marks=pytest.mark.slow) for n in LARGE]

#: The published GMACs; parameters are checked against the official code.
PAPER_GMACS = {
    'vig_ti_224_gelu': 1.3, 'vig_s_224_gelu': 4.5, 'vig_b_224_gelu': 17.7,
    'pvig_ti_224_gelu': 1.7, 'pvig_s_224_gelu': 4.6, 'pvig_m_224_gelu': 8.9, 'pvig_b_224_gelu': 16.8,
}


def _fixture(name: str) -> dict:
    return load_fixture(f'vig_{name}')


@pytest.mark.parametrize('name', VARIANTS)
def test_variant_equals_official_code(name):
    """State-dict layout, parameter count, per-block schedules (k, dilation, epsilon, drop path) and MACs."""
    fx = _fixture(name)
    sched = fx['schedule']
    model = timm.create_model(name, drop_path_rate=sched['drop_path_rate'])
    assert manifest_of(model.state_dict()) == fx['state_dict']
    # the official code holds Pyramid ViG's fixed relative-position tables in frozen nn.Parameters that never
    # get a gradient; here they are persistent buffers under the same keys, so they leave the parameter count
    params = sum(p.numel() for p in model.parameters())
    tables = sum(b.numel() for n, b in model.named_buffers() if n.endswith('.relative_pos'))
    assert params == fx['trainable_param_count']
    assert fx['param_count'] - params == tables
    assert (tables > 0) == name.startswith('pvig')

    graphers = [m for m in model.modules() if isinstance(m, Grapher)]
    assert [g.graph_conv.k for g in graphers] == sched['k']  # ViG: 9 -> 18; Pyramid ViG: 9
    assert [g.graph_conv.dilation for g in graphers] == sched['dilation']  # min(i // 4 + 1, cap)
    assert [g.graph_conv.epsilon for g in graphers] == sched['epsilon']
    assert [g.graph_conv.stochastic for g in graphers] == sched['stochastic']
    probs = [getattr(g.drop_path, 'drop_prob', 0.0) for g in graphers]
    assert probs == pytest.approx(sched['drop_path'], abs=1e-7)

    # MACs need only shapes: count them on the meta device
    macs = count_macs(model.to('meta'), torch.empty(1, 3, 224, 224, device='meta'))
    assert abs(macs / 1e9 - PAPER_GMACS[name]) / PAPER_GMACS[name] < 0.02


@pytest.mark.parametrize('name', ['vig_ti_224_gelu', 'pvig_ti_224_gelu'])
def test_output_equals_official_through_pretrained_loading(name, tmp_path):
    """Official-layout weights load through timm's pretrained path and give the official logits.

    Compared in float64: in float32 even the official code changes its logits by O(1) between thread
    counts, because near-tied KNN distances resolve differently.
    """
    fx = _fixture(name)
    path = tmp_path / 'official.pth'
    torch.save({'state_dict': deterministic_state_dict(fx['state_dict'], fx['weights_seed'])}, path)
    model = timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=str(path))).eval()
    with torch.no_grad():
        out = model.double()(make_input(fx['input']['shape'], fx['input']['seed']).double())
    assert max_abs_diff(out, tensor_from_record(fx['output'])) < 1e-4


@pytest.mark.parametrize('wrapper', ['model', 'state_dict_ema', None])
def test_official_checkpoint_wrappers_load(wrapper, tmp_path):
    fx = _fixture('pvig_ti_224_gelu')
    sd = deterministic_state_dict(fx['state_dict'], 1)
    path = tmp_path / 'official.pth'
    torch.save({wrapper: {f'module.{k}': v for k, v in sd.items()}} if wrapper else sd, path)
    model = timm.create_model('pvig_ti_224_gelu', pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))
    loaded = model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in sd.items())


def test_relative_position_tables_initialised_as_official():
    ref = _fixture('pvig_ti_224_gelu')['relative_pos_init']
    sd = _eval_model('pvig_ti_224_gelu', num_classes=10).state_dict()
    torch.testing.assert_close(sd[ref['last_key']], tensor_from_record(ref['last']), rtol=0, atol=1e-6)
    first = sd[ref['first_key']].flatten()
    torch.testing.assert_close(first[ref['first_index']], torch.tensor(ref['first_values']), rtol=0, atol=1e-6)
    assert first.double().sum().item() == pytest.approx(ref['first_sum'], rel=1e-6)


@functools.lru_cache(maxsize=None)
def _eval_model(name: str, **kwargs) -> torch.nn.Module:
    return timm.create_model(name, **kwargs).eval()


@pytest.mark.parametrize('name', ['vig_ti_224_gelu', 'pvig_ti_224_gelu'])
def test_any_input_size(name):
    model = _eval_model(name, num_classes=10)
    for size in [(224, 224), (256, 256), (320, 480)]:
        with torch.no_grad():
            out = model(torch.randn(1, 3, *size))
        assert out.shape == (1, 10) and torch.isfinite(out).all(), size


@pytest.mark.parametrize('size', [(256, 256), (320, 480), pytest.param((512, 768), marks=pytest.mark.slow)])
def test_pyramid_features_at_detection_sizes(size):
    model = _eval_model('pvig_ti_224_gelu', features_only=True)
    assert model.feature_info.reduction() == [4, 8, 16, 32]
    with torch.no_grad():
        feats = model(torch.randn(1, 3, *size))
    for f, chs, red in zip(feats, model.feature_info.channels(), model.feature_info.reduction()):
        assert f.shape == (1, chs, size[0] // red, size[1] // red)
        assert torch.isfinite(f).all()


def test_native_size_uses_the_tables_unchanged():
    model = _eval_model('pvig_ti_224_gelu', num_classes=10)
    grapher = next(m for m in model.modules() if isinstance(m, Grapher))
    assert grapher.position_bias((56, 56)) is grapher.relative_pos
    assert grapher.position_bias((64, 80)).shape == (1, 64 * 80, 16 * 20)


def test_position_tables_resize_along_both_grid_axes():
    # a bias that depends on the query column and the candidate row only keeps that structure when resized
    qh, qw, kh, kw = 6, 6, 3, 3
    q_col = torch.arange(qw, dtype=torch.float32).repeat(qh)  # (qh*qw,)
    k_row = torch.arange(kh, dtype=torch.float32).repeat_interleave(kw)  # (kh*kw,)
    bias = (q_col[:, None] * 10 + k_row[None, :]).unsqueeze(0)
    out = resize_relative_position_bias(bias, (qh, qw), (kh, kw), (12, 6), (3, 6))
    assert out.shape == (1, 12 * 6, 3 * 6)
    grid = out.view(12, 6, 3, 6)
    torch.testing.assert_close(grid, grid[:1, :, :, :1].expand_as(grid))  # no change along query rows / key cols
    torch.testing.assert_close(grid[0, :, 0, 0], q_col[:qw] * 10)
    torch.testing.assert_close(grid[0, 0, :, 0], torch.arange(kh, dtype=torch.float32))


def test_checkpoint_at_224_loads_into_a_model_of_another_native_size(tmp_path):
    sd = timm.create_model('pvig_ti_224_gelu').state_dict()
    torch.save({'state_dict': sd}, tmp_path / 'ckpt.pth')
    model = timm.create_model('pvig_ti_224_gelu', img_size=256, pretrained=True,
                              pretrained_cfg_overlay=dict(file=str(tmp_path / 'ckpt.pth'))).eval()
    assert model.pos_embed.shape[-2:] == (64, 64)
    assert model.backbone[0][0].relative_pos.shape == (1, 64 * 64, 16 * 16)
    with torch.no_grad():
        assert model(torch.randn(1, 3, 256, 256)).shape == (1, 1000)


def _brute_force_knn(x, y, k, bias=None):
    dist = torch.cdist(x.transpose(1, 2).double(), y.transpose(1, 2).double()) ** 2
    if bias is not None:
        dist = dist + bias.double()
    return dist.topk(k, dim=-1, largest=False).indices


def test_knn_graph_matches_brute_force_and_chunking_changes_nothing():
    g = torch.Generator().manual_seed(0)
    x = torch.nn.functional.normalize(torch.randn(2, 16, 50, generator=g), dim=1)
    y = torch.nn.functional.normalize(torch.randn(2, 16, 20, generator=g), dim=1)
    bias = torch.randn(1, 50, 20, generator=g)
    full = knn_graph(x, y, 6, bias)
    assert torch.equal(full, _brute_force_knn(x, y, 6, bias))
    assert torch.equal(knn_graph(x, y, 6, bias, max_chunk=2 * 20 * 7), full)  # 7 query rows per chunk


def test_max_relative_aggregation_equals_naive_gather():
    g = torch.Generator().manual_seed(1)
    y = torch.randn(2, 8, 30, generator=g)
    idx = torch.randint(0, 30, (2, 40, 5), generator=g)
    naive = torch.stack([y[b][:, idx[b]] for b in range(2)]).amax(-1)  # (B, C, N)
    assert torch.equal(gather_max_neighbours(y, idx), naive)


def test_dilation_and_stochastic_dilation():
    idx = torch.arange(12).view(1, 1, 12).expand(2, 3, 12)
    assert dilate_neighbours(idx, 4, 3)[0, 0].tolist() == [0, 3, 6, 9]
    # epsilon 0 or eval mode: always the dilated neighbours
    assert dilate_neighbours(idx, 4, 3, stochastic=True, epsilon=0.0, training=True)[0, 0].tolist() == [0, 3, 6, 9]
    assert dilate_neighbours(idx, 4, 3, stochastic=True, epsilon=1.0, training=False)[0, 0].tolist() == [0, 3, 6, 9]
    torch.manual_seed(0)
    picks = {tuple(dilate_neighbours(idx, 4, 3, stochastic=True, epsilon=1.0, training=True)[0, 0].tolist())
             for _ in range(20)}
    assert len(picks) > 1 and all(len(set(p)) == 4 and max(p) < 12 for p in picks)


def test_stochastic_dilation_only_changes_training_outputs():
    torch.manual_seed(0)
    model = timm.create_model('vig_ti_224_gelu', stochastic=True, epsilon=1.0, num_classes=5)
    ref = timm.create_model('vig_ti_224_gelu', num_classes=5)
    ref.load_state_dict(model.state_dict())
    x = torch.randn(2, 3, 128, 128)  # 64 nodes: room for the dilations 2 and 3 of the later blocks
    model.eval(), ref.eval()
    with torch.no_grad():
        assert torch.equal(model(x), ref(x))
        model.train(), ref.train()
        assert not torch.allclose(model(x), ref(x))


def test_k_and_dilation_are_capped_on_tiny_grids():
    model = timm.create_model('vig_ti_224_gelu', num_classes=3).eval()  # k up to 18, dilation up to 3
    with torch.no_grad():
        out = model(torch.randn(1, 3, 32, 48))  # a 2x3 grid: 6 nodes
    assert out.shape == (1, 3) and torch.isfinite(out).all()


def test_gradient_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    model = timm.create_model('pvig_ti_224_gelu', num_classes=4, img_size=64).eval()
    x = torch.randn(1, 3, 64, 64)
    model(x).sum().backward()
    ref = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    model.set_grad_checkpointing(True)
    model(x).sum().backward()
    for n, p in model.named_parameters():
        if n in ref:
            torch.testing.assert_close(p.grad, ref[n])


def test_channel_error_names_the_constraint():
    model = _eval_model('pvig_ti_224_gelu', num_classes=10)
    with pytest.raises(ValueError, match='3 input channels'):
        model(torch.randn(1, 4, 64, 64))
    with pytest.raises(ValueError, match='multiples of 32'):
        model(torch.randn(1, 3, 80, 64))


def test_unsorted_knn_and_autograd_gather_give_the_same_neighbours():
    g = torch.Generator().manual_seed(2)
    x = torch.nn.functional.normalize(torch.randn(2, 16, 50, generator=g), dim=1)
    y = torch.nn.functional.normalize(torch.randn(2, 16, 20, generator=g), dim=1)
    full = knn_graph(x, y, 6)
    assert torch.equal(knn_graph(x, y, 6, sorted=False).sort(-1).values, full.sort(-1).values)
    # the running maximum works in place without autograd, out of place with it: the same values
    y = y.requires_grad_()
    assert torch.equal(gather_max_neighbours(y, full), gather_max_neighbours(y.detach(), full))


def _randomise_norms(module: torch.nn.Module) -> None:
    g = torch.Generator().manual_seed(3)
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            for t, (lo, hi) in ((m.running_mean, (-0.5, 0.5)), (m.running_var, (0.5, 2.0)),
                                (m.weight.data, (0.5, 1.5)), (m.bias.data, (-0.5, 0.5))):
                t.copy_(torch.rand(t.shape, generator=g, dtype=t.dtype) * (hi - lo) + lo)


@pytest.mark.parametrize('mode', ['train', 'eval'])
def test_fused_block_equals_module_by_module(mode, monkeypatch):
    """The blocks' (1x1 conv, BatchNorm) pairs run as batched matmuls with eval-mode BatchNorm folded in, the
    graph conv on per-group (x, rel) blocks with permuted weight columns: the same outputs and gradients as the
    modules called one by one (in float64, so no near-tied neighbour can flip)."""
    import copy
    import zoo.layers.grapher as grapher_module
    import zoo.layers.pointwise as pointwise_module

    torch.manual_seed(0)
    fused = torch.nn.Sequential(
        Grapher(16, k=4, dilation=2, reduction=2, grid=8, relative_pos=True),
        ConvFFN(16, 64)).double()
    _randomise_norms(fused)
    plain = copy.deepcopy(fused)
    fused.train(mode == 'train'), plain.train(mode == 'train')
    x = torch.randn(2, 16, 8, 8, dtype=torch.float64)
    out_fused = fused(x)
    out_fused.square().sum().backward()
    if mode == 'eval':
        with torch.no_grad():  # the in-place path taken without autograd
            assert torch.equal(fused(x), out_fused)
    monkeypatch.setattr(pointwise_module, 'foldable', lambda *a: False)
    monkeypatch.setattr(grapher_module, 'foldable', lambda *a: False)
    out_plain = plain(x)
    out_plain.square().sum().backward()
    assert (out_fused - out_plain).abs().max() < 1e-10
    for (name, a), b in zip(fused.named_parameters(), plain.parameters()):
        assert (a.grad - b.grad).abs().max() < 1e-9 * max(1.0, b.grad.abs().max().item()), name
