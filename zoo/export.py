"""``python -m zoo.export``: write a zoo model as ONNX or as a torch.export program, then check the file.

    python -m zoo.export --model ghostnetv2_100 --format onnx --dynamic-batch --out ghostnetv2_100.onnx
    python -m zoo.export --model slab_deit_t --checkpoint slab_deit_t.pth --deploy --format torch-export \\
        --out slab_deit_t.pt2

After writing, the file is run (onnxruntime for ONNX, the loaded ``ExportedProgram`` for torch.export) on fresh
random inputs, at another batch size than the traced one when the batch is dynamic, and compared with the eager
model: maximum absolute and relative difference per output, and top-1 / top-5 agreement of class scores. A file
whose relative difference exceeds :data:`REL_TOLERANCE` is deleted and the export fails: a deploy file that
computes something else than the model is worse than none. Files are written under a temporary name in the
output folder and renamed only once checked, so nothing half-written is left.

The same as a function: ``zoo.export(...)`` (the module is callable) or :func:`export_model`. The spatial
size is fixed at export time (``--img-size``); only the batch can be dynamic. TinySAM (``--model tinysam`` or
``tinysam_w8a8``) is written as two files, an image encoder and a prompt-to-mask decoder with a dynamic number
of points, as SAM deployments split it (:mod:`zoo.export_sam`).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import types
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional, Sequence, Union

import torch
from torch import nn

from .command_line import run_command
from .registry import create_model, model_info

if TYPE_CHECKING:
    from .export_sam import SamExportReport

__all__ = ['FORMATS', 'REL_TOLERANCE', 'ExportError', 'OutputCheck', 'ExportReport', 'export_model',
           'example_inputs', 'compare_outputs', 'main']

FORMATS = ('onnx', 'torch-export')
#: Largest accepted ``max |exported - eager| / max |eager|`` over every output.
REL_TOLERANCE = 1e-4
#: Batch the dynamic-batch export traces with; it is checked at ``TRACE_BATCH + 1``.
TRACE_BATCH = 2
_EXTRA = 'pip install -e ".[export]"'


class ExportError(ValueError):
    """An export that failed its check or cannot be made; the message says which output differed and by how much."""


@dataclass(frozen=True)
class OutputCheck:
    """How one output of the exported file compares with the eager model."""
    name: str
    max_abs: float
    max_rel: float
    top1: Optional[float] = None  # fraction of rows (pixels for dense outputs) whose top-1 class agrees
    top5: Optional[float] = None  # fraction whose top-5 set agrees

    def describe(self) -> str:
        text = f'{self.name}: max abs diff {self.max_abs:.3g}, max rel diff {self.max_rel:.3g}'
        if self.top1 is not None:
            text += f', top-1 agreement {self.top1:.0%}'
        if self.top5 is not None:
            text += f', top-5 agreement {self.top5:.0%}'
        return text


@dataclass
class ExportReport:
    """What :func:`export_model` wrote and how its check went."""
    path: Path
    format: str
    input_shape: tuple[int, ...]  # as traced
    checked_batch: int
    checks: list[OutputCheck] = field(default_factory=list)
    float32_noise: Optional[float] = None  # max rel diff of eager float32 from float64, where it was needed

    @property
    def max_rel(self) -> float:
        return max((c.max_rel for c in self.checks), default=0.0)

    def describe(self) -> str:
        lines = [f'wrote {self.path} ({self.format}, traced with input {tuple(self.input_shape)}, '
                 f'checked at batch {self.checked_batch})']
        if self.float32_noise is not None:
            lines.append(f'  (above {REL_TOLERANCE:g}, but within twice the eager model\'s own float32 rounding: '
                         f'float32 differs from float64 by {self.float32_noise:.3g} relative)')
        return '\n'.join(lines + [f'  {c.describe()}' for c in self.checks])


def _require_onnx() -> None:
    """One line naming the extra when the ONNX tools are missing."""
    missing = []
    for module in ('onnx', 'onnxscript', 'onnxruntime'):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise ImportError(f'ONNX export needs {", ".join(missing)}: install the export extra with {_EXTRA}')


def _build(name: str, checkpoint: Optional[Union[str, Path]], deploy: bool) -> nn.Module:
    """The eval-mode model, with the checkpoint's weights (and its class count) when one is given."""
    model_info(name)  # unknown names: the zoo's UnknownModelError with suggestions
    kwargs = {}
    if checkpoint is not None:
        from .checkpoint_io import classifier_classes, load_checkpoint_file
        from timm.models import get_pretrained_cfg
        load_checkpoint_file(checkpoint)  # missing, empty, corrupt or refused: one clear line
        cfg = get_pretrained_cfg(name.split('.', 1)[0])
        classes = classifier_classes(checkpoint, cfg.classifier) if cfg is not None and cfg.classifier else None
        overlay = dict(file=str(checkpoint))
        if classes:
            kwargs['num_classes'] = overlay['num_classes'] = classes
        kwargs['pretrained_cfg_overlay'] = overlay
    model = create_model(name, pretrained=checkpoint is not None, **kwargs).eval()
    if deploy:
        if hasattr(model, 'reparameterize'):
            model.reparameterize()
        elif hasattr(model, 'convert_to_deploy'):
            model.convert_to_deploy()
        else:
            raise ExportError(f'{name} has no deploy form to re-parameterise (GhostNetV3 and SLAB have one); '
                              f'drop --deploy')
        model.eval()
    return model


