"""A whole run: set-up, resume, the epoch loop, checkpoints, metrics, plot, deploy form, summary.

``train(cfg)`` is the library entry; ``main(argv)`` is what ``python train.py`` calls.
"""
from __future__ import annotations

import contextlib
import copy
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence

import torch
import torch.distributed as dist
import torch.nn as nn
from timm.data import Mixup
from timm.models import reparameterize_model
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2
from timm.utils import ModelEmaV3, NativeScaler, random_seed

from ..checkpoint_io import CheckpointError
from ..state_dicts import compare_state_dict
from .checkpoint import atomic_save, atomic_write_text, load_checkpoint, rng_state, set_rng_state
from .config import ConfigError, TrainConfig, parse_config
from .data import DataError, DataSplits, build_datasets, build_loaders
from .distributed import DistInfo, barrier, cleanup_distributed, init_distributed
from .engine import StepState, train_one_epoch, validate, validate_losses
from .hooks import StepHook, collect_step_hooks
from .metrics import write_metrics
from .networks import create_student, create_teacher, read_state_dict
from .param_groups import optimizer_params
from .paradigm import Paradigm, get_paradigm
from .plotting import plot_history
from .rundir import RunLock, prepare_output, resolve_output, write_config
from .training_net import TrainingNet

__all__ = ['train', 'evaluate', 'main']


def _device(cfg: TrainConfig, info: DistInfo) -> torch.device:
    name = cfg.device
    if name == 'auto':
        name = 'cuda' if torch.cuda.is_available() else 'cpu'
    if name == 'cuda' and info.distributed:
        name = f'cuda:{info.local_rank}'
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"--device {cfg.device!r} is not a device name; use auto, cpu, cuda or cuda:N") from None
    if device.type == 'cuda' and (not torch.cuda.is_available() or (device.index or 0) >= torch.cuda.device_count()):
        raise ConfigError(f'--device {cfg.device}: no such CUDA device here ({torch.cuda.device_count()} visible); '
                          f'use --device cpu or auto')
    return device


def _autocast(cfg: TrainConfig, device: torch.device):
    if not cfg.amp:
        return contextlib.nullcontext
    dtype = torch.bfloat16 if cfg.amp_dtype == 'bfloat16' else torch.float16
    if device.type == 'cpu' and dtype != torch.bfloat16:
        raise ConfigError('mixed precision on the CPU supports --amp-dtype bfloat16 only')
    return lambda: torch.autocast(device.type, dtype=dtype)


def _log(info: DistInfo, msg: str) -> None:
    if info.is_main:
        print(msg, flush=True)


def _shared_output(cfg: TrainConfig, info: DistInfo, locks: Optional[contextlib.ExitStack] = None) -> Path:
    """Rank 0 chooses and prepares the run folder, holding its run lock in ``locks`` while the run lasts; the other
    ranks receive its path (or its error)."""
    result: list[Any] = [None]
    if info.is_main:
        try:
            out = resolve_output(cfg)
            if not cfg.evaluate:
                if locks is not None:
                    locks.enter_context(RunLock(out))
                prepare_output(cfg, out)
            result = [str(out)]
        except ConfigError as e:
            result = [e]
    if info.distributed:
        dist.broadcast_object_list(result, src=0)
    if isinstance(result[0], Exception):
        raise result[0]
    return Path(result[0])


def _build_ema(cfg: TrainConfig, student: nn.Module, device: torch.device) -> Optional[ModelEmaV3]:
    if not cfg.model_ema:
        return None
    return ModelEmaV3(student, decay=cfg.model_ema_decay, use_warmup=cfg.model_ema_warmup, device=device)


_DEPLOY_METHODS = ('reparameterize', 'convert_to_deploy', 'switch_to_deploy')


def _deploy_form(model: nn.Module) -> bool:
    """Fuse a re-parameterisable model in place; False when it has no deploy form.

    The model's own method first (zoo models: ``reparameterize``; timm's GhostNetV3: ``convert_to_deploy``),
    else timm's ``reparameterize_model`` over sub-modules that offer ``reparameterize`` / ``switch_to_deploy`` /
    ``fuse``.
    """
    for name in _DEPLOY_METHODS:
        if callable(getattr(model, name, None)):
            getattr(model, name)()
            return True
    if any(hasattr(m, n) for m in model.modules() if m is not model for n in _DEPLOY_METHODS + ('fuse',)):
        reparameterize_model(model, inplace=True)
        return True
    return False


