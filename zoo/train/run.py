"""A whole run: set-up, resume, the epoch loop, checkpoints, metrics, plot, deploy form, summary.

``train(cfg)`` is the library entry; ``main(argv)`` is what ``python train.py`` calls.
"""
from __future__ import annotations

import contextlib
import copy
import json
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import torch
import torch.distributed as dist
import torch.nn as nn
from timm.data import Mixup
from timm.models import reparameterize_model
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2
from timm.utils import ModelEmaV3, random_seed

from ..checkpoint_io import CheckpointError
from ..state_dicts import compare_state_dict
from .checkpoint import atomic_save, atomic_write_text, load_checkpoint, rng_state, set_rng_state
from .config import ConfigError, TrainConfig, parse_config
from .data import DataError, build_datasets, build_loaders
from .distributed import DistInfo, barrier, cleanup_distributed, init_distributed
from .engine import StepState, train_one_epoch, validate, validate_losses
from .hooks import StepHook, collect_step_hooks
from .metrics import write_metrics
from .models import create_student, create_teacher, read_state_dict
from .paradigm import build_net, build_objective
from .plotting import plot_history
from .rundir import RunLock, prepare_output, resolve_output, write_config
from .text_align import attach_text_embeddings

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


def _prepare(cfg: TrainConfig, info: DistInfo, text_embeddings: bool = False):
    """Device, data, model and loaders; with ``text_embeddings``, training batches carry each image's text
    embedding (GPT4Image), checked against the training split here, before any step."""
    device = _device(cfg, info)
    random_seed(cfg.seed, info.rank)
    data = build_datasets(cfg)
    text_dim = 0
    if text_embeddings:
        data, text_dim = attach_text_embeddings(cfg, data)
    num_classes = cfg.num_classes or len(data.classes)
    if num_classes != len(data.classes):
        raise ConfigError(f'--num-classes {num_classes} differs from the {len(data.classes)} classes of the data')
    student = create_student(cfg, num_classes)
    train_loader, val_loader, data_config = build_loaders(cfg, data, student, info.rank, info.world_size)
    return device, data, num_classes, student, train_loader, val_loader, text_dim


def evaluate(cfg: TrainConfig, info: Optional[DistInfo] = None) -> dict[str, Any]:
    """Validation only: the student from ``cfg.checkpoint`` (or <output>/last.pth) on the held-out split."""
    info = info or DistInfo()
    device, data, num_classes, student, _, val_loader, _ = _prepare(cfg, info)
    path = Path(cfg.checkpoint) if cfg.checkpoint else _shared_output(cfg, info) / 'last.pth'
    sd = read_state_dict(path)
    try:
        student.load_state_dict(sd)
    except RuntimeError:
        mismatch = compare_state_dict(sd, student.state_dict())
        # a deploy-form checkpoint of a re-parameterisable model fits the fused student; anything else is refused
        if not _deploy_form(student) or compare_state_dict(sd, student.state_dict()):
            raise ConfigError(f'{path} is not a checkpoint of {cfg.model} with {num_classes} classes: '
                              f'{mismatch.describe(3)}; pass the --model it was trained as') from None
        student.load_state_dict(sd)
    student.to(device)
    metrics = validate(student, val_loader, device=device, autocast=_autocast(cfg, device),
                       channels_last=cfg.channels_last, progress=cfg.progress and info.is_main)
    _log(info, f'{path}: held-out loss {metrics["val_loss"]:.4f}, top-1 {metrics["val_top1"]:.2f}%, '
               f'top-5 {metrics["val_top5"]:.2f}% on {len(data.val)} images')
    return {'checkpoint': str(path), **metrics}