def example_inputs(model: nn.Module, name: str, batch: int, img_size: Optional[Sequence[int]] = None,
                   seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Random inputs of the model's kind: (B, C, H, W) images, or (B, C, T, H, W) clips for video models.

    ``img_size`` (H, W) defaults to the model's pretrained_cfg input size; sizes the model refuses (not a
    multiple of its input divisor) raise :class:`ExportError`.
    """
    info = model_info(name)
    cfg = getattr(model, 'pretrained_cfg', None) or {}
    chans, *default = cfg.get('input_size', (3, 224, 224))
    chans = getattr(model, 'in_chans', chans)
    h, w = (int(s) for s in (img_size or default))
    div = info.input_divisor
    if h < 1 or w < 1 or h % div or w % div:
        raise ExportError(f'--img-size {h} {w}: {name} takes sizes that are positive multiples of {div}')
    g = torch.Generator().manual_seed(seed)
    if info.task == 'video':
        return (torch.randn(batch, chans, model.num_frames, h, w, generator=g),)
    return (torch.randn(batch, chans, h, w, generator=g),)


def _flatten(out) -> list[torch.Tensor]:
    if torch.is_tensor(out):
        return [out]
    if isinstance(out, dict):
        out = list(out.values())
    return [t for o in out for t in _flatten(o)]


def _topk_agreement(ref: torch.Tensor, got: torch.Tensor, k: int, dim: int) -> Optional[float]:
    """Fraction of rows (dim 1 holds the classes) whose top-k set agrees; None when there are fewer than k classes."""
    if ref.dim() < 2 or ref.shape[dim] < k:
        return None
    a = ref.topk(k, dim=dim).indices.sort(dim=dim).values
    b = got.topk(k, dim=dim).indices.sort(dim=dim).values
    return (a == b).all(dim=dim).float().mean().item()


def compare_outputs(reference, exported, names: Optional[Sequence[str]] = None) -> list[OutputCheck]:
    """Per output: max absolute difference, max difference relative to the largest eager magnitude, and for
    score outputs (classes in dim 1 of 2-D or 4-D tensors) the top-1 / top-5 agreement."""
    refs, gots = _flatten(reference), _flatten(exported)
    if len(refs) != len(gots):
        raise ExportError(f'the exported file gives {len(gots)} outputs, the model {len(refs)}')
    checks = []
    for i, (r, g) in enumerate(zip(refs, gots)):
        name = names[i] if names and i < len(names) else f'output {i}'
        r, g = r.detach().float().cpu(), torch.as_tensor(g).detach().float().cpu()
        if r.shape != g.shape:
            raise ExportError(f'{name}: the exported file gives shape {tuple(g.shape)}, the model {tuple(r.shape)}')
        diff = (r - g).abs().max().item() if r.numel() else 0.0
        scale = r.abs().max().item() if r.numel() else 0.0
        rel = diff / scale if scale > 0 else (0.0 if diff == 0 else float('inf'))
        scores = r.dim() in (2, 4) and r.shape[1] > 1
        checks.append(OutputCheck(name, diff, rel, _topk_agreement(r, g, 1, 1) if scores else None,
                                  _topk_agreement(r, g, 5, 1) if scores else None))
    return checks


@contextlib.contextmanager
def _quiet():
    """The exporters print progress and warn about things the check below settles; keep the console to the report."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter('ignore')
        yield


