"""Whole runs, a few steps each: outputs, resume, protection of run folders, KD, deploy form, evaluate."""
import csv
import json

import pytest
import timm
import torch
from pathlib import Path

from PIL import Image

import zoo  # noqa: F401
from zoo.train import ConfigError, evaluate, load_recipe, main, make_config, train
from zoo.train.checkpoint import load_checkpoint

from train_helpers import make_image_folder


def test_run_writes_checkpoint_metrics_plot_and_prints_them(tiny, capsys, tmp_path):
    summary = train(tiny(epochs=2, model_ema=True))
    out = tmp_path / 'run'
    for name in ('last.pth', 'best.pth', 'metrics.csv', 'metrics.jsonl', 'curves.png', 'config.yaml',
                 'summary.json'):
        assert (out / name).is_file(), name
    rows = list(csv.DictReader((out / 'metrics.csv').open()))
    assert [r['epoch'] for r in rows] == ['1', '2']
    assert {'train_loss', 'val_loss', 'val_top1', 'val_ema_top1', 'lr'} <= set(rows[0])
    assert Image.open(out / 'curves.png').size[0] > 100
    ckpt = load_checkpoint(out / 'last.pth')  # weights_only=True
    assert ckpt['epoch'] == 2 and ckpt['step'] == 4 and {'optimizer', 'scheduler', 'ema', 'rng'} <= set(ckpt)
    printed = capsys.readouterr().out
    assert f'outputs in {out}' in printed and str(out / 'curves.png') in printed
    assert json.loads((out / 'summary.json').read_text())['epochs'] == 2 == summary['epochs']


def test_supervised_options_together(tiny, tmp_path):
    """mixup/cutmix, accumulation, clipping, channels_last, bfloat16 autocast, SGD + step schedule in one run."""
    summary = train(tiny(mixup=0.8, cutmix=1.0, accum_steps=2, clip_grad=1.0, channels_last=True, amp=True,
                         opt='sgd', lr=0.05, sched='step', decay_epochs=1, max_steps_per_epoch=2))
    ckpt = load_checkpoint(tmp_path / 'run' / 'last.pth')
    assert summary['steps'] == 2 and ckpt['step'] == 2  # 4 micro-batches, 2 optimizer updates
    assert all(torch.isfinite(v).all() for v in ckpt['model'].values() if v.is_floating_point())


def test_output_folder_is_never_overwritten_by_accident(tiny, tmp_path):
    train(tiny())
    before = (tmp_path / 'run' / 'last.pth').read_bytes()
    with pytest.raises(ConfigError, match='already holds a run.*--resume.*--overwrite'):
        train(tiny())
    assert (tmp_path / 'run' / 'last.pth').read_bytes() == before
    with pytest.raises(ConfigError, match='holds a different run.*model'):
        train(tiny(model='ghostnet_050', resume=True))
    train(tiny(overwrite=True))
    (tmp_path / 'other').mkdir()
    (tmp_path / 'other' / 'notes.txt').write_text('mine')
    with pytest.raises(ConfigError, match='other files'):
        train(tiny(output=str(tmp_path / 'other')))
    with pytest.raises(ConfigError, match='nothing to resume'):
        train(tiny(output=str(tmp_path / 'fresh'), resume=True))


def test_resume_continues_counters_history_and_step_hooks(tiny, tmp_path):
    seen = []
    opts = dict(max_steps_per_epoch=0, batch_size=512)  # 1437 // 512 = 2 steps per epoch
    train(tiny(epochs=2, **opts), step_hooks=[lambda s, n: seen.append((s, n))])
    assert seen == [(0, 4), (1, 4), (2, 4), (3, 4)]
    first = load_checkpoint(tmp_path / 'run' / 'last.pth')
    resumed = []
    train(tiny(epochs=3, resume=True, **opts), step_hooks=[lambda s, n: resumed.append((s, n))])
    ckpt = load_checkpoint(tmp_path / 'run' / 'last.pth')
    assert [r['epoch'] for r in ckpt['history']] == [1, 2, 3]
    assert ckpt['history'][:2] == first['history']
    assert ckpt['step'] == first['step'] + 2 == 6
    # the hook sees the global step carry on from the checkpoint, not restart at 0
    assert resumed == [(4, 6), (5, 6)]


def test_module_step_hook_is_called(tiny, monkeypatch):
    calls = []
    orig = timm.create_model

    def with_hook(*a, **kw):
        m = orig(*a, **kw)
        m.on_train_step = lambda step, total: calls.append((step, total))
        return m
    monkeypatch.setattr(timm, 'create_model', with_hook)
    train(tiny(epochs=2))
    assert calls == [(0, 4), (1, 4), (2, 4), (3, 4)]


def test_kd_with_teacher_checkpoint(tiny, tmp_path):
    teacher = timm.create_model('test_efficientnet', num_classes=10)
    torch.save({'state_dict': teacher.state_dict()}, tmp_path / 'teacher.pth')
    summary = train(tiny(distill='kd', teacher='test_efficientnet', teacher_checkpoint=str(tmp_path / 'teacher.pth'),
                         kd_temperature=4.))
    ckpt = load_checkpoint(tmp_path / 'run' / 'last.pth')
    assert 'train_loss_kd' in ckpt['history'][0] and summary['steps'] == 2


