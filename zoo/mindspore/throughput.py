"""CPU / device throughput of a twin against its torch model on the same input (what ``python -m zoo.mindspore
benchmark`` prints): median seconds per forward pass after warm-up, so GRAPH mode's compilation is not counted."""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable

import mindspore as ms
import numpy as np
import torch
from mindspore import nn

__all__ = ['Timing', 'time_forward', 'compare_throughput']


@dataclass(frozen=True)
class Timing:
    """Median and minimum seconds per forward pass, and images per second at the median."""
    median_s: float
    min_s: float
    images_per_s: float


def time_forward(step: Callable[[], object], batch: int, warmup: int = 2, iters: int = 5) -> Timing:
    """Run ``step`` ``warmup`` times untimed, then ``iters`` times timed."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    return Timing(median, min(times), batch / median)


def compare_throughput(torch_model: torch.nn.Module, cell: nn.Cell, x: np.ndarray, warmup: int = 2,
                       iters: int = 5) -> tuple[Timing, Timing]:
    """(torch, MindSpore) timings of one forward pass on ``x``, in MindSpore's current mode."""
    x_torch, x_ms = torch.from_numpy(x), ms.Tensor(x)
    cell.set_train(False)

    def torch_step():
        with torch.no_grad():
            return torch_model(x_torch)

    def ms_step():
        return cell(x_ms).asnumpy()  # asnumpy waits for the result

    return (time_forward(torch_step, len(x), warmup, iters), time_forward(ms_step, len(x), warmup, iters))
