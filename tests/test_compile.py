"""torch.compile: every zoo model traces into one graph (no graph breaks), and compiled outputs equal eager ones.

``torch._dynamo.explain`` traces without compiling, so the graph-break check is cheap enough for every registered
model; inductor compiles are slow on 2 cores, so they run for one model per family on a tiny input.
"""
from __future__ import annotations

import pytest
import torch
import torch._dynamo as dynamo

import zoo
from test_export import variance_floor, with_batchnorm_statistics

#: One variant per family (the smallest), checked by default; every other model runs with the slow tests.
FAMILY_VARIANTS = [
    'vig_ti_224_gelu', 'pvig_ti_224_gelu', 'ghostnetv3_050', 'hire_mlp_tiny', 'wavemlp_t', 'ptnt_ti_patch16_192',
    'tnt_s_patch16_224', 'slab_deit_t', 'cgrseg_t', 'squeezetime_k400', 'tinysam_vit_t',
]
ALL_MODELS = FAMILY_VARIANTS + [pytest.param(n, marks=pytest.mark.slow) for n in zoo.list_models()
                                if n not in FAMILY_VARIANTS]


def input_sizes(name: str) -> list[tuple[int, ...]]:
    """The contract's small input size, and for one variant per family a second one (larger by the input
    divisor): variants of a family run the same code, so its size-dependent paths are traced once per family.
    Fixed-size models (timm's TNT) take one size."""
    info = zoo.model_info(name)
    size = info.contract_input_size
    if name.startswith('tnt_') or name not in FAMILY_VARIANTS:
        return [size]
    step = max(info.input_divisor, 16)
    return [size, (*size[:-2], size[-2] + step, size[-1] + step)]


@pytest.mark.parametrize('name', ALL_MODELS)
def test_no_graph_breaks(name, one_thread):
    model = zoo.create_model(name).eval()
    for size in input_sizes(name):
        dynamo.reset()  # each size traced afresh, as a model compiled for it
        with torch.no_grad():
            explanation = dynamo.explain(model)(torch.randn(2, *size))
        reasons = [str(b.reason).splitlines()[0] for b in explanation.break_reasons]
        assert explanation.graph_break_count == 0, f'{name} at {size}: {reasons}'
        assert explanation.graph_count == 1
    dynamo.reset()


#: Inductor compiles on a tiny input, one model per family.
COMPILE_SIZES = {
    'vig_ti_224_gelu': (3, 32, 32), 'pvig_ti_224_gelu': (3, 64, 64), 'ghostnetv3_050': (3, 64, 64),
    'hire_mlp_tiny': (3, 32, 32), 'wavemlp_t': (3, 32, 32), 'ptnt_ti_patch16_192': (3, 32, 32),
    'slab_deit_t': (3, 32, 32), 'cgrseg_t': (3, 64, 64), 'squeezetime_k400': (3, 16, 32, 32),
    'tnt_s_patch16_224': (3, 224, 224), 'tinysam_vit_t': (3, 64, 64),
}


def float32_sensitivity(model: torch.nn.Module, x: torch.Tensor, draws: int = 2) -> float:
    """Largest change of the eager output when every input value moves by one float32 ulp (relative 1.2e-7), at
    random: any reordering of float32 arithmetic (another kernel, thread count or batch size) perturbs each layer
    at least this much, so a compiled model cannot be held closer to eager than this."""
    eps = torch.finfo(torch.float32).eps
    with torch.no_grad():
        expected = model(x)
        return max((model(x * (1 + eps * torch.randn(x.shape, generator=torch.Generator().manual_seed(i))))
                    - expected).abs().max().item() for i in range(draws))


@pytest.mark.slow
@pytest.mark.parametrize('name', list(COMPILE_SIZES))
def test_compiled_equals_eager(name, one_thread):
    torch.manual_seed(0)  # the same weights and inputs every run
    x = torch.randn(2, *COMPILE_SIZES[name])
    # O(1) outputs, so that a wrong graph shows (variances floored as in the export round trip)
    model = with_batchnorm_statistics(zoo.create_model(name), x, min_variance=variance_floor(name))
    dynamo.reset()
    with torch.no_grad():
        expected = model(x)
        got = torch.compile(model, backend='inductor', fullgraph=True)(x)
    dynamo.reset()
    scale = expected.abs().max().item()
    assert 0.05 < scale < 1e3, f'outputs of size {scale} hide wrong graphs'
    # 1e-4 relative, or twice the eager model's own float32 error where that is larger (as zoo.export checks):
    # a kernel reordering cannot agree with float32 eager better than float32 agrees with float64, nor better
    # than eager agrees with itself on inputs one ulp away. Unfloored, SqueezeTime needed the latter: at 16x32x32
    # with random weights, inputs moved by half an ulp changed its logits (size 292) by 0.07-0.43, and inductor
    # by 0.59 on one CI run against a bound of 0.54
    with torch.no_grad():
        own_error = (model.double()(x.double()) - expected.double()).abs().max().item()
    model.float()
    bound = max(1e-4 * scale, 2 * own_error, 2 * float32_sensitivity(model, x))
    assert (got - expected).abs().max().item() <= bound


def test_compiled_sam_matches_eager_without_recompiling(one_thread):
    """``python -m zoo.sam everything --compile``: the encoder and the decoder trace whole, and prompt batches of
    another size reuse the decoder graph (dynamo's own backend here: inductor is too slow for the default run)."""
    from zoo.models.tinysam import build_tinysam
    from zoo.sam import compile_sam
    torch.manual_seed(0)
    sam = build_tinysam(32).eval()
    image = torch.randn(1, 3, 32, 32)
    prompts = [(torch.rand(n, 1, 2) * 32, torch.ones(n, 1, dtype=torch.int)) for n in (5, 3)]
    with torch.no_grad():
        expected = [sam.decode(sam.image_encoder(image), *p) for p in prompts]
        dynamo.reset()
        counters = torch._dynamo.utils.counters
        counters.clear()
        compile_sam(sam, backend='eager')
        got = [sam.decode(sam.image_encoder(image), *p) for p in prompts]
    frames = counters['stats']['unique_graphs']
    dynamo.reset()
    for want, have in zip(expected, got):
        for w, h in zip(want, have):
            torch.testing.assert_close(h, w, rtol=1e-5, atol=1e-6)
    assert frames == 2, f'{frames} graphs: the encoder and one decoder graph for every prompt count'