def test_ofa_run_saves_and_resumes_branches(tiny, tmp_path):
    teacher = timm.create_model('test_vit', num_classes=10, img_size=32)
    torch.save(teacher.state_dict(), tmp_path / 'teacher.pth')
    opts = dict(distill='ofa', teacher='test_vit', teacher_checkpoint=str(tmp_path / 'teacher.pth'), ofa_eps=[1.5])
    train(tiny(**opts))
    assert 'branches' in load_checkpoint(tmp_path / 'run' / 'last.pth')
    train(tiny(epochs=2, resume=True, **opts))
    assert 'train_loss_ofa' in load_checkpoint(tmp_path / 'run' / 'last.pth')['history'][1]


def test_teacher_errors(tiny, tmp_path):
    teacher = timm.create_model('test_efficientnet', num_classes=7)
    torch.save(teacher.state_dict(), tmp_path / 't7.pth')
    with pytest.raises(ConfigError, match='7 classes.*10'):
        train(tiny(distill='kd', teacher='test_efficientnet', teacher_checkpoint=str(tmp_path / 't7.pth')))
    with pytest.raises(ConfigError, match="unknown teacher 'resnet5O'.*resnet50"):
        train(tiny(distill='kd', teacher='resnet5O', teacher_checkpoint=str(tmp_path / 't7.pth')))
    with pytest.raises(ConfigError, match="unknown model 'ghostnet_05'.*ghostnet_050"):
        train(tiny(model='ghostnet_05'))


def test_ghostnetv3_recipe_fuses_with_identical_accuracy(tiny, tmp_path):
    teacher = timm.create_model('test_resnet', num_classes=10)
    torch.save(teacher.state_dict(), tmp_path / 'teacher.pth')
    recipe = load_recipe(Path(__file__).parents[2] / 'configs' / 'train' / 'ghostnetv3_kd.yaml')
    assert (recipe['model'], recipe['distill'], recipe['mixup'], recipe['cutmix'], recipe['reparameterize']) == \
        ('ghostnetv3_100', 'soft_ce', 0.0, 0.0, True)
    small = dict(dataset='digits', data_dir='', model='ghostnetv3_050', teacher='test_resnet',
                 teacher_checkpoint=str(tmp_path / 'teacher.pth'), teacher_img_size=None, img_size=64, epochs=1,
                 batch_size=16, max_steps_per_epoch=2, workers=0, amp=False, progress=False,
                 output=str(tmp_path / 'run'))
    summary = train(make_config({**recipe, **small}))
    assert summary['deploy_top1_before'] == summary['deploy_top1_after']
    train_form = timm.create_model('ghostnetv3_050', num_classes=10)
    assert summary['deploy_params'] < sum(p.numel() for p in train_form.parameters())
    deploy = load_checkpoint(tmp_path / 'run' / 'model_deploy.pth')
    # --evaluate reads the deploy-form checkpoint too and gives the same accuracy
    ev = evaluate(make_config({**small, 'evaluate': True, 'checkpoint': str(tmp_path / 'run' / 'model_deploy.pth')}))
    assert ev['val_top1'] == deploy['val_top1'] == summary['deploy_top1_after']


def test_folder_training_and_cli_errors(tmp_path, capsys):
    root = make_image_folder(tmp_path / 'data', per_class=4)
    (root / 'train' / 'a' / '9.png').write_bytes(b'broken')
    args = ['--dataset', 'folder', '--data-dir', str(root), '--model', 'test_resnet', '--img-size', '32',
            '--epochs', '1', '--batch-size', '9', '--no-progress', '--output', str(tmp_path / 'run')]  # all 9 files
    with pytest.warns(UserWarning, match='skipping corrupt image'):
        assert main(args) == 0
    capsys.readouterr()
    assert main(['--evaluate', '--model', 'test_resnet', '--img-size', '32', '--dataset', 'folder',
                 '--data-dir', str(root), '--output', str(tmp_path / 'run'), '--no-progress']) == 0
    assert 'held-out loss' in capsys.readouterr().out
    assert main(args) == 2
    assert 'already holds a run' in capsys.readouterr().err
    assert main(args[:-1] + [str(tmp_path / 'strict'), '--on-corrupt', 'error']) == 2
    err = capsys.readouterr().err
    assert 'corrupt image' in err and '9.png' in err
    assert main(['--dataset', 'folder', '--data-dir', str(tmp_path / 'missing'), '--output', str(tmp_path / 'r2')]) == 2
    assert 'does not exist' in capsys.readouterr().err


def test_global_pool_reaches_the_model_and_a_bad_one_is_one_line(tmp_path, capsys):
    from zoo.train.networks import create_student
    vit = create_student(make_config(dict(model='vit_tiny_patch16_224', img_size=32, global_pool='avg')), 10)
    assert vit.global_pool == 'avg' and isinstance(vit.norm, torch.nn.Identity)  # timm's fc_norm takes over
    args = ['--model', 'ghostnet_050', '--global-pool', 'cls', '--epochs', '1', '--output', str(tmp_path / 'r')]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and "ghostnet_050 does not take --global-pool cls" in err, err
    assert not (tmp_path / 'r').exists()
