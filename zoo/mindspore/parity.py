"""The parity check: the same weights and input through the torch model and its MindSpore twin, compared.

Relative difference is ``max |torch - mindspore| / max |torch|`` per output, so it reads the same for logits
and for stage features of any scale; the check passes below :data:`TOLERANCE`.

What is compared follows the model's task (``zoo.model_info(name).task``): the logits of a classifier (and
whether the top-5 classes agree), the logit map of a segmenter (and the share of pixels whose arg-max class
agrees, reported but not required: a pixel whose two best classes tie to 1e-6 may flip), the clip logits of a
video model (top-5 as for images), the image embedding of a SAM image encoder; plus, where both models offer
``forward_intermediates``, each stage's output.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator, Optional, Sequence

import mindspore as ms
import numpy as np
import torch
from mindspore import nn

import zoo
from ..random_statistics import gather_batchnorm_statistics as gather_statistics

__all__ = ['TOLERANCE', 'OUTPUT_LABELS', 'Difference', 'ParityReport', 'compare', 'difference', 'model_task',
           'execution_mode', 'gather_batchnorm_statistics']

#: The largest relative difference the parity check accepts (exclusive).
TOLERANCE = 1e-4
_MODES = {'pynative': ms.PYNATIVE_MODE, 'graph': ms.GRAPH_MODE}
#: The label of the main output per task (``zoo.model_info(name).task``); other tasks read ``output``.
OUTPUT_LABELS = {'classification': 'logits', 'segmentation': 'logit map', 'video': 'clip logits',
                 'sam': 'embedding'}


@dataclass(frozen=True)
class Difference:
    """How one output differs: its label (``logits``, ``stage 0``, ...), shape, max absolute and relative
    difference, and its scale (max |torch output|, which should be O(1) in tests)."""
    label: str
    shape: tuple[int, ...]
    max_abs: float
    max_rel: float
    scale: float


@dataclass
class ParityReport:
    """Differences of the main output (``differences[0]``) and each stage; whether the top-5 classes agree for
    every sample (logits of shape (N, classes); True where it does not apply); for a logit map (N, classes, H, W)
    the share of pixels whose arg-max class agrees (None otherwise)."""
    differences: list[Difference] = field(default_factory=list)
    top5_agree: bool = True
    task: str = 'classification'
    argmax_agreement: Optional[float] = None

    @property
    def worst_rel(self) -> float:
        return max((d.max_rel for d in self.differences), default=0.0)

    def passed(self, tolerance: float = TOLERANCE) -> bool:
        return self.worst_rel < tolerance

    def format(self) -> str:
        lines = [f'{"output":<13} {"shape":<22} {"max abs":>10} {"max rel":>10}']
        lines += [f'{d.label:<13} {str(d.shape):<22} {d.max_abs:10.3e} {d.max_rel:10.3e}' for d in self.differences]
        if self.argmax_agreement is not None:
            agreement = f'per-pixel arg-max agree: {100 * self.argmax_agreement:.2f}%; '
        elif self.task in ('classification', 'video'):
            agreement = f'top-5 agree: {"yes" if self.top5_agree else "NO"}; '
        else:  # an embedding or another output: no classes to agree on
            agreement = ''
        lines.append(f'{agreement}worst relative difference '
                     f'{self.worst_rel:.3e} ({"pass" if self.passed() else "FAIL"}, tolerance {TOLERANCE:g})')
        return '\n'.join(lines)


@contextmanager
def execution_mode(mode: str = 'pynative', device: str | None = None) -> Iterator[None]:
    """Run the block in MindSpore's ``'pynative'`` or ``'graph'`` mode (and on ``device``), then restore."""
    if mode not in _MODES:
        raise ValueError(f'unknown MindSpore mode {mode!r}: use one of {", ".join(_MODES)}')
    old_mode = ms.get_context('mode')
    old_device = ms.get_context('device_target')
    if device is not None and device != old_device:
        ms.set_context(device_target=device)
    ms.set_context(mode=_MODES[mode])
    try:
        yield
    finally:
        ms.set_context(mode=old_mode)
        if device is not None and device != old_device:
            ms.set_context(device_target=old_device)


def gather_batchnorm_statistics(model: torch.nn.Module, hw: tuple[int, int], in_chans: int = 3, batches: int = 3,
                                batch_size: int = 4, seed: int = 0) -> torch.nn.Module:
    """:func:`zoo.random_statistics.gather_batchnorm_statistics` on seeded random images of ``hw``, then eval."""
    generator = torch.Generator().manual_seed(seed)
    return gather_statistics(model, lambda: torch.randn(batch_size, in_chans, *hw, generator=generator), batches)


