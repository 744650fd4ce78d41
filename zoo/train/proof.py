"""``python -m zoo.train.proof``: every training paradigm against its baseline on the embedded digits, one table.

Each row trains with the shared engine (:func:`zoo.train.train`, nothing else) on scikit-learn's digits at
32 px, with fixed seeds and one intra-op thread, and compares the paradigm's held-out top-1 with a baseline
trained on the same budget:

- ``supervised``: ghostnet_050 from scratch, against chance (10%); also the student alone of the next rows.
- ``teacher``: pvt_v2_b0 from scratch (a transformer: heterogeneous to the CNN students), against chance.
- ``kd`` / ``ofa``: ghostnet_050 distilled from that teacher (KL on logits; OFA-KD's stage branches), against
  the student alone.
- ``ghostnetv3``: GhostNetV3's recipe (soft-target CE from the teacher, EMA, re-parameterised deploy form) on
  ghostnetv3_050, scored in its fused deploy form, against ghostnetv3_050 trained plainly.
- ``fastmim``: FastMIM pre-training (no labels) then fine-tuning from the encoder with FastMIM's layer-wise lr
  decay for the family (:mod:`zoo.train.fastmim_finetune`), against the same model from scratch with the
  fine-tuning budget; ``--fastmim-models`` runs it for several families, each the same way.
- ``gpt4image``: ghostnet_050 with the alignment term, against the student alone. No text encoder's weights
  are available offline, so the embeddings are a stated stand-in: per digit class, a hand-written vector of
  visual traits (closed loops, straight / curved / diagonal strokes, where the mass lies), the kind of content
  an LLM's description carries; images of a class share it. Such an embedding is a function of the label, so
  the alignment term can add no information the labels lack: at best it regularises, at worst it competes
  with classification for the shared features. The row uses :data:`GPT4IMAGE_ALIGN_WEIGHT` (see there) and
  shows that the term trains beside classification without harming it; it does not measure the gain real
  per-image descriptions give.

``--quick`` is the short version CI runs (tests/train/test_proof.py). ``--jobs N`` runs N runs at a time, each in
its own process (a run starts once the runs it reads have finished); every run has one intra-op thread, so the
results do not depend on N. Wall times depend on the machine's load; CPU seconds (each run's own process, one
thread) are the budget.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import torch

from .config import ConfigError, make_config
from .data import DataError, build_datasets
from .fastmim_finetune import encoder_options, layer_decay_for
from .networks import check_model_name
from .proof_runs import Job, Runs
from .text_align import sample_keys, write_text_embeddings

__all__ = ['ROWS', 'Budget', 'FULL', 'QUICK', 'TRANSFORMER_TRAINING', 'training_options', 'finetune_options',
           'plan', 'GPT4IMAGE_ALIGN_WEIGHT', 'Row', 'DIGIT_TRAITS',
           'trait_embeddings', 'run_proof', 'format_table', 'main']

ROWS = ('supervised', 'teacher', 'kd', 'ofa', 'ghostnetv3', 'fastmim', 'gpt4image')
STUDENT, TEACHER, V3_STUDENT, MIM_MODEL = 'ghostnet_050', 'pvt_v2_b0', 'ghostnetv3_050', 'pvt_v2_b0'
CHANCE = 10.
#: names of transformers whose patch embedding is one strided projection (no convolutional stem). They diverge
#: at the engine's default lr (3e-3, no warm-up) on the digits: slab_swin_t's loss reached 250 in the first epoch
#: and it stayed at chance; vit_tiny reached 33%. With 1e-3 and one warm-up epoch, as their own recipes warm up,
#: slab_swin_t reached 88.06% and vit_tiny 88.89% from scratch (3 epochs, 32 px). The fastmim row trains them so,
#: fine-tuning and scratch alike
TRANSFORMER_PREFIXES = ('vit_', 'deit_', 'slab_deit', 'swin', 'slab_swin', 'slab_cswin')
TRANSFORMER_TRAINING: dict[str, Any] = dict(lr=1e-3, warmup_epochs=1)
#: weight of the GPT4Image alignment term in the proof. The InfoNCE gradient scales with 1 / temperature (14 at
#: 0.07), so at the recipe's weight 1 the term outweighs cross-entropy on the shared features; with class-level
#: stand-in embeddings it has nothing to give back. Measured (3 epochs, seed 42; student alone 92.78): weight 1
#: 87.22, 0.3 89.72, 0.1 92.78 (cosine loss at weight 1: 92.22)
GPT4IMAGE_ALIGN_WEIGHT = 0.1

#: what each digit looks like, as numbers: closed loops, a vertical stroke, a horizontal stroke, a diagonal
#: stroke, curved strokes, mass in the top half, mass in the bottom half, open to the left, open to the right
TRAIT_NAMES = ('loops', 'vertical', 'horizontal', 'diagonal', 'curved', 'top', 'bottom', 'open_left',
               'open_right')
DIGIT_TRAITS: dict[int, tuple[float, ...]] = {
    0: (1, 0, 0, 0, 1, 1, 1, 0, 0),
    1: (0, 1, 0, 0, 0, 1, 1, 0, 0),
    2: (0, 0, 1, 1, 1, 1, 1, 1, 0),
    3: (0, 0, 0, 0, 1, 1, 1, 1, 0),
    4: (0, 1, 1, 1, 0, 1, 0, 0, 0),
    5: (0, 1, 1, 0, 1, 1, 1, 0, 1),
    6: (1, 0, 0, 1, 1, 0, 1, 0, 1),
    7: (0, 0, 1, 1, 0, 1, 0, 1, 0),
    8: (2, 0, 0, 0, 1, 1, 1, 0, 0),
    9: (1, 1, 0, 0, 1, 1, 0, 1, 0),
}


@dataclass(frozen=True)
class Budget:
    """Epochs (and optimizer steps per epoch; 0: the whole split, 45 batches of 32) of each kind of run."""
    epochs: int  # students, fine-tuning and every baseline
    teacher_epochs: int
    mim_epochs: int  # FastMIM pre-training
    max_steps: int = 0

    def describe(self, epochs: int, img_size: int = 32) -> str:
        return f'{epochs} ep' + (f' x {self.max_steps} steps' if self.max_steps else '') + f', {img_size} px'


FULL = Budget(epochs=3, teacher_epochs=8, mim_epochs=3)
QUICK = Budget(epochs=3, teacher_epochs=3, mim_epochs=1, max_steps=15)
V3_SIZE = 64  # GhostNetV3's last stages pool 2 x 2: 32-px inputs leave them a 1 x 1 map


@dataclass
class Row:
    """One line of the table: the paradigm's held-out top-1 against its baseline's, and what it cost."""
    row: str
    model: str
    method: str
    top1: float
    baseline: str
    baseline_top1: float
    budget: str
    wall_s: float = 0.
    cpu_s: float = 0.
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def delta(self) -> float:
        return self.top1 - self.baseline_top1


def trait_embeddings(cfg_values: dict[str, Any], path: Path) -> Path:
    """The GPT4Image stand-in: every digits training image keyed as the engine expects, embedded as its class's
    :data:`DIGIT_TRAITS` (centred, unit length)."""
    cfg = make_config(cfg_values)
    keys = sample_keys(cfg, build_datasets(cfg).train)
    table = torch.tensor([DIGIT_TRAITS[c] for c in range(10)], dtype=torch.float32)
    table = torch.nn.functional.normalize(table - table.mean(0), dim=1)
    vectors = table[[int(k.split('/')[1]) for k in keys]]
    return write_text_embeddings(path, keys, vectors, {'encoder': 'digit traits (zoo.train.proof stand-in)',
                                                       'traits': ','.join(TRAIT_NAMES)})


def training_options(model: str) -> dict[str, Any]:
    """The fastmim row's options for ``model`` beyond the common ones, for fine-tuning and scratch alike."""
    return {**(TRANSFORMER_TRAINING if model.startswith(TRANSFORMER_PREFIXES) else {}), **encoder_options(model)}