def _train(cfg: TrainConfig, info: DistInfo, extra_hooks: tuple[StepHook, ...],
           locks: Optional[contextlib.ExitStack] = None) -> dict[str, Any]:
    device, data, num_classes, student, train_loader, val_loader, text_dim = _prepare(
        cfg, info, text_embeddings=cfg.paradigm == 'gpt4image')
    if len(train_loader) == 0:  # every batch dropped (drop_last): the run would train nothing
        per_rank = len(data.train) // info.world_size
        raise ConfigError(f'--batch-size {cfg.batch_size} exceeds the {per_rank} training images '
                          f'{"per process " if info.world_size > 1 else ""}of {data.description.split(":")[0]}; '
                          f'use --batch-size {per_rank} or less')
    out = _shared_output(cfg, info, locks)  # after the data checks: a refused run writes nothing
    teacher = create_teacher(cfg, num_classes).to(device) if cfg.distill != 'none' else None
    net = build_net(cfg, student, teacher, num_classes, text_dim).to(device)
    aux = net.aux_modules()  # trainable parts beside the student: saved apart from its weights
    if cfg.channels_last:
        net.to(memory_format=torch.channels_last)
        if teacher is not None:
            teacher.to(memory_format=torch.channels_last)
    optimizer = create_optimizer_v2(net, opt=cfg.opt, lr=cfg.lr, weight_decay=cfg.weight_decay,
                                    momentum=cfg.momentum)
    steps_per_epoch = len(train_loader) if not cfg.max_steps_per_epoch else min(
        len(train_loader), cfg.max_steps_per_epoch * cfg.accum_steps)
    updates_per_epoch = max((steps_per_epoch + cfg.accum_steps - 1) // cfg.accum_steps, 1)
    scheduler, _ = create_scheduler_v2(
        optimizer, sched=cfg.sched, num_epochs=cfg.epochs, decay_epochs=cfg.decay_epochs, decay_rate=cfg.decay_rate,
        min_lr=cfg.min_lr, warmup_lr=cfg.warmup_lr, warmup_epochs=cfg.warmup_epochs,
        step_on_epochs=not cfg.sched_on_updates, updates_per_epoch=updates_per_epoch)
    ema = _build_ema(cfg, student, device)
    scaler = torch.amp.GradScaler(device.type) if cfg.amp and cfg.amp_dtype == 'float16' else None
    state = StepState(total_steps=cfg.epochs * updates_per_epoch)

    if cfg.resume:
        ckpt = load_checkpoint(out / 'last.pth', require=('model', 'optimizer', 'scheduler', 'epoch', 'step',
                                                          'best_top1', 'history', 'config', 'rng'))
        try:
            net.student.load_state_dict(ckpt['model'])
        except RuntimeError:
            raise ConfigError(f'{out / "last.pth"} does not hold a {cfg.model} with {num_classes} classes: '
                              f'{compare_state_dict(ckpt["model"], net.student.state_dict()).describe(3)}; '
                              f'start over with --overwrite') from None
        for key, module in aux.items():
            if key not in ckpt:
                raise ConfigError(f'{out / "last.pth"} holds no {key!r} to resume ({cfg.paradigm} run); '
                                  f'start over with --overwrite')
            try:
                module.load_state_dict(ckpt[key])
            except RuntimeError as e:
                raise ConfigError(f'the saved {key!r} of {out / "last.pth"} does not fit this run: {e}') from e
        optimizer.load_state_dict(ckpt['optimizer'])
        if ckpt['config'].get('epochs') == cfg.epochs:  # an extended run keeps its new schedule
            scheduler.load_state_dict(ckpt['scheduler'])
        if ema is not None and 'ema' in ckpt:
            ema.module.load_state_dict(ckpt['ema'])
        if scaler is not None and 'scaler' in ckpt:
            scaler.load_state_dict(ckpt['scaler'])
        state = StepState(epoch=ckpt['epoch'], step=ckpt['step'], total_steps=state.total_steps,
                          best_top1=ckpt['best_top1'], history=list(ckpt['history']))
        set_rng_state(ckpt['rng'][min(info.rank, len(ckpt['rng']) - 1)])
        _log(info, f'resumed {out} after epoch {state.epoch} (step {state.step})')
    elif info.is_main:
        write_config(cfg, out)

    hooks = tuple(collect_step_hooks(net)) + extra_hooks
    train_net: nn.Module = net
    if info.distributed:
        train_net = nn.parallel.DistributedDataParallel(  # MIM leaves the classifier head unused
            net, device_ids=[device.index] if device.type == 'cuda' else None,
            find_unused_parameters=cfg.paradigm == 'fastmim')
    if cfg.compile:
        train_net = torch.compile(train_net)
    mixup_fn = None
    if cfg.mixup > 0 or cfg.cutmix > 0:
        mixup_fn = Mixup(mixup_alpha=cfg.mixup, cutmix_alpha=cfg.cutmix, prob=cfg.mixup_prob,
                         switch_prob=cfg.mixup_switch_prob, label_smoothing=cfg.smoothing, num_classes=num_classes)
    objective = build_objective(cfg, mixup_fn is not None)
    autocast = _autocast(cfg, device)
    teacher_size = cfg.teacher_img_size

    _log(info, f'{cfg.model} ({sum(p.numel() for p in student.parameters()) / 1e6:.2f}M params) on {data.description}; '
               f'{cfg.epochs} epochs x {updates_per_epoch} steps on {device}'
               f'{f" x {info.world_size} processes" if info.distributed else ""}'
               f'{f"; {cfg.distill} from {cfg.teacher}" if teacher is not None else ""}'
               f'{f"; {cfg.paradigm}" if cfg.paradigm != "supervised" else ""}; run folder {out}')
    start = time.time()
    for epoch in range(state.epoch, cfg.epochs):
        if hasattr(train_loader.sampler, 'set_epoch'):
            train_loader.sampler.set_epoch(epoch)
        t0 = time.time()
        row: dict[str, Any] = {'epoch': epoch + 1}
        row.update(train_one_epoch(
            train_net, train_loader, optimizer, scheduler, objective, state, device=device, autocast=autocast,
            scaler=scaler, ema=ema, teacher=teacher, teacher_img_size=teacher_size, mixup_fn=mixup_fn,
            clip_grad=cfg.clip_grad, clip_mode=cfg.clip_mode, accum_steps=cfg.accum_steps,
            channels_last=cfg.channels_last, max_steps=cfg.max_steps_per_epoch, hooks=hooks,
            progress=cfg.progress and info.is_main, desc=f'epoch {epoch + 1}/{cfg.epochs}'))
        scheduler.step(epoch + 1)
        if cfg.paradigm == 'fastmim':  # no classifier to score: the masked-reconstruction loss, same masks
            row.update(validate_losses(net, objective, val_loader, device=device, autocast=autocast,
                                       channels_last=cfg.channels_last))
        else:
            row.update(validate(student, val_loader, device=device, autocast=autocast,
                                channels_last=cfg.channels_last))
        if ema is not None:
            ema_m = validate(ema.module, val_loader, device=device, autocast=autocast, channels_last=cfg.channels_last)
            row.update({f'val_ema_{k[4:]}': v for k, v in ema_m.items()})
        row.update(lr=optimizer.param_groups[0]['lr'], step=state.step, epoch_time_s=time.time() - t0)
        state.epoch = epoch + 1
        state.history.append(row)
        is_best = 'val_top1' in row and row['val_top1'] > state.best_top1
        state.best_top1 = max(state.best_top1, row.get('val_top1', -1.))
        rngs = _gather_rng(info)
        if info.is_main:
            ckpt = {
                'model': student.state_dict(), 'optimizer': optimizer.state_dict(),
                'scheduler': scheduler.state_dict(), 'epoch': state.epoch, 'step': state.step,
                'best_top1': state.best_top1, 'history': state.history, 'config': cfg.to_dict(), 'rng': rngs,
                'classes': data.classes,
            }
            for key, module in aux.items():
                ckpt[key] = module.state_dict()
            if ema is not None:
                ckpt['ema'] = ema.module.state_dict()
            if scaler is not None:
                ckpt['scaler'] = scaler.state_dict()
            if is_best:  # before last.pth records the new best, so a resume never disagrees with best.pth
                atomic_save({'model': ckpt['model'], 'epoch': state.epoch, 'val_top1': row['val_top1'],
                             'config': ckpt['config'], 'classes': data.classes}, out / 'best.pth')
            atomic_save(ckpt, out / 'last.pth')
            write_metrics(state.history, out)
            plot_history(state.history, out / 'curves.png', title=f'{cfg.model} on {cfg.dataset}')
            ema_note = f', EMA {row["val_ema_top1"]:.2f}%' if ema is not None else ''
            top1_note = f', top-1 {row["val_top1"]:.2f}%' if 'val_top1' in row else ''
            print(f'epoch {epoch + 1}/{cfg.epochs}: train loss {row["train_loss"]:.4f} | held-out loss '
                  f'{row["val_loss"]:.4f}{top1_note}{ema_note} | {row["epoch_time_s"]:.1f}s', flush=True)
        barrier()

    summary: dict[str, Any] = {
        'output': str(out), 'model': cfg.model, 'epochs': state.epoch, 'steps': state.step,
        'final_top1': state.history[-1].get('val_top1') if state.history else None,
        'final_val_loss': state.history[-1]['val_loss'] if state.history else None,
        'best_top1': state.best_top1, 'train_time_s': time.time() - start,
    }
    if cfg.reparameterize:
        summary.update(_save_deploy_form(cfg, student, val_loader, device, autocast, out, info))
    if cfg.push_to_hub and info.is_main:
        summary['hub'] = _push_to_hub(cfg, student, out, summary)
    if info.is_main:
        atomic_write_text(json.dumps(summary, indent=2) + '\n', out / 'summary.json')
        _print_outputs(out, summary)
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