def train(cfg: TrainConfig, step_hooks: Iterable[StepHook] = ()) -> dict[str, Any]:
    """Run training (or ``cfg.evaluate``) as configured; returns the summary (also saved as summary.json)."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    info = init_distributed('cuda' if cfg.device.startswith('cuda') or (
        cfg.device == 'auto' and torch.cuda.is_available()) else 'cpu')
    try:
        if cfg.evaluate:
            return evaluate(cfg, info)
        with contextlib.ExitStack() as locks:
            return _train(cfg, info, tuple(step_hooks), locks)
    finally:
        cleanup_distributed()


def _prepare(cfg: TrainConfig, info: DistInfo, paradigm: Optional[Paradigm] = None):
    """Device, data, model and loaders; ``paradigm``'s data hook (e.g. GPT4Image's text embeddings, checked
    against the training split here, before any step) gives the splits and the network's data arguments."""
    device = _device(cfg, info)
    random_seed(cfg.seed, info.rank)
    data = build_datasets(cfg)
    data_info: dict[str, Any] = {}
    if paradigm is not None and paradigm.prepare_data is not None:
        data, data_info = paradigm.prepare_data(cfg, data)
    num_classes = cfg.num_classes or len(data.classes)
    if num_classes != len(data.classes):
        raise ConfigError(f'--num-classes {num_classes} differs from the {len(data.classes)} classes of the data')
    student = create_student(cfg, num_classes)
    train_loader, val_loader, data_config = build_loaders(cfg, data, student, info.rank, info.world_size)
    return device, data, num_classes, student, train_loader, val_loader, data_info


def evaluate(cfg: TrainConfig, info: Optional[DistInfo] = None) -> dict[str, Any]:
    """Validation only: the student from ``cfg.checkpoint`` (or <output>/last.pth) on the held-out split."""
    info = info or DistInfo()
    device, data, num_classes, student, _, val_loader, _ = _prepare(cfg, info)
    path = Path(cfg.checkpoint) if cfg.checkpoint else _shared_output(cfg, info) / 'last.pth'
    sd = read_state_dict(path)
    mismatch = compare_state_dict(sd, student.state_dict())
    # a deploy-form checkpoint of a re-parameterisable model fits the fused student; anything else is refused
    if mismatch and (not _deploy_form(student) or compare_state_dict(sd, student.state_dict())):
        raise ConfigError(f'{path} is not a checkpoint of {cfg.model} with {num_classes} classes: '
                          f'{mismatch.describe(3)}; pass the --model it was trained as')
    student.load_state_dict(sd)
    student.to(device)
    metrics = validate(student, val_loader, device=device, autocast=_autocast(cfg, device),
                       channels_last=cfg.channels_last, progress=cfg.progress and info.is_main)
    _log(info, f'{path}: held-out loss {metrics["val_loss"]:.4f}, top-1 {metrics["val_top1"]:.2f}%, '
               f'top-5 {metrics["val_top5"]:.2f}% on {len(data.val)} images')
    return {'checkpoint': str(path), **metrics}


@dataclass
class _Run:
    """What a training run builds before its first step, and the counters it carries from epoch to epoch."""
    paradigm: Paradigm
    device: torch.device
    data: DataSplits
    student: nn.Module
    teacher: Optional[nn.Module]
    net: TrainingNet  # the paradigm's trainable network around the student
    aux: dict[str, nn.Module]  # its trainable parts beside the student: saved apart from the student's weights
    train_loader: Any
    val_loader: Any
    out: Path
    optimizer: torch.optim.Optimizer
    scheduler: Any
    ema: Optional[ModelEmaV3]
    scaler: Optional[NativeScaler]
    objective: Callable[..., dict]
    mixup_fn: Optional[Mixup]
    hooks: tuple[StepHook, ...]
    autocast: Callable[[], Any]
    updates_per_epoch: int
    state: StepState
    train_net: Optional[nn.Module] = None  # ``net`` under DistributedDataParallel / torch.compile


