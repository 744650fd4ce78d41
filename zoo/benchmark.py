"""python -m zoo.benchmark: parameters, MACs, throughput and peak memory of zoo / timm / torchvision models.

Every later issue reports speed with this tool, so it favours fair comparisons: models compared in one
run share one input shape, each is measured in its own fresh process (same allocator state, its own
peak memory), with warm-up iterations and the median of repeated timings.

    python -m zoo.benchmark --model ghostnetv3_100 --compare ghostnetv2_100
    python -m zoo.benchmark --model ghostnetv3_100 --compare ghostnetv3_100:deploy --batch-size 8
    python -m zoo.benchmark --model squeezetime_k400 --compare torchvision:r2plus1d_18 --json out.json
    python -m zoo.benchmark --model slab_swin_t --compare slab_swin_t:deploy --rounds 3   # small differences
    python -m zoo.benchmark --model slab_swin_t --compare slab_swin_t:deploy --rounds 3 --interleave  # noisy CPU

A model spec is a timm / zoo name, ``torchvision:NAME``, or ``python:FILE.py:FUNCTION`` (a function in a
file of yours that returns a model, e.g. a wrapper around an official implementation checked out
elsewhere, to compare against it side by side); a ``:deploy`` suffix re-parameterizes the model (timm's
``reparameterize_model``) before measuring it.

    python -m zoo.benchmark --model vig_s_224_gelu --compare python:/tmp/official_vig.py:vig_s
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import statistics
import sys
import time
from typing import Any, Optional, Sequence, Union

import torch
from torch import nn
from torch.utils import flop_counter
from torch.utils.flop_counter import FlopCounterMode

__all__ = ['count_macs', 'count_params', 'benchmark_model', 'benchmark_interleaved', 'combine_rounds', 'resolve_input_shape', 'main']


def count_macs(model: nn.Module, inputs: Union[torch.Tensor, Sequence[torch.Tensor]]) -> int:
    """Multiply-accumulates of one forward pass, counted by ``torch.utils.flop_counter``.

    The counter sees matrix multiplications and convolutions (what papers report as MACs/FLOPs);
    element-wise operations are not counted. MACs = counted FLOPs / 2.
    """
    args = (inputs,) if isinstance(inputs, torch.Tensor) else tuple(inputs)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=_missing_attention_formulas()) as counter:
            model(*args)
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2


def _missing_attention_formulas() -> dict:
    """Formulas for the CPU kernels of ``scaled_dot_product_attention`` that this torch's counter lacks.

    On the CPU, SDPA runs ``_scaled_dot_product_flash_attention_for_cpu``; some torch releases (2.14 among them)
    register no formula for it and count its two matrix products as zero, so the same model's count would depend
    on the torch version. Count it as torch counts the GPU attention kernels (the two batched products).
    """
    aten = torch.ops.aten
    kernels = [getattr(aten, name) for name in ('_scaled_dot_product_flash_attention_for_cpu',)
               if hasattr(aten, name)]
    return {k: _attention_flops for k in kernels if k not in flop_counter.flop_registry}


def _attention_flops(query, key, value, *args, out_val=None, **kwargs) -> int:
    return flop_counter.sdpa_flop_count(query.shape, key.shape, value.shape)


_attention_flops._get_raw = True  # called with the tensors, as FlopCounterMode calls raw formulas


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _parse_spec(spec: str) -> tuple[str, str, bool]:
    """``[torchvision:|python:]name[:deploy]`` -> (source, name, deploy)."""
    source = 'timm'
    for prefix in ('torchvision', 'python'):
        if spec.startswith(prefix + ':'):
            source, spec = prefix, spec[len(prefix) + 1:]
    deploy = spec.endswith(':deploy')
    if deploy:
        spec = spec[:-len(':deploy')]
    return source, spec, deploy


def validate_spec(spec: str) -> None:
    """Raise a ValueError naming the closest models if the spec's model does not exist."""
    import difflib
    import timm
    import zoo  # noqa: F401  (registers zoo models with timm)

    source, name, _ = _parse_spec(spec)
    if source == 'python':
        path, _, function = name.rpartition(':')
        if not path.endswith('.py') or not function:
            raise ValueError(f'a python spec is python:FILE.py:FUNCTION, got {spec!r}')
        if not os.path.isfile(path):
            raise ValueError(f'no file {path!r} for spec {spec!r}')
        return
    if source == 'timm' and zoo.registry.hub_source(name) is not None:
        zoo.registry.hub_config(name)  # a Hub folder: its config.json must name a known architecture
        return
    known = timm.list_models() if source == 'timm' else __import__('torchvision').models.list_models()
    if name not in known:
        close = difflib.get_close_matches(name, known, n=5)
        raise ValueError(f'unknown {source} model {name!r}' + (f'; did you mean {", ".join(close)}?' if close else ''))