def _write_onnx(model: nn.Module, inputs: tuple[torch.Tensor, ...], path: Path, dynamic_batch: bool,
                opset: Optional[int]) -> None:
    names = [f'input{i}' if i else 'input' for i in range(len(inputs))]
    # TorchScript-based exporter first: the dynamo one writes the same graphs for these models but takes 10-20x
    # as long; it is the fallback for what only it expresses (antialiased resampling, adaptive pooling to a size
    # computed from the input)
    kwargs = dict(input_names=names, output_names=['output'], dynamo=False, opset_version=opset or 18)
    if dynamic_batch:
        kwargs['dynamic_axes'] = {n: {0: 'batch'} for n in names + ['output']}
    with _quiet(), torch.no_grad():
        try:
            torch.onnx.export(model, inputs, str(path), **kwargs)
            return
        except torch.onnx.errors.OnnxExporterError:  # an operator (or its arguments) it cannot express
            pass
        shapes = tuple({0: torch.export.Dim('batch', min=1)} for _ in inputs) if dynamic_batch else None
        torch.onnx.export(model, inputs, str(path), input_names=names, output_names=['output'], dynamo=True,
                          opset_version=opset or 18, dynamic_shapes=shapes, external_data=False)


def _run_onnx(path: Path, inputs: tuple[torch.Tensor, ...]) -> list:
    import onnxruntime as ort
    ort.set_default_logger_severity(3)  # a failure is reported once, as an ExportError, not also as a log line
    session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    feeds = {i.name: t.numpy() for i, t in zip(session.get_inputs(), inputs)}
    return [torch.from_numpy(o) for o in session.run(None, feeds)]


def _write_program(model: nn.Module, inputs: tuple[torch.Tensor, ...], path: Path, dynamic_batch: bool) -> None:
    shapes = None
    if dynamic_batch:
        batch = torch.export.Dim('batch', min=1)
        shapes = tuple({0: batch} for _ in inputs)
    with _quiet(), torch.no_grad():
        program = torch.export.export(model, inputs, dynamic_shapes=shapes)
        torch.export.save(program, str(path))


def _run_program(path: Path, inputs: tuple[torch.Tensor, ...]):
    with torch.no_grad():
        return torch.export.load(str(path)).module()(*inputs)


def _float32_noise(model: nn.Module, inputs: tuple[torch.Tensor, ...], reference) -> float:
    """Largest relative difference of the eager float32 outputs from the same model run in float64."""
    import copy
    with torch.no_grad():
        exact = copy.deepcopy(model).double()(*(t.double() for t in inputs))
    return max(c.max_rel for c in compare_outputs(exact, reference))