def _train(cfg: TrainConfig, info: DistInfo, extra_hooks: tuple[StepHook, ...],
           locks: Optional[contextlib.ExitStack] = None) -> dict[str, Any]:
    """Build, resume (or record the configuration), train epoch by epoch saving after each, then finish."""
    run = _build(cfg, info, get_paradigm(cfg.paradigm), extra_hooks, locks)
    if cfg.resume:
        _resume(cfg, info, run)
    elif info.is_main:
        write_config(cfg, run.out)
    run.train_net = _wrap_for_training(cfg, info, run)
    _log(info, f'{cfg.model} ({sum(p.numel() for p in run.student.parameters()) / 1e6:.2f}M params) on '
               f'{run.data.description}; {cfg.epochs} epochs x {run.updates_per_epoch} steps on {run.device}'
               f'{f" x {info.world_size} processes" if info.distributed else ""}'
               f'{f"; {cfg.distill} from {cfg.teacher}" if run.teacher is not None else ""}'
               f'{f"; {cfg.paradigm}" if cfg.paradigm != TrainConfig.paradigm else ""}; run folder {run.out}')
    start = time.time()
    for epoch in range(run.state.epoch, cfg.epochs):
        row = _train_epoch(cfg, info, run, epoch)
        _save(cfg, info, run, row)
        barrier()
    return _finish(cfg, info, run, time.time() - start)