def _build_from_file(path: str, function: str) -> nn.Module:
    """Call ``function()`` from the Python file ``path`` (its folder is importable while it loads)."""
    import importlib.util

    folder = os.path.dirname(os.path.abspath(path))
    sys.path.insert(0, folder)
    try:
        module_name = f'_zoo_benchmark_{os.path.splitext(os.path.basename(path))[0]}'
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(folder)
    if not callable(getattr(module, function, None)):
        raise ValueError(f'{path} has no function {function!r}')
    return getattr(module, function)()


def build_model(spec: str) -> nn.Module:
    """Build a model from a spec (see the module docstring)."""
    import timm

    validate_spec(spec)
    source, name, deploy = _parse_spec(spec)
    if source == 'torchvision':
        import torchvision
        model = torchvision.models.get_model(name)
    elif source == 'python':
        model = _build_from_file(*name.rsplit(':', 1))
    else:
        import zoo
        model = (zoo.create_model if zoo.registry.hub_source(name) is not None else timm.create_model)(name)
    if deploy:
        from timm.models import reparameterize_model
        model = reparameterize_model(model.eval(), inplace=True)
    return model


#: Clip length for zoo video models when --num-frames is not given: the 16 frames they are built for and
#: trained on (timm's pretrained_cfg describes one frame, so it does not say).
VIDEO_NUM_FRAMES = 16


def resolve_input_shape(
        spec: str, img_size: Optional[Sequence[int]] = None, num_frames: Optional[int] = None,
) -> tuple[int, ...]:
    """Per-sample input shape: the model's ``pretrained_cfg['input_size']`` (C, H, W), with H, W replaced
    by ``img_size`` when given. Zoo video models take clips (C, T, H, W): T is ``num_frames``, else
    :data:`VIDEO_NUM_FRAMES`. torchvision models default to (3, 224, 224)
    (a clip of 16 frames with ``num_frames``)."""
    source, name, _ = _parse_spec(spec)
    shape: tuple[int, ...] = (3, 224, 224)
    frames = num_frames
    if source == 'timm':
        import timm
        import zoo
        if zoo.registry.hub_source(name) is not None:  # a Hub folder: the input size its config.json records
            input_size = zoo.registry.hub_config(name).pretrained_cfg.get('input_size')
            name = zoo.registry.model_architecture(name)
        else:
            cfg = timm.models.get_pretrained_cfg(name)
            input_size = cfg.input_size if cfg is not None else None
        if input_size:
            shape = tuple(input_size)
        if zoo.is_zoo_model(name):
            info = zoo.model_info(name)
            if info.task == 'video' and frames is None:
                frames = VIDEO_NUM_FRAMES
    if img_size:
        h, w = (img_size[0], img_size[0]) if len(img_size) == 1 else tuple(img_size)
        shape = shape[:-2] + (h, w)
    if frames:
        shape = shape[:1] + (frames,) + shape[-2:]
    return shape


def _time(fn, warmup: int, iters: int, sync) -> list[float]:
    """``fn``'s times over ``iters`` calls after ``warmup`` calls (a single model's turns)."""
    return _time_interleaved([fn], warmup, iters, sync)[0]


def _prepare(spec: str, input_shape: Sequence[int], batch_size: int, dev: torch.device,
             channels_last: bool) -> tuple[nn.Module, torch.Tensor, dict[str, Any]]:
    """Build one model and its input batch on ``dev``; its identity, parameter and MAC counts."""
    model = build_model(spec)
    info = dict(model=spec, input_shape=[batch_size, *input_shape], device=str(dev), params=count_params(model),
                macs=count_macs(model, torch.randn(1, *input_shape)))
    model = model.to(dev)
    x = torch.randn(batch_size, *input_shape, device=dev)
    if channels_last and x.ndim == 4:
        model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    return model.eval(), x, info


