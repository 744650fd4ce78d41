"""``python -m zoo.mindspore``: export torch weights to MindSpore, import them back, check parity.

    export --model NAME [--checkpoint PT] --out F.ckpt [--format ckpt|mindir] [--layout zoo|official]
           [--img-size H W] [--num-frames T]
    import F.ckpt --model NAME --out F.pth [--layout zoo|official]
    parity --model NAME | --all [--img-size H W] [--num-frames T] [--mode pynative|graph] [--device CPU|GPU|Ascend]
           [--checkpoint PT]
    benchmark --model NAME [--batch-size N] [--img-size H W] [--num-frames T] [--mode graph|pynative] [--device ...]
              [--iters N]

Every model with a twin is taken, and the whole SAMs of ``zoo.create_sam`` (``tinysam``: parity compares the
embedding, then masks and IoU predictions for a point and a box prompt; ``export --format mindir`` writes an
encoder and a decoder graph into the folder ``--out``). Classifiers and SAM image encoders read image batches
(N, C, H, W), CGRSeg
(segmentation) too, with H and W multiples of 32; video models (SqueezeTime) read clips (N, C, T, H, W), T from
``--num-frames`` (default: the model's own clip length). The input size defaults to the model's pretrained
configuration (``parity --all``: its contract size, the small size the tests use).

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
from ..random_statistics import gather_batchnorm_statistics as gather_statistics
from .parity import TOLERANCE, compare, execution_mode, gather_batchnorm_statistics
from .registry import twin_builder

__all__ = ['main']


def _twin_name(name: str) -> str:
    """``name`` if it has a MindSpore twin; a ValueError with suggestions otherwise."""
    if _is_sam(name):
        return name
    twin_builder(name)
    return name


def _is_sam(name: str) -> bool:
    """A whole SAM of ``zoo.create_sam`` (``tinysam``, ``tinysam_w8a8``), not a registered model."""
    from ..models.tinysam.build_sam import SAM_MODELS
    return name in SAM_MODELS


def _torch_sam(name: str, checkpoint: Optional[str], hw: tuple[int, int]) -> torch.nn.Module:
    """The checkpoint's SAM, or a seeded random one at ``hw`` (square) with BatchNorm statistics gathered."""
    from ..models.tinysam.build_sam import build_tinysam
    if checkpoint:
        if hw != (1024, 1024):
            raise ValueError(f'{name} checkpoints are for 1024x1024 inputs; drop --img-size with --checkpoint')
        return zoo.create_sam(name, checkpoint=checkpoint)
    if name != 'tinysam':
        raise ValueError(f'{name} needs its calibrated checkpoint: pass --checkpoint (python -m zoo.sam calibrate '
                         f'or convert-w8a8 writes one)')
    if hw[0] != hw[1] or hw[0] % 64:
        raise ValueError(f'{name} takes square inputs whose side is a multiple of 64, got {hw[0]}x{hw[1]}')
    torch.manual_seed(0)
    sam = build_tinysam(img_size=hw[0])
    gather_batchnorm_statistics(sam.image_encoder, hw)
    return sam.eval()


def _is_video(name: str) -> bool:
    return not _is_sam(name) and zoo.model_info(name).task == 'video'


def _hw(name: str, img_size: Optional[Sequence[int]], contract: bool = False) -> tuple[int, int]:
    """(H, W): ``--img-size``, else the contract size (``contract``) or the pretrained configuration's."""
    if img_size:
        return int(img_size[0]), int(img_size[1])
    if _is_sam(name):
        return 1024, 1024
    if contract:
        return tuple(zoo.model_info(name).contract_input_size[-2:])
    return tuple(timm_cfg(name).get('input_size', (3, 224, 224))[1:])


def _check_num_frames(name: str, num_frames: Optional[int]) -> None:
    if num_frames is not None and not _is_video(name):
        raise ValueError(f'--num-frames applies to video models only; {name} is a '
                         f'{zoo.model_info(name).task} model (drop --num-frames)')
    if num_frames is not None and num_frames < 1:
        raise ValueError(f'--num-frames must be at least 1, got {num_frames}')


