"""python -m zoo.train.proof: every paradigm learns on the digits and FastMIM fine-tuning keeps up with scratch
(the short table, fixed seeds); the command's errors and the GPT4Image stand-in embeddings."""
from pathlib import Path

import pytest
import torch

from zoo.train import load_recipe
from zoo.train.fastmim_finetune import layer_decay_for
from zoo.train.proof import (CHANCE, DIGIT_TRAITS, FULL, GPT4IMAGE_ALIGN_WEIGHT, MIM_MODEL, QUICK, ROWS,
                             TRANSFORMER_TRAINING, Budget, finetune_options, main, plan, run_proof, trait_embeddings,
                             training_options)
from zoo.train.text_align import read_text_embeddings


@pytest.fixture(scope='module')
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp('proof')
    threads = torch.get_num_threads()
    try:
        rows = run_proof(out, QUICK, verbose=False)
    finally:
        torch.set_num_threads(threads)
    return out, rows


@pytest.fixture(scope='module')
def quick_table(quick_run):
    return {r.row: r for r in quick_run[1]}


@pytest.mark.slow
def test_every_paradigm_learns_and_fastmim_keeps_up_with_scratch(quick_table):
    assert list(quick_table) == list(ROWS)
    for row in quick_table.values():
        if row.row == 'ghostnetv3':
            continue  # below
        # 45 optimizer steps: well past chance (10%) for every model; the slow BN statistics of the CNNs keep
        # them near 50% at this point, the transformers near 80%
        assert row.top1 >= 3 * CHANCE, f'{row.row} ({row.model}) does not learn: {row.top1:.2f}% held-out top-1'
    mim = quick_table['fastmim']
    # pre-training must not cost accuracy: before the fix the fine-tuned encoder stayed at chance (10%)
    assert mim.top1 >= mim.baseline_top1 - 3., f'FastMIM fine-tuned {mim.top1:.2f}%, scratch {mim.baseline_top1:.2f}%'
    gpt = quick_table['gpt4image']
    assert gpt.top1 >= 3 * CHANCE, f'GPT4Image does not learn: {gpt.top1:.2f}% held-out top-1'  # its cost: below
    v3 = quick_table['ghostnetv3']
    assert abs(v3.top1 - v3.extra['before_fusing_top1']) <= 0.3  # the fused deploy form scores like the trained one
    # GhostNetV3's training-time branches start slowly: 45 steps leave it at 13-18% held-out, so here it must be
    # above chance with its distillation loss falling by a tenth (4.91 -> 4.28 measured)
    first, last = v3.extra['train_loss']
    assert v3.top1 > CHANCE and last < 0.9 * first, f'GhostNetV3 recipe: {v3.top1:.2f}%, train loss {first} -> {last}'


@pytest.mark.slow
def test_gpt4image_alignment_costs_no_accuracy(tmp_path):
    """The alignment term trains beside classification without costing it, at the budget the proof reports (FULL:
    3 epochs). At weight 1 it cost 5.6 points there. The QUICK budget (45 steps) cannot judge this: on 2026-12-02
    the same network at weight 0 landed -1.4 to +8 points from the student alone over seeds 42-44, and weight 0.1
    was 9-10 points below it while the FULL runs tie (92.50 vs 91.39)."""
    gpt, = run_proof(tmp_path, FULL, rows=('gpt4image',), verbose=False)
    assert gpt.top1 >= gpt.baseline_top1 - 3., f'GPT4Image {gpt.top1:.2f}%, student alone {gpt.baseline_top1:.2f}%'


@pytest.mark.slow
def test_rows_run_with_the_recipes_they_state(quick_run):
    """FastMIM fine-tuning differs from its scratch baseline only in the starting weights and FastMIM's layer decay
    (the same budget); GPT4Image uses its stated weight."""
    out, _ = quick_run
    finetune, scratch = (load_recipe(out / f'{kind}_{MIM_MODEL}' / 'config.yaml') for kind in ('fastmim_finetune',
                                                                                               'scratch'))
    differ = {k for k in finetune if finetune[k] != scratch[k]}
    assert differ == {'initial_checkpoint', 'output', 'layer_decay'}, differ
    assert finetune['layer_decay'] == 0.75 and scratch['layer_decay'] is None
    assert load_recipe(out / 'gpt4image' / 'config.yaml')['align_loss_weight'] == GPT4IMAGE_ALIGN_WEIGHT