def finetune_options(model: str) -> dict[str, Any]:
    """What fine-tuning ``model`` from its FastMIM encoder adds to its scratch run: FastMIM's layer decay."""
    decay = layer_decay_for(model)
    return {} if decay is None else {'layer_decay': decay}


def run_proof(out: str | Path, budget: Budget = FULL, rows: Sequence[str] = ROWS,
              fastmim_models: Sequence[str] = (MIM_MODEL,), verbose: bool = True, workers: int = 1) -> list[Row]:
    """Train every requested row and its baseline under ``out`` (``workers`` runs at a time); the table's rows."""
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        raise ConfigError(f'unknown row(s) {unknown}; choose from {", ".join(ROWS)}')
    for name in fastmim_models:
        check_model_name(name)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    common = dict(dataset='digits', img_size=32, batch_size=32, progress=False, threads=1, seed=42,
                  max_steps_per_epoch=budget.max_steps, overwrite=True, workers=0, device='cpu')
    if 'gpt4image' in rows:
        trait_embeddings(common, out / 'digit_traits.safetensors')
    runs = Runs(out, common, budget.epochs, verbose)
    runs.run(plan(rows, budget, fastmim_models, out), workers)
    b = budget
    table: list[Row] = []

    def add(row: Row, *owned: str) -> None:
        row.wall_s, row.cpu_s = runs.cost(*owned)
        table.append(row)

    if 'supervised' in rows:
        add(Row('supervised', STUDENT, 'cross-entropy from scratch', runs.top1('student'), 'chance', CHANCE,
                b.describe(b.epochs)), 'student')
    if 'teacher' in rows:
        add(Row('teacher', TEACHER, 'cross-entropy from scratch', runs.top1('teacher'), 'chance', CHANCE,
                b.describe(b.teacher_epochs)), 'teacher')
    for row, method in (('kd', 'KD (KL on logits)'), ('ofa', 'OFA-KD (stage branches)')):
        if row in rows:
            add(Row(row, STUDENT, f'{method} from {TEACHER}', runs.top1(row), 'student alone', runs.top1('student'),
                    b.describe(b.epochs)), row)
    if 'ghostnetv3' in rows:
        recipe, history = runs.summary('ghostnetv3_recipe'), runs.history('ghostnetv3_recipe')
        add(Row('ghostnetv3', V3_STUDENT, f'soft-target CE from {TEACHER} + EMA, deploy form',
                recipe['deploy_top1_after'], 'plain training', runs.top1('ghostnetv3_plain'),
                b.describe(b.epochs, V3_SIZE),
                extra={'before_fusing_top1': recipe['deploy_top1_before'], 'ema_top1': history[-1].get('val_ema_top1'),
                       'deploy_params': recipe['deploy_params'],
                       'train_loss': [history[0]['train_loss'], history[-1]['train_loss']]}),
            'ghostnetv3_plain', 'ghostnetv3_recipe')
    if 'fastmim' in rows:
        for model in fastmim_models:
            recipe = {**training_options(model), **finetune_options(model)}
            options = ''.join(f', {k.replace("_", " ")} {v:g}' if isinstance(v, float) else f', {k.replace("_", " ")} {v}'
                              for k, v in recipe.items())
            add(Row('fastmim', model, f'FastMIM pre-training ({b.describe(b.mim_epochs)}) + fine-tuning{options}',
                    runs.top1(f'fastmim_finetune_{model}'), 'scratch', runs.top1(f'scratch_{model}'),
                    b.describe(b.epochs)),
                f'fastmim_pretrain_{model}', f'fastmim_finetune_{model}', f'scratch_{model}')
    if 'gpt4image' in rows:
        add(Row('gpt4image', STUDENT, f'CE + {GPT4IMAGE_ALIGN_WEIGHT:g} x alignment with digit-trait embeddings '
                '(stand-in)', runs.top1('gpt4image'), 'student alone', runs.top1('student'), b.describe(b.epochs)),
            'gpt4image')
    return table


