"""``python -m zoo.mindspore``: export torch weights to MindSpore, import them back, check parity.

    export --model NAME [--checkpoint PT] --out F.ckpt [--format ckpt|mindir] [--layout zoo|official]
    import F.ckpt --model NAME --out F.pth [--layout zoo|official]
    parity --model NAME | --all [--img-size H W] [--mode pynative|graph] [--device CPU|GPU|Ascend] [--checkpoint PT]
    benchmark --model NAME [--batch-size N] [--img-size H W] [--mode graph|pynative] [--device ...] [--iters N]

User errors are one line on stderr and exit status 2 (:func:`zoo.command_line.run_command`); ``parity`` exits 1
when a model's relative difference reaches the tolerance.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

import zoo
from ..command_line import run_command
from . import api
from .checkpoints import (atomic_path, read_mindspore_checkpoint, timm_cfg, torch_model_from_checkpoint,
                          torch_model_from_state_dict, write_mindspore_checkpoint)
from .layouts import LAYOUTS, from_layout, to_layout
from .parity import TOLERANCE, compare, execution_mode, gather_batchnorm_statistics
from .registry import twin_builder

__all__ = ['main']


def _twin_name(name: str) -> str:
    """``name`` if it has a MindSpore twin; a ValueError with suggestions otherwise."""
    twin_builder(name)
    return name


def _hw(name: str, img_size: Optional[Sequence[int]]) -> tuple[int, int]:
    if img_size:
        return int(img_size[0]), int(img_size[1])
    return tuple(timm_cfg(name).get('input_size', (3, 224, 224))[1:])


def _torch_model(name: str, checkpoint: Optional[str], hw: tuple[int, int]) -> torch.nn.Module:
    """The checkpoint's model, or seeded random weights with BatchNorm statistics gathered at ``hw`` (so that
    outputs stay O(1) and the comparison means something)."""
    if checkpoint:
        return torch_model_from_checkpoint(name, checkpoint)
    torch.manual_seed(0)
    model = zoo.create_model(name)
    try:
        return gather_batchnorm_statistics(model, hw, in_chans=getattr(model, 'in_chans', 3))
    except (ValueError, RuntimeError) as e:
        raise _input_error(name, hw, e) from None


def _input_error(name: str, hw: tuple[int, int], error: Exception) -> ValueError:
    return ValueError(f'{name} cannot take a {hw[0]}x{hw[1]} input: {str(error).splitlines()[0]}')


def _export(args: argparse.Namespace) -> int:
    import mindspore as ms
    name = _twin_name(args.model)
    out = Path(args.out)
    if args.format == 'mindir' and args.layout != 'zoo':
        raise ValueError('--layout applies to --format ckpt only (a MindIR graph has no parameter layout)')
    to_layout({}, name, args.layout)  # refuses a layout the family has not, before any work
    model = _torch_model(name, args.checkpoint, _hw(name, args.img_size))
    cell = api.from_torch(model)
    if args.format == 'mindir':
        h, w = _hw(name, args.img_size)
        x = ms.Tensor(np.zeros((1, model.in_chans if hasattr(model, 'in_chans') else 3, h, w), np.float32))
        with atomic_path(out, suffix='.mindir') as tmp:
            ms.export(cell, x, file_name=str(tmp), file_format='MINDIR')
    else:
        params = to_layout(api.parameter_arrays(cell), name, args.layout)
        # the official layout is written exactly as the port would; the zoo's records the model it holds
        write_mindspore_checkpoint(params, out, {'zoo_model': name} if args.layout == 'zoo' else None)
    print(f'wrote {out} ({name}, {args.format}, layout {args.layout})')
    return 0


def _import(args: argparse.Namespace) -> int:
    name = _twin_name(args.model)
    params = {k: v for k, v in read_mindspore_checkpoint(args.checkpoint).items()
              if k != 'zoo_model'}
    params = from_layout(params, name, args.layout)
    try:
        state_dict = api.to_torch_state_dict(params, name)
    except ValueError as e:
        hint = '; if it was made for the official port, pass --layout official' if args.layout == 'zoo' else ''
        raise ValueError(f'MindSpore checkpoint {args.checkpoint} does not fit: {e}{hint}') from None
    model = torch_model_from_state_dict(name, state_dict, f'MindSpore checkpoint {args.checkpoint}')
    with atomic_path(args.out) as tmp:
        torch.save(model.state_dict(), tmp)
    print(f'wrote {args.out} ({name}, {len(state_dict)} tensors)')
    return 0


def _parity(args: argparse.Namespace) -> int:
    if bool(args.all) == bool(args.model):
        raise ValueError('give either --model NAME or --all')
    names = api.list_models() if args.all else [_twin_name(args.model)]
    if args.all and args.checkpoint:
        raise ValueError('--checkpoint holds one model\'s weights: use it with --model, not --all')
    failed = []
    for name in names:
        hw = _hw(name, args.img_size) if (args.img_size or not args.all) else \
            tuple(zoo.model_info(name).contract_input_size[1:])
        model = _torch_model(name, args.checkpoint, hw)
        x = np.random.default_rng(0).standard_normal((2, getattr(model, 'in_chans', 3), *hw)).astype(np.float32)
        try:
            with torch.no_grad():
                model(torch.from_numpy(x))
        except (ValueError, RuntimeError) as e:
            raise _input_error(name, hw, e) from None
        with execution_mode(args.mode, args.device):
            report = compare(model, api.from_torch(model), x)
        print(f'{name} ({args.mode}, {args.device or "default device"}, input {hw[0]}x{hw[1]})')
        print(report.format())
        if not (report.passed() and report.top5_agree):
            failed.append(name)
    if failed:
        print(f'parity FAILED for {", ".join(failed)} (relative difference >= {TOLERANCE:g} or top-5 differ)')
        return 1
    return 0


def _benchmark(args: argparse.Namespace) -> int:
    from .throughput import compare_throughput
    name = _twin_name(args.model)
    if args.batch_size < 1 or args.iters < 1:
        raise ValueError('--batch-size and --iters must be at least 1')
    hw = _hw(name, args.img_size)
    model = _torch_model(name, None, hw)
    x = np.random.default_rng(0).standard_normal((args.batch_size, getattr(model, 'in_chans', 3), *hw))
    with execution_mode(args.mode, args.device):
        torch_time, ms_time = compare_throughput(model, api.from_torch(model), x.astype(np.float32),
                                                 iters=args.iters)
    print(f'{name}, batch {args.batch_size} x {hw[0]}x{hw[1]}, torch {torch.get_num_threads()} threads, '
          f'MindSpore {args.mode} on {args.device or "the default device"}')
    print(f'torch      {torch_time.median_s * 1e3:9.1f} ms  {torch_time.images_per_s:8.1f} img/s')
    print(f'MindSpore  {ms_time.median_s * 1e3:9.1f} ms  {ms_time.images_per_s:8.1f} img/s  '
          f'({ms_time.median_s / torch_time.median_s:.2f}x torch\'s time)')
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog='python -m zoo.mindspore', description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest='command', required=True)
    p = sub.add_parser('export', help='write a MindSpore checkpoint (.ckpt) or MindIR graph of a zoo model')
    p.add_argument('--model', required=True)
    p.add_argument('--checkpoint', help='torch checkpoint (default: seeded random weights)')
    p.add_argument('--out', required=True)
    p.add_argument('--format', choices=('ckpt', 'mindir'), default='ckpt')
    p.add_argument('--layout', choices=LAYOUTS, default='zoo')
    p.add_argument('--img-size', type=int, nargs=2, metavar=('H', 'W'), help='MindIR input size')
    p.set_defaults(run=_export)
    p = sub.add_parser('import', help='turn a MindSpore checkpoint back into a torch state dict (.pth)')
    p.add_argument('checkpoint')
    p.add_argument('--model', required=True)
    p.add_argument('--out', required=True)
    p.add_argument('--layout', choices=LAYOUTS, default='zoo')
    p.set_defaults(run=_import)
    p = sub.add_parser('parity', help='compare a zoo model with its MindSpore twin on the same weights')
    p.add_argument('--model')
    p.add_argument('--all', action='store_true', help='every model with a twin (at its contract input size)')
    p.add_argument('--img-size', type=int, nargs=2, metavar=('H', 'W'))
    p.add_argument('--mode', choices=('pynative', 'graph'), default='pynative')
    p.add_argument('--device', choices=('CPU', 'GPU', 'Ascend'))
    p.add_argument('--checkpoint', help='torch checkpoint (default: seeded random weights)')
    p.set_defaults(run=_parity)
    p = sub.add_parser('benchmark', help='time the twin against the torch model (after warm-up / compilation)')
    p.add_argument('--model', required=True)
    p.add_argument('--batch-size', type=int, default=8)
    p.add_argument('--img-size', type=int, nargs=2, metavar=('H', 'W'))
    p.add_argument('--mode', choices=('pynative', 'graph'), default='graph')
    p.add_argument('--device', choices=('CPU', 'GPU', 'Ascend'))
    p.add_argument('--iters', type=int, default=5)
    p.set_defaults(run=_benchmark)
    return parser


def _main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    return args.run(args)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point: exit status 0 (done), 1 (parity failed), 2 (user error)."""
    return run_command(_main, argv)