def check_file(graph_name: str, format: str, run: Callable, path: Path, reference: nn.Module, inputs: tuple,
               report_path: Path, traced_shape: tuple, checked_batch: int, tolerance: float,
               names: Optional[Sequence[str]] = None) -> ExportReport:
    """Run the written file ``path`` on ``inputs`` with ``run`` and compare it with ``reference``: an
    :class:`ExportError` (nothing kept) when it does not run, or when it differs by more than ``tolerance``
    relative and more than twice the eager model's own float32 error (a file cannot agree with eager float32
    better than eager float32 agrees with float64)."""
    try:
        got = run(path, inputs)
    except Exception as e:  # onnxruntime's own error types: a file that does not run is a failed export
        message = ' '.join(str(e).split())[:300]
        raise ExportError(f'the {format} file of {graph_name} does not run at input {tuple(inputs[0].shape)}: '
                          f'{message}; no file written') from e
    with torch.no_grad():
        ref = reference(*inputs)
    report = ExportReport(report_path, format, traced_shape, checked_batch, compare_outputs(ref, got, names))
    worst = max(report.checks, key=lambda c: c.max_rel)
    if worst.max_rel > tolerance:
        report.float32_noise = _float32_noise(reference, inputs, ref)
        if worst.max_rel > 2 * report.float32_noise:
            raise ExportError(f'the {format} file of {graph_name} differs from the eager model: {worst.describe()} '
                              f'(tolerance {tolerance:g} relative; eager float32 differs from float64 by '
                              f'{report.float32_noise:.3g}); no file written')
    return report


def export_model(
        model: Union[str, nn.Module],
        out: Union[str, os.PathLike],
        format: str = 'onnx',
        checkpoint: Optional[Union[str, os.PathLike]] = None,
        img_size: Optional[Sequence[int]] = None,
        dynamic_batch: bool = False,
        opset: Optional[int] = None,
        deploy: bool = False,
        batch_size: int = 1,
        name: Optional[str] = None,
        tolerance: float = REL_TOLERANCE,
) -> Union[ExportReport, 'SamExportReport']:
    """Export a zoo model to ``out`` and check the file against the eager model.

    'tinysam' / 'tinysam_w8a8' (or a built ``TinySam``) give two files and a :class:`zoo.export_sam.SamExportReport`
    (see :func:`zoo.export_sam.export_sam`: ``out`` a folder or a prefix, ``img_size`` square).

    Args:
        model: a zoo model name, or a built model (then ``name`` says which zoo model it is, for its input kind).
        out: the file to write; its folder must exist.
        format: ``'onnx'`` or ``'torch-export'``.
        checkpoint: weights in the official or zoo layout (its head sets the class count).
        img_size: (H, W) to trace with; default: the model's input size.
        dynamic_batch: leave the batch dimension free (traced at 2, checked at 3); else fixed at ``batch_size``.
        opset: ONNX opset (default 18).
        deploy: re-parameterise first (GhostNetV3, SLAB).
        tolerance: largest accepted relative difference; a larger one is accepted only where it is within
            twice the eager model's own float32 rounding (float32 against float64 on the same inputs).

    Raises:
        ExportError: bad options, or a file that differs from the model (the file is then removed).
        ImportError: ONNX export without onnx / onnxscript / onnxruntime installed.
    """
    if format not in FORMATS:
        raise ExportError(f'unknown format {format!r}; choose one of {", ".join(FORMATS)}')
    if _is_sam(model):
        return _export_sam(model, out, format, checkpoint, img_size, dynamic_batch, opset, deploy, batch_size,
                           name, tolerance)
    out = Path(out)
    if not out.parent.is_dir():
        raise ExportError(f'output folder {out.parent} does not exist; create it first or choose another --out')
    if out.is_dir():
        raise ExportError(f'--out {out} is a folder; give a file name')
    if batch_size < 1:
        raise ExportError(f'batch size {batch_size}: must be at least 1')
    if format == 'onnx':
        _require_onnx()
    if isinstance(model, str):
        name = name or model
        model = _build(model, checkpoint, deploy)
    elif name is None:
        raise ExportError('pass name= (the zoo model it is) with a built model')
    model.eval()
    traced_batch = TRACE_BATCH if dynamic_batch else batch_size
    checked_batch = TRACE_BATCH + 1 if dynamic_batch else batch_size
    inputs = example_inputs(model, name, traced_batch, img_size, seed=0)
    check = example_inputs(model, name, checked_batch, img_size, seed=1)
    tmp = out.with_name(f'.{out.stem}.{os.getpid()}.tmp{out.suffix}')  # torch.export's loader wants the suffix
    try:
        if format == 'onnx':
            _write_onnx(model, inputs, tmp, dynamic_batch, opset)
            run = _run_onnx
        else:
            _write_program(model, inputs, tmp, dynamic_batch)
            run = _run_program
        report = check_file(name, format, run, tmp, model, check, out, tuple(inputs[0].shape), checked_batch,
                            tolerance)
        os.replace(tmp, out)
        return report
    finally:
        tmp.unlink(missing_ok=True)