def _build(cfg: TrainConfig, info: DistInfo, paradigm: Paradigm, extra_hooks: tuple[StepHook, ...],
           locks: Optional[contextlib.ExitStack]) -> _Run:
    """Data, networks, optimizer, schedule, EMA and scaler; the run folder once the data checks have passed."""
    device, data, num_classes, student, train_loader, val_loader, data_info = _prepare(cfg, info, paradigm)
    if len(train_loader) == 0:  # every batch dropped (drop_last): the run would train nothing
        per_rank = len(data.train) // info.world_size
        raise ConfigError(f'--batch-size {cfg.batch_size} exceeds the {per_rank} training images '
                          f'{"per process " if info.world_size > 1 else ""}of {data.description.split(":")[0]}; '
                          f'use --batch-size {per_rank} or less')
    out = _shared_output(cfg, info, locks)  # after the data checks: a refused run writes nothing
    teacher = create_teacher(cfg, num_classes).to(device) if cfg.distill != 'none' else None
    net = paradigm.build_net(cfg, student, teacher, num_classes, **data_info).to(device)
    if cfg.channels_last:
        net.to(memory_format=torch.channels_last)
        if teacher is not None:
            teacher.to(memory_format=torch.channels_last)
    params = optimizer_params(net, cfg.weight_decay, cfg.layer_decay, cfg.layer_decay_min_scale)
    optimizer = create_optimizer_v2(params, opt=cfg.opt, lr=cfg.lr, weight_decay=cfg.weight_decay,
                                    momentum=cfg.momentum)
    steps_per_epoch = len(train_loader) if not cfg.max_steps_per_epoch else min(
        len(train_loader), cfg.max_steps_per_epoch * cfg.accum_steps)
    updates_per_epoch = max((steps_per_epoch + cfg.accum_steps - 1) // cfg.accum_steps, 1)
    scheduler, _ = create_scheduler_v2(
        optimizer, sched=cfg.sched, num_epochs=cfg.epochs, decay_epochs=cfg.decay_epochs, decay_rate=cfg.decay_rate,
        min_lr=cfg.min_lr, warmup_lr=cfg.warmup_lr, warmup_epochs=cfg.warmup_epochs,
        step_on_epochs=not cfg.sched_on_updates, updates_per_epoch=updates_per_epoch)
    ema = _build_ema(cfg, student, device)
    scaler = NativeScaler(device.type) if cfg.amp and cfg.amp_dtype == 'float16' else None
    mixup_fn = None
    if cfg.mixup > 0 or cfg.cutmix > 0:
        mixup_fn = Mixup(mixup_alpha=cfg.mixup, cutmix_alpha=cfg.cutmix, prob=cfg.mixup_prob,
                         switch_prob=cfg.mixup_switch_prob, label_smoothing=cfg.smoothing, num_classes=num_classes)
    return _Run(paradigm=paradigm, device=device, data=data, student=student, teacher=teacher, net=net,
                aux=net.aux_modules(), train_loader=train_loader, val_loader=val_loader, out=out,
                optimizer=optimizer, scheduler=scheduler, ema=ema, scaler=scaler,
                objective=paradigm.build_objective(cfg, mixup_fn is not None), mixup_fn=mixup_fn,
                hooks=tuple(collect_step_hooks(net)) + extra_hooks, autocast=_autocast(cfg, device),
                updates_per_epoch=updates_per_epoch, state=StepState(total_steps=cfg.epochs * updates_per_epoch))


def _resume(cfg: TrainConfig, info: DistInfo, run: _Run) -> None:
    """Restore the run in ``run.out``/last.pth: weights, optimizer, schedule (unless the run was extended), EMA,
    scaler, counters, history and this rank's random generators."""
    path = run.out / 'last.pth'
    ckpt = load_checkpoint(path, require=('model', 'optimizer', 'scheduler', 'epoch', 'step', 'best_top1',
                                          'history', 'config', 'rng'))
    mismatch = compare_state_dict(ckpt['model'], run.student.state_dict())
    if mismatch:
        raise ConfigError(f'{path} does not hold a {cfg.model} with {len(run.data.classes)} classes: '
                          f'{mismatch.describe(3)}; start over with --overwrite')
    run.student.load_state_dict(ckpt['model'])
    for key, module in run.aux.items():
        if key not in ckpt:
            raise ConfigError(f'{path} holds no {key!r} to resume ({cfg.paradigm} run); start over with --overwrite')
        mismatch = compare_state_dict(ckpt[key], module.state_dict())
        if mismatch:
            raise ConfigError(f'the saved {key!r} of {path} does not fit this run: {mismatch.describe(3)}')
        module.load_state_dict(ckpt[key])
    run.optimizer.load_state_dict(ckpt['optimizer'])
    if ckpt['config'].get('epochs') == cfg.epochs:  # an extended run keeps its new schedule
        run.scheduler.load_state_dict(ckpt['scheduler'])
    if run.ema is not None and 'ema' in ckpt:
        run.ema.module.load_state_dict(ckpt['ema'])
    if run.scaler is not None and 'scaler' in ckpt:
        run.scaler.load_state_dict(ckpt['scaler'])
    run.state = StepState(epoch=ckpt['epoch'], step=ckpt['step'], total_steps=run.state.total_steps,
                          best_top1=ckpt['best_top1'], history=list(ckpt['history']))
    set_rng_state(ckpt['rng'][min(info.rank, len(ckpt['rng']) - 1)])
    _log(info, f'resumed {run.out} after epoch {run.state.epoch} (step {run.state.step})')


def _wrap_for_training(cfg: TrainConfig, info: DistInfo, run: _Run) -> nn.Module:
    """The network under DistributedDataParallel (under torchrun) and torch.compile (``--compile``)."""
    train_net: nn.Module = run.net
    if info.distributed:
        device = run.device
        train_net = nn.parallel.DistributedDataParallel(  # without a classifier to score, its head is unused
            run.net, device_ids=[device.index] if device.type == 'cuda' else None,
            find_unused_parameters=not run.paradigm.has_classifier)
    if cfg.compile:
        train_net = torch.compile(train_net)
    return train_net


def _train_epoch(cfg: TrainConfig, info: DistInfo, run: _Run, epoch: int) -> dict[str, Any]:
    """One epoch of training, then the held-out scores: top-1 / top-5, or for a paradigm without a classifier
    its loss terms (same masks every epoch); the EMA's top-1 too. Returns the epoch's metrics row."""
    if hasattr(run.train_loader.sampler, 'set_epoch'):
        run.train_loader.sampler.set_epoch(epoch)
    t0 = time.time()
    row: dict[str, Any] = {'epoch': epoch + 1}
    row.update(train_one_epoch(
        run.train_net, run.train_loader, run.optimizer, run.scheduler, run.objective, run.state, device=run.device,
        autocast=run.autocast, scaler=run.scaler, ema=run.ema, teacher=run.teacher,
        teacher_img_size=cfg.teacher_img_size, mixup_fn=run.mixup_fn, clip_grad=cfg.clip_grad,
        clip_mode=cfg.clip_mode, accum_steps=cfg.accum_steps, channels_last=cfg.channels_last,
        max_steps=cfg.max_steps_per_epoch, hooks=run.hooks, progress=cfg.progress and info.is_main,
        desc=f'epoch {epoch + 1}/{cfg.epochs}'))
    run.scheduler.step(epoch + 1)
    scoring = dict(device=run.device, autocast=run.autocast, channels_last=cfg.channels_last)
    if run.paradigm.has_classifier:
        row.update(validate(run.student, run.val_loader, **scoring))
    else:
        row.update(validate_losses(run.net, run.objective, run.val_loader, **scoring))
    if run.ema is not None:
        ema_m = validate(run.ema.module, run.val_loader, **scoring)
        row.update({f'val_ema_{k[4:]}': v for k, v in ema_m.items()})
    row.update(lr=run.optimizer.param_groups[0]['lr'], step=run.state.step, epoch_time_s=time.time() - t0)
    return row


def _save(cfg: TrainConfig, info: DistInfo, run: _Run, row: dict[str, Any]) -> None:
    """Record the epoch: the counters, then (rank 0) best.pth when top-1 improved, last.pth, the metric files,
    the plot and one log line."""
    state = run.state
    state.epoch = row['epoch']
    state.history.append(row)
    is_best = 'val_top1' in row and row['val_top1'] > state.best_top1
    state.best_top1 = max(state.best_top1, row.get('val_top1', -1.))
    rngs = _gather_rng(info)
    if not info.is_main:
        return
    out, classes = run.out, run.data.classes
    ckpt = {
        'model': run.student.state_dict(), 'optimizer': run.optimizer.state_dict(),
        'scheduler': run.scheduler.state_dict(), 'epoch': state.epoch, 'step': state.step,
        'best_top1': state.best_top1, 'history': state.history, 'config': cfg.to_dict(), 'rng': rngs,
        'classes': classes,
    }
    for key, module in run.aux.items():
        ckpt[key] = module.state_dict()
    if run.ema is not None:
        ckpt['ema'] = run.ema.module.state_dict()
    if run.scaler is not None:
        ckpt['scaler'] = run.scaler.state_dict()
    if is_best:  # before last.pth records the new best, so a resume never disagrees with best.pth
        atomic_save({'model': ckpt['model'], 'epoch': state.epoch, 'val_top1': row['val_top1'],
                     'config': ckpt['config'], 'classes': classes}, out / 'best.pth')
    atomic_save(ckpt, out / 'last.pth')
    write_metrics(state.history, out)
    plot_history(state.history, out / 'curves.png', title=f'{cfg.model} on {cfg.dataset}')
    ema_note = f', EMA {row["val_ema_top1"]:.2f}%' if run.ema is not None else ''
    top1_note = f', top-1 {row["val_top1"]:.2f}%' if 'val_top1' in row else ''
    print(f'epoch {state.epoch}/{cfg.epochs}: train loss {row["train_loss"]:.4f} | held-out loss '
          f'{row["val_loss"]:.4f}{top1_note}{ema_note} | {row["epoch_time_s"]:.1f}s', flush=True)


def _finish(cfg: TrainConfig, info: DistInfo, run: _Run, train_time_s: float) -> dict[str, Any]:
    """The summary; the deploy form and the Hub folder where asked for; summary.json and the list of outputs."""
    state = run.state
    summary: dict[str, Any] = {
        'output': str(run.out), 'model': cfg.model, 'epochs': state.epoch, 'steps': state.step,
        'final_top1': state.history[-1].get('val_top1') if state.history else None,
        'final_val_loss': state.history[-1]['val_loss'] if state.history else None,
        'best_top1': state.best_top1, 'train_time_s': train_time_s,
    }
    if cfg.reparameterize:
        summary.update(_save_deploy_form(cfg, run.student, run.val_loader, run.device, run.autocast, run.out, info))
    if cfg.push_to_hub and info.is_main:
        summary['hub'] = _push_to_hub(cfg, run.student, run.out, summary)
    if info.is_main:
        atomic_write_text(json.dumps(summary, indent=2) + '\n', run.out / 'summary.json')
        _print_outputs(run.out, summary)
    return summary


def _gather_rng(info: DistInfo) -> list:
    """Every rank's generator states (rank r restores entry r on resume)."""
    mine = rng_state()
    if not info.distributed:
        return [mine]
    states: list[Any] = [None] * info.world_size
    dist.all_gather_object(states, mine)
    return states


def _save_deploy_form(cfg: TrainConfig, student: nn.Module, val_loader, device, autocast, out: Path,
                      info: DistInfo) -> dict[str, Any]:
    """Fuse a copy of the student to its deploy form, check the held-out accuracy is unchanged, save it."""
    before = validate(student, val_loader, device=device, autocast=autocast)
    deploy = copy.deepcopy(student).eval()
    if not _deploy_form(deploy):
        raise ConfigError(f'{cfg.model} has no deploy form (no reparameterize / convert_to_deploy / fuse); '
                          f'drop --reparameterize')
    after = validate(deploy, val_loader, device=device, autocast=autocast)
    if info.is_main:
        atomic_save({'model': deploy.state_dict(), 'config': cfg.to_dict(), 'val_top1': after['val_top1']},
                    out / 'model_deploy.pth')
    _log(info, f'deploy form: held-out top-1 {before["val_top1"]:.2f}% before fusing, {after["val_top1"]:.2f}% after')
    return {'deploy_top1_before': before['val_top1'], 'deploy_top1_after': after['val_top1'],
            'deploy_params': sum(p.numel() for p in deploy.parameters())}


def _push_to_hub(cfg: TrainConfig, student: nn.Module, out: Path, summary: dict[str, Any]) -> dict[str, Any]:
    """Save the final weights (fused, where the recipe makes a deploy form) as a Hub folder in the run folder and
    upload it to ``cfg.push_to_hub``; a failed upload keeps the folder and prints how to upload it later."""
    from ..hub import publish_run

    model = copy.deepcopy(student).cpu().eval()
    if cfg.reparameterize:
        _deploy_form(model)
    metrics = {'dataset': cfg.dataset, 'img_size': cfg.img_size, 'paradigm': cfg.paradigm,
               **{k: summary[k] for k in ('epochs', 'final_top1', 'best_top1', 'final_val_loss', 'deploy_top1_after')
                  if summary.get(k) is not None}}
    return publish_run(model, out / 'hub', cfg.push_to_hub, private=cfg.hub_private, metrics=metrics,
                       weights_from=f'trained with train.py ({"deploy form of " if cfg.reparameterize else ""}'
                                    f'the final epoch)')


def _print_outputs(out: Path, summary: dict[str, Any]) -> None:
    if summary['final_top1'] is None:  # pre-training: no classifier scored
        result = f'held-out loss: {summary["final_val_loss"]:.4f}'
        best = ''
    else:
        result = f'held-out top-1: {summary["final_top1"]:.2f}% (best {summary["best_top1"]:.2f}%)'
        best = f' (best: {out / "best.pth"})'
    lines = [
        f'\n{result} after {summary["epochs"]} epochs, {summary["train_time_s"]:.0f}s',
        f'outputs in {out}/',
        f'  checkpoint  {out / "last.pth"}{best}',
    ]
    if (out / 'model_deploy.pth').exists():
        lines.append(f'  deploy form {out / "model_deploy.pth"}')
    if 'hub' in summary:
        lines.append(f'  hub folder  {summary["hub"]["folder"]}'
                     f'{" (uploaded)" if summary["hub"]["uploaded"] else " (not uploaded)"}')
    lines += [f'  metrics     {out / "metrics.csv"} ({out / "metrics.jsonl"})',
              f'  plot        {out / "curves.png"}',
              f'  summary     {out / "summary.json"}']
    print('\n'.join(lines), flush=True)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command-line entry: clear one-line errors for bad input, exit status 2."""
    try:
        cfg = parse_config(argv)
        train(cfg)
    except (ConfigError, DataError, CheckpointError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    return 0
