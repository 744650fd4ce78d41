"""Fidelity fixtures: facts extracted once from the official code, checked against zoo models.

A fixture is a JSON file in ``tests/fixtures/`` holding
  - ``source``: where the facts come from (repository, commit, file, how they were computed),
  - ``state_dict``: the official model's state-dict manifest, ``[[key, shape, dtype], ...]``,
  - ``param_count``: the official model's parameter count,
  - ``input``: ``{"shape": [...], "seed": N}`` for :func:`make_input`,
  - ``weights_seed`` (and optional ``weights_norm_gain``): the arguments of :func:`deterministic_state_dict`,
  - ``output``: ``{"shape": [...], "values": [...flat...]}``, the official model's eval-mode output.

Weights and inputs are derived from names, shapes and seeds, so the official model (run once outside
the project) and the zoo model see exactly the same numbers without storing any weights.
This file is imported by path by the one-off script that computes fixtures; keep it dependency-free
beyond torch.
"""
from __future__ import annotations

import json
import math
import zlib
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import torch

FIXTURES = Path(__file__).parent / 'fixtures'

_DTYPES = {'float32': torch.float32, 'float64': torch.float64, 'float16': torch.float16,
           'int64': torch.int64, 'int32': torch.int32, 'bool': torch.bool, 'uint8': torch.uint8}


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace('torch.', '')


def manifest_of(state_dict: Mapping[str, torch.Tensor]) -> list[list[Any]]:
    """``[[key, shape, dtype], ...]`` in the state dict's own order."""
    return [[k, list(v.shape), _dtype_name(v.dtype)] for k, v in state_dict.items()]


def deterministic_tensor(
        key: str, shape: Sequence[int], dtype: str = 'float32', seed: int = 0, norm_gain: float = 1.0,
) -> torch.Tensor:
    """A well-scaled tensor that depends only on (key, shape, dtype, seed, norm_gain).

    Weights get a 1/sqrt(fan_in) scale so deep networks keep activations of order one; 1-D weights (norm
    scales) sit near ``norm_gain`` (below one for models that sum many normalised branches), biases and
    running means near zero, running variances in [0.75, 1.25].
    """
    torch_dtype = _DTYPES[dtype]
    shape = tuple(shape)
    if not torch_dtype.is_floating_point:
        return torch.zeros(shape, dtype=torch_dtype)
    g = torch.Generator().manual_seed((zlib.crc32(key.encode()) + seed) % (2 ** 31))
    leaf = key.rsplit('.', 1)[-1]
    if leaf == 'running_var':
        t = torch.rand(shape, generator=g) * 0.5 + 0.75
    elif leaf == 'running_mean':
        t = torch.randn(shape, generator=g) * 0.1
    elif len(shape) >= 2:
        fan_in = math.prod(shape[1:])
        t = torch.randn(shape, generator=g) / math.sqrt(max(fan_in, 1))
    elif leaf == 'weight':
        t = norm_gain * (1.0 + 0.1 * torch.randn(shape, generator=g))
    else:
        t = 0.1 * torch.randn(shape, generator=g)
    return t.to(torch_dtype)


def deterministic_state_dict(
        manifest: Iterable[Sequence[Any]], seed: int = 0, norm_gain: float = 1.0,
) -> dict[str, torch.Tensor]:
    """A full state dict in the manifest's layout, filled by :func:`deterministic_tensor`."""
    return {k: deterministic_tensor(k, shape, dtype, seed, norm_gain) for k, shape, dtype in manifest}


def fixture_state_dict(fixture: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The deterministic state dict a fixture's output was computed with."""
    return deterministic_state_dict(fixture['state_dict'], fixture.get('weights_seed', 0),
                                    fixture.get('weights_norm_gain', 1.0))


def make_input(shape: Sequence[int], seed: int = 0) -> torch.Tensor:
    """A fixed standard-normal input of ``shape``."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(tuple(shape), generator=g)


def tensor_record(t: torch.Tensor) -> dict[str, Any]:
    """JSON-ready ``{"shape", "values"}`` for a tensor (float32 precision is enough for 1e-4 checks)."""
    t = t.detach().float().cpu()
    return {'shape': list(t.shape), 'values': [float(f'{v:.7g}') for v in t.flatten().tolist()]}


def tensor_from_record(rec: Mapping[str, Any]) -> torch.Tensor:
    return torch.tensor(rec['values'], dtype=torch.float32).reshape(rec['shape'])


def load_fixture(name: str) -> dict[str, Any]:
    """Load ``tests/fixtures/<name>.json``."""
    with open(FIXTURES / f'{name}.json') as f:
        return json.load(f)


def save_fixture(path: str | Path, fixture: Mapping[str, Any]) -> None:
    """Write a fixture compactly (one manifest entry per line keeps diffs readable)."""
    with open(path, 'w') as f:
        json.dump(fixture, f, separators=(',', ':'))
        f.write('\n')


def max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    if a.shape != b.shape:
        raise AssertionError(f'shape mismatch: {tuple(a.shape)} vs {tuple(b.shape)}')
    return (a.float() - b.float()).abs().max().item()


def relative_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """||a - b|| / ||b||: how far a fast path is from its reference."""
    return ((a - b).norm() / b.norm()).item()


def assert_grads_close(fast: Sequence[torch.Tensor], ref: Sequence[torch.Tensor], tol: float) -> None:
    """Each gradient to ``tol`` relative; one that is zero in exact arithmetic (a bias just before a
    train-mode BatchNorm, whose output ignores it) holds only rounding noise, so it is held to ``tol``
    of the largest gradient instead."""
    largest = max(r.norm() for r in ref)
    for f, r in zip(fast, ref):
        assert (f - r).norm() <= tol * max(r.norm(), largest if r.norm() < 1e-4 * largest else 0)


def assert_same_as_reference(module, reference, x: torch.Tensor, parameters=None) -> None:
    """``module(x)`` and ``reference(x)`` (the plain arithmetic a fast path replaces) give the same output and the
    same gradients of a fixed loss, for the input and every parameter (``module``'s, or ``parameters`` when
    ``module`` is a function): 1e-6 / 1e-5 relative in float32, 1e-10 in float64."""
    params = list(module.parameters() if parameters is None else parameters)
    outs, grads = [], []
    for fn in (module, reference):
        xi = x.clone().requires_grad_(True)
        out = fn(xi)
        out.backward(torch.linspace(-1, 1, out.numel(), dtype=x.dtype).reshape(out.shape))
        outs.append(out)
        grads.append([xi.grad] + [p.grad.clone() for p in params])
        for p in params:
            p.grad = None
    float32 = x.dtype == torch.float32
    assert relative_diff(outs[0], outs[1]) < (1e-6 if float32 else 1e-10)
    assert_grads_close(*grads, 1e-5 if float32 else 1e-10)
