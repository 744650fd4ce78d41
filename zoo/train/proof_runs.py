"""Named runs of the training engine for ``python -m zoo.train.proof``: each once, in order of what they read.

A run may read another's output (distillation reads the teacher's checkpoint, fine-tuning the pre-trained
encoder), so runs go in waves: every run whose inputs exist is started, up to ``workers`` at a time, each in its
own process with one intra-op thread. With one worker everything runs in this process, in plan order. Each run
records its summary, its wall seconds and its own CPU seconds (so rows report their cost whatever ran beside
them), and its console output goes to ``log.txt`` in its folder.
"""
from __future__ import annotations

import contextlib
import io
import json
import multiprocessing as mp
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import make_config
from .run import train

__all__ = ['Job', 'Runs']


@dataclass(frozen=True)
class Job:
    """One run: its options beyond the common ones, and the runs whose output it reads."""
    options: dict[str, Any]
    needs: tuple[str, ...] = ()


def _train_one(values: dict[str, Any]) -> tuple[dict[str, Any], float, float]:
    """Train one configuration; its console output goes to ``log.txt`` in its run folder."""
    cfg = make_config(values)
    log = io.StringIO()
    t0, c0 = time.perf_counter(), time.process_time()
    with contextlib.redirect_stdout(log):
        summary = train(cfg)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    (Path(cfg.output) / 'log.txt').write_text(log.getvalue())
    return summary, wall, cpu


class Runs:
    """The runs of one proof under ``out``: results by name (summary, wall s, CPU s)."""

    def __init__(self, out: Path, common: dict[str, Any], epochs: int, verbose: bool):
        self.out, self.common, self.epochs, self.verbose = out, common, epochs, verbose
        self.done: dict[str, tuple[dict[str, Any], float, float]] = {}

    def values(self, name: str, job: Job) -> dict[str, Any]:
        return {**self.common, 'epochs': self.epochs, **job.options, 'output': str(self.out / name)}

    def run(self, jobs: dict[str, Job], workers: int = 1) -> None:
        """Run every job not yet done, each after the runs it needs."""
        unknown = {n for job in jobs.values() for n in job.needs} - set(jobs) - set(self.done)
        if unknown:
            raise ValueError(f'jobs need runs that are not planned: {sorted(unknown)}')
        pending = {n: j for n, j in jobs.items() if n not in self.done}
        if workers <= 1:
            for name, job in pending.items():  # plan order lists every run after the runs it needs
                self._record(name, _train_one(self.values(name, job)))
            return
        # spawn: a forked child would inherit this process's OpenMP pool, which deadlocks in the child
        with ProcessPoolExecutor(workers, mp_context=mp.get_context('spawn')) as pool:
            running: dict[Future, str] = {}
            while pending or running:
                ready = [n for n, j in pending.items() if all(d in self.done for d in j.needs)]
                for name in ready:
                    running[pool.submit(_train_one, self.values(name, pending.pop(name)))] = name
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    self._record(running.pop(future), future.result())

    def _record(self, name: str, result: tuple[dict[str, Any], float, float]) -> None:
        self.done[name] = result
        summary, wall, cpu = result
        if self.verbose:
            shown = (f'{summary["final_top1"]:.2f}%' if summary['final_top1'] is not None
                     else f'held-out loss {summary["final_val_loss"]:.4f}')
            print(f'  {name:<30} {summary.get("model", ""):<22} {shown:>22}  {wall:6.1f}s wall {cpu:6.1f}s CPU',
                  flush=True)

    def summary(self, name: str) -> dict[str, Any]:
        return self.done[name][0]

    def top1(self, name: str) -> float:
        return self.done[name][0]['final_top1']

    def cost(self, *names: str) -> tuple[float, float]:
        return sum(self.done[n][1] for n in names), sum(self.done[n][2] for n in names)

    def history(self, name: str) -> list[dict[str, Any]]:
        """The run's metrics, one dict per epoch."""
        return [json.loads(line) for line in (self.out / name / 'metrics.jsonl').read_text().splitlines()]
