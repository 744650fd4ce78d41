"""One training epoch and one validation pass (progress bar, AMP, accumulation, clipping, EMA, step hooks).

The network gives ``(logits or None, aux)`` and the objective turns ``(logits, aux, target, teacher logits,
*extra)`` into named loss terms, where ``extra`` are the batch's items after (image, target) (e.g. text
embeddings); see :mod:`zoo.train.paradigm`.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.utils import AverageMeter, NativeScaler, accuracy, dispatch_clip_grad, unwrap_model
from tqdm import tqdm

from .distill import teacher_logits_for
from .distributed import all_reduce_sum
from .hooks import StepHook, call_step_hooks

__all__ = ['StepState', 'train_one_epoch', 'validate', 'validate_losses']


@dataclass
class StepState:
    """Counters that must survive a resume."""
    epoch: int = 0  # completed epochs
    step: int = 0  # optimizer updates so far
    total_steps: int = 0
    best_top1: float = -1.
    history: list = field(default_factory=list)


def train_one_epoch(
        net: nn.Module, loader, optimizer, scheduler, objective: Callable[..., dict], state: StepState, *,
        device: torch.device, autocast: Callable[[], Any], scaler: Optional[NativeScaler] = None, ema=None,
        teacher: Optional[nn.Module] = None, teacher_img_size: Optional[int] = None, mixup_fn=None,
        clip_grad: Optional[float] = None, clip_mode: str = 'norm', accum_steps: int = 1, channels_last: bool = False,
        max_steps: int = 0, hooks: tuple[StepHook, ...] = (), progress: bool = True,
        desc: str = '') -> dict[str, float]:
    """Train for one epoch; returns the mean of every loss term, the total loss and (when the network gives
    logits) the train top-1 (%)."""
    net.train()
    num_batches = len(loader) if not max_steps else min(len(loader), max_steps * accum_steps)
    meters: dict[str, AverageMeter] = {}
    correct = classified = seen = 0
    bar = tqdm(total=num_batches, desc=desc, disable=not progress, dynamic_ncols=True, leave=True)
    optimizer.zero_grad(set_to_none=True)
    for i, (x, target, *extra) in enumerate(loader):
        if i >= num_batches:
            break
        x, target = x.to(device, non_blocking=True), target.to(device, non_blocking=True)
        extra = [e.to(device, non_blocking=True) for e in extra]
        hard_target = target
        if mixup_fn is not None:
            x, target = mixup_fn(x, target)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        last_micro = (i + 1) % accum_steps == 0 or i + 1 == num_batches
        call_step_hooks(hooks, state.step, state.total_steps)
        sync = contextlib.nullcontext() if last_micro or not hasattr(net, 'no_sync') else net.no_sync()
        with sync:
            with autocast():
                t_logits = teacher_logits_for(teacher, x, teacher_img_size) if teacher is not None else None
                logits, aux = net(x)
                losses = objective(logits, aux, target, t_logits, *extra)
                loss = sum(losses.values())
            if not math.isfinite(loss.item()):
                raise FloatingPointError(f'loss is {loss.item()} at step {state.step}; lower --lr or check the data')
            if scaler is not None:  # scaled backward; on the last micro-batch also unscale, clip, step, update
                scaler(loss / accum_steps, optimizer, clip_grad=clip_grad, clip_mode=clip_mode,
                       parameters=net.parameters(), need_update=last_micro)
            else:
                (loss / accum_steps).backward()
        if last_micro:
            if scaler is None:
                if clip_grad:
                    dispatch_clip_grad(net.parameters(), clip_grad, mode=clip_mode)
                optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            state.step += 1
            if scheduler is not None:
                scheduler.step_update(num_updates=state.step)
            if ema is not None:
                ema.update(unwrap_model(net).student, step=state.step)
        n = x.shape[0]
        for k, v in losses.items():
            meters.setdefault(k, AverageMeter()).update(v.item(), n)
        meters.setdefault('loss', AverageMeter()).update(loss.item(), n)
        if logits is not None:
            correct += int((logits.detach().argmax(-1) == hard_target).sum())
            classified += n
        seen += n
        bar.set_postfix(loss=f"{meters['loss'].avg:.4f}", lr=f"{optimizer.param_groups[0]['lr']:.2e}")
        bar.update(1)
    bar.close()
    totals = all_reduce_sum(torch.tensor([correct, classified, seen] + [m.sum for m in meters.values()],
                                         dtype=torch.float64))
    seen_all = max(float(totals[2]), 1.)
    out = {f'train_{k}' if k == 'loss' else f'train_loss_{k}': float(s) / seen_all
           for k, s in zip(meters, totals[3:].tolist())}
    if totals[1] > 0:
        out['train_top1'] = 100. * float(totals[0]) / float(totals[1])
    return out


@torch.no_grad()
def validate(model: nn.Module, loader, *, device: torch.device, autocast: Callable[[], Any],
             channels_last: bool = False, progress: bool = False, desc: str = 'eval') -> dict[str, float]:
    """Cross-entropy and top-1/top-5 (%) over the held-out split (summed over ranks: each holds a shard)."""
    model.eval()
    loss_sum = 0.
    hits = torch.zeros(2, dtype=torch.float64)
    count = 0
    for x, target in tqdm(loader, desc=desc, disable=not progress, leave=False, dynamic_ncols=True):
        x, target = x.to(device), target.to(device)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast():
            logits = model(x)
        logits = logits.float()
        loss_sum += float(F.cross_entropy(logits, target, reduction='sum'))
        n = x.shape[0]  # timm's accuracy is a percentage of the batch: back to counts, summed over batches
        hits += torch.tensor([round(float(a) * n / 100.) for a in accuracy(logits, target, (1, 5))],
                             dtype=torch.float64)
        count += n
    totals = all_reduce_sum(torch.cat([torch.tensor([loss_sum, count], dtype=torch.float64), hits]))
    n = max(float(totals[1]), 1.)
    return {'val_loss': float(totals[0]) / n, 'val_top1': 100. * float(totals[2]) / n,
            'val_top5': 100. * float(totals[3]) / n}


@torch.no_grad()
def validate_losses(net: nn.Module, objective: Callable[..., dict], loader, *, device: torch.device,
                    autocast: Callable[[], Any], channels_last: bool = False, seed: int = 0) -> dict[str, float]:
    """Mean loss terms of ``objective`` over the held-out split, for networks without a classifier to score
    (FastMIM). The random generators are seeded for the pass and restored after, so every epoch draws the
    same masks and the numbers are comparable across epochs."""
    net.eval()
    sums: dict[str, float] = {}
    count = 0
    devices = [device] if device.type == 'cuda' else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        for x, target, *extra in loader:
            x, target = x.to(device), target.to(device)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast():
                logits, aux = net(x)
                losses = objective(logits, aux, target, None, *[e.to(device) for e in extra])
            n = x.shape[0]
            for k, v in {'loss': sum(losses.values()), **{f'loss_{k}': v for k, v in losses.items()}}.items():
                sums[k] = sums.get(k, 0.) + float(v) * n
            count += n
    totals = all_reduce_sum(torch.tensor([count] + list(sums.values()), dtype=torch.float64))
    n = max(float(totals[0]), 1.)
    return {f'val_{k}': float(s) / n for k, s in zip(sums, totals[1:].tolist())}