def _model_kwargs(name: str, num_frames: Optional[int], contract: bool = False) -> dict:
    """Constructor arguments beyond the defaults: a video model's clip length (``--num-frames``, or the
    contract's with ``contract``)."""
    if not _is_video(name):
        return {}
    if num_frames is None and contract:
        num_frames = zoo.model_info(name).contract_input_size[1]
    return {} if num_frames is None else {'num_frames': num_frames}


def _input_shape(model: torch.nn.Module, name: str, hw: tuple[int, int], batch: int) -> tuple[int, ...]:
    """(batch, C, H, W) for an image model, (batch, C, T, H, W) for a video model (T: its clip length)."""
    in_chans = getattr(model, 'in_chans', 3)
    if _is_video(name):
        return (batch, in_chans, model.num_frames, *hw)
    return (batch, in_chans, *hw)


def _describe(shape: Sequence[int], name: str) -> str:
    size = 'x'.join(str(s) for s in shape[2:])
    return f'{size} clip' if _is_video(name) else f'{size} input'


def _torch_model(name: str, checkpoint: Optional[str], hw: tuple[int, int], **kwargs) -> torch.nn.Module:
    """The checkpoint's model, or seeded random weights (``kwargs`` to the constructor) with BatchNorm statistics
    gathered on random inputs of size ``hw`` (so that outputs stay O(1) and the comparison means something)."""
    if checkpoint:
        return torch_model_from_checkpoint(name, checkpoint)
    torch.manual_seed(0)
    model = zoo.create_model(name, **kwargs)
    try:
        if _is_video(name):
            # two batches of eight clips; the late stages of a small clip are 1x1, where a few clips give
            # variances near 0 that blow float rounding up, so variances are floored at 1 (as the video tests do)
            generator = torch.Generator().manual_seed(0)
            shape = _input_shape(model, name, hw, 8)
            return gather_statistics(model, lambda: torch.randn(*shape, generator=generator), 2, min_variance=1.0)
        return gather_batchnorm_statistics(model, hw, in_chans=getattr(model, 'in_chans', 3))
    except (ValueError, RuntimeError) as e:
        raise _input_error(name, _input_shape(model, name, hw, 1), e) from None


def _input_error(name: str, shape: Sequence[int], error: Exception) -> ValueError:
    return ValueError(f'{name} cannot take a {_describe(shape, name)}: {str(error).splitlines()[0]}')


def _checked_input(model: torch.nn.Module, name: str, hw: tuple[int, int], batch: int) -> np.ndarray:
    """A seeded standard-normal input of the model's kind, after checking that the torch model takes it."""
    x = np.random.default_rng(0).standard_normal(_input_shape(model, name, hw, batch)).astype(np.float32)
    try:
        with torch.no_grad():
            model(torch.from_numpy(x[:1]))
    except (ValueError, RuntimeError) as e:
        raise _input_error(name, x.shape, e) from None
    return x


def _export(args: argparse.Namespace) -> int:
    import mindspore as ms
    name = _twin_name(args.model)
    out = Path(args.out)
    if args.format == 'mindir' and args.layout != 'zoo':
        raise ValueError('--layout applies to --format ckpt only (a MindIR graph has no parameter layout)')
    to_layout({}, name, args.layout)  # refuses a layout the family has not, before any work
    _check_num_frames(name, args.num_frames)
    hw = _hw(name, args.img_size)
    if _is_sam(name):
        return _export_sam(name, args, hw)
    model = _torch_model(name, args.checkpoint, hw, **_model_kwargs(name, args.num_frames))
    cell = api.from_torch(model)
    if args.format == 'mindir':
        x = ms.Tensor(np.zeros_like(_checked_input(model, name, hw, 1)))
        with atomic_path(out, suffix='.mindir') as tmp:
            ms.export(cell, x, file_name=str(tmp), file_format='MINDIR')
    else:
        params = to_layout(api.parameter_arrays(cell), name, args.layout)
        # the official layout is written exactly as the port would; the zoo's records the model it holds
        write_mindspore_checkpoint(params, out, {'zoo_model': name} if args.layout == 'zoo' else None)
    print(f'wrote {out} ({name}, {args.format}, layout {args.layout})')
    return 0