def plan(rows: Sequence[str], budget: Budget, fastmim_models: Sequence[str], out: Path) -> dict[str, Job]:
    """Every run the rows need, each listed after the runs it reads."""
    distilled = dict(teacher=TEACHER, teacher_checkpoint=str(out / 'teacher' / 'last.pth'))
    jobs: dict[str, Job] = {}
    if any(r in rows for r in ('supervised', 'kd', 'ofa', 'gpt4image')):
        jobs['student'] = Job(dict(model=STUDENT))
    if any(r in rows for r in ('teacher', 'kd', 'ofa', 'ghostnetv3')):
        jobs['teacher'] = Job(dict(model=TEACHER, epochs=budget.teacher_epochs))
    for row in ('kd', 'ofa'):
        if row in rows:
            jobs[row] = Job(dict(model=STUDENT, distill=row, **distilled), needs=('teacher',))
    if 'ghostnetv3' in rows:
        jobs['ghostnetv3_plain'] = Job(dict(model=V3_STUDENT, img_size=V3_SIZE))
        jobs['ghostnetv3_recipe'] = Job(dict(model=V3_STUDENT, img_size=V3_SIZE, distill='soft_ce', **distilled,
                                             teacher_img_size=32, model_ema=True, model_ema_decay=0.99,
                                             model_ema_warmup=True, reparameterize=True), needs=('teacher',))
    if 'fastmim' in rows:
        for model in fastmim_models:
            pretrain = f'fastmim_pretrain_{model}'
            jobs[pretrain] = Job(dict(model=model, paradigm='fastmim', epochs=budget.mim_epochs,
                                      **encoder_options(model)))
            jobs[f'fastmim_finetune_{model}'] = Job(
                dict(model=model, **training_options(model), **finetune_options(model),
                     initial_checkpoint=str(out / pretrain / 'last.pth')), needs=(pretrain,))
            jobs[f'scratch_{model}'] = Job(dict(model=model, **training_options(model)))
    if 'gpt4image' in rows:
        jobs['gpt4image'] = Job(dict(model=STUDENT, paradigm='gpt4image',
                                     text_embeddings=str(out / 'digit_traits.safetensors'),
                                     align_loss_weight=GPT4IMAGE_ALIGN_WEIGHT))
    return jobs


