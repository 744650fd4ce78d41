"""SLAB's simplified linear attention computes its definition, per head and per query::

    out_i = sum_j relu(q_i).relu(k_j) v_j / (relu(q_i).sum_j relu(k_j) + eps) + DWC(V)_i

on both paths: the plain CPU inference fast path (``_sla_inference``) and the general one (autograd, autocast,
tracing), for the layouts the SLAB models pass (chunks of a fused qkv, transposed NCHW maps), both matmul orders,
with and without the depthwise convolution, and keys of another length."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import zoo.layers.linear_attention as sla
from zoo.layers.linear_attention import simplified_linear_attention

EPS = 1e-6


def _definition(q, k, v, num_heads, grid, w, b):
    """The formula above, one head at a time in float64, with the DWC on each head's values as a (c, H, W) map."""
    B, N, C = q.shape
    c = C // num_heads
    out = torch.zeros(B, N, C, dtype=torch.float64)
    for hd in range(num_heads):
        cols = slice(hd * c, (hd + 1) * c)
        qh, kh, vh = (t[..., cols].double() for t in (q, k, v))
        qh, kh = qh.clamp_min(0), kh.clamp_min(0)
        scores = qh @ kh.transpose(1, 2)  # (B, N, j)
        norm = qh @ kh.sum(1).unsqueeze(-1) + EPS
        head = scores @ vh / norm
        if w is not None:
            fm = vh.transpose(1, 2).reshape(B, c, *grid)
            head = head + F.conv2d(fm, w.double(), b.double(), padding=w.shape[-1] // 2, groups=c).flatten(2).transpose(1, 2)
        out[..., cols] = head
    return out


def _inputs(layout: str, B: int, N: int, C: int, grid, j: int = None):
    g = torch.Generator().manual_seed(N * C + len(layout))
    j = N if j is None else j
    if layout == 'chunks':  # q, k, v as slices of one fused qkv output (strided views)
        q, k, v = torch.randn(B, N, 3 * C, generator=g).chunk(3, dim=-1)
        return q, k, v
    if layout == 'transposed':  # NCHW maps flattened and transposed (CSWin)
        return tuple(torch.randn(B, C, *grid, generator=g).flatten(2).transpose(1, 2) for _ in range(3))
    return torch.randn(B, N, C, generator=g), torch.randn(B, j, C, generator=g), torch.randn(B, j, C, generator=g)


def _dwc(c: int, size: int = 5):
    g = torch.Generator().manual_seed(c)
    return torch.randn(c, 1, size, size, generator=g) * 0.2, torch.randn(c, generator=g)


@pytest.fixture
def fast_calls(monkeypatch):
    """Counts the calls of the fast path (which still runs)."""
    calls = []
    real = sla._sla_inference

    def spy(*args):
        calls.append(args[0].shape)
        return real(*args)

    monkeypatch.setattr(sla, '_sla_inference', spy)
    return calls


# (layout, B, N, C, heads, grid, dwc): N > c aggregates k^T v first, N <= c computes q k^T first
CASES = [
    ('chunks', 2, 64, 24, 3, (8, 8), True),
    ('transposed', 2, 48, 32, 2, (6, 8), True),
    ('contiguous', 1, 16, 64, 2, (4, 4), True),
    ('chunks', 2, 20, 16, 1, (4, 5), True),
    ('contiguous', 3, 36, 12, 4, (6, 6), False),
]


@pytest.mark.parametrize('layout,B,N,C,heads,grid,dwc', CASES)
def test_fast_path_computes_the_definition(layout, B, N, C, heads, grid, dwc, fast_calls):
    q, k, v = _inputs(layout, B, N, C, grid)
    w, b = _dwc(C // heads) if dwc else (None, None)
    expected = _definition(q, k, v, heads, grid, w, b)
    with torch.inference_mode():
        out = simplified_linear_attention(q, k, v, heads, grid, w, b)
    assert len(fast_calls) == 1, 'a plain CPU float32 inference call must take the fast path'
    assert out.shape == (B, N, C) and out.dtype == torch.float32 and out.is_contiguous()
    torch.testing.assert_close(out.double(), expected, rtol=1e-5, atol=1e-5)
    general = sla._sla_float32(q, k, v, heads, grid, w, b, EPS)
    torch.testing.assert_close(out, general, rtol=1e-5, atol=1e-6)


def test_keys_of_another_length(fast_calls):
    """Keys and values on a reduced grid (no DWC then): the normaliser sums over the keys there."""
    q, k, v = _inputs('contiguous', 2, 40, 16, (5, 8), j=10)
    with torch.no_grad():
        out = simplified_linear_attention(q, k, v, 2, (5, 8))
    assert len(fast_calls) == 1
    torch.testing.assert_close(out.double(), _definition(q, k, v, 2, (5, 8), None, None), rtol=1e-5, atol=1e-5)


def test_autograd_takes_the_general_path_and_reaches_every_input(fast_calls):
    q, k, v = (t.clone().requires_grad_() for t in _inputs('contiguous', 2, 36, 12, (6, 6)))
    w, b = (t.requires_grad_() for t in _dwc(4))
    out = simplified_linear_attention(q, k, v, 3, (6, 6), w, b)
    assert not fast_calls
    torch.testing.assert_close(out.double(), _definition(q, k, v, 3, (6, 6), w, b), rtol=1e-5, atol=1e-5)
    out.square().sum().backward()
    for name, t in zip('qkvwb', (q, k, v, w, b)):
        assert t.grad is not None and t.grad.abs().sum() > 0, f'no gradient reaches {name}'


def test_autocast_takes_the_general_path_in_float32(fast_calls):
    q, k, v = _inputs('chunks', 2, 16, 8, (4, 4))
    w, b = _dwc(4)
    with torch.inference_mode(), torch.autocast('cpu', dtype=torch.bfloat16):
        out = simplified_linear_attention(q, k, v, 2, (4, 4), w, b)
    assert not fast_calls
    torch.testing.assert_close(out.double(), _definition(q, k, v, 2, (4, 4), w, b), rtol=1e-5, atol=1e-5)