def _export_sam(name: str, args: argparse.Namespace, hw: tuple[int, int]) -> int:
    """A whole SAM: its parameters as one .ckpt, or (``mindir``) the folder ``--out`` with ``encoder.mindir`` and
    ``decoder.mindir``, the split SAM deployments use."""
    if args.layout != 'zoo':
        raise ValueError(f'{name} has no official MindSpore port: drop --layout')
    twin = api.from_torch(_torch_sam(name, args.checkpoint, hw))
    if args.format == 'mindir':
        from .tinysam import export_sam_mindir
        out = Path(args.out)
        if out.exists() and not out.is_dir():
            raise ValueError(f'--out {out}: a SAM exports as two graphs into a folder; give a folder name')
        out.mkdir(parents=True, exist_ok=True)
        paths = export_sam_mindir(twin, out)
        print(f'wrote {paths[0]} and {paths[1]} ({name}, mindir: image encoder, prompt-to-mask decoder)')
        return 0
    write_mindspore_checkpoint(api.parameter_arrays(twin), Path(args.out), {'zoo_model': name})
    print(f'wrote {args.out} ({name}, ckpt)')
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
    if not args.all:
        _check_num_frames(names[0], args.num_frames)
    failed = []
    if not args.all and _is_sam(names[0]):
        return _parity_sam(names[0], args)
    for name in names:
        num_frames = args.num_frames if _is_video(name) else None  # with --all, --num-frames is for the video ones
        hw = _hw(name, args.img_size, contract=args.all)
        model = _torch_model(name, args.checkpoint, hw, **_model_kwargs(name, num_frames, contract=args.all))
        x = _checked_input(model, name, hw, 2)
        with execution_mode(args.mode, args.device):
            report = compare(model, api.from_torch(model), x)
        print(f'{name} ({args.mode}, {args.device or "default device"}, {_describe(x.shape, name)})')
        print(report.format())
        if not (report.passed() and report.top5_agree):
            failed.append(name)
    if failed:
        print(f'parity FAILED for {", ".join(failed)} (relative difference >= {TOLERANCE:g} or top-5 differ)')
        return 1
    return 0


def _parity_sam(name: str, args: argparse.Namespace) -> int:
    """The embedding, then masks and IoU predictions for a point and a box prompt (see ``tinysam.parity``)."""
    from .tinysam.parity import compare_sam
    hw = _hw(name, args.img_size)
    sam = _torch_sam(name, args.checkpoint, hw)
    image = np.random.default_rng(0).standard_normal((1, 3, *hw)).astype(np.float32)
    with execution_mode(args.mode, args.device):
        report = compare_sam(sam, api.from_torch(sam), image)
    print(f'{name} ({args.mode}, {args.device or "default device"}, {hw[0]}x{hw[1]} input)')
    print(report.format())
    if not report.passed():
        print(f'parity FAILED for {name} (relative difference >= {TOLERANCE:g})')
        return 1
    return 0


def _benchmark(args: argparse.Namespace) -> int:
    from .throughput import compare_throughput
    name = _twin_name(args.model)
    if args.batch_size < 1 or args.iters < 1:
        raise ValueError('--batch-size and --iters must be at least 1')
    _check_num_frames(name, args.num_frames)
    hw = _hw(name, args.img_size)
    model = _torch_model(name, None, hw, **_model_kwargs(name, args.num_frames))
    x = _checked_input(model, name, hw, args.batch_size)
    with execution_mode(args.mode, args.device):
        torch_time, ms_time = compare_throughput(model, api.from_torch(model), x, iters=args.iters)
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
    p.add_argument('--num-frames', type=int, metavar='T', help='clip length of a video model')
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
    p.add_argument('--num-frames', type=int, metavar='T', help='clip length of a video model')
    p.add_argument('--mode', choices=('pynative', 'graph'), default='pynative')
    p.add_argument('--device', choices=('CPU', 'GPU', 'Ascend'))
    p.add_argument('--checkpoint', help='torch checkpoint (default: seeded random weights)')
    p.set_defaults(run=_parity)
    p = sub.add_parser('benchmark', help='time the twin against the torch model (after warm-up / compilation)')
    p.add_argument('--model', required=True)
    p.add_argument('--batch-size', type=int, default=8)
    p.add_argument('--img-size', type=int, nargs=2, metavar=('H', 'W'))
    p.add_argument('--num-frames', type=int, metavar='T', help='clip length of a video model')
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