def _train_step(model: nn.Module, x: torch.Tensor):
    """A closure running one training step (forward, backward, SGD) of ``model`` on ``x``."""
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)

    def step():
        opt.zero_grad(set_to_none=True)
        out = model(x)
        out = out[0] if isinstance(out, (tuple, list)) else out
        out.float().square().mean().backward()
        opt.step()
    return step


def _rates(key: str, times: Sequence[float], batch_size: int) -> dict[str, float]:
    """``<key>_ms`` (median seconds, in ms) and ``<key>_per_s`` (samples per second at that median)."""
    median = statistics.median(times)
    return {f'{key}_ms': 1e3 * median, f'{key}_per_s': batch_size / median}


def _sync_for(dev: torch.device):
    return (lambda: torch.cuda.synchronize(dev)) if dev.type == 'cuda' else (lambda: None)


def benchmark_model(
        spec: str,
        input_shape: Sequence[int],
        batch_size: int = 8,
        train: bool = False,
        warmup: int = 3,
        iters: int = 10,
        device: str = 'cpu',
        channels_last: bool = False,
        threads: int = 0,
        compile: bool = False,
) -> dict[str, Any]:
    """Measure one model in this process; returns a JSON-ready dict of the results.

    With ``compile``, the model is also measured after ``torch.compile`` (default inductor): ``infer_ms`` is
    then the compiled time, ``eager_infer_ms`` the eager one, and ``compile_s`` the first compiled call (the
    compilation), kept apart from the throughput.
    """
    if threads:
        torch.set_num_threads(threads)
    dev = torch.device(device)
    sync = _sync_for(dev)
    model, x, result = _prepare(spec, input_shape, batch_size, dev, channels_last)
    if dev.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(dev)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    with torch.inference_mode():
        infer_times = _time(lambda: model(x), warmup, iters, sync)
    if compile:
        eager_ms = 1e3 * statistics.median(infer_times)
        model = torch.compile(model)
        with torch.inference_mode():
            start = time.perf_counter()
            model(x)
            sync()
            compile_s = time.perf_counter() - start
            infer_times = _time(lambda: model(x), warmup, iters, sync)
        result.update(compile_s=compile_s, eager_infer_ms=eager_ms,
                      compiled_speedup=eager_ms / (1e3 * statistics.median(infer_times)))
    result.update(_rates('infer', infer_times, batch_size), threads=torch.get_num_threads())
    if train:
        model.train()
        train_times = _time(_train_step(model, x), max(1, warmup // 2), max(3, iters // 2), sync)
        result.update(_rates('train', train_times, batch_size))
    if dev.type == 'cuda':
        result['peak_mem_mb'] = torch.cuda.max_memory_allocated(dev) / 2 ** 20
    else:
        # ru_maxrss is KiB on Linux; a fresh process per model makes the increase this model's own.
        result['peak_mem_mb'] = max(0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    return result


def _time_interleaved(fns: Sequence, warmup: int, iters: int, sync) -> list[list[float]]:
    """Time several callables taking turns, one call each per iteration, the order reversed every other
    iteration; each one's list of times. Neighbouring calls share the machine's state, so their ratio is
    far steadier than that of timings taken minutes apart on a shared CPU."""
    times: list[list[float]] = [[] for _ in fns]
    for it in range(warmup + iters):
        for i in (range(len(fns)) if it % 2 == 0 else reversed(range(len(fns)))):
            start = time.perf_counter()
            fns[i]()
            sync()
            if it >= warmup:
                times[i].append(time.perf_counter() - start)
    return times


def benchmark_interleaved(
        specs: Sequence[str],
        input_shape: Sequence[int],
        batch_size: int = 8,
        train: bool = False,
        warmup: int = 3,
        iters: int = 10,
        device: str = 'cpu',
        channels_last: bool = False,
        threads: int = 0,
) -> list[dict[str, Any]]:
    """Measure several models in this process, taking turns at every iteration (see ``_time_interleaved``);
    one JSON-ready dict per model, as :func:`benchmark_model` returns, without the peak memory (the models
    share the process)."""
    if threads:
        torch.set_num_threads(threads)
    dev = torch.device(device)
    sync = _sync_for(dev)
    prepared = [_prepare(spec, input_shape, batch_size, dev, channels_last) for spec in specs]
    results = [info for _, _, info in prepared]
    with torch.inference_mode():
        infer = _time_interleaved([(lambda m=m, x=x: m(x)) for m, x, _ in prepared], warmup, iters, sync)
    for result, times in zip(results, infer):
        result.update(_rates('infer', times, batch_size), threads=torch.get_num_threads())
    if train:
        steps = []
        for model, x, _ in prepared:
            model.train()
            steps.append(_train_step(model, x))
        trained = _time_interleaved(steps, max(1, warmup // 2), max(3, iters // 2), sync)
        for result, times in zip(results, trained):
            result.update(_rates('train', times, batch_size))
    return results


def _worker(queue, function, kwargs):
    try:
        queue.put(('ok', globals()[function](**kwargs)))
    except Exception as e:  # report to the parent instead of dying silently
        queue.put(('error', f'{type(e).__name__}: {e}'))


def _run_isolated(kwargs: dict[str, Any], function: str = 'benchmark_model') -> Any:
    """``function(**kwargs)`` (a benchmark function of this module) in a fresh process."""
    ctx = mp.get_context('spawn')
    queue = ctx.Queue()
    proc = ctx.Process(target=_worker, args=(queue, function, kwargs))
    proc.start()
    status, payload = queue.get()
    proc.join()
    if status != 'ok':
        what = kwargs.get('spec') or ', '.join(kwargs['specs'])
        raise RuntimeError(f'benchmark of {what} failed: {payload}')
    return payload


def combine_rounds(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One model's results over several rounds (fresh processes): the median of the rounds' timings, the
    largest peak memory; with more than one round the per-round timings are kept (``*_rounds``)."""
    out = dict(runs[0])
    if len(runs) == 1:
        return out
    batch = out['input_shape'][0]
    for key in ('infer', 'train'):
        if f'{key}_ms' in out:
            values = [r[f'{key}_ms'] for r in runs]
            out[f'{key}_ms'] = statistics.median(values)
            out[f'{key}_per_s'] = batch / (out[f'{key}_ms'] / 1e3)
            out[f'{key}_ms_rounds'] = values
    if all('peak_mem_mb' in r for r in runs):
        out['peak_mem_mb'] = max(r['peak_mem_mb'] for r in runs)
    return out


def format_table(results: Sequence[dict[str, Any]]) -> str:
    """A plain-text table; ratios are relative to the first model."""
    cols = [('model', 'model', '{}'), ('params (M)', 'params', '{:.2f}'), ('MACs (G)', 'macs', '{:.3f}'),
            ('infer ms', 'infer_ms', '{:.1f}'), ('infer/s', 'infer_per_s', '{:.1f}'),
            ('speed vs 1st', 'infer_ratio', '{:.2f}x')]
    if any('compile_s' in r for r in results):
        cols += [('eager ms', 'eager_infer_ms', '{:.1f}'), ('compiled/eager', 'compiled_speedup', '{:.2f}x'),
                 ('compile s', 'compile_s', '{:.1f}')]
    if any('train_ms' in r for r in results):
        cols += [('train ms', 'train_ms', '{:.1f}'), ('train/s', 'train_per_s', '{:.1f}')]
    cols += [('peak MB', 'peak_mem_mb', '{:.0f}')]
    base = results[0]['infer_per_s']
    rows = []
    for r in results:
        r = dict(r, params=r['params'] / 1e6, macs=r['macs'] / 1e9, infer_ratio=r['infer_per_s'] / base)
        rows.append([fmt.format(r[key]) if key in r else '-' for _, key, fmt in cols])
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, (h, _, _) in enumerate(cols)]
    line = lambda cells: '  '.join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    return '\n'.join([line([h for h, _, _ in cols]), line(['-' * w for w in widths])] + [line(r) for r in rows])


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog='python -m zoo.benchmark', description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--model', required=True, help='model spec: NAME, torchvision:NAME, NAME:deploy')
    p.add_argument('--compare', nargs='*', default=[], help='more model specs, measured on the same input')
    p.add_argument('--batch-size', type=int, default=8)
    p.add_argument('--img-size', type=int, nargs='+', help='H [W] (default: the first model\'s input size)')
    p.add_argument('--num-frames', type=int, help=f'clip length for video models (default: {VIDEO_NUM_FRAMES})')
    p.add_argument('--train', action='store_true', help='also time a training step (forward, backward, SGD)')
    p.add_argument('--warmup', type=int, default=3)
    p.add_argument('--iters', type=int, default=10)
    p.add_argument('--rounds', type=int, default=1,
                   help='measure every model this many times, each time in a fresh process and in alternating '
                        'order, and report the median: separate processes of the same model differ by up to '
                        '~15%% on CPU, more than many differences worth measuring')
    p.add_argument('--interleave', action='store_true',
                   help='time the models in one process, taking turns at every iteration (each round still a '
                        'fresh process): on a shared, noisy CPU their ratios are far steadier; no peak memory')
    p.add_argument('--device', default='cpu')
    p.add_argument('--threads', type=int, default=0, help='torch threads (0: torch default)')
    p.add_argument('--channels-last', action='store_true')
    p.add_argument('--compile', action='store_true',
                   help='also measure after torch.compile: compiled and eager times, and the compile time apart')
    p.add_argument('--no-isolate', action='store_true', help='measure in this process (CPU peak memory is then not per model)')
    p.add_argument('--json', metavar='PATH', help="write the results as JSON ('-' for stdout)")
    args = p.parse_args(argv)
    if args.batch_size < 1 or args.iters < 1 or args.rounds < 1 or args.warmup < 0:
        p.error('--batch-size, --iters and --rounds must be >= 1, --warmup >= 0')
    if args.interleave and args.compile:
        p.error('--interleave does not time compiled models; leave out --compile or --interleave')
    if args.img_size and len(args.img_size) > 2:
        p.error('--img-size takes H or H W')
    return args


def main(argv: Optional[Sequence[str]] = None) -> list[dict[str, Any]]:
    args = parse_args(argv)
    specs = [args.model, *args.compare]
    for spec in specs:  # fail fast, before any measurement, on a bad name
        validate_spec(spec)
    shape = resolve_input_shape(args.model, args.img_size, args.num_frames)
    common = dict(input_shape=shape, batch_size=args.batch_size, train=args.train, warmup=args.warmup,
                  iters=args.iters, device=args.device, channels_last=args.channels_last, threads=args.threads)
    per_round: list[list[dict[str, Any]]] = [[] for _ in specs]
    for r in range(args.rounds):
        # alternate the order, so that no model always runs first (or last) on a warming / loaded machine
        order = list(range(len(specs)) if r % 2 == 0 else reversed(range(len(specs))))
        if args.interleave:
            kwargs = dict(common, specs=[specs[i] for i in order])
            measured = (benchmark_interleaved(**kwargs) if args.no_isolate
                        else _run_isolated(kwargs, 'benchmark_interleaved'))
            for i, result in zip(order, measured):
                per_round[i].append(result)
            continue
        for i in order:
            kwargs = dict(common, spec=specs[i], compile=args.compile)
            per_round[i].append(benchmark_model(**kwargs) if args.no_isolate else _run_isolated(kwargs))
    results = [combine_rounds(runs) for runs in per_round]
    rounds = f', median over {args.rounds} rounds in alternating order' if args.rounds > 1 else ''
    turns = ', the models taking turns at every run' if args.interleave else ''
    print(f'input {[args.batch_size, *shape]} on {args.device}, median of {args.iters} runs after {args.warmup} '
          f'warm-up{turns}{rounds}')
    print(format_table(results))
    if args.json:
        text = json.dumps(results, indent=2)
        if args.json == '-':
            print(text)
        else:
            with open(args.json, 'w') as f:
                f.write(text + '\n')
    return results


if __name__ == '__main__':
    try:
        main()
    except (ValueError, RuntimeError) as e:  # bad input: one line, exit status 2 (as every zoo command)
        print(f'error: {e}', file=sys.stderr)
        sys.exit(2)