def format_table(rows: Sequence[Row]) -> str:
    """The rows as a Markdown table."""
    head = ('row', 'model', 'what', 'top-1 %', 'baseline', 'baseline %', 'delta', 'budget', 'wall s', 'CPU s')
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '|'.join('---' for _ in head) + '|']
    for r in rows:
        cells = (r.row, r.model, r.method, f'{r.top1:.2f}', r.baseline, f'{r.baseline_top1:.2f}', f'{r.delta:+.2f}',
                 r.budget, f'{r.wall_s:.0f}', f'{r.cpu_s:.0f}')
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit status 2 (argparse would print the usage too)
        raise ConfigError(f'{message} (python -m zoo.train.proof --help)')


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog='python -m zoo.train.proof', description=__doc__.split('\n\n')[0],
                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('--quick', action='store_true', help='the short CI budget instead of the full one')
    p.add_argument('--rows', nargs='+', default=list(ROWS), metavar='ROW', help=f'rows to run: {", ".join(ROWS)}')
    p.add_argument('--fastmim-models', nargs='+', default=[MIM_MODEL], metavar='NAME',
                   help='models of the fastmim row (one row each)')
    p.add_argument('--jobs', type=int, default=1, metavar='N',
                   help='runs at a time, each in its own process with one thread (at most the CPU count)')
    p.add_argument('--output', default='runs/proof', help='folder for the runs (overwritten)')
    p.add_argument('--json', default='', metavar='PATH', help='also write the rows as JSON')
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command-line entry: the table on stdout; bad input is one line on stderr and exit status 2."""
    try:
        args = build_parser().parse_args(argv)
        budget = QUICK if args.quick else FULL
        if not 1 <= args.jobs <= (os.cpu_count() or 1):
            raise ConfigError(f'--jobs {args.jobs}: give 1 to {os.cpu_count()} (this machine\'s CPU count)')
        print(f'training {len(args.rows)} row(s) under {args.output}/ ({"quick" if args.quick else "full"} '
              f'budget; per run: name, model, held-out result, time)', flush=True)
        start = time.perf_counter()
        rows = run_proof(args.output, budget, args.rows, args.fastmim_models, workers=args.jobs)
    except (ConfigError, DataError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    print(f'\n{format_table(rows)}\n\n{time.perf_counter() - start:.0f}s in all; the runs are in {args.output}/')
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) for r in rows], indent=2) + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