def _is_sam(model: Union[str, nn.Module]) -> bool:
    from .models.tinysam import TinySam
    from .models.tinysam.build_sam import SAM_MODELS
    return isinstance(model, TinySam) or (isinstance(model, str) and model in SAM_MODELS)


def _export_sam(model, out, format, checkpoint, img_size, dynamic_batch, opset, deploy, batch_size, name,
                tolerance):
    """TinySAM as two files, an image encoder and a prompt-to-mask decoder: :func:`zoo.export_sam.export_sam`."""
    from .export_sam import export_sam
    if deploy:
        raise ExportError('TinySAM has no deploy form to re-parameterise (GhostNetV3 and SLAB have one); drop --deploy')
    size = None
    if img_size is not None:
        h, w = (int(s) for s in img_size)
        if h != w:
            raise ExportError(f'--img-size {h} {w}: TinySAM takes square inputs (padded to S x S); give S S')
        size = h
    return export_sam(model, out, format, checkpoint, size, dynamic_batch, opset, batch_size,
                      name=name or (model if isinstance(model, str) else 'tinysam'), tolerance=tolerance)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog='python -m zoo.export', description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--model', required=True, help='zoo model name (python -m zoo.registry lists them), or tinysam / '
                                                  'tinysam_w8a8 for an image-encoder and a prompt-decoder file')
    p.add_argument('--checkpoint', type=Path, help='weights to export (default: the random initialisation)')
    p.add_argument('--format', choices=FORMATS, default='onnx')
    p.add_argument('--img-size', type=int, nargs=2, metavar=('H', 'W'), help='input size (default: the model\'s)')
    p.add_argument('--dynamic-batch', action='store_true', help='leave the batch size free')
    p.add_argument('--batch-size', type=int, default=1, help='fixed batch size without --dynamic-batch')
    p.add_argument('--opset', type=int, help='ONNX opset (default 18)')
    p.add_argument('--deploy', action='store_true', help='re-parameterise first (GhostNetV3, SLAB)')
    p.add_argument('--out', type=Path, required=True,
                   help='file to write; for tinysam / tinysam_w8a8 a folder or a prefix of the encoder and '
                        'decoder files (PREFIX_encoder.onnx, PREFIX_decoder.onnx)')
    return p.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    try:
        report = export_model(args.model, args.out, args.format, args.checkpoint, args.img_size,
                              args.dynamic_batch, args.opset, args.deploy, args.batch_size)
    except ImportError as e:  # a missing extra is the user's to install: one line, status 2
        raise ExportError(str(e)) from None
    print(report.describe())
    return 0


class _CallableModule(types.ModuleType):
    """``zoo.export(...)`` is :func:`export_model`: the command line ``python -m zoo.export`` and the function
    share one name, and ``from zoo.export import export_model`` works too."""

    def __call__(self, *args, **kwargs) -> Union[ExportReport, 'SamExportReport']:
        return export_model(*args, **kwargs)


if __name__ == '__main__':
    sys.exit(run_command(main))
else:
    sys.modules[__name__].__class__ = _CallableModule
