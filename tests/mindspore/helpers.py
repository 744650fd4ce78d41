"""Shared test helpers for the MindSpore twins: torch models with O(1) outputs, and the parity assertion."""
from __future__ import annotations

import json
import os
from typing import Optional, Sequence, Union

import numpy as np
import torch

import zoo
from zoo.mindspore import api
from zoo.mindspore.parity import TOLERANCE, ParityReport, compare, execution_mode, gather_batchnorm_statistics

Size = Union[int, Sequence[int]]


def _hw(img_size: Optional[Size], name: str) -> tuple[int, int]:
    if img_size is None:
        return tuple(zoo.model_info(name).contract_input_size[1:])
    return (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)


def o1_torch_model(name: str, img_size: Optional[Size] = None, **kwargs) -> torch.nn.Module:
    """Zoo model ``name`` (``kwargs`` to its constructor) in eval mode, seeded, with BatchNorm statistics
    gathered on random inputs of ``img_size`` (default: the contract size) and other norms as initialised."""
    torch.manual_seed(0)
    model = zoo.create_model(name, **kwargs)
    return gather_batchnorm_statistics(model, _hw(img_size, name), in_chans=kwargs.get('in_chans', 3))


def random_input(name: str, img_size: Optional[Size] = None, batch: int = 2, in_chans: int = 3,
                 seed: int = 1) -> np.ndarray:
    """A seeded standard-normal batch (N, C, H, W) as float32 NumPy."""
    hw = _hw(img_size, name)
    return np.random.default_rng(seed).standard_normal((batch, in_chans, *hw)).astype(np.float32)


def _log(name: str, mode: str, shape: tuple, report: ParityReport) -> None:
    """Append the result to the JSON-lines file named by ``ZOO_MS_PARITY_LOG``, if set (the README's table)."""
    path = os.environ.get('ZOO_MS_PARITY_LOG')
    if path:
        with open(path, 'a', encoding='utf-8') as f:
            f.write(json.dumps({'model': name, 'family': zoo.model_info(name).family, 'mode': mode,
                                'input': list(shape), 'worst_rel': report.worst_rel,
                                'top5_agree': report.top5_agree}) + '\n')


def assert_parity(name: str, img_size: Optional[Size] = None, mode: str = 'pynative', batch: int = 2,
                  tolerance: float = TOLERANCE, torch_model: Optional[torch.nn.Module] = None,
                  **kwargs) -> ParityReport:
    """Build ``name`` with O(1) outputs (``kwargs`` to the torch constructor), convert it with
    ``zoo.mindspore.from_torch``, run both on one random batch of ``img_size`` in ``mode``, and assert that
    the logits and every stage agree to ``tolerance`` (relative) and the top-5 match. Returns the report."""
    model = torch_model if torch_model is not None else o1_torch_model(name, img_size, **kwargs)
    x = random_input(name, img_size, batch, in_chans=kwargs.get('in_chans', 3))
    with execution_mode(mode):
        cell = api.from_torch(model)
        report = compare(model, cell, x)
    _log(name, mode, x.shape, report)
    scale = report.differences[0].scale
    assert report.worst_rel < tolerance, f'{name} ({mode}, {img_size}):\n{report.format()}'
    assert report.top5_agree, f'{name} ({mode}): top-5 differ\n{report.format()}'
    assert 1e-3 < scale < 1e3, f'{name}: logits of scale {scale:.3g} are not O(1); the check would hide errors'
    return report


def command_error(argv, capsys) -> str:
    """Run ``python -m zoo.mindspore`` with ``argv`` and return its stderr, asserting exit status 2 and one line
    ``error: ...`` (a user error, no traceback)."""
    from zoo.mindspore.command_line import main
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith('error: ') and err.count('\n') == 1, err
    return err
