"""One writer per run folder, checkpoints that cannot disagree or rot silently, and train.py's bad inputs."""
import json
import os
import subprocess
import sys
import zipfile

import pytest
import torch

from zoo.train import main, parse_config
from zoo.train import run as run_module
from zoo.train.config import ConfigError
from zoo.train.rundir import LOCK_NAME, RunLock

TINY = ['--model', 'test_resnet', '--img-size', '32', '--epochs', '1', '--batch-size', '16',
        '--max-steps-per-epoch', '2', '--no-progress']
HOLD_LOCK = ('import sys, time\nfrom zoo.train.rundir import RunLock\nRunLock(sys.argv[1]).acquire()\n'
             'print("locked", flush=True)\ntime.sleep(600)\n')


def _files(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def test_a_live_run_keeps_its_folder_and_a_dead_one_releases_it(tmp_path, capsys):
    """Two processes: while one holds the lock, --overwrite and --resume refuse and change nothing."""
    out = tmp_path / 'run'
    out.mkdir()
    (out / 'config.yaml').write_text('model: test_resnet\n')
    (out / 'last.pth').write_bytes(b'the live run\'s checkpoint')
    holder = subprocess.Popen([sys.executable, '-c', HOLD_LOCK, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == 'locked'
        before = _files(out)
        with pytest.raises(ConfigError, match=f'in use by a live run, process {holder.pid} on '):
            RunLock(out).acquire()
        for flag in ('--overwrite', '--resume'):
            assert main(TINY + ['--output', str(out), flag]) == 2
            err = capsys.readouterr().err
            assert err.count('\n') == 1 and f'process {holder.pid}' in err, err
        assert _files(out) == before
    finally:
        holder.kill()
        holder.wait()
    assert json.loads((out / LOCK_NAME).read_text())['pid'] == holder.pid  # left behind by the killed process
    with RunLock(out) as lock:  # stale: its process is gone
        assert json.loads(lock.path.read_text())['pid'] == os.getpid()
    assert not (out / LOCK_NAME).exists()


def test_output_pointing_at_a_file_is_refused(tmp_path):
    (tmp_path / 'file').write_text('x')
    with pytest.raises(ConfigError, match='is a file, not a folder'):
        RunLock(tmp_path / 'file').acquire()


def test_best_before_last_digest_checked_and_stale_temporaries_removed(tmp_path, monkeypatch, capsys):
    out = tmp_path / 'run'
    order = []
    save = run_module.atomic_save
    monkeypatch.setattr(run_module, 'atomic_save', lambda obj, path: (order.append(path.name), save(obj, path)))
    assert main(TINY + ['--output', str(out)]) == 0
    assert order == ['best.pth', 'last.pth']  # a kill between them leaves last.pth without the new best
    assert not (out / LOCK_NAME).exists()

    (out / '.last.pth.k1ll3d.tmp').write_bytes(b'half a checkpoint')
    (out / '.best.pth.k1ll3d.tmp').write_bytes(b'half a checkpoint')
    assert main(TINY + ['--output', str(out), '--epochs', '2', '--resume']) == 0
    assert not list(out.glob('.*.tmp'))

    with zipfile.ZipFile(out / 'best.pth') as zf:
        info = max(zf.infolist(), key=lambda i: i.file_size)
    data = bytearray((out / 'best.pth').read_bytes())
    data[info.header_offset + 30 + len(info.filename.encode()) + len(info.extra) + 64] ^= 0x01
    (out / 'best.pth').write_bytes(bytes(data))
    capsys.readouterr()
    assert main(TINY + ['--evaluate', '--checkpoint', str(out / 'best.pth')]) == 2
    err = capsys.readouterr().err
    assert f'{out / "best.pth"}' in err and 'corrupt' in err and 'Traceback' not in err


def test_data_dir_alone_means_the_folder_dataset(tmp_path):
    assert parse_config(['--data-dir', str(tmp_path)]).dataset == 'folder'
    with pytest.raises(ConfigError, match='not read with --dataset digits'):
        parse_config(['--data-dir', str(tmp_path), '--dataset', 'digits'])


def test_a_batch_larger_than_the_data_writes_nothing(tmp_path, capsys):
    assert main(TINY + ['--output', str(tmp_path / 'run'), '--batch-size', '100000']) == 2
    assert 'exceeds the 1437 training images' in capsys.readouterr().err
    assert not (tmp_path / 'run').exists()


def _bad_inputs(tmp_path):
    (tmp_path / 'empty.pth').write_bytes(b'')
    torch.save({'model': {'fc.weight': torch.zeros(3, 3)}}, tmp_path / 'other_model.pth')
    torch.save({'w': torch.zeros(4096)}, tmp_path / 'full.pth')
    (tmp_path / 'cut.pth').write_bytes((tmp_path / 'full.pth').read_bytes()[:3000])
    (tmp_path / 'a_file').write_text('x')
    foreign = tmp_path / 'foreign'
    foreign.mkdir()
    torch.save({'state_dict': {'fc.weight': torch.zeros(3, 3)}}, foreign / 'last.pth')
    flags = [['--lr', 'nan'], ['--lr', '-1'], ['--img-size', '0'], ['--workers', '-1'], ['--threads', '-2'],
             ['--smoothing', '1.5'], ['--drop', '1.5'], ['--weight-decay', '-1'], ['--opt', 'nope'],
             ['--sched', 'nope'], ['--max-steps-per-epoch', '-1'], ['--output', str(tmp_path / 'a_file')],
             ['--data-dir', str(tmp_path / 'none'), '--dataset', 'digits'], ['--device', 'nodevice'],
             ['--evaluate', '--checkpoint', str(tmp_path / 'empty.pth')],
             ['--evaluate', '--checkpoint', str(tmp_path / 'cut.pth')],
             ['--evaluate', '--checkpoint', str(tmp_path / 'other_model.pth')],
             ['--initial-checkpoint', str(tmp_path / 'empty.pth')],
             ['--distill', 'kd', '--teacher', 'test_resnet', '--teacher-checkpoint', str(tmp_path / 'empty.pth')],
             ['--resume', '--output', str(foreign)]]
    if not torch.cuda.is_available():
        flags.append(['--device', 'cuda'])
    return flags


def test_train_bad_inputs_give_one_line_and_status_2(tmp_path, capsys):
    """A table of bad flags and files: each is one line on stderr and exit status 2, never a traceback."""
    for flags in _bad_inputs(tmp_path):
        try:
            code = main(TINY + ['--output', str(tmp_path / 'out')] + flags)
        except SystemExit as e:
            code = e.code
        err = capsys.readouterr().err
        assert code == 2 and err.startswith('error: ') and err.count('\n') == 1, (flags, err)
        assert not (tmp_path / 'out').exists(), flags