def test_bad_flags_are_one_line_and_exit_2(capsys):
    for argv, message in ((['--rows', 'kd', 'dino'], "unknown row(s) ['dino']"),
                          (['--fastmim-models', 'pvt_v2_b00'], 'did you mean pvt_v2_b0'),
                          (['--budget', '3'], 'unrecognized arguments: --budget 3'),
                          (['--jobs', '0'], '--jobs 0: give 1 to')):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count('\n') == 1 and err.startswith('error: ') and message in err, err


def test_trait_embeddings_key_every_training_image_by_its_class(tmp_path):
    values = dict(dataset='digits', img_size=32, progress=False)
    table = read_text_embeddings(trait_embeddings(values, tmp_path / 'traits.safetensors'))
    assert len(table.keys) == 1437 and table.dim == len(DIGIT_TRAITS[0])
    torch.testing.assert_close(table.vectors.norm(dim=1), torch.ones(1437))
    per_class = {}
    for key, vector in zip(table.keys, table.vectors):
        per_class.setdefault(int(key.split('/')[1]), set()).add(tuple(vector.tolist()))
    assert sorted(per_class) == list(range(10)) and all(len(v) == 1 for v in per_class.values())
    assert len({next(iter(v)) for v in per_class.values()}) == 10  # ten different descriptions


def test_fastmim_recipe_per_family():
    """FastMIM's official layer decay where it has a recipe (ViT 0.70, Swin 0.80, its 0.75 default), none for CNNs
    and ViG; transformers without a convolutional stem train (fine-tuning and scratch alike) with warm-up."""
    assert [layer_decay_for(m) for m in ('vit_tiny_patch16_224', 'slab_swin_t', 'pvt_v2_b0', 'wavemlp_t',
                                         'ghostnet_050', 'pvig_ti_224_gelu')] == [0.70, 0.80, 0.75, 0.75, None, None]
    assert finetune_options('ghostnet_050') == {} and finetune_options('slab_pvt_v2_b0') == {'layer_decay': 0.75}
    assert training_options('slab_swin_t') == TRANSFORMER_TRAINING and training_options('pvt_v2_b0') == {}
    assert training_options('vit_tiny_patch16_224') == {**TRANSFORMER_TRAINING, 'global_pool': 'avg'}
    vit = plan(['fastmim'], QUICK, ['vit_tiny_patch16_224'], Path('out'))
    assert all(job.options['global_pool'] == 'avg' for job in vit.values())  # pre-training too: the keys must fit
    jobs = plan(['fastmim'], QUICK, ['slab_swin_t'], Path('out'))
    assert jobs['fastmim_finetune_slab_swin_t'].needs == ('fastmim_pretrain_slab_swin_t',)
    assert jobs['fastmim_finetune_slab_swin_t'].options['lr'] == jobs['scratch_slab_swin_t'].options['lr'] == 1e-3


def test_plan_lists_every_run_after_the_runs_it_reads():
    jobs = plan(ROWS, QUICK, [MIM_MODEL, 'ghostnet_050'], Path('out'))
    order = list(jobs)
    for name, job in jobs.items():
        assert all(order.index(need) < order.index(name) for need in job.needs), name
    assert jobs['kd'].needs == jobs['ofa'].needs == jobs['ghostnetv3_recipe'].needs == ('teacher',)
    assert jobs['kd'].options['teacher_checkpoint'] == str(Path('out') / 'teacher' / 'last.pth')


@pytest.mark.slow
def test_parallel_runs_give_the_sequential_results(tmp_path):
    """--jobs runs each run in its own one-thread process after the runs it reads: the same numbers as in order."""
    tiny = Budget(epochs=1, teacher_epochs=1, mim_epochs=1, max_steps=2)
    threads = torch.get_num_threads()
    try:
        sequential = run_proof(tmp_path / 'one', tiny, ['kd'], verbose=False)
        parallel = run_proof(tmp_path / 'two', tiny, ['kd'], verbose=False, workers=2)
    finally:
        torch.set_num_threads(threads)
    assert [(r.row, r.top1, r.baseline_top1) for r in parallel] == [(r.row, r.top1, r.baseline_top1)
                                                                     for r in sequential]
    assert parallel[0].cpu_s > 0 and (tmp_path / 'two' / 'kd' / 'log.txt').exists()