class _WithIntermediates(nn.Cell):
    """The output and the stage outputs in one ``construct``, so GRAPH mode compiles both in one graph."""

    def __init__(self, cell: nn.Cell):
        super().__init__()
        self.net = cell

    def construct(self, x):
        return self.net(x), tuple(self.net.forward_intermediates(x))


def difference(label: str, expected: np.ndarray, actual: np.ndarray, unit: float = 0.0) -> Difference:
    """Max absolute difference, relative to the largest expected magnitude or to ``unit`` where that is larger
    (scores on a 0..1 scale, such as SAM's IoU predictions, are measured against 1 however small they are)."""
    if expected.shape != actual.shape:
        raise ValueError(f'{label}: torch gives shape {expected.shape}, MindSpore {actual.shape}')
    diff = np.abs(expected.astype(np.float64) - actual.astype(np.float64))
    max_abs = float(diff.max()) if diff.size else 0.0
    scale = float(np.abs(expected).max()) if expected.size else 0.0
    denominator = max(scale, unit)
    return Difference(label, tuple(expected.shape), max_abs, max_abs / denominator if denominator > 0 else max_abs,
                      scale)


def _top5(logits: np.ndarray) -> np.ndarray:
    k = min(5, logits.shape[-1])
    return np.sort(np.argsort(-logits, axis=-1)[:, :k], axis=-1)


def model_task(torch_model: torch.nn.Module) -> str:
    """The zoo task of a torch model built by name (``classification``, ``segmentation``, ``video``, ``sam``);
    ``output`` for a module that is no registered zoo model (e.g. a part of one)."""
    name = (getattr(torch_model, 'pretrained_cfg', None) or {}).get('architecture')
    try:
        return zoo.model_info(name).task if name else 'output'
    except (KeyError, ValueError):
        return 'output'


def _argmax_agreement(expected: np.ndarray, actual: np.ndarray) -> float:
    return float((expected.argmax(axis=1) == actual.argmax(axis=1)).mean())


def compare(torch_model: torch.nn.Module, cell: nn.Cell, x: 'np.ndarray | torch.Tensor',
            intermediates: bool = True, task: Optional[str] = None) -> ParityReport:
    """Feed ``x`` (an image batch (N, C, H, W) or a clip batch (N, C, T, H, W)) to both models (in the current
    MindSpore mode) and compare the main output and, with ``intermediates`` where both models have
    ``forward_intermediates``, each stage's output (torch's ``forward_intermediates(x, intermediates_only=True)``).

    ``task`` (default: the torch model's zoo task, :func:`model_task`) names the output and picks the agreement
    check: top-5 classes for (N, classes) logits, per-pixel arg-max for a (N, classes, H, W) logit map.
    """
    task = task or model_task(torch_model)
    intermediates = intermediates and hasattr(torch_model, 'forward_intermediates') \
        and hasattr(cell, 'forward_intermediates')
    x_np = x.detach().cpu().numpy() if torch.is_tensor(x) else np.asarray(x, dtype=np.float32)
    x_torch = torch.from_numpy(np.ascontiguousarray(x_np))
    with torch.no_grad():
        torch_logits = torch_model(x_torch).numpy()
        torch_stages: Sequence = (torch_model.forward_intermediates(x_torch, intermediates_only=True)
                                  if intermediates else [])
    cell.set_train(False)
    x_ms = ms.Tensor(x_np)
    if intermediates:
        ms_logits, ms_stages = _WithIntermediates(cell)(x_ms)
    else:
        ms_logits, ms_stages = cell(x_ms), ()
    report = ParityReport(task=task)
    report.differences.append(difference(OUTPUT_LABELS.get(task, 'output'), torch_logits, ms_logits.asnumpy()))
    if len(torch_stages) != len(ms_stages):
        raise ValueError(f'torch gives {len(torch_stages)} stage outputs, MindSpore {len(ms_stages)}')
    for i, (t, m) in enumerate(zip(torch_stages, ms_stages)):
        report.differences.append(difference(f'stage {i}', t.numpy(), m.asnumpy()))
    if torch_logits.ndim == 2 and task in ('classification', 'video', 'output'):
        report.top5_agree = bool((_top5(torch_logits) == _top5(ms_logits.asnumpy())).all())
    elif task == 'segmentation' and torch_logits.ndim == 4:
        report.argmax_agreement = _argmax_agreement(torch_logits, ms_logits.asnumpy())
    return report
