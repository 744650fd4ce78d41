"""The README's speed table: every family against its official code, in one run of ``python -m zoo.benchmark``
per comparison (``--rounds 3``, alternating order, each round a fresh process in which the models take turns at
every iteration: ``--interleave``; ``--no-interleave`` gives each model a process of its own).

    ZOO_OFFICIAL_SRC=/path/to/official-checkouts python benchmarks/speed_table.py --threads 2 --out speed/
    python benchmarks/speed_table.py --only slab wavemlp --parallel 3 --out speed/

Each comparison writes ``<out>/<name>.json`` (zoo.benchmark's JSON) and ``<out>/<name>.log``; the Markdown table,
with every ratio as the median over rounds and its range (per round: both models timed in that round), goes
to ``<out>/table.md`` and stdout. Ratios are throughputs: above 1 means the first model is faster. The official
models come from ``benchmarks/official/<family>.py`` (see the README there). ``--parallel N`` runs N comparisons
at a time, each with ``--threads`` threads: keep N x threads at most the machine's cores. ``--control`` times
each comparison's first model twice and adds their ratio as a row (``zoo again / zoo``): the run's resolution.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional, Sequence

HERE = Path(__file__).resolve().parent


def official(family: str, function: str) -> str:
    return f'python:{HERE / "official" / f"{family}.py"}:{function}'


@dataclass(frozen=True)
class Comparison:
    """One zoo.benchmark run: the specs measured side by side, and the ratios (numerator, denominator) to report."""
    name: str
    family: str
    specs: dict[str, str]  # label -> model spec
    ratios: tuple[tuple[str, str], ...] = (('zoo', 'official'),)
    img_size: tuple[int, ...] = ()
    batch: int = 8
    options: tuple[str, ...] = field(default_factory=tuple)


def _pair(family: str, model: str, file: Optional[str] = None, **kwargs) -> Comparison:
    return Comparison(model, family, {'zoo': model, 'official': official(file or family, model)}, **kwargs)


def _slab(model: str, timm_twin: Optional[str]) -> Comparison:
    specs = {'deploy': f'{model}:deploy', 'train form': model, 'official': official('slab', model)}
    ratios = [('deploy', 'official'), ('deploy', 'train form'), ('train form', 'official')]
    if timm_twin:
        specs['timm'] = timm_twin
        ratios.append(('deploy', 'timm'))
    return Comparison(model, 'SLAB', specs, tuple(ratios))


COMPARISONS: tuple[Comparison, ...] = (
    _pair('GhostNet', 'ghostnet_100', 'ghostnet'),
    _pair('GhostNet', 'ghostnetv2_100', 'ghostnet'),
    Comparison('ghostnetv3_100', 'GhostNet', {'zoo': 'ghostnetv3_100', 'zoo deploy': 'ghostnetv3_100:deploy',
                                              'official': official('ghostnet', 'ghostnetv3_100')},
               (('zoo', 'official'), ('zoo deploy', 'official'))),
    _pair('ViG', 'vig_s_224_gelu', 'vig'),
    _pair('Pyramid ViG', 'pvig_ti_224_gelu', 'vig'),
    _pair('Pyramid ViG', 'pvig_s_224_gelu', 'vig'),
    *(_pair('Wave-MLP', m, 'wavemlp') for m in ('wavemlp_t_dw', 'wavemlp_t', 'wavemlp_s', 'wavemlp_m', 'wavemlp_b')),
    *(_pair('Hire-MLP', m, 'hiremlp') for m in ('hire_mlp_tiny', 'hire_mlp_small', 'hire_mlp_base', 'hire_mlp_large')),
    _pair('PyramidTNT', 'ptnt_s_patch16_256', 'pyramid_tnt'),
    _pair('TNT', 'tnt_s_patch16_224', 'pyramid_tnt'),
    _slab('slab_deit_t', 'deit_tiny_patch16_224'),
    _slab('slab_pvt_t', None),
    _slab('slab_pvt_v2_b0', 'pvt_v2_b0'),
    _slab('slab_swin_t', 'swin_tiny_patch4_window7_224'),
    _slab('slab_cswin_t', None),
    _pair('CGRSeg', 'cgrseg_t', 'cgrseg', img_size=(512, 512), batch=2),
    _pair('SqueezeTime', 'squeezetime_k400', 'squeezetime', batch=2),  # train-mode BatchNorm needs 2 clips
    _pair('TinySAM', 'tinysam_vit_t', 'tinysam', img_size=(1024, 1024), batch=1),
)


def with_control(c: Comparison) -> Comparison:
    """``c`` with its first model measured a second time, and the A/A ratio of the two copies as one more row: the
    resolution of the run. Two copies of one model differ only by chance (where their memory lies, which one the
    machine's noise hits), so a ratio inside the A/A range is parity as far as this run can tell."""
    label, spec = next(iter(c.specs.items()))
    again = f'{label} again'
    return replace(c, specs={**c.specs, again: spec}, ratios=(*c.ratios, (again, label)))


def run_comparison(c: Comparison, out: Path, threads: int, rounds: int, train: bool, interleave: bool = True) -> Path:
    """One zoo.benchmark run; its JSON path."""
    path = out / f'{c.name}.json'
    specs = list(c.specs.values())
    cmd = [sys.executable, '-m', 'zoo.benchmark', '--model', specs[0], '--compare', *specs[1:], '--rounds',
           str(rounds), '--threads', str(threads), '--batch-size', str(c.batch), '--json', str(path), *c.options]
    if c.img_size:
        cmd += ['--img-size', *map(str, c.img_size)]
    if train:
        cmd.append('--train')
    if interleave:
        cmd.append('--interleave')
    with open(out / f'{c.name}.log', 'w') as log:
        done = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT)
    if done.returncode:
        raise RuntimeError(f'{c.name}: zoo.benchmark failed (exit {done.returncode}); see {out / f"{c.name}.log"}')
    return path


def round_ratios(numerator: dict, denominator: dict, key: str) -> list[float]:
    """Throughput ratio per round (times are per round in ``<key>_ms_rounds``; one round: the medians)."""
    num = numerator.get(f'{key}_ms_rounds', [numerator[f'{key}_ms']])
    den = denominator.get(f'{key}_ms_rounds', [denominator[f'{key}_ms']])
    return [d / n for n, d in zip(num, den)]


def describe(values: Sequence[float]) -> str:
    if len(values) == 1:
        return f'{values[0]:.2f}x'
    return f'{statistics.median(values):.2f}x ({min(values):.2f}-{max(values):.2f})'


def table(done: Sequence[tuple[Comparison, Path]], train: bool) -> str:
    head = ['family', 'model', 'ratio', 'input', 'inference', 'training step'] if train else \
        ['family', 'model', 'ratio', 'input', 'inference']
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    for c, path in done:
        results = dict(zip(c.specs, json.loads(path.read_text())))
        shape = 'x'.join(map(str, results[next(iter(c.specs))]['input_shape']))
        for num, den in c.ratios:
            cells = [c.family, c.name, f'{num} / {den}', shape,
                     describe(round_ratios(results[num], results[den], 'infer'))]
            if train:
                has = 'train_ms' in results[num] and 'train_ms' in results[den]
                cells.append(describe(round_ratios(results[num], results[den], 'train')) if has else '-')
            lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--out', default='speed', help='folder for the JSON, logs and table.md')
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--rounds', type=int, default=3)
    p.add_argument('--no-train', action='store_true', help='skip the training-step timing')
    p.add_argument('--parallel', type=int, default=1, help='comparisons at a time')
    p.add_argument('--no-interleave', action='store_true',
                   help='each model in a process of its own (per-model peak memory) instead of taking turns')
    p.add_argument('--control', action='store_true',
                   help="also time each comparison's first model a second time: an A/A row, the run's resolution")
    p.add_argument('--only', nargs='+', metavar='NAME_OR_FAMILY', help='comparisons to run (model or family)')
    args = p.parse_args(argv)
    chosen = [c for c in COMPARISONS if not args.only or c.name in args.only or c.family in args.only
              or c.family.lower().replace(' ', '') in args.only]
    if not chosen:
        print(f'error: nothing matches {args.only}; names: {", ".join(c.name for c in COMPARISONS)}', file=sys.stderr)
        return 2
    if args.control:
        chosen = [with_control(c) for c in chosen]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    train = not args.no_train

    def one(c: Comparison):
        try:
            return c, run_comparison(c, out, args.threads, args.rounds, train, not args.no_interleave)
        except RuntimeError as e:
            print(f'error: {e}', file=sys.stderr)
            return c, None

    with ThreadPoolExecutor(args.parallel) as pool:
        results = list(pool.map(one, chosen))
    done = [(c, path) for c, path in results if path is not None]
    text = table(done, train)
    (out / 'table.md').write_text(text + '\n')
    print(text)
    return 0 if len(done) == len(chosen) else 1


if __name__ == '__main__':
    sys.exit(main())
